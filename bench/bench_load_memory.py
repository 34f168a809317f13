"""Memory of a loaded packed model: ``Predictor.load`` with each member holding its own copy of the
frozen base encoder (as before pipeline.models.checkpoint.share_frozen_base) against the members sharing
it, each in a fresh process: load time, resident memory (anonymous and file-backed: the base's
safetensors are memory-mapped on a CPU) after loading and after scoring 64 clips, and the CUDA
memory on a GPU.

    python bench/bench_load_memory.py [--checkpoint PACKED] [--data mosi/label.csv] [--device cuda]

Without ``--checkpoint`` it measures the shipped default model. Prints the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mib() -> dict[str, float]:
    """Resident memory now (Linux /proc), in MiB: all of it, anonymous, file-backed (mapped files)."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in keys:
            out[keys[key]] = int(line.split()[1]) / 1024
    return out


def _child(mode: str, checkpoint: str | None, data: str | None, device: str) -> dict:
    import torch

    import pipeline.models.predictor as predict
    from pipeline.corpora.load import load_corpus
    from pipeline.models.packed import default_model_dir

    if mode == "one copy each":  # the members as loaded before sharing: each keeps its own base
        predict.share_frozen_base = lambda model, first: 0
    folder = Path(checkpoint) if checkpoint else default_model_dir()
    t0 = time.perf_counter()
    pred = predict.Predictor.load(folder, device=device)
    out = {"mode": mode, "members": len(getattr(pred, "members", [pred])), "load_s": time.perf_counter() - t0,
           "loaded": _rss_mib()}
    if device.startswith("cuda"):
        out["cuda_mib"] = torch.cuda.memory_allocated() / 2**20
    if data:
        clips = load_corpus(data).split("valid")[:64]
        t0 = time.perf_counter()
        with torch.inference_mode():
            pred.predict_clips(clips)
        out["score_s"] = time.perf_counter() - t0
        out["scored"] = _rss_mib()
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="a packed model (default: the shipped default model)")
    ap.add_argument("--data", help="a label.csv: also score 64 valid clips with Predictor.load's model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.checkpoint, args.data, args.device)))
        return 0
    from pipeline.models.precision import capabilities

    print(f"CPU: {capabilities('cpu').describe()}; device {args.device}")
    print("| members' base encoder | members | load s | RSS loaded (anon + file) MiB | score 64 clips s | "
          "RSS scored (anon + file) MiB | peak RSS MiB | CUDA MiB |")
    print("|---|---|---|---|---|---|---|---|")

    def mib(r: dict | None) -> str:
        return f"{r['rss']:.0f} ({r['anon']:.0f} + {r['file']:.0f})" if r else "-"

    for mode in ("one copy each", "shared"):
        cmd = [sys.executable, __file__, "--child", mode, "--device", args.device]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        if args.data:
            cmd += ["--data", args.data]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return done.returncode
        r = json.loads(done.stdout.strip().splitlines()[-1])
        score = f"{r['score_s']:.1f}" if "score_s" in r else "-"
        cuda = f"{r['cuda_mib']:.0f}" if "cuda_mib" in r else "-"
        print(f"| {r['mode']} | {r['members']} | {r['load_s']:.1f} | {mib(r['loaded'])} | {score} | "
              f"{mib(r.get('scored'))} | {r['peak_mib']:.0f} | {cuda} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
