"""Small file helpers shared by every package: atomic writes, SHA-256 checks, the home folder.

An atomic write goes to ``<name>.<random>.partial`` next to the target, is flushed to disk and
then renamed over the target (``os.replace``): a reader sees the old file or the new one, never a
half-written one, and two processes writing the same file at once do not trip over each
other's temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from common.errors import AssetError

PARTIAL_SUFFIX = ".partial"


def partial_path(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name next to ``path``: ``<name>.<random>.partial``."""
    p = Path(path)
    return p.with_name(f"{p.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
                newline: str | None = None, fsync: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on success it replaces ``path``.

    For writers that stream into a file object (``torch.save``, ``pickle.dump``, ``csv``). The
    parent folder is created. On an exception the temporary file is removed and ``path`` is
    left as it was.
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file; mode {mode!r} is not a write mode")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dest)
    try:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def text_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``text`` encoded, a character the encoding cannot hold written as its backslash escape: on
    Linux a file name that is not UTF-8 reaches Python with lone surrogates (``\udcff``), which
    would otherwise fail the whole write (JSON reads the escape back as the same name)."""
    return text.encode(encoding, errors="backslashreplace")


def display_text(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (lone surrogates) as escapes: printable and drawable."""
    return text_bytes(text).decode("utf-8")


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, encoding: str = "utf-8",
                 fsync: bool = True) -> Path:
    """Write ``data`` (text is encoded by :func:`text_bytes`, newlines kept as given) to ``path``
    atomically; the path."""
    blob = text_bytes(data, encoding) if isinstance(data, str) else bytes(data)
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(blob)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (UTF-8, non-ASCII kept) to ``path`` atomically; the path."""
    return atomic_write(path, json.dumps(obj, indent=indent, ensure_ascii=False))


# --------------------------------------------------------------------------- hashes

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block: processes and
    threads that lock the same file take turns. No lock where the OS has no ``flock``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, memoised per process on (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _SHA_MEMO:
        return _SHA_MEMO[memo_key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    digest = h.hexdigest()
    _SHA_MEMO[memo_key] = digest
    return digest


def verify_sha256(path: str | os.PathLike[str], expected: str, what: str, how: str) -> str:
    """Raise AssetError unless ``path`` exists and hashes to ``expected``; the digest."""
    p = Path(path)
    if not p.is_file():
        raise AssetError(f"{what}: {p} is missing; {how}")
    got = sha256_file(p)
    if got != expected:
        raise AssetError(
            f"{what}: {p} fails its SHA-256 check (expected {expected[:16]}..., got {got[:16]}...): "
            f"the file is damaged or not the pinned version; delete it and {how}"
        )
    return got


# --------------------------------------------------------------------------- home folder


def senbert_home() -> Path:
    """Where joined assets and caches live: ``$SENBERT_HOME`` or ``~/.cache/senbert``."""
    env = os.environ.get("SENBERT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "senbert"
