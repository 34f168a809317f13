"""``senbert stack`` and ``senbert score`` (registered by pipeline/cli.py).

    senbert stack [--port 4200] [--home .senbert/prefect] [--task-runner threads] [--no-ui]
    senbert score FOLDER|VIDEO ... --checkpoint DIR [--out runs/scores/NAME] [--extract-config default]
                  [--set visual.fps=5] [--cache DIR] [--workers 1]

``stack`` brings up the local Prefect stack (see flows/stack.py and docs/flows.md).
``score`` scores videos directly, without Prefect, into the same files as the ``score``
flow (scores.csv, scores.jsonl, score-errors.json). Exit status: 0 every clip scored, 1 some
failed, 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common.errors import InputError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "stack", help="bring up a local Prefect server and serve every deployment (Ctrl-C stops both)",
        description="Start a Prefect server on 127.0.0.1 (SQLite under --home) and one process serving "
                    "build-features/default, score/default, train/default and evaluate/default.",
    )
    p.add_argument("--port", type=int, help="server port (default 4200, or a free one when 4200 is taken)")
    p.add_argument("--home", default=".senbert/prefect",
                   help="PREFECT_HOME: database, logs (default: .senbert/prefect in this folder)")
    p.add_argument("--task-runner", help="threads[:N] | processes[:N] | dask | dask://host:port "
                                         "(default: $SENBERT_TASK_RUNNER or threads)")
    p.add_argument("--name", default="default", help="deployment name (default: default)")
    p.add_argument("--database-url", help="server database instead of SQLite, e.g. "
                                          "postgresql+asyncpg://user:pass@localhost:5432/prefect")
    p.add_argument("--no-ui", action="store_true", help="serve the API only")
    p.set_defaults(func=cmd_stack)

    s = subparsers.add_parser(
        "score", help="score video files with a checkpoint (no Prefect): scores.csv + scores.jsonl",
        description="Extract (or take from the cache) the features of video files and score them.",
    )
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="video file or folder (searched recursively)")
    s.add_argument("--checkpoint", required=True, help="checkpoint folder (or the run folder holding checkpoint/)")
    s.add_argument("--out", help="output folder (default: runs/scores/<name of the first input>)")
    s.add_argument("--extract-config", default="default", help="extract config name or YAML (default: default)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override an extract config value, e.g. visual.fps=5")
    s.add_argument("--cache", help="feature cache folder (default: $SENBERT_CACHE or $SENBERT_HOME/features)")
    s.add_argument("--workers", type=int, default=1, help="extraction worker processes (default 1)")
    s.add_argument("--device", default="cpu", help="where the model runs: cpu (default) or cuda")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_score)


def cmd_stack(args: argparse.Namespace) -> int:
    from flows.stack import run_stack

    return run_stack(home=args.home, port=args.port, task_runner=args.task_runner, name=args.name,
                     ui=not args.no_ui, database_url=args.database_url)


def collect_videos(inputs: list[str]) -> list[Path]:
    from pipeline.extract import list_videos

    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = list_videos(p)
            if not found:
                raise InputError(f"{p}: no video files in this folder (looked for .mp4 .mov .mkv .avi .mpg .webm ...)")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.scoring import check_checkpoint, score_videos

    videos = collect_videos(args.inputs)
    ckpt = check_checkpoint(args.checkpoint)
    first = Path(args.inputs[0]).resolve()
    out = Path(args.out) if args.out else Path("runs") / "scores" / (first.name if first.is_dir() else first.stem)
    report = score_videos(videos, ckpt, out, extract_config=args.extract_config, overrides=args.set,
                          cache_dir=args.cache, workers=args.workers, progress=not args.quiet, device=args.device)
    print(report.table())
    print(report.summary())
    return 1 if report.failed else 0
