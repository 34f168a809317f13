"""The model cards of released models: a part's (one recipe) and a combination's (several parts),
written from their manifests, their members' settings and the figures the release measured."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import InputError
from pipeline.models.calibration import Calibration
from pipeline.models.checkpoint import CheckpointMeta
from pipeline.models.metrics import metric_cells
from pipeline.models.packed import read_manifest

#: the figures' key of MOSI valid with every clip read without its neighbours (context models)
ALONE = "MOSI alone"

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

#: the sections both cards share: the data's terms, the stored files
_TERMS = """## Training data and their terms
- CMU-MOSI (Zadeh et al., 2016) and CMU-MOSEI (Zadeh et al., 2018): transcripts and sentiment
  labels of English opinion videos from YouTube. Their licences allow **research use**; this
  model inherits that restriction. Only the train splits were trained on, the valid splits
  chose epochs and seeds; the test splits were not used."""

_FILES = """- Files: {files}; {total_mib:.1f} MiB in all, {weights_text}, every file's SHA-256 in
  `manifest.json` (checked at every load; a changed byte is refused)."""

#: the card of a part: the packed model of one recipe (``senbert release build``)
PART_CARD = """# {name}: the default model of this project

""" + CARD_INTRO + """

## What it is
- {n_members} member(s) (seeds {members}), whose predictions are averaged. Each member is SenBERT's
  `language_only` variant: the language block (all-mpnet-base-v2, a pretrained MPNet encoder,
  with LoRA adapters r={lora_r}, alpha {lora_alpha}, on {lora_targets}) and its regression head.
  The pretrained encoder is not stored here: it is the packaged offline copy
  (`senbert assets install`), checked against the SHA-256 `{base_sha}` recorded in each member.
{context_line}{style_line}""" + _FILES + """

""" + _TERMS + """

## Recipe
- config `{config}`{overrides}: {data_line}, up to {epochs} epochs with
  early stopping on MOSI valid MAE (patience {patience}); adapters at lr {lr_encoder}, head at {lr_other};
  precision `auto`.{calibration_line}
- Rebuild: `senbert release build --mosi MOSI/label.csv --mosei MOSEI/label.csv{rebuild_args}`
  (resumable; {train_hours:.1f} h of training on {cpu} when this model was built{precision_note}).

## Metrics (valid splits only)
Accuracies and F1 in %; Acc-2 / F1 "has0" count zero labels as non-negative, "non0" leave them
out; members: mean ± sample std over the seeds.

""" + CARD_TABLE_USE_LIMITS

#: the card of a combination of parts (``senbert release combine``): the shipped default model's
COMBINED_CARD = """# {name}: the default model of this project

""" + CARD_INTRO + """

## What it is
- {n_members} members whose predictions are averaged, each weighing the same, from {n_parts} recipes
  trained apart (below):
{part_lines}
- Each member is SenBERT's `language_only` variant: the language block (all-mpnet-base-v2, a
  pretrained MPNet encoder, with LoRA adapters r={lora_r}, alpha {lora_alpha}, on {lora_targets}) and its
  regression head. The pretrained encoder is not stored here: it is the packaged offline copy
  (`senbert assets install`), checked against the SHA-256 `{base_sha}` recorded in each member.
{context_line}""" + _FILES + """

""" + _TERMS + """

## Recipe
{part_recipes}### The ensemble
- The mean of the {n_members} members' scores, every member weighing the same.{calibration_line}
- Rebuild: `{rebuild}` (resumable; {train_hours:.1f} h of training in all on {cpus}
  when its parts were built{precision_note}).

## Metrics (valid splits only)
Accuracies and F1 in %; Acc-2 / F1 "has0" count zero labels as non-negative, "non0" leave them
out; members: mean ± sample std over all members; a part alone: its own pack and calibration.

