"""One part: the packed model of one recipe, built from the MOSI and MOSEI label files.

:func:`build_part` does it all and can be stopped and started again (every stage and seed
resumes): the recipe's preliminary MOSEI stage (or MOSEI's train split added to MOSI's), one MOSI
run per seed under ``work``, the packed model in ``out`` (the adapters of the chosen seeds in fp16,
or in int8 when fp16 would not fit the repository's 10 MiB, every file's SHA-256 in manifest.json),
the calibration of its final score (fitted on MOSI train only), its figures on MOSI valid and
MOSEI valid (only valid: the test splits are not used), and MODEL_CARD.md written from those
figures. :func:`recalibrate` refits the calibration of a packed part (its members as they are, no
training), measures it again and rewrites its card; :func:`card_only` only rewrites the card.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from common.config_files import parse_overrides
from common.errors import ConfigError, InputError
from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import Calibration
from pipeline.models.checkpoint import read_meta
from pipeline.models.packed import member_dirs, read_calibration, read_manifest
from pipeline.models.precision import capabilities
from pipeline.training.config import TrainConfig, load_config
from pipeline.training.release.card import (
    PART_CARD,
    STYLE_LINE,
    built_from_card,
    calibration_text,
    data_text,
    figure_rows,
    member_fields,
)
from pipeline.training.release.packing import Release, copy_members, pack_calibrate_measure, pack_final
from pipeline.training.release.recipe import (
    DEFAULT_CONFIG,
    DEFAULT_OUT,
    DEFAULT_SEEDS,
    DEFAULT_SET,
    DEFAULT_WORK,
    NAME,
    Recipe,
)
from pipeline.training.release.spoken import add_spoken
from pipeline.training.trainer import train_seeds

log = logging.getLogger(__name__)


def build_part(mosi: str, mosei: str, recipe: Recipe | None = None, *, work: str | Path = DEFAULT_WORK,
               out: str | Path = DEFAULT_OUT, name: str = NAME, weights: str = "auto", calibration: str = "quantile",
               text_style: str | None = None, stage_from: str | Path | None = None,
               members_from: str | Path | None = None) -> Release:
    """Train ``recipe``'s seeds on ``mosi`` (with ``mosei`` as its recipe says) under ``work``,
    pack its members in ``out`` as ``name``, calibrate, measure and card it.

    ``weights``: ``auto`` (fp16 when the pack fits 10 MiB, int8 otherwise or when a member is in
    int8 already), ``fp16`` or ``int8``. ``calibration``: a kind of
    ``pipeline.models.calibration.KINDS`` (``none``: none). ``text_style``: how the members read
    transcripts (default: the style they were trained in). ``stage_from``: a run folder whose
    finished MOSEI stage (its ``pretrain/``) is reused. ``members_from``: a packed model of the
    same recipe whose members stand for the seeds it has (they are not trained again)."""
    started = time.perf_counter()
    recipe = recipe or Recipe()
    work, out = Path(work), Path(out)
    cfg, stage_dir = _train_config(recipe, name, mosei, stage_from, work)
    style = text_style or cfg.text_style
    ckpts = [work / f"seed_{s}" / "checkpoint" for s in recipe.packed]
    reused: dict[int, Path] = {}  # seed -> a member of members_from standing for it
    earlier: dict[str, Any] = {}
    if members_from:
        reused, earlier = _members_of(Path(members_from), recipe, work)
        ckpts = [reused.get(s, ck) for s, ck in zip(recipe.packed, ckpts)]
    to_train = [s for s in recipe.seeds if s not in reused]
    if to_train:  # every seed a member of members_from: nothing to train
        t0 = time.perf_counter()
        train_seeds(load_corpus(mosi), cfg, work, to_train, progress=False)
        log.info("training: %.0f s (finished runs are reused)", time.perf_counter() - t0)
    packed, fmt, cal, figures = pack_calibrate_measure(ckpts, out, name, weights, style, mosi, mosei, calibration)
    if reused:  # the earlier model's training (its MOSEI stage and seeds) plus the seeds trained here
        built = _merged_record(_build_record(work, None, to_train), earlier)
    else:
        built = _build_record(work, stage_dir, to_train)
    return _carded(ckpts, packed, name, recipe, figures=figures, built=built, calibration=cal, fmt=fmt,
                   weights=weights, style=style, trained_style=cfg.text_style, stage_dir=stage_dir, work=work,
                   started=started)


def recalibrate(out: str | Path, mosi: str, mosei: str, *, work: str | Path = DEFAULT_WORK,
                calibration: str = "quantile", name: str | None = None, text_style: str | None = None,
                stage_from: str | Path | None = None) -> Release:
    """Refit the calibration of the packed part in ``out`` on MOSI train (its members as they
    are: no training), measure it again and rewrite its card; its recipe and build record are
    its manifest's. ``name``: default its own; ``text_style``: default how it reads now."""
    return _repacked(out, work, name, text_style, stage_from, mosi=mosi, mosei=mosei, calibration=calibration)


