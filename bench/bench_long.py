"""Long files against short clips: extraction + utterance segmentation + scoring, real-time factor.

Builds a file of ``--minutes`` (the short clips joined, then looped) and as many distinct short
clips as ``--short`` asks (copies of the same clips with different container metadata, so the
feature cache sees new files), then runs `senbert score`'s pipeline on each set in a fresh
cache and prints its speed (seconds of media per wall second, and the real-time factor: wall
seconds per media second; the models are loaded before either set is timed), the time of each
stage, and how many times each stage ran per file (speech recognition, face and acoustic
extraction: once per file; scoring: one batched pass over all utterances) and how many frames
went through the face landmarker. ``--vision auto`` (the default) extracts as `senbert score`
does: a model that reads no vision gets the sparse face pass (1 frame a second);
``--vision full`` runs the landmarker at the config's rate, as before the sparse pass existed.
``--precision`` (default ``auto``, as `senbert score`: bf16 where the CPU has native bf16) is what
the model computes in.

    python bench/bench_long.py --clips examples/videos --minutes 10 --short 40 --out runs/bench_long \\
        > runs/bench_long.log 2>&1

Resumable: the joined files are kept in ``--out``; each set's cache is removed before it runs
(``--keep-cache`` keeps it). Delete ``--out`` when done.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractors import acoustic, transcript, visual  # noqa: E402
from extractors.media import find_ffmpeg, probe  # noqa: E402
from pipeline.corpora.inputs import list_media
from pipeline.features.cache import FeatureCache
from pipeline.features.config import load_extract_config
from pipeline.features.pool import extract_batch, warm_up
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor
from pipeline.scoring.score import ClipFeatures, reads_vision, score_features

CALLS: Counter[str] = Counter()


def count(cls: type, method: str, name: str) -> None:
    """Count the calls of ``cls.method`` (each stage's work per file)."""
    original = getattr(cls, method)

    def wrapper(self, *a, **k):  # type: ignore[no-untyped-def]
        CALLS[name] += 1
        return original(self, *a, **k)

    setattr(cls, method, wrapper)


def ffmpeg(*args: str) -> None:
    subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-y", *args], check=True)


def joins_of(clips: list[Path], joined: Path, long_file: Path) -> list[float]:
    """The times in the long file where one short clip ends and the next begins."""
    one, total = probe(joined).duration, probe(long_file).duration
    lengths = [probe(c).duration for c in clips]
    lengths[-1] += one - sum(lengths)  # the joined file's end padding belongs to its last clip
    out, t = [], 0.0
    while t + one <= total + 1e-6:
        for d in lengths:
            t += d
            out.append(t)
    return out[:-1]


def build_inputs(clips: list[Path], out: Path, minutes: float, n_short: int) -> tuple[Path, list[Path]]:
    out.mkdir(parents=True, exist_ok=True)
    joined = out / "joined.mp4"
    if not joined.exists():
        args: list[str] = []
        for c in clips:
            args += ["-i", str(c)]
        n = len(clips)
        graph = "".join(f"[{i}:v][{i}:a]" for i in range(n)) + f"concat=n={n}:v=1:a=1[v][a]"
        ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
               "-preset", "veryfast", "-c:a", "aac", str(joined))
    one = probe(joined).duration
    loops = max(1, int(round(minutes * 60 / one)))
    long_file = out / f"long_{minutes:g}min.mp4"
    if not long_file.exists():  # re-encoded: a stream copy shifts the audio by the AAC priming delay per loop
        ffmpeg("-stream_loop", str(loops - 1), "-i", str(joined), "-c:v", "libx264", "-preset", "veryfast",
               "-c:a", "aac", str(long_file))
    short_dir = out / "short"
    short_dir.mkdir(exist_ok=True)
    shorts = []
    for i in range(n_short):
        src = clips[i % len(clips)]
        dst = short_dir / f"clip_{i:03d}.mp4"
        if not dst.exists():  # the same clip, other bytes: a new file for the cache
            ffmpeg("-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
                   "-metadata", f"comment=copy {i}", str(dst))
        shorts.append(dst)
    return long_file, shorts


