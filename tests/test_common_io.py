"""common/io.py: atomic writes leave the old file or the new one, never a half one or a temporary."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from common.errors import AssetError
from common.io import atomic_open, atomic_write, atomic_write_json, senbert_home, sha256_file, verify_sha256


def test_atomic_write_text_bytes_and_json(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"  # the folder is created
    assert atomic_write(target, "héllo\r\nworld\n") == target
    assert target.read_bytes() == "héllo\r\nworld\n".encode()  # newlines kept as given
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "b.json", {"ü": [1, 2]})
    assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8")) == {"ü": [1, 2]}
    assert "ü" in (tmp_path / "b.json").read_text(encoding="utf-8")  # non-ASCII kept
    assert sorted(p.name for p in tmp_path.rglob("*.partial")) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.pkl"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError), atomic_open(target, "wb") as f:
        pickle.dump({"half": 1}, f)
        raise RuntimeError("crash in the middle")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_open(target, "w", encoding="utf-8", newline="") as f:  # text mode for csv writers
        f.write("new")
    assert target.read_text() == "new"
    with pytest.raises(ValueError), atomic_open(target, "ab"):
        pass


def test_sha256_check_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(f) == digest and verify_sha256(f, digest, "weights", "reinstall") == digest
    with pytest.raises(AssetError, match="fails its SHA-256 check"):
        verify_sha256(f, "0" * 64, "weights", "reinstall")
    with pytest.raises(AssetError, match="is missing; reinstall"):
        verify_sha256(tmp_path / "nope", digest, "weights", "reinstall")
    monkeypatch.setenv("SENBERT_HOME", str(tmp_path / "home"))
    assert senbert_home() == tmp_path / "home"
    monkeypatch.delenv("SENBERT_HOME")
    assert senbert_home() == Path.home() / ".cache" / "senbert"
