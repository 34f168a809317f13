"""``score``: batch scoring of a folder of videos with a checkpoint.

Builds the missing features (the ``build-features`` flow, as a subflow: cached clips cost
nothing), then :func:`pipeline.scoring.score_features` writes ``scores.csv`` and
``scores.jsonl`` (one row per clip: path, multimodal score in [-3, 3], polarity, 7-class
label, language-only and sense-only scores, transcript, share of frames with a face,
warnings) into ``out``. Clips already scored there with the same checkpoint and features are
not scored again. Artifacts: ``score-table`` (the rows) and ``score-summary``.

    prefect deployment run score/default -p videos=/abs/folder -p checkpoint=/abs/run/checkpoint \
        -p out=/abs/scores --watch
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from common.errors import InputError
from flows.build_features import build_features
from flows.runtime import (
    cache_root,
    check_device,
    load_extract,
    md_table,
    publish_markdown,
    publish_table,
    require_folder_with_videos,
    resolve_path,
    task_runner_from_env,
)
from pipeline.cache import FeatureCache
from pipeline.predict import Predictor, resolve_model_path
from pipeline.scoring import ClipFeatures, score_features


@task(name="score-clips", cache_policy=NO_CACHE)
def score_task(items: list[dict[str, Any]], checkpoint: str, cache_dir: str, out_dir: str,
               device: str = "cpu") -> dict[str, Any]:
    """Load the checkpoint once and score every clip with features; write the output files."""
    predictor = Predictor.load(checkpoint, device=device)
    clips = [ClipFeatures(c["path"], c.get("key"), c.get("error"), c.get("clip_id", "")) for c in items]
    report = score_features(clips, predictor, FeatureCache(cache_dir), out_dir)
    return {**report.to_dict(), "rows": report.rows, "table": report.table()}


def default_out(folder: Path) -> Path:
    return Path.cwd() / "runs" / "scores" / folder.name


@flow(name="score", task_runner=task_runner_from_env(), persist_result=False,
      description="Score a folder of videos with a checkpoint: scores.csv and scores.jsonl, one row per clip.")
def score(videos: str, checkpoint: str = "default", out: str | None = None, extract_config: str = "default",
          overrides: list[str] | None = None, cache_dir: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Score every video of a folder.

    Args:
        videos: folder of video files (searched recursively), or one video file.
        checkpoint: a checkpoint folder, the run folder holding ``checkpoint/``, a packed model, or
            ``default`` (the default): the shipped default model (text only).
        out: output folder for scores.csv / scores.jsonl (default: runs/scores/<folder name>
            under the serving process's working directory).
        extract_config: extractor config (must match what the checkpoint was trained on).
        overrides: ``section.key=value`` overrides of the extract config.
        cache_dir: feature cache folder (default: $SENBERT_CACHE or $SENBERT_HOME/features).
        device: where the model runs: cpu, or cuda on a GPU worker (extraction stays on the CPU).
    """
    logger = get_run_logger()
    folder, _ = require_folder_with_videos(videos)
    ckpt = resolve_model_path(checkpoint)
    device = check_device(device)
    load_extract(extract_config, overrides)
    out_dir = resolve_path(out, "out") or default_out(folder)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"parameter out={out!r}: {out_dir} is a file; give a folder")
    cache = cache_root(cache_dir)
    built = build_features(videos=str(resolve_path(videos, "videos")),
                           extract_config=extract_config, overrides=overrides, cache_dir=str(cache),
                           allow_all_failed=True)
    result = score_task(built["items"], str(ckpt), str(cache), str(out_dir), device)
    rows = result.pop("rows")
    cols = ["clip_id", "score", "polarity", "class7_name", "score_language", "score_sense", "face_share",
            "transcript", "status", "error"]
    publish_table("score-table", [{c: r.get(c) for c in cols} for r in rows],
                  f"Scores of {len(rows)} clip(s) from {folder} with {ckpt}")
    counts = {"clips": len(rows), "scored": result["scored"], "reused": result["reused"],
              "failed": len(result["failed"]), "features_done": built["done"], "features_cached": built["cached"]}
    publish_markdown("score-summary", "# score\n\n" + md_table([counts], list(counts)) + "\n\n"
                     f"- checkpoint: `{ckpt}` ({result['model_variant']}, fingerprint "
                     f"`{result['checkpoint_fingerprint']}`)\n- CSV: `{result['csv']}`\n- JSONL: `{result['jsonl']}`\n"
                     f"- errors: `{result['errors']}`\n", "Clips scored, reused and failed; output files")
    logger.info("scores of %d clip(s):\n%s", len(rows), result.pop("table"))
    if rows and all(r["status"] != "ok" for r in rows):
        first = "; ".join(r["error"] or "" for r in rows[:3])
        raise InputError(f"no clip could be scored ({len(rows)} failed, see {result['errors']}): {first}")
    return result
