"""The model that ships with the project, and how a model folder is packed for shipping.

A *packed model* is a folder with ``manifest.json``: its name, its members (one or more
checkpoint folders, relative; an ensemble averages their predictions) and the SHA-256 of every
file. :func:`verify_packed` checks every hash before anything is loaded, so a changed byte is
refused with the file's name. The default model is the packed model in ``pipeline/default_model/``
(installed with the package); :func:`default_model_dir` finds and verifies it.

:func:`pack_model` writes a packed model from trained checkpoints: each member keeps only what
was trained (for a LoRA checkpoint: the adapters and the heads, not the pretrained encoder)
in fp16, or with ``weights="int8"`` its adapter matrices in int8 with one scale per rank line
(half the size: more members fit the repository's 10 MiB), and no tokenizer copy (an
adapter checkpoint takes it from its verified base encoder).
``senbert release`` (``pipeline/training/release/``) builds, calibrates, measures and cards packed
models; ``scripts/rebuild_default_model.sh`` rebuilds the shipped one from the MOSI and MOSEI label files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from common.errors import CheckpointMismatchError, InputError
from common.io import atomic_write_json, sha256_file
from pipeline.corpora.clips import TEXT_STYLES
from pipeline.models.calibration import Calibration
from pipeline.models.checkpoint import (
    META_FILE,
    QSCALE,
    WEIGHTS_FILE,
    load_weights_file,
    quantize_int8,
    read_meta,
    resolve_checkpoint_dir,
)
from pipeline.models.encoders import is_adapter_weight

MANIFEST = "manifest.json"
#: a packed model's own calibration of its final score (an ensemble's: fitted on the members' mean)
CALIBRATION_FILE = "calibration.json"
#: what a user may write instead of a path to mean the shipped model
DEFAULT_NAMES = ("default", "")
MAX_FILE_BYTES = 5 * 1024 * 1024  # no shipped file over 5 MiB, at most 10 MiB in all
MAX_TOTAL_BYTES = 10 * 1024 * 1024
#: how a packed model may store its members' weights
WEIGHT_FORMATS = ("fp16", "int8")


class PackTooLarge(InputError):
    """A packed model would exceed the repository's limits (5 MiB a file, 10 MiB in all)."""


def default_model_folder() -> Path:
    """Where the shipped default model lives (package data, pyproject.toml), whether it is there or not."""
    return Path(__file__).resolve().parent.parent / "default_model"


def default_model_dir(verify: bool = True) -> Path:
    """The shipped default model's folder (package data), its hashes checked."""
    root = default_model_folder()
    if not (root / MANIFEST).is_file():
        raise InputError(f"{root}: the default model is missing (no {MANIFEST}); reinstall the project, or "
                         "rebuild it (`senbert release build --mosi MOSI/label.csv --mosei MOSEI/label.csv` "
                         "builds a part, `senbert release combine --mosi MOSI/label.csv --mosei MOSEI/label.csv "
                         "--parts PART ...` combines parts into it; scripts/rebuild_default_model.sh in a "
                         "checkout runs every step), or pass --checkpoint")
    if verify:
        verify_packed(root)
    return root


