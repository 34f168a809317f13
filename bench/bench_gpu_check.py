"""A short, prepared check of a CUDA machine: training steps, scoring, throughput, peak memory.

Run it as soon as a GPU machine is at hand (a few minutes on one GPU), on the host's venv or in
the GPU image (docker/README.md, "The GPU variant"):

    python bench/bench_gpu_check.py                          # --device cuda: the real check
    python bench/bench_gpu_check.py --json gpu-check.json    # the same, and the numbers as JSON
    python bench/bench_gpu_check.py --device cpu --tiny      # dry run on the CPU (a tiny model, ~2 min)
    docker run --rm --gpus all senbert-worker:gpu python bench/bench_gpu_check.py

What it does, through the `senbert` command line only (the same entry points as a user):

1. Training: a synthetic corpus in MMSA's unaligned_50.pkl layout with MOSI's shapes (text up
   to 50 tokens, acoustic 375 x 5, visual 500 x 20; ``--tiny``: 12 x 5 and 16 x 7), ``--steps``
   batches of ``--batch-size`` clips per epoch, ``--epochs`` epochs (2: the second one is timed
   warm) of the language-only variant and of full SenBERT (`senbert train --ablation ...
   --device DEVICE`), with the default config's encoder (all-mpnet-base-v2; ``--tiny``:
   all-MiniLM-L6-v2 and a narrow fusion model). Prints samples/s of the last epoch, its seconds,
   the precision the trainer chose and the peak GPU memory (allocated and reserved by torch).
2. Scoring: the sample videos (examples/videos, ``--copies`` times with distinct bytes) with
   the default model (`senbert score --device DEVICE`): once with feature extraction (on the
   CPU, as always), once more from the feature cache (the model's own time), files/s and peak
   GPU memory; on CUDA, the same files scored on the CPU too, and the largest difference of a
   score between the two devices (the scores are rounded to 0.1: expect 0.0, at most 0.1).

Exit status 0 when every step worked (and, on CUDA, the devices agree within 0.1); the
summary says what failed otherwise. Needs the project set up (scripts/setup.sh or the image).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import pickle
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the movie was honestly really good but the ending felt a bit too long and slow for me "
         "i loved every minute of it although some scenes were awful and boring").split()
TINY_SET = ["model.d_model=16", "model.num_heads=2", "model.low_level_layers=1", "model.self_attn_layers=1",
            "model.high_level_layers=1", "max_text_len=16"]


def write_corpus(path: Path, n_train: int, n_eval: int, t_a: int, d_a: int, t_v: int, d_v: int,
                 max_words: int, seed: int = 0) -> Path:
    """A synthetic corpus in MMSA's unaligned_50.pkl layout (real lengths, zero padding at the end)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for split, n in (("train", n_train), ("valid", n_eval), ("test", n_eval)):
        a_len = rng.integers(max(1, t_a // 2), t_a + 1, size=n)
        v_len = rng.integers(max(1, t_v // 2), t_v + 1, size=n)
        audio = rng.normal(size=(n, t_a, d_a)).astype(np.float32)
        vision = rng.normal(size=(n, t_v, d_v)).astype(np.float32)
        for i in range(n):
            audio[i, a_len[i]:] = 0
            vision[i, v_len[i]:] = 0
        data[split] = {
            "raw_text": np.array([" ".join(rng.choice(WORDS, int(rng.integers(5, max_words + 1)))) for _ in range(n)],
                                 dtype=object),
            "audio": audio, "vision": vision,
            "audio_lengths": [int(x) for x in a_len], "vision_lengths": [int(x) for x in v_len],
            "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
            "id": np.array([f"{split}{i // 4}$_${i % 4}" for i in range(n)], dtype=object),
        }
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return path


class Messages(logging.Handler):
    """Keeps the log lines that say which precision and device the trainer and scorer chose."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "precision" in msg.lower():
            self.lines.append(msg)


def gpu_memory(torch: Any, device: str, reset: bool = False) -> dict[str, float] | None:
    if not device.startswith("cuda"):
        return None
    if reset:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return None
    torch.cuda.synchronize()
    return {"peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1)}


def rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_variant(main: Any, torch: Any, a: argparse.Namespace, data: Path, out: Path, variant: str,
                  msgs: Messages) -> dict[str, Any]:
    run = out / f"train-{variant}"
    cmd = ["train", "--data", str(data), "--out", str(run), "--ablation", variant, "--config", a.config,
           "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--device", a.device, "--quiet"]
    if a.encoder:
        cmd += ["--encoder", a.encoder]
    for s in (TINY_SET if a.tiny else []) + (a.set or []):
        cmd += ["--set", s]
    gpu_memory(torch, a.device, reset=True)
    n0 = len(msgs.lines)
    t0 = time.perf_counter()
    rc = main(cmd)
    wall = time.perf_counter() - t0
    res: dict[str, Any] = {"step": f"train {variant}", "ok": rc == 0, "exit": rc, "wall_s": round(wall, 1)}
    metrics = run / "metrics.jsonl"
    if rc == 0 and metrics.is_file():
        last = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()][-1]
        res.update(samples_per_s=round(float(last["samples_per_second"]), 1),
                   epoch_s=round(float(last["train_seconds"]), 2),
                   steps_per_epoch=a.steps, batch_size=a.batch_size, train_loss=round(float(last["train_loss"]), 4))
    res["precision"] = "; ".join(msgs.lines[n0:]) or None
    res["gpu"] = gpu_memory(torch, a.device)
    return res


def score_files(main: Any, torch: Any, a: argparse.Namespace, videos: Path, cache: Path, out: Path,
                device: str, label: str) -> dict[str, Any]:
    cmd = ["score", str(videos), "--out", str(out), "--cache", str(cache), "--device", device, "--quiet", "--no-report"]
    gpu_memory(torch, device, reset=True)
    t0 = time.perf_counter()
    rc = main(cmd)
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader(open(out / "scores.csv", encoding="utf-8"))) if (out / "scores.csv").is_file() else []
    ok = [r for r in rows if r.get("status") == "ok"]
    return {"step": label, "ok": rc == 0 and len(ok) == len(rows) > 0, "exit": rc, "wall_s": round(wall, 1),
            "files": len(rows), "scored": len(ok), "files_per_s": round(len(ok) / wall, 2) if wall > 0 else None,
            "gpu": gpu_memory(torch, device), "scores": {Path(r["path"]).name: r.get("score") for r in rows}}


def copy_videos(src: Path, dst: Path, copies: int) -> Path:
    """The sample videos ``copies`` times, each copy with its own bytes (zeros appended)."""
    dst.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for f in sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in (".mpg", ".mp4", ".wav")):
            (dst / f"{f.stem}_c{k}{f.suffix}").write_bytes(f.read_bytes() + b"\0" * k)
    return dst


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (a dry run)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model and short sequences (for a dry run on the CPU)")
    ap.add_argument("--variants", default="language_only,full", help="ablations to train (default: language_only,full)")
    ap.add_argument("--config", default="default", help="training config (default: default)")
    ap.add_argument("--encoder", default=None, help="text encoder (default: the config's; --tiny: all-MiniLM-L6-v2)")
    ap.add_argument("--set", action="append", help="one more config override KEY=VALUE (repeatable)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per epoch (default 20; --tiny 3)")
    ap.add_argument("--batch-size", type=int, default=None, help="clips per step (default 32; --tiny 4)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per variant; the last one is timed (default 2)")
    ap.add_argument("--videos", type=Path, default=ROOT / "examples" / "videos", help="videos to score")
    ap.add_argument("--copies", type=int, default=None, help="copies of the videos to score (default 4; --tiny 1)")
    ap.add_argument("--no-train", action="store_true", help="skip the training steps")
    ap.add_argument("--no-score", action="store_true", help="skip the scoring steps")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    a = ap.parse_args(argv)
    a.steps = a.steps or (3 if a.tiny else 20)
    a.batch_size = a.batch_size or (4 if a.tiny else 32)
    a.copies = a.copies or (1 if a.tiny else 4)
    if a.tiny and not a.encoder:
        a.encoder = "all-MiniLM-L6-v2"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from cli import main

    env: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": a.device,
                           "cuda_available": torch.cuda.is_available(),
                           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if a.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print(f"bench_gpu_check: --device {a.device} but torch {torch.__version__} sees no CUDA device "
                  f"(torch.version.cuda={torch.version.cuda}); install the CUDA build (docker/README.md, GPU variant) "
                  "or run --device cpu --tiny for a dry run", file=sys.stderr)
            return 2
        p = torch.cuda.get_device_properties(torch.device(a.device))
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   capability=f"{p.major}.{p.minor}", bf16=torch.cuda.is_bf16_supported())
    print("environment:", json.dumps(env))
    msgs = Messages()
    logging.getLogger().addHandler(msgs)
    logging.getLogger().setLevel(logging.INFO)

    work = a.out or Path(tempfile.mkdtemp(prefix="senbert-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    try:
        if not a.no_train:
            shapes = (12, 5, 16, 7, 12) if a.tiny else (375, 5, 500, 20, 40)
            data = write_corpus(work / "unaligned_50.pkl", a.steps * a.batch_size, a.batch_size, *shapes)
            for variant in a.variants.split(","):
                results.append(train_variant(main, torch, a, data, work, variant.strip(), msgs))
                print("result:", json.dumps(results[-1]), flush=True)
        if not a.no_score:
            videos = copy_videos(a.videos, work / "videos", a.copies)
            cache = work / "cache"
            first = score_files(main, torch, a, videos, cache, work / "scores-1", a.device, "score (with extraction)")
            again = score_files(main, torch, a, videos, cache, work / "scores-2", a.device, "score (features cached)")
            n_train = len(results)
            results += [first, again]
            if a.device.startswith("cuda"):
                cpu = score_files(main, torch, a, videos, cache, work / "scores-cpu", "cpu",
                                  "score on the CPU (cached)")
                diffs = [abs(float(again["scores"][k]) - float(cpu["scores"][k]))
                         for k in again["scores"] if again["scores"][k] and cpu["scores"].get(k)]
                cpu["max_abs_diff_vs_gpu"] = round(max(diffs), 3) if diffs else None
                cpu["ok"] = cpu["ok"] and bool(diffs) and max(diffs) <= 0.1 + 1e-9
                results.append(cpu)
            for r in results[n_train:]:
                print("result:", json.dumps({k: v for k, v in r.items() if k != "scores"}), flush=True)
    finally:
        if a.out is None:
            shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - t_all
    print(f"\n{'step':<28} {'ok':<3} {'wall s':>7} {'samples/s':>10} {'files/s':>8} {'peak GPU MiB':>13}  precision")
    for r in results:
        gpu = r.get("gpu") or {}
        print(f"{r['step']:<28} {'yes' if r['ok'] else 'NO':<3} {r['wall_s']:>7} {r.get('samples_per_s', ''):>10} "
              f"{r.get('files_per_s', ''):>8} {gpu.get('peak_allocated_mib', '-'):>13}  {r.get('precision') or ''}")
    print(f"total {total:.0f} s; peak RSS of this process {rss_mib()} MiB; device {a.device}"
          + (f" ({env.get('gpu')})" if env.get("gpu") else ""))
    if a.json:
        a.json.write_text(json.dumps({"environment": env, "results": results, "total_s": round(total, 1),
                                      "peak_rss_mib": rss_mib()}, indent=1))
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main_())
