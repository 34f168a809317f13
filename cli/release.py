"""``senbert release build`` and ``senbert release combine``: packed models made for shipping.

    senbert release build   --mosi MOSI/label.csv --mosei MOSEI/label.csv [--work DIR] [--out DIR]
                            [--config NAME] [--set KEY=VALUE] [--seeds 1,2,3] [--members SEEDS]
                            [--mosei-as pretrain|extra] [--stage-from RUN] [--members-from PACKED]
                            [--weights auto|fp16|int8] [--name NAME] [--calibration KIND]
                            [--text-style as_given|plain] [--recalibrate | --card-only]
    senbert release combine --mosi MOSI/label.csv --mosei MOSEI/label.csv --parts PACKED PACKED ...
                            [--out DIR] [--work DIR] [--name NAME] [--weights auto|fp16|int8]
                            [--calibration KIND] [--rebuild COMMAND]
    senbert release spoken  --results RESULT.json ... [--model DIR]

``build`` makes a *part*, the packed model of one recipe: it trains the recipe's seeds (every stage
and seed resumes), packs them, fits the calibration of their mean on MOSI train, measures the pack
on MOSI valid, MOSEI valid and MOSI valid with each clip read alone, and writes MODEL_CARD.md;
``--recalibrate`` refits and measures a packed part again, ``--card-only`` rewrites its card.
``combine`` packs the members of several parts into one ensemble, calibrated, measured and carded:
the shipped default model combines two (``scripts/rebuild_default_model.sh`` runs every step).
``spoken`` puts the figures of ``bench/bench_spoken.py`` runs (speech, not transcripts) into a
packed model's card and manifest.
The work itself is ``pipeline/training/release/``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

# standard library only: ``senbert --help`` does not load torch
from pipeline.training.release.recipe import (
    CALIBRATION_CHOICES,
    COMBINED_NAME,
    DEFAULT_COMBINE_WORK,
    DEFAULT_CONFIG,
    DEFAULT_OUT,
    DEFAULT_SEEDS,
    DEFAULT_SET,
    DEFAULT_WORK,
    MOSEI_USES,
    NAME,
    REBUILD,
    TEXT_STYLE_CHOICES,
    WEIGHT_CHOICES,
)

WEIGHTS_HELP = ("how members are stored: fp16, or int8 adapters (about half the size, raw scores within about "
                "0.01); auto (the default): fp16 when the pack fits in 10 MiB, int8 otherwise or when a member is "
                "int8 already (--members-from an int8 pack)")
CALIBRATION_HELP = ("the packed model's calibration of its final score, fitted on MOSI train (default: quantile, "
                    "signs kept; none: no calibration; pipeline/models/calibration.py)")


def register(sub: Any) -> None:
    """Add ``release`` and its subcommands ``build``, ``combine`` and ``spoken``."""
    release = sub.add_parser("release", help="build, combine, calibrate and card packed models (the default model)",
                             description=__doc__.split("\n\n")[0])
    steps = release.add_subparsers(dest="step", required=True)

    p = steps.add_parser("build", help="the packed model of one recipe: train, pack, calibrate, measure, card",
                         description="Train the recipe's seeds (resumable), pack them, calibrate the pack on MOSI "
                                     "train, measure it on the valid splits and write its model card.")
    p.add_argument("--mosi", help="CMU-MOSI label.csv (train and valid splits); not needed with --card-only")
    p.add_argument("--mosei", help="CMU-MOSEI label.csv (train and valid splits); not needed with --card-only")
    p.add_argument("--work", default=DEFAULT_WORK, help=f"training runs (resumable; default: {DEFAULT_WORK})")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"the packed model (default: {DEFAULT_OUT}; the shipped default combines two such "
                        "parts: senbert release combine)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"the recipe's run config, a name under configs/ or a YAML path (default: {DEFAULT_CONFIG})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help=f"override a config value (repeatable), after the recipe's own: {' '.join(DEFAULT_SET)}")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="comma-separated seeds, one training run each (default: %(default)s)")
    p.add_argument("--members", help="seeds to pack (default: all of --seeds)")
    p.add_argument("--mosei-as", choices=MOSEI_USES, default="pretrain",
                   help="how the recipe trains on MOSEI: a preliminary stage, then MOSI (pretrain, the default), "
                        "or its train split added to MOSI's in one run (extra)")
    p.add_argument("--stage-from", metavar="RUN", help="reuse the finished MOSEI stage of this run folder "
                                                       "(its pretrain/)")
    p.add_argument("--members-from", metavar="PACKED",
                   help="a packed model of the same recipe whose members stand for the seeds it has (not trained "
                        "again); the other seeds are trained")
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto", help=WEIGHTS_HELP)
    p.add_argument("--name", help=f"the model's name (default: {NAME}; with --recalibrate or --card-only, "
                                  "the packed model's own)")
    p.add_argument("--calibration", choices=CALIBRATION_CHOICES, default="quantile", help=CALIBRATION_HELP)
    p.add_argument("--text-style", choices=TEXT_STYLE_CHOICES,
                   help="how the packed members read transcripts (default: the style they were trained in, the "
                        "recipe's text_style, as_given unless --set says otherwise; with --recalibrate or "
                        "--card-only, the packed model's own)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--recalibrate", action="store_true",
                       help="refit the calibration of the packed model in --out, measure it and rewrite its card "
                            "(its members and recipe as they are: no training)")
    again.add_argument("--card-only", action="store_true",
                       help="re-render MODEL_CARD.md from the figures in the manifest of --out (no training, no "
                            "measuring)")
    p.set_defaults(func=cmd_build)

    p = steps.add_parser("combine", help="the members of several packed models in one ensemble, calibrated, "
                                         "measured and carded (the shipped default model)",
                         description="Pack the members of several parts into one ensemble (each member weighing "
                                     "the same), calibrate it on MOSI train, measure it on the valid splits and "
                                     "write its model card with each part's recipe.")
    p.add_argument("--mosi", required=True, help="CMU-MOSI label.csv (train and valid splits)")
    p.add_argument("--mosei", required=True, help="CMU-MOSEI label.csv (valid split)")
    p.add_argument("--parts", nargs="+", required=True, metavar="PACKED",
                   help="packed models of one recipe each (senbert release build --out)")
    p.add_argument("--out", help="the combined packed model (default: the shipped default model's folder, "
                                 "pipeline/default_model/)")
    p.add_argument("--work", default=DEFAULT_COMBINE_WORK,
                   help=f"where the members are copied while packing (default: {DEFAULT_COMBINE_WORK})")
    p.add_argument("--name", default=COMBINED_NAME, help="the model's name (default: %(default)s)")
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto", help=WEIGHTS_HELP)
    p.add_argument("--calibration", choices=CALIBRATION_CHOICES, default="quantile", help=CALIBRATION_HELP)
    p.add_argument("--rebuild", default=REBUILD, help="the rebuild command the card gives (default: %(default)s)")
    p.set_defaults(func=cmd_combine)

    p = steps.add_parser("spoken", help="a packed model's figures from speech (bench/bench_spoken.py results) "
                                        "in its card and manifest",
                         description="Write the results of bench/bench_spoken.py runs (a valid split read aloud, "
                                     "recognised and scored, beside the gold transcripts) into the card of a "
                                     "packed model (section 'From speech', replacing an earlier one) and its "
                                     "manifest; the weights are not touched.")
    p.add_argument("--results", nargs="+", required=True, metavar="RESULT.json",
                   help="bench_spoken.py result files (<work>/results/<run>.json), in the order of the card's rows")
    p.add_argument("--model", default=None, help="the packed model (default: the shipped default model's folder)")
    p.set_defaults(func=cmd_spoken)


def cmd_build(args: argparse.Namespace) -> int:
    from common.errors import ConfigError
    from pipeline.training.release.build import build_part, card_only, recalibrate
    from pipeline.training.release.recipe import Recipe, parse_seeds

    started = _started()
    if not args.card_only and not (args.mosi and args.mosei):
        raise ConfigError("release build: --mosi and --mosei are needed (only --card-only does without)")
    if args.card_only:
        done = card_only(args.out, work=args.work, name=args.name, text_style=args.text_style,
                         stage_from=args.stage_from)
    elif args.recalibrate:
        done = recalibrate(args.out, args.mosi, args.mosei, work=args.work, calibration=args.calibration,
                           name=args.name, text_style=args.text_style, stage_from=args.stage_from)
    else:
        recipe = Recipe(config=args.config, overrides=[*DEFAULT_SET, *(args.set or [])], seeds=parse_seeds(args.seeds),
                        members=parse_seeds(args.members) if args.members else None, mosei_as=args.mosei_as)
        done = build_part(args.mosi, args.mosei, recipe, work=args.work, out=args.out, name=args.name or NAME,
                          weights=args.weights, calibration=args.calibration, text_style=args.text_style,
                          stage_from=args.stage_from, members_from=args.members_from)
    _report(done, started)
    return 0


def cmd_combine(args: argparse.Namespace) -> int:
    from pipeline.training.release.combine import combine_parts

    started = _started()
    done = combine_parts(args.parts, args.mosi, args.mosei, out=args.out, work=args.work, name=args.name,
                         weights=args.weights, calibration=args.calibration, rebuild=args.rebuild)
    _report(done, started)
    return 0


def cmd_spoken(args: argparse.Namespace) -> int:
    from pipeline.models.packed import default_model_folder
    from pipeline.training.release.spoken import CARD, add_spoken, read_result

    folder = args.model or default_model_folder()
    results = [read_result(r) for r in args.results]
    manifest = add_spoken(folder, results)
    print(f"{folder}: {len(manifest['spoken'])} spoken run(s) in {CARD} and the manifest")
    return 0


def _started() -> float:
    """Print the CPU the release runs on; the time it started."""
    from pipeline.models.precision import capabilities

    print(f"CPU: {capabilities().describe()}", flush=True)
    return time.perf_counter()


def _report(done: Any, started: float) -> None:
    """The card, the size of the shipped files, the packed model's speed and the wall time."""
    from pipeline.models.packed import CALIBRATION_FILE, MANIFEST

    manifest = done.manifest
    print(done.card)
    cal = f", {CALIBRATION_FILE}" if CALIBRATION_FILE in manifest["files"] else ""
    print(f"packed {done.out}: {done.size_bytes / 2**20:.2f} MiB ({len(manifest['members'])} member(s), "
          f"{manifest.get('weights', 'fp16')}{cal})")
    for corpus, f in done.figures.items():
        print(f"{corpus} valid: {f['clips_per_second']:.1f} clips/s for the packed model")
    print(f"wall time: {time.perf_counter() - started:.0f} s; manifest {done.out / MANIFEST}", flush=True)