def card_only(out: str | Path, *, work: str | Path = DEFAULT_WORK, name: str | None = None,
              text_style: str | None = None, stage_from: str | Path | None = None) -> Release:
    """Re-render the card of the packed part in ``out`` from the figures and records in its
    manifest (no training, no measuring); its weights stay byte for byte."""
    return _repacked(out, work, name, text_style, stage_from)


def _repacked(out: str | Path, work: str | Path, name: str | None, text_style: str | None,
              stage_from: str | Path | None, mosi: str | None = None, mosei: str | None = None,
              calibration: str | None = None) -> Release:
    """The packed part in ``out`` packed again from copies of its members: recalibrated and
    measured when ``calibration`` is given, else with its own calibration and figures."""
    started = time.perf_counter()
    out, work = Path(out), Path(work)
    old = read_manifest(out)
    recorded = old.get("recipe") or {}
    if "parts" in recorded:
        raise ConfigError(f"{out} combines the packed models of several recipes: rebuild it with "
                          "`senbert release combine` (scripts/rebuild_default_model.sh runs every step)")
    recipe = Recipe.of_manifest(old)
    name = name or old.get("name", NAME)
    cfg, stage_dir = _train_config(recipe, name, mosei, stage_from, work)
    style = text_style or recorded.get("text_style", "as_given")
    folders, _ = member_dirs(out)
    ckpts = copy_members(folders, [f.name for f in folders], work)  # packing replaces out
    fmt = old.get("weights", "fp16")
    if calibration is None:
        packed, figures, cal = out, old["figures"], read_calibration(out, old)
    else:
        packed, fmt, cal, figures = pack_calibrate_measure(ckpts, out, name, fmt, style, mosi, mosei, calibration)
    built = (old.get("built") or built_from_card(out / "MODEL_CARD.md")
             or _build_record(work, stage_dir, recipe.seeds))
    done = _carded(ckpts, packed, name, recipe, figures=figures, built=built, calibration=cal, fmt=fmt,
                   weights=recorded.get("weights", "auto"), style=style, trained_style=cfg.text_style,
                   stage_dir=stage_dir, work=work, started=started)
    if old.get("spoken") and calibration is None:  # the same scores: its figures from speech still hold
        done.manifest = add_spoken(out, old["spoken"])
        done.card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    elif old.get("spoken"):
        log.warning("%s: its figures from speech were measured before this calibration and are dropped; "
                    "run bench/bench_spoken.py again and `senbert release spoken`", out)
    return done


def _train_config(recipe: Recipe, name: str, mosei: str | None, stage_from: str | Path | None,
                  work: Path) -> tuple[TrainConfig, Path | None]:
    """The recipe's run config (named ``name``; MOSEI as a preliminary stage or as extra training
    data; a reused stage) and the folder of its MOSEI stage (None: a recipe without one)."""
    cfg = load_config(recipe.config, overrides=parse_overrides(recipe.overrides))
    cfg.name = name
    if recipe.mosei_as == "extra":
        if stage_from:
            raise ConfigError("--stage-from reuses a MOSEI stage; --mosei-as extra has none")
        if mosei:
            cfg.extra_train = [str(Path(mosei).resolve())]
    elif mosei:
        cfg.pretrain = [str(Path(mosei).resolve())]
    if stage_from:
        stage = Path(stage_from) / "pretrain"
        if not (stage / "result.json").is_file():
            raise ConfigError(f"--stage-from {stage_from}: no finished stage in {stage}")
        cfg.init_from = str((stage / "checkpoint").resolve())
    stage_dir = (None if recipe.mosei_as == "extra"  # no preliminary stage
                 else Path(cfg.init_from).parent if stage_from else work / "pretrain")
    return cfg, stage_dir


def _carded(ckpts: list[Path], packed: Path, name: str, recipe: Recipe, *, figures: dict[str, Any],
            built: dict[str, Any], calibration: Calibration | None, fmt: str, weights: str, style: str,
            trained_style: str, stage_dir: Path | None, work: Path, started: float) -> Release:
    """The part's card written from its figures and records, and the part packed with it."""
    meta = read_meta(member_dirs(packed)[0][0])
    run_cfg = meta.train
    card = PART_CARD.format(
        rebuild_args=_rebuild_args(recipe, weights, name, style, trained_style), name=name,
        n_members=len(recipe.packed), members=", ".join(map(str, recipe.packed)), **member_fields(packed, meta, fmt),
        config=recipe.config, overrides=f" with `{' '.join(recipe.overrides)}`" if recipe.overrides else "",
        epochs=run_cfg["epochs"], patience=run_cfg["patience"], lr_encoder=run_cfg["lr_encoder"],
        lr_other=run_cfg["lr_other"], train_hours=built["train_hours"], cpu=built["cpu"],
        precision_note=f", precision {built['precision']}" if built["precision"] else "",
        rows="\n".join(figure_rows(figures, len(recipe.packed))), style_line=STYLE_LINE.get(style, ""),
        **calibration_text(calibration),
        **data_text(recipe.mosei_as, run_cfg["pretrain_epochs"], meta.context, meta.max_context_len,
                    _stage_context(stage_dir, run_cfg, meta.context), float(run_cfg.get("context_dropout", 0.0))))
    return pack_final(ckpts, packed, name, card=card, calibration=calibration, weights=fmt, text_style=style,
                      extra={"figures": figures, "built": built, "recipe": recipe.record(style, weights)},
                      work=work, started=started)


