"""Build the packed model of one recipe from the MOSI and MOSEI label files: a part of the shipped
default model (pipeline/default_model/, which ``bench/combine_default_model.py`` makes from two
such parts; ``scripts/rebuild_default_model.sh`` runs every step), or a model of its own.

    python bench/build_default_model.py --mosi mosi/label.csv --mosei mosei/label.csv

One command does it all, and can be stopped and started again (every stage and seed resumes):
the recipe's preliminary MOSEI stage, one MOSI run per seed (``--work``, default
runs/default_model/stage), the packed model (``--out``, default runs/default_model/part_stage:
the adapters of the chosen seeds in fp16, or in int8
when fp16 would not fit the repository's 10 MiB (``--weights``), every file's SHA-256 in
manifest.json), the calibration of its final score (``--calibration quantile``, fitted on
MOSI train only: pipeline/models/calibration.py), its figures on MOSI valid and MOSEI valid (only
valid: the test splits are not used), and MODEL_CARD.md written from those figures. Prints the
CPU, the wall time of each step and the size of the shipped files.

``--recalibrate`` refits the calibration of the packed model in ``--out`` (its members as they
are, no training), measures it again and rewrites its card; ``--card-only`` only rewrites the card.

The recipe (``--config``, ``--set``, ``--seeds``, ``--members``) defaults to the one the model
card describes. ``--members`` names the seeds packed into the ensemble (default: all of
``--seeds``). ``--members-from PACKED`` adds seeds to a packed model of the same recipe without
training again the seeds it already has: its members stand for them. ``--mosei-as extra`` trains
on MOSEI's train split together with MOSI's in each seed's run instead of in a preliminary stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.config_files import parse_overrides
from pipeline.corpora.clips import TEXT_STYLES, read_alone
from pipeline.corpora.load import load_corpus
from pipeline.models.calibration import KINDS as CALIBRATION_KINDS
from pipeline.models.calibration import Calibration, calibrated, fit_quantile
from pipeline.models.checkpoint import WEIGHTS_FILE, is_quantized, resolve_checkpoint_dir
from pipeline.models.inference import ensemble_mean, metrics_of
from pipeline.models.metrics import metric_cells, summarize_seeds
from pipeline.models.packed import MANIFEST, WEIGHT_FORMATS, PackTooLarge, member_dirs, pack_model, read_manifest
from pipeline.models.precision import capabilities
from pipeline.models.predictor import Predictor
from pipeline.training.config import load_config
from pipeline.training.trainer import train_seeds

ROOT = Path(__file__).resolve().parents[1]
NAME = "senbert-text-mpnet-lora-ctx1"
DEFAULT_CONFIG = "language_lora"
DEFAULT_SET: list[str] = ["context=1", "pretrain_context=0", "context_dropout=0.3", "epochs=15"]
DEFAULT_SEEDS = "1,2,3"
#: how the packed members read transcripts (pipeline/corpora/clips.py: styled)
DEFAULT_TEXT_STYLE = "as_given"
ALONE = "MOSI alone"  # figures key: MOSI valid with every clip read without neighbours (context models)
#: how a recipe trains on MOSEI: a preliminary stage before MOSI, or MOSEI's train split added to MOSI's
MOSEI_USES = ("pretrain", "extra")


def _row(label: str, m: dict[str, Any]) -> str:
    return f"| {label} | {metric_cells(m)} |"


def _train_seconds(run: Path) -> float:
    f = run / "metrics.jsonl"
    if not f.is_file():
        return 0.0
    return sum(json.loads(line).get("train_seconds", 0.0) for line in f.read_text().splitlines() if line.strip())


def _labelled(data: str, split: str) -> list:
    return [c for c in load_corpus(data).split(split) if c.label is not None]


def evaluate(packed: Path, data: str, split: str = "valid", alone: bool = False) -> dict[str, Any]:
    """The packed model's figures on ``split`` of ``data`` (``ensemble``: calibrated as shipped;
    ``uncalibrated``: the plain mean of its members) and each member's own, uncalibrated (from
    the packed, fp16 files: what users get). ``alone``: every clip read without its neighbours
    (its own video), as ``senbert score`` reads a folder of short clips."""
    clips = _labelled(data, split)
    if alone:
        clips = read_alone(clips)
    model = Predictor.load(packed)
    parts = getattr(model, "members", [model])
    t0 = time.perf_counter()
    preds = [p.predict_clips(clips, raw=True) for p in parts]
    mean = ensemble_mean(preds)
    shipped = calibrated(mean, model.calibration)
    seconds = time.perf_counter() - t0
    per = [metrics_of(p) for p in preds]
    out = {"n": len(clips), "ensemble": metrics_of(shipped), "members": summarize_seeds(per),
           "seconds": seconds, "clips_per_second": len(clips) / seconds if seconds else 0.0}
    if model.calibration is not None:
        out["uncalibrated"] = metrics_of(mean)
    return out


def fit_calibration(packed: Path, mosi: str, kind: str = "quantile") -> Calibration:
    """The packed model's quantile calibration, fitted on MOSI train: the distribution of the
    mean of its members' (uncalibrated) predictions mapped onto that of the labels (on each side
    of zero for ``quantile``)."""
    clips = _labelled(mosi, "train")
    t0 = time.perf_counter()
    pred = Predictor.load(packed).predict_clips(clips, raw=True)
    cal = fit_quantile(pred["multimodal"], pred["labels"], kind=kind,
                       fitted_on=f"{'/'.join(Path(mosi).resolve().parts[-2:])} train, {len(clips)} clips")
    print(f"calibration fitted on {len(clips)} MOSI train clips: {time.perf_counter() - t0:.0f} s; "
          f"raw {cal.x[0]:.2f}..{cal.x[-1]:.2f} -> {cal.y[0]:.2f}..{cal.y[-1]:.2f}", flush=True)
    return cal


#: what a default model's card says first, under its title
CARD_INTRO = """A **text-only** sentiment model: it reads the transcript of a clip (speech recognition's, or
the corpus's) and predicts sentiment on CMU-MOSI's scale, -3 (highly negative) to +3 (highly
positive). `senbert score`, `senbert evaluate` / `predict`, the Prefect `score` and `evaluate`
deployments and `senbert demo` use it when no checkpoint is named; every output row names it
(`model`) and what it read (`modalities`: `text`)."""

#: the end of a default model's card: its metrics table, intended use and limits (a combination's too)
CARD_TABLE_USE_LIMITS = """| | mae | corr | acc7 | acc5 | acc2_has0 | acc2_non0 | f1_has0 | f1_non0 |
|---|---|---|---|---|---|---|---|---|
{rows}

## Intended use
Sentiment of English spoken opinions (monologues, reviews, vlogs) from their transcripts, in
research and prototypes; clips of one utterance, a few seconds to about 15 s, like MOSI's{use_context}.

## Limits
- It reads the **transcript only**. No sense block (face, voice) is trained: no multimodal
  training data is available offline here. Train the full SenBERT on your own corpus for that.
- Errors of speech recognition become its errors; it was never shown noisy ASR text.
- Its labels come from crowd workers on YouTube opinion videos: other domains, languages,
  sarcasm and long mixed-sentiment speech are out of its range.
- Scores are a regression on [-3, 3]; the field's 7 classes are its rounded values.
{calibration_limit}"""

CARD = """# {name}: the default model of this project

""" + CARD_INTRO + """

## What it is
- {n_members} member(s) (seeds {members}), whose predictions are averaged. Each member is SenBERT's
  `language_only` variant: the language block (all-mpnet-base-v2, a pretrained MPNet encoder,
  with LoRA adapters r={lora_r}, alpha {lora_alpha}, on {lora_targets}) and its regression head.
  The pretrained encoder is not stored here: it is the packaged offline copy
  (`senbert assets install`), checked against the SHA-256 `{base_sha}` recorded in each member.
{context_line}{style_line}- Files: {files}; {total_mib:.1f} MiB in all, {weights_text}, every file's SHA-256 in
  `manifest.json` (checked at every load; a changed byte is refused).

## Training data and their terms
- CMU-MOSI (Zadeh et al., 2016) and CMU-MOSEI (Zadeh et al., 2018): transcripts and sentiment
  labels of English opinion videos from YouTube. Their licences allow **research use**; this
  model inherits that restriction. Only the train splits were trained on, the valid splits
  chose epochs and seeds; the test splits were not used.

## Recipe
- config `{config}`{overrides}: {data_line}, up to {epochs} epochs with
  early stopping on MOSI valid MAE (patience {patience}); adapters at lr {lr_encoder}, head at {lr_other};
  precision `auto`.{calibration_line}
- Rebuild: `python bench/build_default_model.py --mosi MOSI/label.csv --mosei MOSEI/label.csv{rebuild_args}`
  (resumable; {train_hours:.1f} h of training on {cpu} when this model was built{precision_note}).

## Metrics (valid splits only)
Accuracies and F1 in %; Acc-2 / F1 "has0" count zero labels as non-negative, "non0" leave them
out; members: mean ± sample std over the seeds.

""" + CARD_TABLE_USE_LIMITS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mosi", required=True, help="CMU-MOSI label.csv (train and valid splits)")
    ap.add_argument("--mosei", required=True, help="CMU-MOSEI label.csv (train and valid splits)")
    ap.add_argument("--work", default="runs/default_model/stage", help="training runs (resumable)")
    ap.add_argument("--out", default="runs/default_model/part_stage",
                    help="the packed model (the shipped default combines two: bench/combine_default_model.py)")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--set", action="append", default=list(DEFAULT_SET), metavar="KEY=VALUE")
    ap.add_argument("--seeds", default=DEFAULT_SEEDS)
    ap.add_argument("--members", help="seeds to pack (default: all of --seeds)")
    ap.add_argument("--mosei-as", choices=MOSEI_USES, default="pretrain",
                    help="how the recipe trains on MOSEI: a preliminary stage, then MOSI (pretrain, the default), "
                         "or its train split added to MOSI's in one run (extra)")
    ap.add_argument("--stage-from", help="reuse the finished MOSEI stage of this run folder (its pretrain/)")
    ap.add_argument("--members-from", metavar="PACKED",
                    help="a packed model of the same recipe whose members stand for the seeds it has (not trained "
                         "again); the other seeds are trained")
    ap.add_argument("--weights", choices=("auto", *WEIGHT_FORMATS), default="auto",
                    help="how members are stored: fp16, or int8 adapters (about half the size, raw scores within "
                         "about 0.01); auto: fp16 when the pack fits in 10 MiB, int8 otherwise or when a member "
                         "is int8 already (--members-from an int8 pack)")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--calibration", choices=CALIBRATION_KINDS, default="quantile",
                    help="the packed model's calibration of its final score, fitted on MOSI train (default: quantile, "
                         "signs kept; pipeline/models/calibration.py)")
    ap.add_argument("--text-style", choices=TEXT_STYLES,
                    help="how the packed members read transcripts (default: the style they were trained in, the "
                         f"recipe's text_style, {DEFAULT_TEXT_STYLE} unless --set says otherwise; with --recalibrate "
                         "or --card-only, the packed model's own)")
    ap.add_argument("--card-only", action="store_true",
                    help="re-render MODEL_CARD.md from the figures in the manifest of --out (no training, no eval)")
    ap.add_argument("--recalibrate", action="store_true",
                    help="refit the calibration of the packed model in --out, measure it and rewrite its card "
                         "(its members as they are: no training)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(f"CPU: {capabilities().describe()}", flush=True)
    t_all = time.perf_counter()

    cfg = load_config(args.config, overrides=parse_overrides(args.set))
    cfg.name = args.name
    work = Path(args.work)
    as_packed = args.card_only or args.recalibrate  # the packed model in --out as it is: no training
    old = read_manifest(args.out) if as_packed else {}
    if "parts" in old.get("recipe", {}):
        ap.error(f"{args.out} combines the packed models of several recipes: rebuild it with "
                 "bench/combine_default_model.py (scripts/rebuild_default_model.sh runs every step)")
    if as_packed:  # the recipe the packed model was built with
        args.mosei_as = old.get("recipe", {}).get("mosei_as", "pretrain")
    if args.mosei_as == "extra":
        if args.stage_from:
            ap.error("--stage-from reuses a MOSEI stage; --mosei-as extra has none")
        cfg.extra_train = [str(Path(args.mosei).resolve())]
    else:
        cfg.pretrain = [str(Path(args.mosei).resolve())]
    if args.stage_from:
        stage = Path(args.stage_from) / "pretrain"
        if not (stage / "result.json").is_file():
            ap.error(f"--stage-from {args.stage_from}: no finished stage in {stage}")
        cfg.init_from = str((stage / "checkpoint").resolve())
    seeds = [int(s) for s in args.seeds.split(",") if s]
    members = [int(s) for s in (args.members or args.seeds).split(",") if s]
    ckpts = [work / f"seed_{s}" / "checkpoint" for s in members]
    stage_dir = (None if args.mosei_as == "extra"  # no preliminary stage
                 else Path(cfg.init_from).parent if args.stage_from else work / "pretrain")
    built: dict[str, Any] | None = None
    weights = args.weights
    if as_packed:  # its recipe and build record
        recipe = old.get("recipe", {})
        args.set, seeds = recipe.get("set", args.set), recipe.get("seeds", seeds)
        members = recipe.get("members", members)
        args.text_style = args.text_style or recipe.get("text_style", "as_given")
        built = old.get("built") or _built_from_card(Path(args.out) / "MODEL_CARD.md")
        weights = old.get("weights", "fp16")
    # the style the members were trained in (the recipe's text_style): they read in it unless told otherwise
    args.trained_style = (load_config(args.config, overrides=parse_overrides(args.set)).text_style if as_packed
                          else cfg.text_style)  # as packed: the recipe's --set, not this command's
    args.text_style = args.text_style or args.trained_style
    reused: dict[int, Path] = {}  # seed -> a member of --members-from standing for it
    if args.members_from and not as_packed:
        reused, earlier = _members_of(Path(args.members_from), args, work)
        ckpts = [reused.get(s, ck) for s, ck in zip(members, ckpts)]
    if as_packed:  # pack from a copy of its members: packing replaces --out
        folders, _ = member_dirs(args.out)
        ckpts = _copy_members(folders, [f.name for f in folders], work)
    if args.card_only:
        figures = old["figures"]
        packed = Path(args.out)
        calibration = Predictor.load(packed).calibration
    else:
        to_train = [s for s in seeds if s not in reused]
        if not args.recalibrate and to_train:  # every seed a member of --members-from: nothing to train
            t0 = time.perf_counter()
            train_seeds(load_corpus(args.mosi), cfg, work, to_train, progress=False)
            print(f"training: {time.perf_counter() - t0:.0f} s (finished runs are reused)", flush=True)
        packed, weights = _pack(ckpts, args.out, args.name, weights, args.text_style)
        calibration = fit_calibration(packed, args.mosi, args.calibration) if args.calibration != "none" else None
        if calibration is not None:
            packed = pack_model(ckpts, args.out, args.name, calibration=calibration, weights=weights,
                                text_style=args.text_style)
        figures = {"MOSI": evaluate(packed, args.mosi), "MOSEI": evaluate(packed, args.mosei)}
        if Predictor.load(packed).meta.context > 0:
            figures[ALONE] = evaluate(packed, args.mosi, alone=True)
    rows = []
    for corpus, f in figures.items():
        label = "ensemble" if len(members) > 1 else "model"
        where = "MOSI valid, each clip alone" if corpus == ALONE else f"{corpus} valid"
        rows.append(_row(f"{where} ({f['n']} clips), {label}", f["ensemble"]))
        if "uncalibrated" in f:
            rows.append(_row(f"{where}, {label} before calibration", f["uncalibrated"]))
        if len(members) > 1:
            rows.append(_row(f"{where}, members" + (" (uncalibrated)" if "uncalibrated" in f else ""), f["members"]))
    if built is None:  # after training: its runs' seconds
        trained = [s for s in seeds if s not in reused]
        if reused:  # the earlier model's training (its MOSEI stage and seeds) plus the seeds trained here
            built = _merged_record(_build_record(work, None, trained), earlier)
        else:
            built = _build_record(work, stage_dir, trained)
    manifest = read_manifest(packed)
    sizes = {rel: (packed / rel).stat().st_size for rel in manifest["files"]}
    meta = Predictor.load(packed).meta
    m, run_cfg = meta.model, meta.train
    card = CARD.format(
        rebuild_args=_rebuild_args(args), name=args.name, n_members=len(members), members=", ".join(map(str, members)),
        lora_r=m["lora_r"], lora_alpha=m["lora_alpha"], lora_targets=", ".join(adapted_modules(packed)),
        base_sha=(meta.base_encoder or {}).get("sha256", "?"),
        files=", ".join(f"`{rel}` {n / 2**20:.2f} MiB" for rel, n in sizes.items() if rel.endswith(".safetensors")),
        total_mib=(sum(sizes.values())) / 2**20, config=args.config, weights_text=WEIGHTS_TEXT[weights],
        overrides=f" with `{' '.join(args.set)}`" if args.set else "", epochs=run_cfg["epochs"],
        patience=run_cfg["patience"], lr_encoder=run_cfg["lr_encoder"],
        lr_other=run_cfg["lr_other"], train_hours=built["train_hours"], cpu=built["cpu"],
        precision_note=f", precision {built['precision']}" if built["precision"] else "", rows="\n".join(rows),
        style_line=STYLE_LINE.get(args.text_style, ""), **_calibration_text(calibration),
        **_data_text(args.mosei_as, run_cfg["pretrain_epochs"], meta.context, meta.max_context_len,
                     _stage_context(stage_dir, run_cfg, meta.context),
                     float(run_cfg.get("context_dropout", 0.0))))
    # the card goes in the manifest's file list too: pack again with it (cheap)
    pack_model(ckpts, args.out, args.name, card=card, calibration=calibration, weights=weights,
               text_style=args.text_style, extra={
                   "figures": figures, "built": built,
                   "recipe": {"config": args.config, "set": args.set, "seeds": seeds, "members": members,
                              "text_style": args.text_style, "mosei_as": args.mosei_as}})
    if as_packed or reused:
        shutil.rmtree(work / COPIES, ignore_errors=True)
    total = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(card)
    print(f"packed {args.out}: {total / 2**20:.2f} MiB")
    for corpus, f in figures.items():
        print(f"{corpus} valid: {f['clips_per_second']:.1f} clips/s for the packed model")
    print(f"wall time: {time.perf_counter() - t_all:.0f} s; manifest {Path(args.out) / MANIFEST}")
    return 0


#: the card's line on how the members read transcripts, by text style
STYLE_LINE = {"plain": (
    "- Transcripts are read in plain style, CMU-MOSI's (lower case, no punctuation, apostrophes dropped:\n"
    "  \"They didn't!\" is read as \"they didnt\"; `pipeline/corpora/clips.py: styled`), the style of its last\n"
    "  training stage: speech recognition's cased, punctuated text and MOSEI's are turned into it before\n"
    "  tokenising.\n")}

WEIGHTS_TEXT = {"fp16": "fp16",
                "int8": "the adapter matrices in int8 with one fp32 scale per rank line, the heads in fp16"}


def _pack(ckpts: list[Path], out: str, name: str, weights: str, text_style: str) -> tuple[Path, str]:
    """Pack in ``weights`` (``auto``: fp16 when it fits the repository's limits, int8 otherwise;
    int8 when a member is stored in int8 already, as ``--members-from`` an int8 pack gives them,
    since a member is not packed at a higher precision than it holds)."""
    if weights == "auto":
        int8 = [ck for ck in ckpts if is_quantized(resolve_checkpoint_dir(ck) / WEIGHTS_FILE)]
        if int8:
            print(f"{int8[0]}: its adapters are stored in int8 already: packing every member in int8", flush=True)
            weights = "int8"
    if weights != "auto":
        return pack_model(ckpts, out, name, weights=weights, text_style=text_style), weights
    try:
        return pack_model(ckpts, out, name, weights="fp16", text_style=text_style), "fp16"
    except PackTooLarge as exc:
        print(f"{exc}: packing the adapters in int8 instead", flush=True)
        return pack_model(ckpts, out, name, weights="int8", text_style=text_style), "int8"


def _members_of(packed: Path, args: argparse.Namespace, work: Path) -> tuple[dict[int, Path], dict[str, Any]]:
    """The members of an earlier packed model by the seed each stands for (copied under
    ``work``: packing replaces ``--out``, which may be that model), and its manifest. Refused
    unless its recipe (config and settings) is this build's."""
    folders, manifest = member_dirs(packed)
    recipe = manifest.get("recipe") or {}
    if (recipe.get("config") != args.config or sorted(recipe.get("set", [])) != sorted(args.set)
            or recipe.get("mosei_as", "pretrain") != args.mosei_as or len(recipe.get("members", [])) != len(folders)):
        raise SystemExit(f"--members-from {packed}: its recipe ({recipe.get('config')} with {recipe.get('set')}, MOSEI "
                         f"as {recipe.get('mosei_as', 'pretrain')}) is not this build's ({args.config} with "
                         f"{args.set}, MOSEI as {args.mosei_as}); its members cannot stand for seeds")
    seeds = [int(s) for s in recipe["members"]]
    out = dict(zip(seeds, _copy_members(folders, [f"seed_{s}" for s in seeds], work)))
    print(f"--members-from {packed}: seeds {sorted(out)} are its members (not trained again)", flush=True)
    return out, manifest


#: the folder under ``--work`` that holds copies of a packed model's members while they are packed again
COPIES = "members_of_packed"


def _copy_members(folders: list[Path], names: list[str], work: Path) -> list[Path]:
    """Copies of a packed model's member folders under ``work`` (as ``names``, an earlier copy
    replaced): packing replaces the packed model's folder, which may be where they came from."""
    copies = work / COPIES
    if copies.exists():
        shutil.rmtree(copies)
    copies.mkdir(parents=True)
    return [Path(shutil.copytree(f, copies / name)) for f, name in zip(folders, names)]


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


def _built_from_card(card: Path) -> dict[str, Any] | None:
    """The build record a card of a model packed before manifests kept one states (its Rebuild line)."""
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    found = re.search(r"resumable; ([0-9.]+) h of training on (.+?) when this model was built(?:, precision (\w+))?\)",
                      text, re.S)
    if not found:
        return None
    return {"train_hours": float(found.group(1)), "cpu": " ".join(found.group(2).split()),
            "precision": found.group(3) or ""}


def _calibration_text(cal: Calibration | None) -> dict[str, str]:
    """The model card's lines on the calibration of the final score (empty without one)."""
    if cal is None:
        return {"calibration_line": "", "calibration_limit": ""}
    return {
        "calibration_line": (
            f"\n- Calibration (`calibration.json`, `{cal.kind}`): the mean of the members' scores goes through a\n"
            f"  monotone map fitted on {cal.fitted_on} (quantile mapping: the distribution of the model's\n"
            f"  scores there onto that of the labels{', on each side of zero' if cal.kind == 'quantile' else ''}; "
            f"never valid or test). Trained with\n"
            f"  an L1 loss, the members predict a median and almost never reach +-2.5, so classes -3 and +3\n"
            f"  were out of reach; the map restores them and keeps the order of the scores"
            f"{' and their signs' if cal.kind == 'quantile' else ''}.\n"
            f"  `score_raw` in the output is the score before it."),
        "calibration_limit": ("- The calibration restores MOSI's label distribution; a corpus whose labels are "
                              "distributed otherwise\n  (MOSEI: more neutral clips) gains less from it; compare "
                              "the MOSEI rows before and after it.\n"),
    }


def _data_text(mosei_as: str, pretrain_epochs: int, context: int, max_len: int, stage: int,
               dropout: float = 0.0) -> dict[str, str]:
    """The model card's lines on what the recipe trained on, in which order and with which context."""
    lines = _context_text(context, max_len, stage, dropout)
    stage_context, main_context = lines.pop("stage_context"), lines.pop("main_context")
    if mosei_as == "extra":
        data = f"one run on MOSI's and MOSEI's train splits together{main_context}"
    else:
        data = (f"a preliminary stage of {pretrain_epochs} epoch(s) on MOSEI's train split\n  (chosen on MOSEI "
                f"valid){stage_context}, then MOSI's train split{main_context}")
    return {**lines, "data_line": data}


def _context_text(context: int, max_len: int, stage: int, dropout: float = 0.0) -> dict[str, str]:
    """The model card's lines on utterance context (empty for a model without it)."""
    if context <= 0:
        return {"context_line": "", "stage_context": "", "main_context": "", "use_context": ""}
    alone = (f" It was trained with {100 * dropout:.0f} % of the clips read alone each epoch "
             "(`context_dropout`), so that it also reads clips without neighbours (figures below)."
             if dropout > 0 else "")
    return {
        "context_line": (f"- Utterance context: each clip is read together with the transcripts of up to {context} "
                         f"neighbouring clip(s) on each side (same video, clip order; in `senbert score`, the\n"
                         f"  neighbouring utterances of the same file), at most {max_len} tokens, as a second text "
                         f"segment. Never their labels. A clip given alone is read alone.{alone}\n"),
        "stage_context": f" with context {stage}" if stage else " without context",
        "main_context": f" with context {context}" + (f" (context dropout {dropout:g})" if dropout > 0 else ""),
        "use_context": (", best\ngiven with the neighbouring utterances of the same recording "
                        "(a long file that `senbert score`\ncuts into utterances, or a corpus of clips "
                        "with their video ids and order)"),
    }


def _rebuild_args(args: argparse.Namespace) -> str:
    """The options of this build that differ from the script's defaults (the card's rebuild command)."""
    out = []
    if args.config != DEFAULT_CONFIG:
        out.append(f"--config {args.config}")
    out += [f"--set {kv}" for kv in args.set if kv not in DEFAULT_SET]
    if args.seeds != DEFAULT_SEEDS:
        out.append(f"--seeds {args.seeds}")
    if args.members and args.members != args.seeds:
        out.append(f"--members {args.members}")
    if args.weights != "auto":
        out.append(f"--weights {args.weights}")
    if args.name != NAME:
        out.append(f"--name {args.name}")
    if args.text_style != args.trained_style:  # packed to read in another style than it was trained in
        out.append(f"--text-style {args.text_style}")
    if args.mosei_as != "pretrain":
        out.append(f"--mosei-as {args.mosei_as}")
    return "".join(" " + o for o in out)


def adapted_modules(packed: Path) -> list[str]:
    """The encoder modules that carry adapters (read off a member's weight names: MPNet's q, k,
    v, o, intermediate.dense, output.dense ...), not the config's list, which names BERT's too."""
    from safetensors import safe_open

    first = packed / read_manifest(packed)["members"][0] / "model.safetensors"
    names = set()
    with safe_open(str(first), "pt") as f:
        for key in f.keys():
            if ".lora_A" in key:
                parts = key.split(".lora_A")[0].split(".")
                names.add(".".join(parts[-2:]) if parts[-1] == "dense" else parts[-1])
    return sorted(names)


def _run_config(run: Path) -> dict[str, Any]:
    """A run's resolved config (its config.yaml: ``precision`` as ``auto`` resolved, ``context``);
    empty when the run has none."""
    f = run / "config.yaml"
    return (yaml.safe_load(f.read_text()) or {}) if f.is_file() else {}


if __name__ == "__main__":
    raise SystemExit(main())
