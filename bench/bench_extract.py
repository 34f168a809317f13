"""Extraction speed on GRID clips: seconds of video per wall second, per stage and end to end.

    python bench/bench_extract.py --data ../shared/data/grid [--config default] [--workers 1,2]

For each worker count, a fresh child process extracts every clip into a fresh cache and
reports:

- end to end: video seconds / wall seconds of the whole batch, including process start,
  model loading and worker start-up (what ``senbert extract`` feels like), and in steady
  state (after every worker finished its first clip);
- per stage: video seconds / seconds spent in the stage (summed over clips; with 2 workers
  the stages of both workers overlap, so these are per-worker speeds);
- peak resident memory of the parent and of the largest worker.

Then (one process) the visual stage against the bare landmarker: the whole visual stage
(streamed ffmpeg decoding, a new landmarker per clip, tracking and features) per frame,
against ``detect_for_video`` alone on frames decoded beforehand, interleaved clip by clip.

The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb(who: int) -> float:  # MiB (ru_maxrss is in KiB on Linux); the keys keep "mb"
    return resource.getrusage(who).ru_maxrss / 1024.0


def copies(clips: list[Path], n: int, folder: Path) -> list[Path]:
    """``n`` byte-distinct copies of each clip (remuxed with a tag, same media), so a batch
    can be longer than the data without the cache serving the repeats."""
    from extractors.media import find_ffmpeg

    out: list[Path] = []
    for k in range(n):
        d = folder / f"copy{k + 1}"
        d.mkdir(parents=True, exist_ok=True)
        for c in clips:
            target = d / f"{c.stem}.mkv"
            subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(c), "-map", "0",
                            "-c", "copy", "-metadata", f"comment=copy {k + 1}", str(target)], check=True)
            out.append(target)
    return out


def child(args: argparse.Namespace) -> None:
    """One batch in this process; prints a JSON line."""
    t_start = time.perf_counter()
    from pipeline.corpora.inputs import list_videos
    from pipeline.features.cache import FeatureCache
    from pipeline.features.config import load_extract_config
    from pipeline.features.pool import extract_batch, warm_up

    clips = list_videos(args.data)[: args.limit or None]
    cfg = load_extract_config(args.config, overrides=args.set)
    with tempfile.TemporaryDirectory() as tmp:
        clips = clips + copies(clips, args.repeat - 1, Path(tmp) / "copies")
        cache = FeatureCache(Path(tmp) / "cache")
        t_warm = 0.0
        if args.workers == 1:
            t = time.perf_counter()
            warm_up(cfg)
            t_warm = time.perf_counter() - t
        t_batch = time.perf_counter()
        report = extract_batch(clips, cfg, cache, workers=args.workers, progress=False, load_entries=False)
        wall_batch = time.perf_counter() - t_batch
        durations = {}
        for i, key in enumerate(report.keys):
            if key:
                e = cache.get(key)
                durations[i] = e.duration if e else 0.0
    done = sorted((t, i) for i, t in enumerate(report.finished_at) if t is not None)
    # steady state: after each worker finished one clip
    k = min(args.workers, len(done) - 1)
    steady = None
    if len(done) > k + 1 and k >= 1:
        t0 = done[k - 1][0]
        secs = sum(durations[i] for _, i in done[k:])
        steady = secs / (done[-1][0] - t0)
    elif args.workers == 1 and done:
        steady = report.seconds_extracted / wall_batch
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    out = {
        "cpu_s": cpu, "load_avg": os.getloadavg()[0],
        "workers": args.workers, "clips": len(clips), "failed": report.failed,
        "video_s": report.seconds_extracted, "wall_batch_s": wall_batch, "warm_up_s": t_warm,
        "wall_process_s": time.perf_counter() - t_start,
        "end_to_end_x": report.seconds_extracted / (time.perf_counter() - t_start),
        "steady_x": steady, "stage_s": report.stage_seconds,
        "peak_rss_parent_mb": _rss_mb(resource.RUSAGE_SELF),
        "peak_rss_worker_mb": _rss_mb(resource.RUSAGE_CHILDREN) if args.workers > 1 else None,
    }
    print("RESULT " + json.dumps(out))


def visual_overhead(args: argparse.Namespace) -> dict[str, float]:
    import mediapipe as mp

    from extractors import registry
    from extractors.media import effective_fps, open_media
    from pipeline.corpora.inputs import list_videos
    from pipeline.features.config import load_extract_config

    cfg = load_extract_config(args.config, overrides=args.set)
    vex = registry.create(cfg.extractors.vision or "mediapipe_face", cfg.visual)
    clips = list_videos(args.data)[: args.limit or None]
    media = [open_media(p, cfg.media, need_audio=False, need_video=True) for p in clips]
    vex.extract(media[0])  # warm
    def cpu() -> float:  # this process and its finished children (ffmpeg)
        return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))

    stage = bare = stage_cpu = bare_cpu = create = 0.0
    frames = 0
    for _ in range(args.rounds):
        for m in media:
            t, c = time.perf_counter(), cpu()
            seq = vex.extract(m)
            stage += time.perf_counter() - t
            stage_cpu += cpu() - c
            frames += seq.values.shape[0]
            rate = effective_fps(m.info, cfg.visual.fps)
            decoded = [f.rgb.copy() for f in m.frames(rate, cfg.visual.max_side)]
            t = time.perf_counter()
            lm = vex.create_landmarker()
            create += time.perf_counter() - t
            t, c = time.perf_counter(), cpu()
            for j, rgb in enumerate(decoded):
                lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), int(j * 1000 / rate) + 1)
            bare += time.perf_counter() - t
            bare_cpu += cpu() - c
            lm.close()
    return {"frames": frames, "stage_ms_per_frame": 1000 * stage / frames,
            "bare_ms_per_frame": 1000 * bare / frames, "ratio": stage / bare,
            "stage_cpu_ms_per_frame": 1000 * stage_cpu / frames, "bare_cpu_ms_per_frame": 1000 * bare_cpu / frames,
            "cpu_ratio": stage_cpu / bare_cpu,
            "landmarker_create_ms_per_clip": 1000 * create / (len(media) * args.rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of clips (e.g. ../shared/data/grid)")
    ap.add_argument("--config", default="default")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. visual.fps=5")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N clips")
    ap.add_argument("--repeat", type=int, default=1,
                    help="process each clip N times (byte-distinct copies) to amortise start-up")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the visual overhead comparison")
    ap.add_argument("--skip-visual", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: folder not found; pass --data with the GRID clips")
    if args.child:
        args.workers = int(args.workers)
        child(args)
        return
    from pipeline.models.precision import capabilities

    print(f"CPU: {capabilities().describe()}", flush=True)
    print(f"clips: {args.data}  config: {args.config} {args.set}  cores: {os.cpu_count()}  "
          f"load average: {os.getloadavg()[0]:.2f}")
    results = []
    for w in [int(x) for x in args.workers.split(",") if x.strip()]:
        cmd = [sys.executable, __file__, "--child", "--workers", str(w), "--data", str(args.data),
               "--config", args.config, "--limit", str(args.limit), "--repeat", str(args.repeat)]
        cmd += [f"--set={s}" for s in args.set]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"child failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
        r = json.loads(line[7:])
        results.append(r)
        st = r["stage_s"]
        print(f"\n== {w} worker(s): {r['clips']} clips, {r['video_s']:.1f} s of video, {len(r['failed'])} failed")
        print(f"end to end (process start, model loads, batch): {r['wall_process_s']:.1f} s wall = "
              f"{r['end_to_end_x']:.2f}x real time")
        print(f"batch only: {r['wall_batch_s']:.1f} s = {r['video_s'] / r['wall_batch_s']:.2f}x real time"
              + (f" (models loaded beforehand in {r['warm_up_s']:.1f} s)" if r["warm_up_s"] else
                 " (includes worker start-up and model loads)"))
        if r["steady_x"]:
            print(f"steady state: {r['steady_x']:.2f}x real time")
        print(f"CPU time (all processes): {r['cpu_s']:.1f} s = {r['cpu_s'] / r['video_s']:.3f} CPU s per video s; "
              f"on {os.cpu_count()} otherwise idle cores at most {os.cpu_count() * r['video_s'] / r['cpu_s']:.1f}x "
              f"real time (load average during the run: {r['load_avg']:.1f})")
        print("per stage (video s per stage s, summed over clips):")
        for stage in ("decode_audio", "acoustic", "asr", "visual", "write", "total"):
            if st.get(stage):
                print(f"  {stage:<13} {st[stage]:7.2f} s  {r['video_s'] / st[stage]:7.1f}x")
        mem = f"peak RSS: parent {r['peak_rss_parent_mb']:.0f} MiB"
        if r["peak_rss_worker_mb"]:
            mem += f", largest worker {r['peak_rss_worker_mb']:.0f} MiB"
        print(mem)
    if not args.skip_visual:
        v = visual_overhead(args)
        print(f"\n== visual stage vs bare landmarker ({v['frames']} frames, interleaved)")
        print(f"visual stage {v['stage_ms_per_frame']:.1f} ms/frame, bare detect_for_video "
              f"{v['bare_ms_per_frame']:.1f} ms/frame: ratio {v['ratio']:.2f} "
              f"(landmarker creation {v['landmarker_create_ms_per_clip']:.0f} ms per clip)")
        print(f"CPU time: visual stage {v['stage_cpu_ms_per_frame']:.1f} ms/frame (incl. ffmpeg), bare "
              f"{v['bare_cpu_ms_per_frame']:.1f} ms/frame: ratio {v['cpu_ratio']:.2f}")
    print(f"\nload average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
