"""Batches of clips: many files extracted in one process or in a pool of worker processes.

``extract_batch`` serves cached clips in the parent and sends the others to the extractors
(:func:`pipeline.features.extract.extract_clip`), with a progress bar; a clip that fails never stops the
batch and is listed, with the reason, in an errors file (``<cache>/errors-<config>.json``). A
second run serves cached clips and retries only the failed ones (``read_errors``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from common.errors import ConfigError, InputError, SenbertError
from common.io import atomic_write_json, senbert_home
from common.process import exit_with_parent, usable_cores
from extractors import registry
from extractors.transcript import set_thread_budget
from pipeline.features.cache import CacheEntry, FeatureCache
from pipeline.features.config import ExtractConfig
from pipeline.features.extract import cached_entry, extract_clip

log = logging.getLogger(__name__)


@dataclass
class BatchItem:
    path: Path
    transcript: str | None
    clip_id: str


def as_item(x: Any) -> BatchItem:
    if isinstance(x, BatchItem):
        return x
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        return BatchItem(p, None, p.stem)
    if isinstance(x, tuple) and len(x) == 2:
        p = Path(x[0])
        return BatchItem(p, x[1], p.stem)
    if hasattr(x, "path"):
        p = Path(x.path)
        cid = getattr(x, "uid", None) or getattr(x, "clip_id", None) or p.stem
        return BatchItem(p, getattr(x, "transcript", None), str(cid))
    raise InputError(f"cannot extract {x!r}: give a path, a (path, transcript) pair or an object with .path")


@dataclass
class BatchReport:
    """What a batch did: counts, failures, timings and the entries in input order."""

    done: int = 0  # newly extracted
    cached: int = 0  # served from the cache
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    seconds_of_video: float = 0.0  # duration of every clip that succeeded
    seconds_extracted: float = 0.0  # duration of the newly extracted clips
    wall_seconds: float = 0.0
    entries: list[CacheEntry] = field(default_factory=list)  # succeeded clips, input order
    keys: list[str | None] = field(default_factory=list)  # per input item; None when failed
    finished_at: list[float | None] = field(default_factory=list)  # seconds after the start, per item
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over new clips
    errors_path: str = ""
    workers: int = 1

    @property
    def realtime_factor(self) -> float:
        """Seconds of newly extracted video per wall second."""
        return self.seconds_extracted / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.done} extracted, {self.cached} from cache, {len(self.failed)} failed "
            f"({self.wall_seconds:.1f} s wall, {self.workers} worker(s))",
        ]
        if self.seconds_extracted:
            lines.append(f"{self.seconds_extracted:.1f} s of video extracted: {self.realtime_factor:.2f}x real time")
        if self.failed:
            where = f"failures listed in {self.errors_path}" if self.errors_path else "failures"
            lines += failure_lines(self.failed, f"{where}; run again to retry them:")
        return "\n".join(lines)


def failure_lines(failed: Sequence[tuple[Any, str]], header: str, most: int = 20) -> list[str]:
    """A header and the first ``most`` failure messages of a batch, for a summary."""
    lines = [header] + [f"  {msg}" for _, msg in failed[:most]]
    if len(failed) > most:
        lines.append(f"  ... and {len(failed) - most} more")
    return lines


def warm_up(config: ExtractConfig) -> None:
    """Load every model the config uses (once per process) so clips do not pay for it."""
    ch = config.extractors
    if ch.audio:
        for a in ch.audio:
            ex = registry.create(a, config.acoustic)
            ex.features(np.random.default_rng(0).normal(0, 0.01, 8000).astype(np.float32), 16000)
    if ch.text:
        tr = registry.create(ch.text, config.asr)
        if hasattr(tr, "model"):
            tr.model()
    if ch.vision:
        registry.create(ch.vision, config.visual).create_landmarker().close()


_WORKER: dict[str, Any] = {}  # this worker process's config (set by _worker_init)


def _worker_init(config_dict: dict[str, Any], threads: int) -> None:
    exit_with_parent()  # a killed parent must not leave its workers (and their models) behind
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    set_thread_budget(threads)
    cfg = ExtractConfig.from_dict(config_dict, source="worker")
    _WORKER["config"] = cfg
    try:
        warm_up(cfg)
    except SenbertError as e:  # reported per clip instead
        _WORKER["warmup_error"] = str(e)


def _worker_run(cache_root: str, item: BatchItem, sparse_vision: bool = False
                ) -> tuple[str, str, float, bool, dict[str, float]]:
    cfg: ExtractConfig = _WORKER["config"]
    try:
        e = extract_clip(item.path, cfg, FeatureCache(cache_root), item.transcript, item.clip_id, sparse_vision)
        return "ok", e.key, e.duration, e.from_cache, dict(e.meta.get("timings", {})) if not e.from_cache else {}
    except SenbertError as err:
        return "error", str(err), 0.0, False, {}
    except Exception as err:  # noqa: BLE001 - keep the batch going
        return "error", f"{item.path}: unexpected {type(err).__name__}: {err}", 0.0, False, {}


def run_isolating_crashes(indices: Sequence[int], workers: int, make_pool: Callable[[int], Executor],
                          job: Callable[[int], tuple[Any, ...]], done: Callable[[int, Any], None],
                          crashed: Callable[[int], None]) -> None:
    """Run ``job(i)`` (a function and its arguments) for every index in pools of ``workers``
    processes (``make_pool(n)``), calling ``done(i, result)`` as each finishes.

    A worker that dies (a native crash, the system killing it) breaks its pool, and every unfinished
    job with it, though only one killed it. The unfinished jobs run again in a new pool; if they
    break that one too, they run one at a time, in order, in one-worker pools: the first
    unfinished job of a broken one-worker pool is the one that killed it, so it alone is given
    to ``crashed(i)`` and the others go on.
    """
    pending = sorted(indices)
    broken_pools = 0
    while pending:
        serial = broken_pools >= 2
        broken: list[int] = []
        with make_pool(1 if serial else workers) as pool:
            futs = {pool.submit(*job(i)): i for i in pending}
            for fut in as_completed(futs):
                try:
                    value = fut.result()
                except BrokenProcessPool:
                    broken.append(futs[fut])
                    continue
                done(futs[fut], value)
        broken.sort()
        if broken and serial:
            crashed(broken.pop(0))
        broken_pools += bool(broken)
        pending = broken


def _message(item: BatchItem, err: BaseException) -> str:
    if isinstance(err, SenbertError):
        return str(err)
    tb = "".join(traceback.format_exception_only(type(err), err)).strip()
    return f"{item.path}: unexpected {tb}; this is likely a bug, please report it"


def resolve_workers(spec: int | str, n_items: int) -> int:
    """``auto``: one process per core, when the batch is long enough to pay for starting them
    (a worker loads every model first, several seconds); else the number given."""
    if isinstance(spec, str):
        if spec.strip().lower() != "auto":
            try:
                spec = int(spec)
            except ValueError:
                raise ConfigError(f"--workers must be a number or 'auto', got {spec!r}") from None
        else:
            return max(1, min(usable_cores(), n_items // 6))
    if spec < 1:
        raise ConfigError(f"--workers must be at least 1, got {spec}")
    return int(spec)


def default_errors_path(cache: FeatureCache, config: ExtractConfig) -> Path:
    return cache.root / f"errors-{config.name}.json"


def write_errors(path: Path, config: ExtractConfig, failed: list[tuple[BatchItem, str]], n_items: int) -> None:
    atomic_write_json(path, {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.name, "fingerprint": config.fingerprint(), "items": n_items,
        "failed": [{"path": str(it.path), "clip_id": it.clip_id, "transcript": it.transcript, "message": msg}
                   for it, msg in failed],
    })


def read_errors(path: str | os.PathLike[str]) -> list[BatchItem]:
    """The failed items recorded in an errors file (to retry only those)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no errors file; run `senbert extract` first")
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
        return [BatchItem(Path(r["path"]), r.get("transcript"), r.get("clip_id") or Path(r["path"]).stem)
                for r in data.get("failed", [])]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{p}: not an errors file written by senbert extract ({e})") from e


