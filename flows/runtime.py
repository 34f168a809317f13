"""What the flows share: the task runner setting, parameter checks, artifacts.

The task runner is a setting, read when the flow modules are imported (so a serving process
and every flow-run process it starts agree on it):

    SENBERT_TASK_RUNNER=threads            # default: a thread pool, one thread per core
    SENBERT_TASK_RUNNER=threads:4          # a thread pool of 4
    SENBERT_TASK_RUNNER=processes:2        # a process pool (each process loads the models once)
    SENBERT_TASK_RUNNER=dask               # a local Dask cluster (pip install prefect-dask==0.3.7)
    SENBERT_TASK_RUNNER=dask://host:8786   # an existing Dask cluster (scheduler address)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import ConfigError, InputError
from common.process import usable_cores
from pipeline.corpora.inputs import collect_inputs
from pipeline.features.config import ExtractConfig, load_extract_config
from pipeline.features.pool import default_cache_dir

TASK_RUNNER_ENV = "SENBERT_TASK_RUNNER"
RESULTS_FOLDER = "prefect-results"  # Prefect's task records, inside the feature cache


def make_task_runner(spec: str | None = None) -> Any:
    """A Prefect task runner from a setting string (see the module docstring)."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    spec = (spec if spec is not None else os.environ.get(TASK_RUNNER_ENV, "")).strip() or "threads"
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if kind in ("threads", "processes"):
        try:
            n = int(arg) if arg else usable_cores()
            if n < 1:
                raise ValueError
        except ValueError:
            raise ConfigError(f"task runner {spec!r}: the number after ':' must be a positive integer "
                              f"(e.g. {kind}:2)") from None
        return ThreadPoolTaskRunner(max_workers=n) if kind == "threads" else ProcessPoolTaskRunner(max_workers=n)
    if kind in ("dask", "tcp", "tls"):
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError(f"task runner {spec!r} needs prefect-dask: pip install prefect-dask==0.3.7 "
                              "(or pip install -e '.[dask]')") from None
        if kind == "dask" and not arg:
            return DaskTaskRunner()  # a LocalCluster for the flow run
        address = spec if kind in ("tcp", "tls") else "tcp://" + arg.removeprefix("//")
        return DaskTaskRunner(address=address)
    raise ConfigError(f"unknown task runner {spec!r}; use threads[:N], processes[:N], dask or dask://host:port")


def task_runner_from_env() -> Any:
    """The task runner named by $SENBERT_TASK_RUNNER; a thread pool when it is unset or invalid."""
    try:
        return make_task_runner()
    except ConfigError as e:  # importing a flow module must not fail; say it in the log instead
        import logging

        logging.getLogger(__name__).error("%s; using threads", e)
        return make_task_runner("threads")


def resolve_path(value: str | os.PathLike[str] | None, what: str) -> Path | None:
    """An absolute path (relative ones are taken from the flow run's working directory)."""
    if value is None or str(value).strip() == "":
        return None
    return Path(str(value)).expanduser().resolve()


def require_folder_with_videos(value: str | None, what: str = "videos",
                               skipped: list[tuple[Path, str]] | None = None) -> tuple[Path, list[Path]]:
    """The folder (or the one media file) named by a flow parameter and its video and audio
    files; with ``skipped``, the other files of the folder (not media) with the reason."""
    folder = resolve_path(value, what)
    if folder is None:
        raise InputError(f"parameter {what!r} is required: the folder of video files")
    if folder.is_file():
        return folder.parent, [folder]
    if not folder.is_dir():
        raise InputError(f"parameter {what}={value!r}: folder not found ({folder}); give an absolute path or "
                         "one relative to the folder the serving process was started in")
    try:
        videos = [Path(v) for v in collect_inputs([folder], corpora=False, missing_ok=False, skipped=skipped)]
    except InputError as e:
        raise InputError(f"parameter {what}={value!r}: {e}") from None
    return folder, videos


def require_file(value: str | None, what: str, hint: str) -> Path:
    p = resolve_path(value, what)
    if p is None:
        raise InputError(f"parameter {what!r} is required: {hint}")
    if not p.is_file():
        raise InputError(f"parameter {what}={value!r}: file not found ({p}); {hint}")
    return p


def load_extract(name: str, overrides: Sequence[str] | None) -> ExtractConfig:
    if isinstance(overrides, str):
        overrides = [overrides]
    return load_extract_config(name or "default", overrides=list(overrides or []))


def check_checkpoint_fits(checkpoint: Path, extract_config: str, overrides: Sequence[str] | None) -> None:
    """Before any extraction: refuse a checkpoint whose sense block was trained on other frame
    rates than the extract config gives (read from the checkpoint's description only)."""
    from pipeline.features.cache import config_feature_info
    from pipeline.models.checkpoint import check_extract_config
    from pipeline.models.predictor import model_meta

    info = config_feature_info(load_extract(extract_config, overrides))
    check_extract_config(model_meta(checkpoint), info, checkpoint)


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, available on this worker."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return d
    if not (d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit())):
        raise ConfigError(f"parameter device={device!r}: use cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"parameter device={device!r}: this worker has no CUDA GPU (torch {torch.__version__}); "
                          "use device=cpu or run the flow on a GPU worker (docker/README.md)")
    return d


def cache_root(cache_dir: str | None) -> Path:
    return resolve_path(cache_dir, "cache_dir") or default_cache_dir()


def results_dir(cache: str | os.PathLike[str]) -> Path:
    """Where Prefect keeps the task records of a feature cache (deleted with the cache)."""
    return Path(cache) / RESULTS_FOLDER


# --------------------------------------------------------------------------- artifacts


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            v = f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes)."""
    import re

    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100] or "senbert"


def publish_markdown(key: str, markdown: str, description: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=artifact_key(key), description=description)


def publish_link(key: str, link: str, link_text: str, description: str) -> None:
    from prefect.artifacts import create_link_artifact

    create_link_artifact(link=link, link_text=link_text, key=artifact_key(key), description=description)


def publish_table(key: str, rows: Sequence[dict[str, Any]], description: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=[dict(r) for r in rows], key=artifact_key(key), description=description)
