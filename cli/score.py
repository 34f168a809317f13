"""``senbert score``: score video and audio files with a checkpoint (default: the shipped model),
without Prefect.

    senbert score FOLDER|FILE ... [--checkpoint DIR] [--out runs/scores/NAME] [--extract-config default]
                  [--set visual.fps=5] [--cache DIR] [--workers auto]
                  [--max-utterance 15] [--pause 0.6] [--utterance key=value ...] [--no-report]

Writes the same files as the Prefect ``score`` flow (scores.csv / scores.jsonl per file,
utterances.csv / utterances.jsonl per utterance, score-errors.json, report/index.html with a
page per file, plots/*.png; :mod:`pipeline.scoring.score`). Exit status: 0 every file scored, 1 some
failed, 2 a usage or configuration error. Files of a folder that are not media are listed as
skipped (they do not change the exit status).
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
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video or audio file, or a folder (searched recursively)")
    s.add_argument("--out", help="output folder (default: runs/scores/<name of the first input>)")
    s.add_argument("--extract-config", default="default", help="extract config name or YAML (default: default)")
    add_extraction_options(s)
    add_model_options(s, precision="auto")
    u = s.add_argument_group("utterances (files longer than --max-utterance are cut at speech boundaries)")
    u.add_argument("--max-utterance", type=float, metavar="S",
                   help="a file up to S seconds is one utterance; longer ones are cut (default 15; 0: never cut)")
    u.add_argument("--pause", type=float, metavar="S", help="a pause this long between words ends an utterance "
                   "(default 0.6)")
    u.add_argument("--utterance", action="append", default=[], metavar="KEY=VALUE",
                   help="any other utterance setting: min_s, keep_pause_s, pad_s, sentence_pause_s, silence_db "
                        "(see docs/utterances.md); repeatable")
    s.add_argument("--no-report", action="store_true", help="write no HTML report and no PNG plots")
    s.set_defaults(func=cmd_score)


def utterance_settings(args: argparse.Namespace) -> Any:
    """The utterance settings of ``--max-utterance``, ``--pause`` and ``--utterance k=v``."""
    from common.config_files import parse_overrides
    from pipeline.scoring.utterances import UtteranceSettings

    values = parse_overrides(args.utterance, option="--utterance")
    if args.max_utterance is not None:
        values["max_s"] = args.max_utterance
    if args.pause is not None:
        values["pause_s"] = args.pause
    return UtteranceSettings.from_dict(values)


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.corpora.inputs import collect_inputs
    from pipeline.scoring.api import Scorer

    settings = utterance_settings(args)
    skipped: list[tuple[Path, str]] = []
    videos = collect_inputs(args.inputs, corpora=False, missing_ok=False, skipped=skipped)
    first = Path(args.inputs[0]).resolve()
    out = Path(args.out) if args.out else Path("runs") / "scores" / (first.name if first.is_dir() else first.stem)
    scorer = Scorer.load(args.checkpoint, device=args.device, precision=args.precision,
                         extract_config=args.extract_config,
                         overrides=args.set, cache_dir=args.cache, utterances=settings, workers=args.workers)
    result = scorer.score(videos, out=out, report=not args.no_report, progress=not args.quiet, skipped=skipped)
    print(result.table())
    print(result.report.summary())
    return 1 if result.failed else 0