def _rebuild_args(recipe: Recipe, weights: str, name: str, style: str, trained_style: str) -> str:
    """The options of this build that differ from the defaults (the card's rebuild command)."""
    out = [] if recipe.config == DEFAULT_CONFIG else [f"--config {recipe.config}"]
    out += [f"--set {kv}" for kv in recipe.overrides if kv not in DEFAULT_SET]
    if list(recipe.seeds) != list(DEFAULT_SEEDS):
        out.append(f"--seeds {','.join(map(str, recipe.seeds))}")
    if recipe.members is not None and list(recipe.members) != list(recipe.seeds):
        out.append(f"--members {','.join(map(str, recipe.members))}")
    if weights != "auto":
        out.append(f"--weights {weights}")
    if name != NAME:
        out.append(f"--name {name}")
    if style != trained_style:  # packed to read in another style than it was trained in
        out.append(f"--text-style {style}")
    if recipe.mosei_as != "pretrain":
        out.append(f"--mosei-as {recipe.mosei_as}")
    return "".join(" " + o for o in out)


def _members_of(packed: Path, recipe: Recipe, work: Path) -> tuple[dict[int, Path], dict[str, Any]]:
    """The members of an earlier packed model by the seed each stands for (copied under
    ``work``: packing replaces the output, which may be that model), and its manifest. Refused
    unless its recipe (config and settings) is this build's."""
    folders, manifest = member_dirs(packed)
    got = manifest.get("recipe") or {}
    if (got.get("config") != recipe.config or sorted(got.get("set", [])) != sorted(recipe.overrides)
            or got.get("mosei_as", "pretrain") != recipe.mosei_as or len(got.get("members", [])) != len(folders)):
        raise InputError(f"--members-from {packed}: its recipe ({got.get('config')} with {got.get('set')}, MOSEI "
                         f"as {got.get('mosei_as', 'pretrain')}) is not this build's ({recipe.config} with "
                         f"{recipe.overrides}, MOSEI as {recipe.mosei_as}); its members cannot stand for seeds")
    seeds = [int(s) for s in got["members"]]
    out = dict(zip(seeds, copy_members(folders, [f"seed_{s}" for s in seeds], work)))
    log.info("--members-from %s: seeds %s are its members (not trained again)", packed, sorted(out))
    return out, manifest


def _stage_context(stage_dir: Path | None, run_cfg: dict[str, Any], context: int) -> int:
    """The context the preliminary stage read with: its run's config.yaml where the run is at
    hand, else what the members' own training config gave it (``pretrain_context``; unset, their
    ``context``). 0 for a recipe without a stage."""
    if stage_dir is None:
        return 0
    ran = _run_config(stage_dir)
    if "context" in ran:
        return int(ran["context"])
    given = run_cfg.get("pretrain_context")
    return int(context if given is None else given)


def _merged_record(built: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    """This build's record (its seeds) with the training time of the earlier model whose members
    it reuses (its MOSEI stage and seeds): the recipe's cost, its stage counted once."""
    before = earlier.get("built") or {}
    precision = sorted({p for p in (built["precision"], before.get("precision", "")) if p})
    return {"train_hours": built["train_hours"] + float(before.get("train_hours", 0.0)), "cpu": built["cpu"],
            "precision": "/".join(precision)}


def _build_record(work: Path, stage_dir: Path | None, seeds: list[int]) -> dict[str, Any]:
    """Hours of training (stage and seeds, from their metrics.jsonl), the CPU and the precision."""
    stage = _train_seconds(stage_dir) if stage_dir is not None else 0.0
    hours = (stage + sum(_train_seconds(work / f"seed_{s}") for s in seeds)) / 3600
    precision = sorted({str(_run_config(work / f"seed_{s}").get("precision", "")) for s in seeds} - {""})
    return {"train_hours": hours, "cpu": capabilities().describe(), "precision": "/".join(precision)}


def _train_seconds(run: Path) -> float:
    f = run / "metrics.jsonl"
    if not f.is_file():
        return 0.0
    return sum(json.loads(line).get("train_seconds", 0.0) for line in f.read_text().splitlines() if line.strip())


def _run_config(run: Path) -> dict[str, Any]:
    """A run's resolved config (its config.yaml: ``precision`` as ``auto`` resolved, ``context``);
    empty when the run has none."""
    f = run / "config.yaml"
    return (yaml.safe_load(f.read_text()) or {}) if f.is_file() else {}
