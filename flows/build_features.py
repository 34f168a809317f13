"""``build-features``: a folder of videos (or an MMSA-FET label.csv corpus) -> cached features.

One Prefect task per clip calls :func:`pipeline.features.extract.extract_clip`. A task's cache key is
the feature-cache key (the file's SHA-256 + the extractor config's fingerprint + the given
transcript), and its record lives in ``<cache>/prefect-results``: a second run recomputes
nothing (the tasks end ``Cached``) and a crashed run resumes where it stopped. The feature
cache is the first layer and the source of truth: a Prefect record whose entry was removed
from the cache is dropped and the clip is extracted again.

Unexpected errors are retried once; bad inputs (:class:`~common.errors.InputError`,
:class:`~common.errors.MediaError`), config and asset errors are not. A clip that fails
for good is listed in the errors file (``<cache>/errors-<config>.json``) and in the
``build-features-failed`` table artifact, and does not stop the others. The
``build-features-summary`` artifact counts clips done, cached and failed, the seconds of
video and the time taken.

    prefect deployment run build-features/default -p videos=/abs/folder --watch
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait

from common.errors import AssetError, CheckpointMismatchError, ConfigError, InputError, SenbertError
from flows.runtime import (
    cache_root,
    load_extract,
    md_table,
    publish_markdown,
    publish_table,
    require_file,
    require_folder_with_videos,
    resolve_path,
    results_dir,
    task_runner_from_env,
)
from pipeline.corpora.clips import Corpus
from pipeline.corpora.label_csv import read_mmsa_fet_corpus
from pipeline.corpora.load import load_corpus
from pipeline.features.cache import FeatureCache
from pipeline.features.config import ExtractConfig
from pipeline.features.extract import extract_clip, serving_key
from pipeline.features.pool import BatchItem, BatchReport, default_errors_path, write_errors

_CONFIGS: dict[str, ExtractConfig] = {}


def _config(d: dict[str, Any]) -> ExtractConfig:
    """The ExtractConfig of a task parameter (built once per process)."""
    k = json.dumps(d, sort_keys=True, default=str)
    if k not in _CONFIGS:
        _CONFIGS[k] = ExtractConfig.from_dict(d, source="flow parameter 'config'")
    return _CONFIGS[k]


def feature_task_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Prefect cache key of an extract task: the feature-cache key of the entry that serves it (a
    sparse-vision request with no complete entry yet: the sparse entry's key, so that a request
    that reads vision is never served a sparse record).

    None (no caching) when the file cannot be hashed: the task then runs and reports why.
    """
    try:
        cache = FeatureCache(parameters["cache_dir"])
        key = serving_key(parameters["path"], _config(parameters["config"]), cache, parameters.get("transcript"),
                          bool(parameters.get("sparse_vision")))
    except Exception:  # noqa: BLE001 - a missing or unreadable file: let the task say it
        return None
    record = f"features-{key}"
    if not cache.has(key):  # the feature cache is the source of truth: drop a stale record
        (results_dir(cache.root) / record).unlink(missing_ok=True)
    return record


PERMANENT = (InputError, ConfigError, AssetError, CheckpointMismatchError)


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unexpected errors; a bad file, config or missing asset fails the same way again."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001
        return True
    return not isinstance(exc, PERMANENT)


@task(name="extract-clip", task_run_name="extract {clip_id}", cache_key_fn=feature_task_key,
      persist_result=True, retries=1, retry_delay_seconds=2, retry_condition_fn=worth_retrying)
