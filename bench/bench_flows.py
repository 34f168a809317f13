"""Overhead of the Prefect flows over calling the pipeline directly, and deployment latency.

    python bench/bench_flows.py --data ../shared/data/grid [--repeat 2] [--runners threads:1,threads:2]

Brings up a real local stack (flows/stack.py: ``prefect server start`` on a free port with a
temporary SQLite database, and the serving process), then:

1. Overhead, models loaded: in this process, after :func:`pipeline.features.pool.warm_up`, the same
   clips are extracted into a fresh cache by ``extract_batch(workers=1)`` (direct) and by the
   ``build-features`` flow called in-process against the server (one Prefect task per clip),
   alternately, ``--repeat`` times each. Reported: medians of the wall time of the whole call
   (the flow's includes creating and finishing its flow run) and of the CPU time (this
   process's threads plus the server's and the serving process's: what Prefect costs on the
   machine, and far less sensitive than wall time to other load on a shared machine), and the
   overhead of the flow in percent of the direct run. The target is under 10 %.
2. Latency: ``prefect deployment run build-features/default -p videos=<one clip> --watch
   --watch-interval 1`` through the Prefect CLI, from the command to its exit: with an empty
   cache (the flow-run process starts and loads the models) and again (the clip is cached).
   The server's timestamps split it into: the CLI's start-up until it created the run, the
   serving process's pick-up and the flow-run process's start, the run itself, and the CLI's
   wait for the end of the event stream.

The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _ts(s: str | None) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of GRID clips (e.g. ../shared/data/grid)")
    ap.add_argument("--config", default="default", help="extract config")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--runners", default="threads:1", help="task runners to time, e.g. threads:1,threads:2")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipeline.corpora.inputs import list_videos
    from pipeline.models.precision import capabilities

    print(f"CPU: {capabilities().describe()}", flush=True)

    clips = list_videos(args.data)
    if not clips:
        print(f"no clips in {args.data}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench_flows_"))
    from flows.stack import LocalStack

    stack = LocalStack(home=tmp / "prefect", ui=False, serve_log=tmp / "prefect" / "serve.log", cwd=tmp)
    t0 = time.perf_counter()
    try:
        stack.start()
        print(f"stack up in {time.perf_counter() - t0:.1f} s ({stack.api_url})", flush=True)
        os.environ.update({k: v for k, v in stack.env().items() if k.startswith(("PREFECT_", "DO_NOT_TRACK"))})
        overhead(args, clips, tmp, stack)
        if not args.skip_latency:
            latency(stack, clips[0], tmp)
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average: {os.getloadavg()}")
    return 0


def overhead(args: argparse.Namespace, clips: list[Path], tmp: Path, stack: Any) -> None:
    from flows.runtime import make_task_runner
    from pipeline.features.cache import FeatureCache
    from pipeline.features.config import load_extract_config
    from pipeline.features.pool import extract_batch, warm_up

    cfg = load_extract_config(args.config)
    t = time.perf_counter()
    warm_up(cfg)
    print(f"models loaded in {time.perf_counter() - t:.1f} s", flush=True)

    import logging

    from flows.build_features import build_features

    logging.getLogger("prefect").setLevel(logging.WARNING)
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    flows = {r: build_features.with_options(task_runner=make_task_runner(r)) for r in runners}
    folder = tmp / "clips"
    folder.mkdir()
    for c in clips:
        shutil.copyfile(c, folder / c.name)
    seconds = 0.0
    keys = ["direct", *(f"flow {r}" for r in runners)]
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}  # this process + the stack's processes
    inner: dict[str, list[float]] = {k: [] for k in keys[1:]}
    # one untimed flow run first: the first flow run of a process pays for Prefect's own start-up
    flows[runners[0]](videos=str(folder), cache_dir=str(tmp / "warm"), return_state=False)
    groups = [p.pid for p in (stack.server, stack.serve) if p is not None]

    def measure(key: str, fn: Any) -> Any:
        t, c, g = time.perf_counter(), time.process_time(), group_cpu(groups)
        out = fn()
        times[key].append(time.perf_counter() - t)
        cpu[key].append(time.process_time() - c + group_cpu(groups) - g)
        return out

    for i in range(args.repeat):
        order = keys if i % 2 == 0 else keys[::-1]  # alternate, so that a trend in the load cancels
        for key in order:
            if key == "direct":
                rep = measure(key, lambda i=i: extract_batch(clips, cfg, FeatureCache(tmp / f"direct{i}"), workers=1,
                                                             progress=False))
                seconds = rep.seconds_of_video
                assert not rep.failed, rep.failed
            else:
                r = key.removeprefix("flow ")
                res = measure(key, lambda r=r, i=i: flows[r](videos=str(folder), extract_config=args.config,
                                                             cache_dir=str(tmp / f"flow{i}-{r}")))
                inner[key].append(res["wall_seconds"])
                assert res["done"] == len(clips) and res["failed"] == 0, res
    print(f"\n{len(clips)} GRID clips, {seconds:.1f} s of video, extract config {args.config!r}, models loaded, "
          f"{args.repeat} runs each, alternating:")
    base_w, base_c = statistics.median(times["direct"]), statistics.median(cpu["direct"])
    for key in keys:
        w, c = statistics.median(times[key]), statistics.median(cpu[key])
        extra = "" if key == "direct" else (
            f"   wall {100 * (w - base_w) / base_w:+5.1f} %, CPU {100 * (c - base_c) / base_c:+5.1f} %"
            f"   (tasks only: wall {statistics.median(inner[key]):.2f} s)")
        print(f"  {key:<28} wall {w:6.2f} s ({seconds / w:4.2f}x real time)   CPU {c:6.2f} s{extra}")
    print(f"  (medians; CPU = user+system seconds of this process and of the server's and serving process's "
          f"groups)\n  all wall times: { {k: [round(x, 2) for x in v] for k, v in times.items()} }\n"
          f"  all CPU times:  { {k: [round(x, 2) for x in v] for k, v in cpu.items()} }", flush=True)


def group_cpu(pgids: list[int]) -> float:
    """User+system CPU seconds of every live process in the given process groups."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:  # pgrp
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cutime cstime
    return total / tick


def latency(stack: object, clip: Path, tmp: Path) -> None:
    from flows.stack import LocalStack

    assert isinstance(stack, LocalStack)
    one = tmp / "one clip"
    one.mkdir()
    shutil.copyfile(clip, one / clip.name)
    params = {"videos": str(one), "cache_dir": str(tmp / "latency-cache")}
    print(f"\nprefect deployment run build-features/default, one clip ({clip.name}), --watch-interval 1:")
    for label in ("empty cache (process start + model load + extraction)", "cached"):
        t, t_wall = time.perf_counter(), time.time()
        r = stack.run_deployment("build-features", params)
        wall, t_exit = time.perf_counter() - t, time.time()
        m = re.search(r"UUID: ([0-9a-f-]{36})", r.stdout)
        if r.returncode != 0 or not m:
            print(f"  {label}: FAILED ({r.returncode})\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
            return
        fr = stack._get(f"/flow_runs/{m.group(1)}")
        created, start, end = _ts(fr["created"]), _ts(fr["start_time"]), _ts(fr["end_time"])
        print(f"  {label:<55} {wall:5.1f} s: CLI start -> run created {created - t_wall:4.1f} s, "
              f"created -> running {start - created:4.1f} s, run {end - start:4.1f} s, "
              f"end -> CLI exit {t_exit - end:4.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
