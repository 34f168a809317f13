"""What int8 adapters cost a packed model: its members packed again with ``weights="int8"`` and
both packs run on the same clips.

    python bench/bench_int8.py --data mosi/label.csv                  # the shipped default model
    python bench/bench_int8.py --data mosi/label.csv --model runs/my_packed --split valid

Prints the CPU, each pack's size, each member's largest and mean change of its raw score, the
figures of the ensemble (uncalibrated and, when the pack has one, calibrated) both ways, and the
clips per second of each pack. Nothing is asserted: the figures are for the notes and the README.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import calibrated
from pipeline.models.inference import ensemble_mean, metrics_of
from pipeline.models.metrics import metric_cells
from pipeline.models.packed import default_model_dir, member_dirs, pack_model, read_manifest
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor

KEYS = ("mae", "corr", "acc7", "acc2_has0", "acc2_non0", "f1_non0")


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _run(folder: Path, clips: list) -> tuple[list[dict], float]:
    model = Predictor.load(folder)
    t0 = time.perf_counter()
    preds = [m.predict_clips(clips, raw=True) for m in getattr(model, "members", [model])]
    return preds, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a label file (e.g. CMU-MOSI's label.csv)")
    ap.add_argument("--model", help="a packed model (default: the shipped one)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--limit", type=int, default=0, help="only the first N clips of the split")
    args = ap.parse_args(argv)
    print(f"CPU: {capabilities().describe()}", flush=True)
    source = Path(args.model) if args.model else default_model_dir()
    folders, manifest = member_dirs(source)
    if manifest.get("weights", "fp16") != "fp16":
        ap.error(f"{source}: its members are stored in {manifest['weights']}; give a pack in fp16")
    clips = [c for c in load_corpus(args.data).split(args.split) if c.label is not None]
    clips = clips[: args.limit] if args.limit else clips
    cal = Predictor.load(source).calibration
    tmp = Path(tempfile.mkdtemp(prefix="int8_"))
    try:
        int8 = pack_model(folders, tmp / "int8", read_manifest(source)["name"], calibration=cal, weights="int8")
        rows = {}
        for label, folder in (("fp16", source), ("int8", int8)):
            preds, seconds = _run(folder, clips)
            rows[label] = preds
            member_bytes = [(folder / m / "model.safetensors").stat().st_size for m in read_manifest(folder)["members"]]
            print(f"{label}: {len(member_bytes)} member(s) of {np.mean(member_bytes) / 2**20:.2f} MiB, pack "
                  f"{_size(folder) / 2**20:.2f} MiB; {len(clips)} clips of {args.split} in {seconds:.1f} s "
                  f"({len(clips) / seconds:.1f} clips/s)", flush=True)
        for i, (a, b) in enumerate(zip(rows["fp16"], rows["int8"]), 1):
            d = np.abs(np.asarray(a["multimodal"]) - np.asarray(b["multimodal"]))
            print(f"member {i}: |int8 - fp16| of the raw score: max {d.max():.4f}, mean {d.mean():.5f}")
        print("| pack | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS))
        for label, preds in rows.items():
            mean = ensemble_mean(preds)
            ways = [("uncalibrated", mean)] + ([("calibrated", calibrated(mean, cal))] if cal is not None else [])
            for how, p in ways:
                m = metrics_of(p)
                print(f"| {label}, {how} | {metric_cells(m, KEYS)} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
