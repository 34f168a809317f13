"""The feature cache: one entry per clip and extractor configuration.

An entry's key is a hash of the file's content (SHA-256 of its bytes), the extract config's
fingerprint (settings, extractor and library versions, model hashes) and, when the corpus
gives one, the transcript. Renaming or moving a file keeps its entries; changing a setting
or a model makes new ones.

Layout under the cache root::

    index.jsonl                     one line per stored / removed entry: key -> summary
                                    (source path, duration, fingerprint, ...); last line wins
    hashes.jsonl                    path, size, mtime -> sha256: skip re-hashing big files
    entries/<k[:2]>/<key>/
        features.safetensors        audio (T_a, d_a), audio_times (T_a,), vision (T_v, d_v),
                                    vision_times (T_v,); header metadata: column names
        meta.json                   names, times' rate, transcript, words with times,
                                    warnings, face_share, config, versions, timings
    tmp/                            entries being written

Writes are atomic: an entry is written in ``tmp/`` and renamed into place, so a crash never
leaves a half entry that a later run trusts. The index and the hash memo are append-only
logs (one short line per change, appended under a file lock; a torn last line is skipped),
so storing an entry costs the same in a cache of ten clips or of a hundred thousand; they
are compacted (rewritten atomically) when rebuilt. Several processes can share a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from common.errors import ConfigError, InputError
from common.io import atomic_write, file_lock, text_bytes

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass
class CacheEntry:
    """Features of one clip under one extract configuration (arrays are float32)."""

    key: str
    source_path: str
    duration: float
    audio: np.ndarray  # (T_a, d_a)
    audio_names: list[str]
    audio_times: np.ndarray  # (T_a,) seconds
    vision: np.ndarray  # (T_v, d_v)
    vision_names: list[str]
    vision_times: np.ndarray  # (T_v,) seconds
    transcript: str
    words: list[dict[str, Any]]  # {word, start, end, probability}
    face_share: float
    warnings: list[str]
    meta: dict[str, Any]  # config, fingerprint, versions, timings, transcript_source, ...
    clip_id: str = ""
    content_sha256: str = ""
    token_ids: list[int] = field(default_factory=list)
    from_cache: bool = False  # True when this object was served from the cache

    def summary(self) -> dict[str, Any]:
        return {
            "source_path": self.source_path, "clip_id": self.clip_id, "duration": self.duration,
            "content_sha256": self.content_sha256, "fingerprint": self.meta.get("fingerprint", ""),
            "config_name": self.meta.get("config_name", ""), "audio_steps": int(self.audio.shape[0]),
            "vision_steps": int(self.vision.shape[0]), "face_share": self.face_share,
            "transcript_source": self.meta.get("transcript_source", ""), "n_warnings": len(self.warnings),
            "created": self.meta.get("created", ""),
        }


class _JsonlLog:
    """An append-only JSON-lines file read incrementally (new lines since the last read)."""

    def __init__(self, path: Path, lock: Any) -> None:
        self.path = path
        self._lock = lock
        self._records: list[dict[str, Any]] = []
        self._by: dict[tuple[str, str], dict[str, Any]] = {}
        self._offset = 0
        self._inode = -1

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._by, self._offset, self._inode = [], {}, 0, -1
            return
        if st.st_ino != self._inode or st.st_size < self._offset:  # compacted by someone: reload
            self._records, self._by, self._offset, self._inode = [], {}, 0, st.st_ino
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # only complete lines; a torn tail is read again later
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash
            if isinstance(rec, dict):
                self._records.append(rec)
                for k, v in rec.items():
                    if k in ("path", "key") and isinstance(v, str):
                        self._by[(k, v)] = rec
        self._offset += end

    def records(self) -> list[dict[str, Any]]:
        self._refresh()
        return list(self._records)

    def latest(self, field_name: str, value: str) -> dict[str, Any] | None:
        self._refresh()
        return self._by.get((field_name, value))

    def append(self, recs: list[dict[str, Any]]) -> None:
        if not recs:
            return
        blob = text_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
        with self._lock():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                    blob = b"\n" + blob  # close a line torn by a crash
                os.write(fd, blob)
            finally:
                os.close(fd)

    def compact(self, recs: list[dict[str, Any]]) -> None:
        with self._lock():
            atomic_write(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
        self._inode = -1


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class FeatureCache:
    """A folder of cached feature entries with an index; safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        try:
            (self.root / "entries").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.root}: cannot create the feature cache folder ({e}); "
                             "choose a writable --cache folder") from e
        self._logs: dict[str, _JsonlLog] = {}

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    # ------------------------------------------------------------------ locking and index

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.root / ".lock")

    def _log(self, name: str) -> _JsonlLog:
        if name not in self._logs:
            self._logs[name] = _JsonlLog(self.root / name, self._lock)
        return self._logs[name]

    def index(self) -> dict[str, dict[str, Any]]:
        """key -> summary of every entry (rebuilt from the entry folders when missing)."""
        log = self._log("index.jsonl")
        if not log.path.exists():
            return self.rebuild_index()
        out: dict[str, dict[str, Any]] = {}
        for rec in log.records():
            key = rec.get("key")
            if not isinstance(key, str):
                continue
            if rec.get("drop"):
                out.pop(key, None)
            elif isinstance(rec.get("summary"), dict):
                out[key] = rec["summary"]
        return out

    def rebuild_index(self) -> dict[str, dict[str, Any]]:
        """Scan the entry folders and rewrite (compact) the index."""
        entries: dict[str, dict[str, Any]] = {}
        for d in sorted((self.root / "entries").glob("*/*")):
            try:
                e = self._load_dir(d)
            except OSError as err:
                log.warning("%s: cache entry not readable now (%s); left out of the rebuilt index", d, err)
                continue
            if e is not None:
                entries[e.key] = e.summary()
        self._log("index.jsonl").compact([{"key": k, "summary": v} for k, v in entries.items()])
        return entries

    def _update_index(self, add: dict[str, dict[str, Any]] | None = None, drop: Iterable[str] = ()) -> None:
        recs: list[dict[str, Any]] = [{"key": k, "drop": True} for k in drop]
        recs += [{"key": k, "summary": v} for k, v in (add or {}).items()]
        self._log("index.jsonl").append(recs)

    # ------------------------------------------------------------------ content hashes

    def content_hash(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of a file's bytes, remembered per (path, size, mtime) in ``hashes.jsonl``."""
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError as e:
            raise InputError(f"{p}: file not found; check the path (quote it if it has spaces)") from e
        absolute = str(p.resolve())
        memo = self._log("hashes.jsonl")
        hit = memo.latest("path", absolute)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return str(hit["sha256"])
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as e:
            raise InputError(f"{p}: cannot read the file ({e.strerror}); check its permissions") from e
        digest = h.hexdigest()
        memo.append([{"path": absolute, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}])
        return digest

    @staticmethod
    def make_key(content_sha256: str, fingerprint: str, transcript: str | None = None) -> str:
        """The entry key: content hash + config fingerprint (+ the given transcript)."""
        t = "-" if transcript is None else hashlib.sha256(transcript.encode("utf-8")).hexdigest()
        return hashlib.sha256(f"{content_sha256}|{fingerprint}|{t}".encode()).hexdigest()[:40]

    # ------------------------------------------------------------------ entries

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def has(self, key: str) -> bool:
        d = self.entry_dir(key)
        return (d / "meta.json").is_file() and (d / "features.safetensors").is_file()

    def get(self, key: str) -> CacheEntry | None:
        """The entry, or None when absent (a damaged entry is removed and counts as absent)."""
        d = self.entry_dir(key)
        if not d.exists():
            return None
        try:
            e = self._load_dir(d)
        except OSError as err:  # not damage: out of file handles, permissions, ... the entry is kept
            log.warning("%s: cache entry not readable now (%s); kept, and counted as absent this time", d, err)
            return None
        if e is None:
            shutil.rmtree(d, ignore_errors=True)
            self._update_index(drop=[key])
            return None
        e.from_cache = True
        return e

    def _load_dir(self, d: Path) -> CacheEntry | None:
        try:
            with open(d / "meta.json", encoding="utf-8") as f:
                m = json.load(f)
            arrays = load_file(str(d / "features.safetensors"))
            return CacheEntry(
                key=m["key"], source_path=m["source_path"], duration=float(m["duration"]),
                audio=arrays["audio"], audio_names=list(m["audio_names"]), audio_times=arrays["audio_times"],
                vision=arrays["vision"], vision_names=list(m["vision_names"]),
                vision_times=arrays["vision_times"], transcript=m["transcript"], words=list(m["words"]),
                face_share=float(m["face_share"]), warnings=list(m["warnings"]), meta=dict(m["meta"]),
                clip_id=m.get("clip_id", ""), content_sha256=m.get("content_sha256", ""),
                token_ids=list(m.get("token_ids", [])),
            )
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # half there: damaged
            return None
        except OSError:  # the entry may be fine; the system could not read it now (the caller decides)
            raise
        except Exception:  # noqa: BLE001 - damaged: unreadable JSON or tensors, keys missing
            return None

    def put(self, entry: CacheEntry) -> CacheEntry:
        """Store an entry atomically (an existing one with the same key is kept) and index it."""
        final = self.entry_dir(entry.key)
        tmp = self.root / "tmp" / f"{entry.key}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            header = {
                "format": str(CACHE_FORMAT), "key": entry.key,
                "audio_names": json.dumps(entry.audio_names), "vision_names": json.dumps(entry.vision_names),
            }
            save_file(
                {
                    "audio": np.ascontiguousarray(entry.audio, dtype=np.float32),
                    "audio_times": np.ascontiguousarray(entry.audio_times, dtype=np.float64),
                    "vision": np.ascontiguousarray(entry.vision, dtype=np.float32),
                    "vision_times": np.ascontiguousarray(entry.vision_times, dtype=np.float64),
                },
                str(tmp / "features.safetensors"), metadata=header,
            )
            with open(tmp / "features.safetensors", "rb") as f:  # on disk before the rename publishes it
                os.fsync(f.fileno())
            meta = {
                "format": CACHE_FORMAT, "key": entry.key, "source_path": entry.source_path,
                "clip_id": entry.clip_id, "content_sha256": entry.content_sha256, "duration": entry.duration,
                "audio_names": entry.audio_names, "vision_names": entry.vision_names,
                "audio_shape": list(entry.audio.shape), "vision_shape": list(entry.vision.shape),
                "transcript": entry.transcript, "words": entry.words, "token_ids": entry.token_ids,
                "face_share": entry.face_share, "warnings": entry.warnings, "meta": entry.meta,
            }
            with open(tmp / "meta.json", "wb") as f:  # a source path that is not UTF-8: its JSON escape
                f.write(text_bytes(json.dumps(meta, indent=1, ensure_ascii=False)))
                f.flush()
                os.fsync(f.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(entry.key):  # not a concurrent writer of the same entry
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._update_index(add={entry.key: entry.summary()})
        return entry

    def remove(self, key: str) -> None:
        shutil.rmtree(self.entry_dir(key), ignore_errors=True)
        self._update_index(drop=[key])

    def keys(self, fingerprint: str | None = None) -> list[str]:
        return [k for k, v in self.index().items() if fingerprint is None or v.get("fingerprint") == fingerprint]

    def entries(self, fingerprint: str | None = None) -> list[CacheEntry]:
        """Every entry in the index (optionally only one configuration's), loaded."""
        out = []
        for k in self.keys(fingerprint):
            e = self.get(k)
            if e is not None:
                out.append(e)
        return out

    def clean_tmp(self, older_than_s: float = 3600.0) -> None:
        """Remove leftovers of interrupted writes."""
        now = time.time()
        for d in (self.root / "tmp").iterdir():
            with contextlib.suppress(OSError):
                if now - d.stat().st_mtime > older_than_s:
                    shutil.rmtree(d, ignore_errors=True)


def check_same_columns(entry: CacheEntry, first: CacheEntry) -> None:
    """Refuse ``entry`` when its feature columns differ from ``first``'s: entries read together
    must come from one extract configuration."""
    if entry.audio_names != first.audio_names or entry.vision_names != first.vision_names:
        raise ConfigError(f"{entry.source_path}: its features have other columns than {first.source_path}'s; the "
                          "entries come from different extract configurations; extract them all with one config")


def feature_info(meta: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must remember of the features it was trained on (config and rates)."""
    cfg = meta.get("config") or {}
    info: dict[str, Any] = {"extract_config": meta.get("config_name", ""), "fingerprint": meta.get("fingerprint", "")}
    if isinstance(cfg, dict):
        if isinstance(cfg.get("visual"), dict) and "fps" in cfg["visual"]:
            info["visual_fps"] = cfg["visual"]["fps"]
        if isinstance(cfg.get("acoustic"), dict) and "rate_hz" in cfg["acoustic"]:
            info["acoustic_rate_hz"] = cfg["acoustic"]["rate_hz"]
    return info


def config_feature_info(config: Any) -> dict[str, Any]:
    """:func:`feature_info` of the features an :class:`~pipeline.features.config.ExtractConfig`
    would make, known before any extraction."""
    return feature_info({"config_name": config.name, "config": config.to_dict(), "fingerprint": config.fingerprint()})
