"""The steps a part and a combination share: members copied aside, packed (fp16, or int8 when fp16
would not fit), calibrated on MOSI train and packed again with the map, measured, and at last
packed with their card and record."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.models.calibration import Calibration
from pipeline.models.checkpoint import WEIGHTS_FILE, is_quantized, resolve_checkpoint_dir
from pipeline.models.packed import PackTooLarge, pack_model, verify_packed
from pipeline.training.release.measure import card_figures, fit_calibration

log = logging.getLogger(__name__)

#: the folder under the work folder that holds copies of packed members while they are packed again
COPIES = "members_of_packed"


@dataclass
class Release:
    """What a release wrote: the packed model's folder, its card, its manifest (its ``figures``,
    ``built`` and ``recipe`` records among them) and the wall time it took."""

    out: Path
    card: str
    manifest: dict[str, Any]
    seconds: float

    @property
    def figures(self) -> dict[str, dict[str, Any]]:
        return self.manifest.get("figures", {})

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.out.rglob("*") if f.is_file())


def copy_members(folders: list[Path], names: list[str], work: Path) -> list[Path]:
    """Copies of a packed model's member folders under ``work`` (as ``names``, an earlier copy
    replaced): packing replaces the packed model's folder, which may be where they came from."""
    copies = work / COPIES
    if copies.exists():
        shutil.rmtree(copies)
    copies.mkdir(parents=True)
    return [Path(shutil.copytree(f, copies / name)) for f, name in zip(folders, names)]


def pack_auto(ckpts: list[Path], out: Path, name: str, weights: str, text_style: str) -> tuple[Path, str]:
    """Pack in ``weights`` (``auto``: fp16 when it fits the repository's limits, int8 otherwise;
    int8 when a member is stored in int8 already, as the members of an int8 pack are, since a
    member is not packed at a higher precision than it holds). Returns the folder and the format."""
    if weights == "auto":
        int8 = [ck for ck in ckpts if is_quantized(resolve_checkpoint_dir(ck) / WEIGHTS_FILE)]
        if int8:
            log.info("%s: its adapters are stored in int8 already: packing every member in int8", int8[0])
            weights = "int8"
    if weights != "auto":
        return pack_model(ckpts, out, name, weights=weights, text_style=text_style), weights
    try:
        return pack_model(ckpts, out, name, weights="fp16", text_style=text_style), "fp16"
    except PackTooLarge as exc:
        log.info("%s: packing the adapters in int8 instead", exc)
        return pack_model(ckpts, out, name, weights="int8", text_style=text_style), "int8"


def pack_calibrate_measure(ckpts: list[Path], out: Path, name: str, weights: str, text_style: str, mosi: str,
                           mosei: str, calibration: str) -> tuple[Path, str, Calibration | None, dict[str, Any]]:
    """Pack ``ckpts`` (:func:`pack_auto`), fit the calibration of their mean on MOSI train
    (``calibration``: a kind, or ``none``), pack again with it and measure the pack
    (``measure.card_figures``). Returns the folder, the weights' format, the map and the figures."""
    packed, weights = pack_auto(ckpts, out, name, weights, text_style)
    cal = fit_calibration(packed, mosi, calibration) if calibration != "none" else None
    if cal is not None:
        packed = pack_model(ckpts, out, name, calibration=cal, weights=weights, text_style=text_style)
    return packed, weights, cal, card_figures(packed, mosi, mosei)


def pack_final(ckpts: list[Path], out: Path, name: str, *, card: str, calibration: Calibration | None, weights: str,
               text_style: str, extra: dict[str, Any], work: Path, started: float) -> Release:
    """Pack once more with the card and the records (``extra``: figures, built, recipe), so that
    the card is in the manifest's file list too (cheap), and remove the members' copies."""
    pack_model(ckpts, out, name, card=card, calibration=calibration, weights=weights, text_style=text_style,
               extra=extra)
    shutil.rmtree(work / COPIES, ignore_errors=True)
    return Release(Path(out), card, verify_packed(out), time.perf_counter() - started)