def is_packed(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    f = Path(folder) / MANIFEST
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{f}: unreadable model manifest ({exc})") from None
    if not isinstance(data, dict) or not data.get("members") or not isinstance(data.get("files"), dict):
        raise InputError(f"{f}: not a model manifest (needs 'members' and 'files')")
    return data


def verify_packed(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the SHA-256 of every file the manifest lists (and that no member file is unlisted);
    returns the manifest. A mismatch is a :class:`CheckpointMismatchError` naming the file."""
    root = Path(folder)
    manifest = read_manifest(root)
    for rel, want in sorted(manifest["files"].items()):
        f = root / rel
        if not f.is_file():
            raise CheckpointMismatchError(f"{f}: listed in {root / MANIFEST} but missing; the model folder is "
                                          "incomplete (reinstall or rebuild it)")
        have = sha256_file(f)
        if have != want:
            raise CheckpointMismatchError(
                f"{f}: SHA-256 {have} is not the {want} recorded in {root / MANIFEST}; the file was changed or "
                "damaged: reinstall the project or rebuild the model (pipeline/default_model/MODEL_CARD.md)")
    for member in manifest["members"]:
        for f in sorted((root / member).rglob("*")):
            rel = f.relative_to(root).as_posix()
            if f.is_file() and rel not in manifest["files"]:
                raise CheckpointMismatchError(f"{f}: not listed in {root / MANIFEST}; a packed model holds only "
                                              "the files its manifest names")
    return manifest


def member_dirs(folder: str | os.PathLike[str], verify: bool = True) -> tuple[list[Path], dict[str, Any]]:
    root = Path(folder)
    manifest = verify_packed(root) if verify else read_manifest(root)
    return [root / m for m in manifest["members"]], manifest


def read_calibration(folder: str | os.PathLike[str], manifest: dict[str, Any]) -> Calibration | None:
    """The packed model's ``calibration.json`` (hash-checked with the rest when the manifest
    lists it), or None when it has none."""
    if CALIBRATION_FILE not in manifest["files"]:
        return None
    f = Path(folder) / CALIBRATION_FILE
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{f}: unreadable calibration ({exc})") from None
    return Calibration.from_dict(data, str(f))


def _pack_member(checkpoint: Path, dest: Path, weights: str, text_style: str | None = None) -> None:
    src = resolve_checkpoint_dir(checkpoint)
    meta = read_meta(src)
    if meta.model_config.adapter == "none":
        raise InputError(f"{src}: only adapter (LoRA) checkpoints are packed for shipping; a fully fine-tuned "
                         "one would be hundreds of MB")
    dest.mkdir(parents=True)
    state = load_weights_file(src / WEIGHTS_FILE)
    stored = {k[: -len(QSCALE)] for k in state if k.endswith(QSCALE)}  # a packed int8 member: kept as it is
    if stored and weights != "int8":
        raise InputError(f"{src}: its adapters are stored in int8; they are packed as they are (weights='int8')")
    if weights == "int8" and not stored:  # from the checkpoint's own precision, not from an fp16 copy of it
        state = quantize_int8(state, {k for k in state if is_adapter_weight(k)})
    # int8 tensors are not floating point; their scales stay fp32
    state = {k: (v.to(torch.float16) if v.is_floating_point() and not k.endswith(QSCALE) else v).contiguous()
             for k, v in state.items()}
    save_file(state, str(dest / WEIGHTS_FILE))
    # the training machine's folders mean nothing elsewhere: keep the last two parts (mosi/label.csv)
    meta.data_source = _short(meta.data_source)
    for key in ("pretrain", "extra_train"):
        meta.train[key] = [_short(x) for x in meta.train.get(key, [])]
    meta.train["init_from"] = _short(meta.train.get("init_from", ""))
    if text_style is not None:  # how it reads transcripts from now on (meta.train keeps how it was trained)
        meta.text_style = text_style
    atomic_write_json(dest / META_FILE, meta.__dict__, indent=2)


def _short(path: str) -> str:
    return "/".join(Path(path).parts[-2:]) if path else path


def pack_model(checkpoints: list[str | os.PathLike[str]], out: str | os.PathLike[str], name: str,
               card: str = "", extra: dict[str, Any] | None = None, calibration: Calibration | None = None,
               weights: str = "fp16", text_style: str | None = None) -> Path:
    """Write the packed model ``out`` from ``checkpoints`` (members ``member_1`` ...): fp16
    weights (``weights="int8"``: the adapter matrices in int8, a few fp32 scales each
    (``checkpoint.quantize_int8``); the heads in fp16), the manifest with every file's
    SHA-256, ``MODEL_CARD.md`` when ``card`` is given and ``calibration.json`` when
    ``calibration`` is (the packed model's own map of its final score). Refuses files over
    5 MiB and packs over 10 MiB (what the repository can hold): :class:`PackTooLarge`.
    ``text_style`` sets how every member reads transcripts (``pipeline.corpora.clips.TEXT_STYLES``;
    None: as each was trained to)."""
    if weights not in WEIGHT_FORMATS:
        raise InputError(f"weights={weights!r}: expected one of {', '.join(WEIGHT_FORMATS)}")
    if text_style is not None and text_style not in TEXT_STYLES:
        raise InputError(f"text_style={text_style!r}: expected one of {', '.join(TEXT_STYLES)}")
    root = Path(out)
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    members = []
    for i, ck in enumerate(checkpoints, 1):
        _pack_member(Path(ck), tmp / f"member_{i}", weights, text_style)
        members.append(f"member_{i}")
    if card:
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    if calibration is not None:
        atomic_write_json(tmp / CALIBRATION_FILE, calibration.to_dict(), indent=1)
    files = {f.relative_to(tmp).as_posix(): sha256_file(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
    sizes = {rel: (tmp / rel).stat().st_size for rel in files}
    big = {rel: n for rel, n in sizes.items() if n > MAX_FILE_BYTES}
    if big or sum(sizes.values()) > MAX_TOTAL_BYTES:
        shutil.rmtree(tmp)
        raise PackTooLarge(f"packed model too large: {sum(sizes.values()) / 2**20:.1f} MiB in all, files over 5 MiB: "
                         f"{big or 'none'} (limits: 5 MiB a file, 10 MiB in all); use fewer members, a lower rank"
                         + (" or int8 weights" if weights == "fp16" else ""))
    atomic_write_json(tmp / MANIFEST, {"name": name, "members": members, "weights": weights, "files": files,
                                     **(extra or {})})
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root