def run_set(name: str, files: list[Path], out: Path, overrides: list[str], predictor: Predictor,
            keep_cache: bool, sparse_vision: bool) -> dict[str, float]:
    cache_dir = out / f"cache_{name}"
    if cache_dir.exists() and not keep_cache:
        shutil.rmtree(cache_dir)
    cache = FeatureCache(cache_dir)
    cfg = load_extract_config("default", overrides=overrides)
    CALLS.clear()
    t0 = time.perf_counter()
    batch = extract_batch(files, cfg, cache, workers=1, progress=False, load_entries=False,
                          sparse_vision=sparse_vision)
    t_extract = time.perf_counter() - t0
    items = [ClipFeatures(str(p), k) for p, k in zip(files, batch.keys, strict=True)]
    t1 = time.perf_counter()
    rep = score_features(items, predictor, cache, out / f"scores_{name}", report=True)
    t_score = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    media = sum(probe(p).duration for p, k in zip(files, batch.keys, strict=True) if k)  # extracted files only
    n_utt = sum(1 for u in rep.utterances if u["status"] == "ok")
    print(f"\n## {name}: {len(files)} file(s), {media:.0f} s of media, {n_utt} utterances scored, "
          f"{len(rep.failed)} failed")
    print("| stage | seconds | per file |")
    print("|---|---|---|")
    for stage in ("decode_audio", "acoustic", "asr", "visual"):
        v = batch.stage_seconds.get(stage, 0.0)
        print(f"| {stage} | {v:.1f} | {v / len(files):.2f} |")
    print(f"| extraction (wall) | {t_extract:.1f} | {t_extract / len(files):.2f} |")
    print(f"| segmentation + scoring + report | {t_score:.1f} | {t_score / len(files):.2f} |")
    print("calls per file: " + ", ".join(f"{k} {v / len(files):g}" for k, v in sorted(CALLS.items())))
    frames = sum(int(e.vision.shape[0]) for e in (cache.get(k) for k in batch.keys if k) if e is not None)
    print(f"face landmarker frames: {frames} ({frames / max(media, 1e-9):.2f} a media second)")
    print(f"speed: {media / wall:.2f}x real time (media seconds per wall second; extraction alone "
          f"{media / t_extract:.2f}x); real-time factor (wall seconds per media second): {wall / media:.3f}")
    return {"speed": media / wall, "rtf": wall / media, "media": media, "wall": wall, "utterances": n_utt}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default="examples/videos", help="folder of short clips to join and loop")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--short", type=int, default=40, help="how many short clips to compare with")
    ap.add_argument("--out", default="runs/bench_long")
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--set", action="append", default=[], help="extract config overrides")
    ap.add_argument("--keep-cache", action="store_true")
    ap.add_argument("--vision", choices=("auto", "full"), default="auto",
                    help="auto: as senbert score (sparse face pass for a model that reads no vision); full: "
                         "the landmarker at the config's rate")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="what the model computes in (default auto, as senbert score: bf16 where native)")
    args = ap.parse_args()
    print(f"CPU: {capabilities('cpu').describe()}")
    count(transcript.WhisperTranscriber, "transcribe", "asr")
    count(visual.FaceLandmarkerExtractor, "extract", "visual")
    count(acoustic.LibrosaExtractor, "extract", "acoustic")
    clips = list_media(args.clips)
    out = Path(args.out)
    long_file, shorts = build_inputs(clips, out, args.minutes, args.short)
    predictor = Predictor.load(args.checkpoint, precision=args.precision)
    sparse = args.vision == "auto" and not reads_vision(predictor)
    print(f"model {predictor.name} ({predictor.modalities}, {predictor.precision}); extract overrides "
          f"{args.set or 'none'}; face pass: {'sparse' if sparse else 'full rate'}")
    warm_up(load_extract_config("default", overrides=args.set))  # models load before either set is timed
    short = run_set("short", shorts, out, args.set, predictor, args.keep_cache, sparse)
    long = run_set("long", [long_file], out, args.set, predictor, args.keep_cache, sparse)
    from pipeline.scoring.score import read_scores

    utts = read_scores(out / "scores_long", "utterances.jsonl")
    joins = joins_of(clips, out / "joined.mp4", long_file)
    cuts = [(a["end"] + b["start"]) / 2 for a, b in zip(utts, utts[1:])]
    err = [min(abs(c - j) for j in joins) for c in cuts]  # each cut against its nearest join
    missed = sum(1 for j in joins if min((abs(c - j) for c in cuts), default=1e9) > 0.5)
    print(f"\nutterances of the long file: {len(utts)} for {len(joins) + 1} joined sentences; cut to nearest "
          f"join: mean {sum(err) / max(1, len(err)):.3f} s, max {max(err, default=0):.3f} s; joins with no cut "
          f"within 0.5 s: {missed}")
    print(f"\nlong / short speed (x real time): {long['speed'] / short['speed']:.3f} "
          f"(within 10 %: {abs(long['speed'] / short['speed'] - 1) <= 0.10}); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