def extract_clip_task(path: str, config: dict[str, Any], cache_dir: str, transcript: str | None = None,
                      clip_id: str = "", sparse_vision: bool = False) -> dict[str, Any]:
    """Features of one clip into the cache; a small summary (the arrays stay in the cache)."""
    t0 = time.perf_counter()
    e = extract_clip(path, _config(config), FeatureCache(cache_dir), transcript, clip_id or None, sparse_vision)
    return {"path": path, "clip_id": e.clip_id, "key": e.key, "duration": float(e.duration),
            "from_cache": bool(e.from_cache), "face_share": float(e.face_share), "transcript": e.transcript,
            "warnings": list(e.warnings), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- plan and run


@dataclass
class BuildPlan:
    """Validated inputs of a build: the clips, the config and the cache."""

    items: list[BatchItem]
    config: ExtractConfig
    cache: FeatureCache
    source: str
    labelled: list[Any]  # CorpusItems for a label.csv (labels and splits), else []
    sparse_vision: bool = False  # the consumer reads no visual features (extract_clip)


def plan_build(videos: str | None = None, label_csv: str | None = None, raw_dir: str | None = None,
               extract_config: str = "default", overrides: list[str] | None = None,
               cache_dir: str | None = None) -> BuildPlan:
    """Check every parameter before any work; raise a SenbertError that says what to fix."""
    if bool(videos) == bool(label_csv):
        raise InputError("give exactly one of the parameters 'videos' (a folder of video files) and "
                         "'label_csv' (an MMSA-FET label.csv with Raw/<video_id>/<clip_id>.<ext> videos)")
    config = load_extract(extract_config, overrides)
    cache = FeatureCache(cache_root(cache_dir))
    if videos:
        folder, paths = require_folder_with_videos(videos)
        return BuildPlan([BatchItem(p, None, p.stem) for p in paths], config, cache, str(folder), [])
    csv_path = require_file(label_csv, "label_csv", "give the path of an MMSA-FET label.csv")
    raw = resolve_path(raw_dir, "raw_dir")
    rows = read_mmsa_fet_corpus(csv_path, raw)
    if not rows:
        raise InputError(f"{csv_path}: no clips listed")
    if not any(r.path.is_file() for r in rows):
        raise InputError(f"{csv_path}: none of its {len(rows)} clips has a video file (looked under "
                         f"{rows[0].path.parent.parent}/<video_id>/<clip_id>.<ext>); give raw_dir")
    return BuildPlan([BatchItem(r.path, r.transcript, r.uid) for r in rows], config, cache, str(csv_path), rows)


def _failure_message(path: str, state: Any) -> str:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as e:  # noqa: BLE001
        exc = e
    if isinstance(exc, SenbertError):
        return str(exc)
    if isinstance(exc, BaseException):
        return f"{path}: unexpected {type(exc).__name__}: {exc}; this is likely a bug, please report it"
    return f"{path}: task ended {state.name}: {state.message or ''}".strip()


def run_build(plan: BuildPlan, allow_all_failed: bool = False) -> dict[str, Any]:
    """Map the extract task over the plan's clips, collect the outcome, publish artifacts."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    cfg = plan.config
    cache = plan.cache
    logger.info("%d clip(s) from %s; extract config %r (%s); cache %s", len(plan.items), plan.source, cfg.name,
                cfg.fingerprint(), cache.root)
    extract = extract_clip_task.with_options(result_storage=results_dir(cache.root))
    cfg_dict = cfg.to_dict()
    futures = [extract.submit(str(it.path), cfg_dict, str(cache.root), it.transcript, it.clip_id,
                              plan.sparse_vision) for it in plan.items]
    wait(futures)
    done = cached = 0
    seconds = 0.0
    clips: list[dict[str, Any]] = []
    failed: list[tuple[BatchItem, str]] = []
    for it, fut in zip(plan.items, futures, strict=True):
        state = fut.state
        if state.is_completed():
            r = fut.result()
            from_cache = state.name == "Cached" or bool(r.get("from_cache"))
            cached += from_cache
            done += not from_cache
            seconds += float(r.get("duration", 0.0))
            clips.append({"path": str(it.path), "clip_id": it.clip_id, "key": r["key"], "error": None,
                          "status": "cached" if from_cache else "done", "duration": r.get("duration"),
                          "face_share": r.get("face_share"), "warnings": r.get("warnings", [])})
        else:
            msg = _failure_message(str(it.path), state)
            logger.warning("failed: %s", msg)
            failed.append((it, msg))
            clips.append({"path": str(it.path), "clip_id": it.clip_id, "key": None, "error": msg,
                          "status": "failed"})
    errors_path = default_errors_path(cache, cfg)
    write_errors(errors_path, cfg, failed, len(plan.items))
    wall = time.perf_counter() - t0
    summary = {
        "source": plan.source, "config": cfg.name, "fingerprint": cfg.fingerprint(), "cache": str(cache.root),
        "clips": len(plan.items), "done": done, "cached": cached, "failed": len(failed),
        "seconds_of_video": round(seconds, 3), "wall_seconds": round(wall, 3), "errors_file": str(errors_path),
        "items": clips,
    }
    counts = {k: summary[k] for k in ("clips", "done", "cached", "failed", "seconds_of_video", "wall_seconds")}
    publish_markdown(
        "build-features-summary",
        "# build-features\n\n" + md_table([counts], list(counts)) + "\n\n"
        f"- source: `{plan.source}`\n- extract config: `{cfg.name}` (fingerprint `{cfg.fingerprint()}`)\n"
        f"- feature cache: `{cache.root}`\n- errors file: `{errors_path}`\n",
        "Clips done (newly extracted), cached, failed; seconds of video; time taken",
    )
    publish_table("build-features-failed",
                  [{"path": str(it.path), "message": m} for it, m in failed] or [{"path": "(none)", "message": ""}],
                  f"Clips that failed ({len(failed)}); also in {errors_path}")
    logger.info("%d done, %d cached, %d failed; %.1f s of video in %.1f s; errors file %s",
                done, cached, len(failed), seconds, wall, errors_path)
    if failed and len(failed) == len(plan.items) and not allow_all_failed:
        first = "; ".join(m for _, m in failed[:3])
        raise InputError(f"no clip could be extracted ({len(failed)} failed, see {errors_path}): {first}")
    return summary


@flow(name="build-features", task_runner=task_runner_from_env(), persist_result=False,
      description="Videos (a folder, or an MMSA-FET label.csv) -> cached visual, acoustic and text features.")
def build_features(videos: str | None = None, label_csv: str | None = None, raw_dir: str | None = None,
                   extract_config: str = "default", overrides: list[str] | None = None,
                   cache_dir: str | None = None, allow_all_failed: bool = False,
                   sparse_vision: bool = False) -> dict[str, Any]:
    """Extract and cache the features of every clip.

    Args:
        videos: folder of video files (searched recursively), or one video file.
        label_csv: instead of ``videos``: an MMSA-FET label.csv (transcripts given, no ASR).
        raw_dir: the folder holding ``Raw/`` when it is not next to ``label_csv``.
        extract_config: extractor config name under configs/extract/ or a YAML path.
        overrides: ``section.key=value`` overrides of the extract config, e.g. ``["visual.fps=5"]``.
        cache_dir: feature cache folder (default: $SENBERT_CACHE or $SENBERT_HOME/features).
        allow_all_failed: end Completed even when no clip could be extracted.
        sparse_vision: the features are for a model that reads no vision (the score flow with a
            text-only model): the face landmarker runs at 1 frame a second, for the report's face
            share; a later build without it runs only the visual stage at the config's rate.
    """
    plan = plan_build(videos, label_csv, raw_dir, extract_config, overrides, cache_dir)
    plan.sparse_vision = sparse_vision
    return run_build(plan, allow_all_failed=allow_all_failed)



# --------------------------------------------------------------------------- corpora for train / evaluate


def has_videos(data: Path, raw_dir: str | None) -> bool:
    """Whether a label.csv corpus comes with videos (``raw_dir`` or a ``Raw/`` folder next to it)."""
    return data.suffix.lower() == ".csv" and (bool(raw_dir) or (data.parent / "Raw").is_dir())


def check_data(data: str | None) -> Path:
    p = require_file(data, "data", "give an MMSA feature pickle (.pkl) or an MMSA-FET label.csv")
    if p.suffix.lower() not in (".csv", ".pkl", ".pickle"):
        raise InputError(f"parameter data={data!r}: expected a .pkl (MMSA features) or a label.csv, got {p.name}")
    return p


def open_corpus(data: Path, raw_dir: str | None, extract_config: str, overrides: list[str] | None,
                cache_dir: str | None) -> Corpus:
    """The labelled corpus of ``data`` (:func:`pipeline.corpora.load.load_corpus`); for a label.csv with
    videos (``Raw/`` next to it, or ``raw_dir``) the build-features subflow extracts the features."""
    raw = resolve_path(raw_dir, "raw_dir")
    if raw is None and has_videos(data, None):
        raw = data.parent
    if data.suffix.lower() != ".csv":
        raw = None

    def in_subflow(items: Any, cfg: ExtractConfig, cache: FeatureCache) -> BatchReport:
        built = build_features(label_csv=str(data), raw_dir=str(raw), extract_config=extract_config,
                               overrides=overrides, cache_dir=str(cache.root))
        return BatchReport(keys=[c["key"] for c in built["items"]], errors_path=built["errors_file"],
                           failed=[(c["path"], c["error"]) for c in built["items"] if c["key"] is None])

    return load_corpus(data, raw, cache_dir=cache_root(cache_dir), extract_config=extract_config,
                       overrides=overrides or [], run_batch=in_subflow)
