"""Options that several subcommands share: one definition each, so that the same option has the
same default and the same help everywhere."""

from __future__ import annotations

import argparse

CACHE_HELP = "feature cache folder (default: $SENBERT_CACHE or $SENBERT_HOME/features)"
CHECKPOINT_HELP = ("checkpoint folder, run folder or packed model (default: the shipped default model, text only: "
                   "see pipeline/default_model/MODEL_CARD.md)")


def add_extraction_options(p: argparse.ArgumentParser) -> None:
    """``--set``, ``--cache`` and ``--workers`` of the commands that extract features."""
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override an extract config value, e.g. visual.fps=5 (repeatable)")
    p.add_argument("--cache", help=CACHE_HELP)
    p.add_argument("--workers", default="auto",
                   help="extraction worker processes, or auto (default): one per core when there are enough clips")


def add_model_options(p: argparse.ArgumentParser, precision: str = "fp32") -> None:
    """``--checkpoint``, ``--device``, ``--precision`` (default ``precision``) and ``--quiet`` of
    the commands that run a trained model."""
    p.add_argument("--checkpoint", default="default", help=CHECKPOINT_HELP)
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default) or cuda")
    p.add_argument("--precision", default=precision, choices=("auto", "fp32", "bf16"),
                   help=f"what the model computes in (default {precision}): auto is bf16 where the hardware "
                        "has native bf16, else fp32 (docs/scoring.md#precision)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
