"""Parts of different recipes combined into one ensemble: the shipped default model.

Each part is a packed model that :func:`pipeline.training.release.build.build_part` built from
one recipe (its manifest names the recipe and how long it trained). :func:`combine_parts` packs
their members together, every member's prediction weighing the same (``weights="auto"``: fp16
when that fits the repository's 10 MiB, int8 otherwise), fits the calibration of the ensemble's
final score on MOSI train (the mean of all members), measures the pack on MOSI valid, MOSEI valid
and MOSI valid read clip by clip alone (valid only), and writes MODEL_CARD.md from those figures
with each part's recipe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common.errors import InputError
from pipeline.models.checkpoint import read_meta
from pipeline.models.packed import default_model_folder, member_dirs
from pipeline.training.release.card import (
    COMBINED_CARD,
    calibration_text,
    context_text,
    figure_rows,
    member_fields,
    part_line,
    recipe_section,
)
from pipeline.training.release.packing import Release, copy_members, pack_calibrate_measure, pack_final
from pipeline.training.release.recipe import COMBINED_NAME, DEFAULT_COMBINE_WORK, REBUILD


def combine_parts(parts: list[str | Path], mosi: str, mosei: str, *, out: str | Path | None = None,
                  work: str | Path = DEFAULT_COMBINE_WORK, name: str = COMBINED_NAME, weights: str = "auto",
                  calibration: str = "quantile", rebuild: str = REBUILD) -> Release:
    """The members of the packed ``parts`` (two or more, one recipe each, reading transcripts in one
    style and utterance context one way) packed into one ensemble ``name`` in ``out`` (default:
    the shipped default model's folder), calibrated on MOSI train, measured on the valid splits
    and carded; ``rebuild`` is the command the card gives to rebuild it."""
    started = time.perf_counter()
    out = Path(out) if out is not None else default_model_folder()
    work = Path(work)
    found = [_part(Path(p)) for p in parts]
    if len(found) < 2:
        raise InputError("--parts: give two packed models or more (one is already a packed model)")
    styles = {p["recipe"].get("text_style", "as_given") for p in found}
    if len(styles) > 1:
        each = ", ".join(f"{p['folder']} {p['recipe'].get('text_style', 'as_given')}" for p in found)
        raise InputError(f"--parts read transcripts in different styles ({each}): "
                         "pack them to read in one (`senbert release build --text-style`)")
    folders = [m for p in found for m in p["members"]]
    metas = [read_meta(f) for f in folders]
    reads = {(x.context, x.max_context_len) for x in metas}
    if len(reads) > 1:
        each = ", ".join(f"{f}: context {x.context}, max_context_len {x.max_context_len}"
                         for f, x in zip(folders, metas))
        raise InputError(f"--parts read utterance context differently ({each}); an ensemble reads every clip one way")
    style = styles.pop()
    # copies: packing replaces out, which may hold one of the parts
    ckpts = copy_members(folders, [f"member_{i}" for i in range(1, len(folders) + 1)], work)
    packed, fmt, cal, figures = pack_calibrate_measure(ckpts, out, name, weights, style, mosi, mosei, calibration)
    meta = metas[0]  # the settings the card reads off a member (context: the same in all, checked above)
    firsts = [1 + sum(len(q["members"]) for q in found[:i]) for i in range(len(found))]
    builts = [p["built"] for p in found]
    cpus = sorted({b.get("cpu", "?") for b in builts})
    precisions = sorted({b.get("precision", "") for b in builts} - {""})
    built = {"train_hours": sum(float(b.get("train_hours", 0.0)) for b in builts), "cpu": " / ".join(cpus),
             "precision": "/".join(precisions)}
    cal_text = calibration_text(cal)
    drops = {float(x.train.get("context_dropout", 0.0)) for x in metas}
    context = context_text(meta.context, meta.max_context_len, 0, drops.pop() if len(drops) == 1 else 0.0)
    card = COMBINED_CARD.format(
        name=name, n_members=len(folders), n_parts=len(found),
        part_lines="\n".join(part_line(i, firsts[i - 1], p) for i, p in enumerate(found, 1)),
        **member_fields(packed, meta, fmt), context_line=context["context_line"],
        part_recipes="".join(f"### Part {i}: `{p['manifest']['name']}`\n{recipe_section(p['card'])}\n\n"
                             for i, p in enumerate(found, 1)),
        calibration_line=cal_text["calibration_line"], rebuild=rebuild, train_hours=built["train_hours"],
        cpus=built["cpu"], precision_note=f", precision {built['precision']}" if precisions else "",
        rows="\n".join(figure_rows(figures, len(folders), [p["manifest"] for p in found])),
        use_context=context["use_context"], calibration_limit=cal_text["calibration_limit"])
    recipe = {"parts": [{"name": p["manifest"]["name"], **p["recipe"], "n_members": len(p["members"])}
                        for p in found]}
    return pack_final(ckpts, out, name, card=card, calibration=cal, weights=fmt, text_style=style,
                      extra={"figures": figures, "built": built, "recipe": recipe}, work=work, started=started)


def _part(folder: Path) -> dict[str, Any]:
    """A packed part: its members (every file's SHA-256 checked), manifest, recipe, card and build record."""
    members, manifest = member_dirs(folder)
    recipe = manifest.get("recipe") or {}
    if "parts" in recipe or not recipe.get("config"):
        raise InputError(f"{folder}: not a packed model of one recipe (`senbert release build` builds those)")
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    return {"folder": folder, "manifest": manifest, "recipe": recipe, "card": card,
            "members": members, "built": manifest.get("built") or {}}
