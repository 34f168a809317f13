"""``train``: retraining on a (new) corpus with a named config.

Builds the features that are missing (the ``build-features`` subflow, for a label.csv with
videos), trains with :func:`pipeline.training.trainer.train`, saves the checkpoint under ``out`` and
publishes the metrics (``train-metrics`` table) and the plots (``train-plots``, the loss
curves and the valid predictions against the labels) as artifacts.

    prefect deployment run train/default -p data=/abs/corpus/label.csv -p config=quick \
        -p out=/abs/runs/retrain --watch
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from common.errors import ConfigError
from flows.build_features import check_data, open_corpus
from flows.runtime import (
    check_device,
    load_extract,
    md_table,
    publish_markdown,
    publish_table,
    resolve_path,
    task_runner_from_env,
)
from pipeline.models.metrics import METRIC_NAMES


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(corpus: Any, cfg: Any, out_dir: str, resume: bool = False, device: str = "cpu") -> dict[str, Any]:
    from pipeline.training.trainer import train

    res = train(corpus, cfg, out_dir, resume=resume, progress=False, device=device)
    return {"out": str(res.out_dir), "checkpoint": str(res.checkpoint), "best_epoch": res.best_epoch,
            "valid": res.valid, "test": res.test, "seconds_per_epoch": res.seconds_per_epoch}


def metrics_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for split in ("valid", "test"):
        m = result.get(split)
        if m:
            rows.append({"split": split, **{k: m.get(k) for k in METRIC_NAMES}})
    return rows


def plots_markdown(out: Path) -> str:
    """The run's plots, embedded (the UI shows them without access to the run folder)."""
    parts = []
    for name, title in (("loss.png", "Losses per epoch"), ("pred_vs_true.png", "Valid: predicted vs true")):
        p = out / "plots" / name
        if p.is_file():
            data = base64.b64encode(p.read_bytes()).decode()
            parts.append(f"## {title}\n\n![{name}](data:image/png;base64,{data})\n\n`{p}`\n")
    return "\n".join(parts) or "(no plots were written)"


@flow(name="train", task_runner=task_runner_from_env(), persist_result=False,
      description="Retrain on a corpus with a named config: builds missing features, trains, saves the checkpoint.")
def train_flow(data: str, config: str = "quick", ablation: str | None = None, overrides: dict[str, Any] | None = None,
               out: str | None = None, raw_dir: str | None = None, extract_config: str = "default",
               extract_overrides: list[str] | None = None, cache_dir: str | None = None, seed: int | None = None,
               resume: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Train a model.

    Args:
        data: MMSA feature pickle (.pkl) or MMSA-FET label.csv (with videos under Raw/ or raw_dir:
            features are extracted and cached; without: a text-only corpus, language_only models).
        config: config name under configs/ (quick, default, paper) or a YAML path.
        ablation: Table II ablation (full, language_only, sense_only, ...).
        overrides: config values, e.g. {"epochs": 3, "model.d_model": 32}.
        out: run folder (default: runs/train/<config>-<UTC time> under the working directory).
        raw_dir, extract_config, extract_overrides, cache_dir: feature extraction, as build-features.
        seed: random seed. resume: continue an unfinished run in ``out``.
        device: cpu, or cuda on a GPU worker.
    """
    from pipeline.training.config import load_config
    from pipeline.training.trainer import check_run

    logger = get_run_logger()
    data_path = check_data(data)
    device = check_device(device)
    cfg = load_config(config or "quick", ablation=ablation, overrides=dict(overrides or {}))
    if seed is not None:
        cfg.seed = int(seed)
    load_extract(extract_config, extract_overrides)
    out_dir = resolve_path(out, "out") or (
        Path.cwd() / "runs" / "train" / f"{cfg.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    try:  # before any feature is built: the run folder fits `resume`, the extra corpora exist
        check_run(cfg, out_dir, resume)
    except ConfigError as e:
        raise ConfigError(f"parameter out={out!r}: {e}") from None
    corpus = open_corpus(data_path, raw_dir, extract_config, extract_overrides, cache_dir)
    logger.info("corpus %s: %s; config %s (%s, encoder %s)", corpus.source, corpus.split_sizes(), cfg.name,
                cfg.model.variant, cfg.model.encoder)
    result = train_task(corpus, cfg, str(out_dir), resume, device)
    rows = metrics_rows(result)
    publish_table("train-metrics", rows, f"{cfg.name} on {data_path.name}: metrics of the chosen checkpoint "
                                         f"(epoch {result['best_epoch']}), {result['checkpoint']}")
    publish_markdown("train-plots", f"# train: {cfg.name}\n\n" + md_table(rows, ["split", *METRIC_NAMES]) + "\n\n"
                     f"checkpoint `{result['checkpoint']}`\n\n" + plots_markdown(out_dir),
                     "Loss curves and valid predictions of the chosen checkpoint")
    return result
