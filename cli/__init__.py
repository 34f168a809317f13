"""The ``senbert`` command line: one parser, one module per group of subcommands.

    senbert train     --data CORPUS --config NAME [--ablation A] [--pretrain CORPUS] [--seeds 1,2,3] --out DIR
    senbert evaluate  [--checkpoint DIR] --data CORPUS [--split test]
    senbert predict   [--checkpoint DIR] --data CORPUS [--split S] [--out preds.csv]
    senbert export-mmsa --data CORPUS --out features.pkl          (cli/train.py)
    senbert demo                                                   (cli/demo.py)
    senbert extract / assets                                       (cli/extract.py)
    senbert stack                                                  (cli/flows.py)
    senbert score                                                  (cli/score.py)
    senbert release build / combine / spoken                       (cli/release.py)

A CORPUS is an MMSA feature pickle (``.pkl``), an MMSA-FET ``label.csv`` (text only), or a
``label.csv`` plus ``--raw-dir`` (videos under ``Raw/<video_id>/<clip_id>.<ext>``, features
extracted and cached on the way). Errors a user can cause print one clear message, no traceback
(exit status 2). Each command imports the parts of the project it uses when it runs, so that
``senbert --help`` and every command start without loading what they do not need.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cli import demo, extract, flows, release, score, train
from common.errors import SenbertError

log = logging.getLogger("senbert")

COMMAND_MODULES = (train, demo, extract, flows, score, release)  # the order of ``senbert --help``


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="senbert", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as escapes, not a crash
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "transformers", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.func(args) or 0)
    except SenbertError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