def extract_batch(
    items: Iterable[Any],
    config: ExtractConfig,
    cache: FeatureCache,
    workers: int = 1,
    progress: bool = True,
    errors_path: str | os.PathLike[str] | None = None,
    load_entries: bool = True,
    errors_file: bool = True,
    sparse_vision: bool = False,
) -> BatchReport:
    """Extract many clips; failures do not stop the others and are written to an errors file
    (``errors_path``, default ``<cache>/errors-<config>.json``, which ``--retry-failed`` reads).
    ``errors_file=False`` writes none: a caller that lists the failures in its own file (scoring)
    must not overwrite the last extraction's list.

    ``items``: paths, ``(path, transcript)`` pairs, or objects with ``.path`` (and optionally
    ``.transcript``, ``.uid`` or ``.clip_id``) such as :class:`~pipeline.corpora.label_csv.CorpusItem`.
    With ``workers > 1`` clips run in that many processes (spawned), each with ``cores // workers`` threads.
    ``load_entries=False`` keeps only keys (large corpora). ``sparse_vision``: the caller does
    not read the visual features (a text-only model scoring), so the face landmarker may run at
    :data:`~pipeline.features.extract.SPARSE_VISION_FPS` (see :func:`~pipeline.features.extract.extract_clip`).
    """
    batch = [as_item(x) for x in items]
    cache.clean_tmp()  # what killed writers left (over an hour old: no live writer's)
    workers = max(1, int(workers))
    report = BatchReport(workers=workers)
    report.keys = [None] * len(batch)
    report.finished_at = [None] * len(batch)
    epath = Path(errors_path) if errors_path else default_errors_path(cache, config)
    report.errors_path = str(epath) if errors_file else ""
    failures: list[tuple[int, str]] = []
    results: dict[int, CacheEntry] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=len(batch), disable=not progress, unit="clip", desc=f"extract [{config.name}]",
               dynamic_ncols=True, file=sys.stderr)

    def record(i: int, key: str, duration: float, from_cache: bool, timings: dict[str, float],
               entry: CacheEntry | None) -> None:
        report.keys[i] = key
        report.finished_at[i] = time.perf_counter() - t0
        report.seconds_of_video += duration
        if from_cache:
            report.cached += 1
        else:
            report.done += 1
            report.seconds_extracted += duration
            for k, v in timings.items():
                report.stage_seconds[k] = report.stage_seconds.get(k, 0.0) + v
        if load_entries:
            e = entry if entry is not None else cache.get(key)
            if e is not None:
                e.clip_id = batch[i].clip_id
                results[i] = e

    def fail(i: int, msg: str) -> None:
        failures.append((i, msg))
        bar.set_postfix(failed=len(failures))

    todo: list[int] = []  # the parent serves cache hits; only misses go to the extractors
    for i, it in enumerate(batch):
        try:
            hit = cached_entry(it.path, config, cache, it.transcript, it.clip_id, sparse_vision)
        except Exception as err:  # noqa: BLE001 - e.g. a missing file: recorded, the batch goes on
            fail(i, _message(it, err))
            bar.update(1)
            continue
        if hit is None:
            todo.append(i)
        else:
            record(i, hit.key, hit.duration, True, {}, hit)
            bar.update(1)

    if workers == 1 or len(todo) <= 1:
        set_thread_budget(0)
        for i in todo:
            it = batch[i]
            try:
                e = extract_clip(it.path, config, cache, it.transcript, it.clip_id, sparse_vision)
                record(i, e.key, e.duration, e.from_cache, dict(e.meta.get("timings", {})), e)
            except Exception as err:  # noqa: BLE001 - one clip never stops the batch
                fail(i, _message(it, err))
            bar.update(1)
    else:
        threads = max(1, usable_cores() // workers)

        def make_pool(n: int) -> ProcessPoolExecutor:
            return ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"),
                                       initializer=_worker_init, initargs=(config.to_dict(), threads))

        def done(i: int, value: tuple[str, str, float, bool, dict[str, float]]) -> None:
            status, msg_or_key, duration, from_cache, timings = value
            if status == "ok":
                record(i, msg_or_key, duration, from_cache, timings, None)
            else:
                fail(i, msg_or_key)
            bar.update(1)

        def crashed(i: int) -> None:
            fail(i, f"{batch[i].path}: the worker process died while extracting this clip (a native crash or "
                    "the system killing it, e.g. out of memory; it died again when run alone); try it alone "
                    "with --workers 1 to see the error")
            bar.update(1)

        run_isolating_crashes(todo, workers, make_pool,
                              lambda i: (_worker_run, str(cache.root), batch[i], sparse_vision), done, crashed)
    bar.close()
    report.wall_seconds = time.perf_counter() - t0
    failures.sort()
    report.failed = [(str(batch[i].path), msg) for i, msg in failures]
    report.entries = [results[i] for i in sorted(results)]
    if errors_file:
        write_errors(epath, config, [(batch[i], msg) for i, msg in failures], len(batch))
    return report


def default_cache_dir() -> Path:
    """``$SENBERT_CACHE``, else ``$SENBERT_HOME/features`` (``~/.cache/senbert/features``)."""
    env = os.environ.get("SENBERT_CACHE")
    return Path(env).expanduser() if env else senbert_home() / "features"