""" + CARD_TABLE_USE_LIMITS

#: the card's line on how the members read transcripts, by text style
STYLE_LINE = {"plain": (
    "- Transcripts are read in plain style, CMU-MOSI's (lower case, no punctuation, apostrophes dropped:\n"
    "  \"They didn't!\" is read as \"they didnt\"; `pipeline/corpora/clips.py: styled`), the style of its last\n"
    "  training stage: speech recognition's cased, punctuated text and MOSEI's are turned into it before\n"
    "  tokenising.\n")}

WEIGHTS_TEXT = {"fp16": "fp16",
                "int8": "the adapter matrices in int8 with one fp32 scale per rank line, the heads in fp16"}


def metric_row(label: str, m: dict[str, Any]) -> str:
    return f"| {label} | {metric_cells(m)} |"


def figure_rows(figures: dict[str, Any], n_members: int, parts: Sequence[dict[str, Any]] = ()) -> list[str]:
    """The card's metric rows: per corpus the model (calibrated), before calibration, its members
    (uncalibrated) and, for a combination, each part alone (its own figures)."""
    rows = []
    label = "ensemble" if n_members > 1 else "model"
    for corpus, f in figures.items():
        where = "MOSI valid, each clip alone" if corpus == ALONE else f"{corpus} valid"
        rows.append(metric_row(f"{where} ({f['n']} clips), {label}", f["ensemble"]))
        if "uncalibrated" in f:
            rows.append(metric_row(f"{where}, {label} before calibration", f["uncalibrated"]))
        if n_members > 1:
            note = " (uncalibrated)" if "uncalibrated" in f or parts else ""
            rows.append(metric_row(f"{where}, members{note}", f["members"]))
        for i, part in enumerate(parts, 1):
            if corpus in part.get("figures", {}):
                rows.append(metric_row(f"{where}, part {i} alone", part["figures"][corpus]["ensemble"]))
    return rows


def member_fields(packed: Path, meta: CheckpointMeta, weights: str) -> dict[str, Any]:
    """The card's fields on the members (read off the first one) and the packed files."""
    sizes = {rel: (packed / rel).stat().st_size for rel in read_manifest(packed)["files"]}
    return {"lora_r": meta.model["lora_r"], "lora_alpha": meta.model["lora_alpha"],
            "lora_targets": ", ".join(adapted_modules(packed)),
            "base_sha": (meta.base_encoder or {}).get("sha256", "?"),
            "files": ", ".join(f"`{rel}` {n / 2**20:.2f} MiB" for rel, n in sizes.items()
                               if rel.endswith(".safetensors")),
            "total_mib": sum(sizes.values()) / 2**20, "weights_text": WEIGHTS_TEXT[weights]}


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


def calibration_text(cal: Calibration | None) -> dict[str, str]:
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


def data_text(mosei_as: str, pretrain_epochs: int, context: int, max_len: int, stage: int,
              dropout: float = 0.0) -> dict[str, str]:
    """The model card's lines on what the recipe trained on, in which order and with which context."""
    lines = context_text(context, max_len, stage, dropout)
    stage_context, main_context = lines.pop("stage_context"), lines.pop("main_context")
    if mosei_as == "extra":
        data = f"one run on MOSI's and MOSEI's train splits together{main_context}"
    else:
        data = (f"a preliminary stage of {pretrain_epochs} epoch(s) on MOSEI's train split\n  (chosen on MOSEI "
                f"valid){stage_context}, then MOSI's train split{main_context}")
    return {**lines, "data_line": data}


def context_text(context: int, max_len: int, stage: int, dropout: float = 0.0) -> dict[str, str]:
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


def recipe_section(card: str) -> str:
    """The lines of a part's card under its "## Recipe" heading, less its calibration (the
    combination has its own) and its rebuild line (the combination's rebuilds every part)."""
    found = re.search(r"^## Recipe\n(.*?)^## ", card, re.S | re.M)
    if not found:
        raise InputError("a part's MODEL_CARD.md has no '## Recipe' section: rebuild the part with "
                         "`senbert release build`")
    items = re.split(r"\n(?=- )", found.group(1).strip())
    return "\n".join(i for i in items if not i.startswith(("- Calibration", "- Rebuild")))


def part_line(i: int, first: int, part: dict[str, Any]) -> str:
    """The combination card's line on part ``i``: which members it gave and how it was trained."""
    n = len(part["members"])
    seeds = ", ".join(map(str, part["recipe"].get("members", [])))
    how = ("MOSEI's train split added to MOSI's in each run" if part["recipe"].get("mosei_as") == "extra"
           else "a preliminary MOSEI stage, then MOSI")
    return (f"  - members {first}-{first + n - 1}: part {i}, `{part['manifest']['name']}` (seeds {seeds}; "
            f"{how})")


def built_from_card(card: Path) -> dict[str, Any] | None:
    """The build record a card of a model packed before manifests kept one states (its Rebuild line)."""
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    found = re.search(r"resumable; ([0-9.]+) h of training on (.+?) when this model was built(?:, precision (\w+))?\)",
                      text, re.S)
    if not found:
        return None
    return {"train_hours": float(found.group(1)), "cpu": " ".join(found.group(2).split()),
            "precision": found.group(3) or ""}
