"""``evaluate``: the field's metrics of a checkpoint on a labelled corpus (an artifact).

    prefect deployment run evaluate/default -p checkpoint=/abs/run/checkpoint \
        -p data=/abs/corpus/label.csv -p split=test --watch
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from common.errors import InputError
from flows.build_features import check_data, open_corpus
from flows.runtime import (
    check_checkpoint_fits,
    check_device,
    md_table,
    publish_markdown,
    publish_table,
    task_runner_from_env,
)
from pipeline.corpora.clips import SPLITS
from pipeline.models.metrics import METRIC_NAMES
from pipeline.models.predictor import Predictor, resolve_model_path


@task(name="evaluate-checkpoint", cache_policy=NO_CACHE)
def evaluate_task(checkpoint: str, corpus: Any, split: str, device: str = "cpu") -> dict[str, float]:
    return Predictor.load(checkpoint, device=device).evaluate(corpus, split=split)


@flow(name="evaluate", task_runner=task_runner_from_env(), persist_result=False,
      description="The field's metrics (MAE, Corr, Acc-7, Acc-2, F1) of a checkpoint on a labelled corpus split.")
def evaluate_flow(data: str, checkpoint: str = "default", split: str = "test", raw_dir: str | None = None,
                  extract_config: str = "default", overrides: list[str] | None = None,
                  cache_dir: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a checkpoint.

    Args:
        checkpoint: a checkpoint folder, the run folder holding ``checkpoint/``, a packed model, or
            ``default`` (the default): the shipped default model (text only).
        data: MMSA feature pickle (.pkl) or MMSA-FET label.csv (with videos: features built first).
        split: train, valid or test.
        raw_dir, extract_config, overrides, cache_dir: feature extraction, as build-features.
        device: cpu, or cuda on a GPU worker.
    """
    logger = get_run_logger()
    ckpt = resolve_model_path(checkpoint)
    device = check_device(device)
    data_path = check_data(data)
    if split not in SPLITS:
        raise InputError(f"parameter split={split!r}: choose one of {list(SPLITS)}")
    check_checkpoint_fits(ckpt, extract_config, overrides)
    corpus = open_corpus(data_path, raw_dir, extract_config, overrides, cache_dir)
    m = evaluate_task(str(ckpt), corpus, split, device)
    row = {"split": split, "n": int(m.get("n", 0)), **{k: m.get(k) for k in METRIC_NAMES}}
    publish_table("evaluate-metrics", [row], f"{ckpt} on {data_path} ({split}, {row['n']} clips)")
    publish_markdown("evaluate-summary", f"# evaluate\n\n{md_table([row], list(row))}\n\n- checkpoint: `{ckpt}`\n"
                     f"- data: `{data_path}`\n", "Metrics of the checkpoint on the split")
    logger.info("%s (%d clips): %s", split, row["n"], "  ".join(f"{k} {m[k]:.4f}" for k in METRIC_NAMES if k in m))
    return {"checkpoint": str(ckpt), "data": str(data_path), "split": split, "metrics": m}
