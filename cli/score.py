"""``senbert score``: score video files with a checkpoint (default: the shipped model), without Prefect.

    senbert score FOLDER|VIDEO ... [--checkpoint DIR] [--out runs/scores/NAME] [--extract-config default]
                  [--set visual.fps=5] [--cache DIR] [--workers auto]

Writes the same files as the Prefect ``score`` flow (scores.csv, scores.jsonl,
score-errors.json; :mod:`pipeline.scoring`). Exit status: 0 every clip scored, 1 some failed,
2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.options import add_extraction_options, add_model_options


def register(sub: Any) -> None:
    """Add the ``score`` subcommand."""
    s = sub.add_parser(
        "score", help="score video files with a checkpoint (no Prefect): scores.csv + scores.jsonl",
        description="Extract (or take from the cache) the features of video files and score them.",
    )
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="video file or folder (searched recursively)")
    s.add_argument("--out", help="output folder (default: runs/scores/<name of the first input>)")
    s.add_argument("--extract-config", default="default", help="extract config name or YAML (default: default)")
    add_extraction_options(s)
    add_model_options(s)
    s.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.batch import resolve_workers
    from pipeline.corpora import collect_inputs
    from pipeline.predict import resolve_model_path
    from pipeline.scoring import score_videos

    videos = collect_inputs(args.inputs, corpora=False, missing_ok=False)
    ckpt = resolve_model_path(args.checkpoint)
    first = Path(args.inputs[0]).resolve()
    out = Path(args.out) if args.out else Path("runs") / "scores" / (first.name if first.is_dir() else first.stem)
    report = score_videos(videos, ckpt, out, extract_config=args.extract_config, overrides=args.set,
                          cache_dir=args.cache, workers=resolve_workers(args.workers, len(videos)),
                          progress=not args.quiet, device=args.device)
    print(report.table())
    print(report.summary())
    return 1 if report.failed else 0
