"""The paper's full setup on MMSA feature files of the real shapes: does an epoch complete on
this machine, how long does it take, how much memory does it need?

Writes a generated MMSA pickle with exactly the shapes of the standard unaligned files
(MOSI: text 50, acoustic 375 x 5, visual 500 x 20; MOSEI: acoustic 500 x 74, visual 500 x 35;
random features, random labels) and trains the full SenBERT on it for one epoch through
``senbert train``'s code path. Prints seconds per epoch (measured, and scaled to the real
training-split size) and the peak resident memory.

    python bench/bench_paper_shapes.py --dataset mosi --config paper --encoder all-MiniLM-L6-v2
    python bench/bench_paper_shapes.py --dataset mosei --config default --clips 64
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.corpora.mmsa import read_mmsa_pkl
from pipeline.models.precision import capabilities
from pipeline.training.config import load_config
from pipeline.training.trainer import train

SHAPES = {  # (acoustic T, d), (visual T, d), real train-split size
    "mosi": ((375, 5), (500, 20), 1284),
    "mosei": ((500, 74), (500, 35), 16326),
}


def write_pkl(path: Path, dataset: str, n_train: int, n_valid: int, seed: int = 0) -> None:
    (t_a, d_a), (t_v, d_v), _ = SHAPES[dataset]
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        a_len = rng.integers(t_a // 3, t_a + 1, size=n)
        v_len = rng.integers(t_v // 3, t_v + 1, size=n)
        audio = rng.normal(size=(n, t_a, d_a)).astype(np.float32)
        vision = rng.normal(size=(n, t_v, d_v)).astype(np.float32)
        for i in range(n):
            audio[i, a_len[i]:] = 0
            vision[i, v_len[i]:] = 0
        words = "the film was honestly pretty good but a little too long for me".split()
        data[split] = {
            "raw_text": np.array([" ".join(rng.choice(words, 40)) for _ in range(n)], dtype=object),
            "audio": audio, "vision": vision,
            "audio_lengths": [int(x) for x in a_len], "vision_lengths": [int(x) for x in v_len],
            "text_bert": np.zeros((n, 3, 50), np.float32),
            "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
            "id": np.array([f"gen{split}$_${i}" for i in range(n)], dtype=object),
        }
    with open(path, "wb") as f:
        pickle.dump(data, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(SHAPES), default="mosi")
    ap.add_argument("--config", default="paper")
    ap.add_argument("--encoder", help="override the config's encoder (bert-base-uncased is not offline here)")
    ap.add_argument("--clips", type=int, default=64, help="generated training clips")
    ap.add_argument("--json")
    args = ap.parse_args()
    print(f"CPU: {capabilities().describe()}", flush=True)
    over = {"epochs": 1, "patience": 1}
    if args.encoder:
        over["model.encoder"] = args.encoder
    cfg = load_config(args.config, overrides=over)
    with tempfile.TemporaryDirectory() as tmp:
        pkl = Path(tmp) / f"{args.dataset}_unaligned_generated.pkl"
        write_pkl(pkl, args.dataset, args.clips, max(8, args.clips // 8))
        corpus = read_mmsa_pkl(pkl)
        t0 = time.perf_counter()
        res = train(corpus, cfg, Path(tmp) / "run", progress=False)
        total = time.perf_counter() - t0
    n_real = SHAPES[args.dataset][2]
    per_clip = res.seconds_per_epoch / args.clips
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"dataset": args.dataset, "config": cfg.name, "encoder": cfg.model.encoder,
           "conv_stride": cfg.model.conv_stride, "clips": args.clips,
           "train_seconds_for_clips": res.seconds_per_epoch, "seconds_per_epoch_real_train_split": per_clip * n_real,
           "wall_seconds_total": total, "peak_rss_mib": peak}
    print(f"{args.dataset} shapes, config {cfg.name} (encoder {cfg.model.encoder}, stride {cfg.model.conv_stride}): "
          f"epoch of {args.clips} clips {res.seconds_per_epoch:.1f} s -> {per_clip * n_real / 60:.1f} min per epoch "
          f"of the real {n_real}-clip training split; peak RSS {peak:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
