"""``score``: batch scoring of a folder of video and audio files with a checkpoint.

Builds the missing features (the ``build-features`` flow, as a subflow: cached files cost
nothing), then the :class:`~pipeline.scoring.api.Scorer` cuts long files into utterances and
writes into ``out``: ``scores.csv`` / ``scores.jsonl`` (one row per file: path, multimodal
score in [-3, 3] (the duration-weighted mean of its utterances), polarity, 7-class label,
language-only and sense-only scores, transcript, share of frames with a face, the modalities
used, the most negative and most positive utterances, shares of positive / negative / neutral
speech, warnings), ``utterances.csv`` / ``utterances.jsonl`` (one row per utterance), the HTML
reports (``report/index.html``) and PNG timelines (``plots/``). Files already scored there with
the same checkpoint, features and utterance settings are not scored again. Files of the folder
that are not media are listed as skipped. Artifacts: ``score-table`` (the files' summary),
``score-summary`` and ``score-report`` (a link to the report's index).

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
    check_checkpoint_fits,
    check_device,
    md_table,
    publish_link,
    publish_markdown,
    publish_table,
    require_folder_with_videos,
    resolve_path,
    task_runner_from_env,
)
from pipeline.models.precision import PRECISIONS
from pipeline.models.predictor import Predictor, modalities_of, model_meta, resolve_model_path
from pipeline.scoring.api import Scorer
from pipeline.scoring.score import ClipFeatures
from pipeline.scoring.utterances import UtteranceSettings


@task(name="score-clips", cache_policy=NO_CACHE)
def score_task(items: list[dict[str, Any]], checkpoint: str, cache_dir: str, out_dir: str,
               device: str = "cpu", utterances: dict[str, float] | None = None,
               skipped: list[tuple[str, str]] | None = None, report: bool = True, extract_config: str = "default",
               overrides: list[str] | None = None, precision: str = "auto") -> dict[str, Any]:
    """Load the checkpoint once and score every file with features; write the output files."""
    predictor = Predictor.load(checkpoint, device=device, precision=precision)
    scorer = Scorer(predictor, extract_config, overrides or (), cache_dir, utterances)
    clips = [ClipFeatures(c["path"], c.get("key"), c.get("error"), clip_id=c.get("clip_id", "")) for c in items]
    clips += [ClipFeatures(p, None, reason, skipped=True) for p, reason in skipped or []]
    rep = scorer.score_features(clips, out=out_dir, report=report).report
    return {**rep.to_dict(), "rows": rep.rows, "table": rep.table(),
            "utterance_count": sum(1 for u in rep.utterances if u["status"] == "ok")}


def default_out(videos: Path) -> Path:
    """``runs/scores/<folder name>``, or ``<file name without extension>`` for one file (as
    ``senbert score``): two files of one folder scored one by one do not overwrite each other."""
    return Path.cwd() / "runs" / "scores" / (videos.name if videos.is_dir() else videos.stem)


@flow(name="score", task_runner=task_runner_from_env(), persist_result=False,
      description="Score a folder of video and audio files with a checkpoint: a row per file and per "
                  "utterance, and an HTML report.")
def score(videos: str, checkpoint: str = "default", out: str | None = None, extract_config: str = "default",
          overrides: list[str] | None = None, cache_dir: str | None = None, device: str = "cpu",
          utterances: dict[str, float] | None = None, report: bool = True, precision: str = "auto") -> dict[str, Any]:
    """Score every video and audio file of a folder.

    Args:
        videos: folder of video and audio files (searched recursively), or one file.
        checkpoint: a checkpoint folder, the run folder holding ``checkpoint/``, a packed model, or
            ``default`` (the default): the shipped default model (text only).
        out: output folder for scores.csv / scores.jsonl (default: runs/scores/<folder name>
            under the serving process's working directory).
        extract_config: extractor config (must match what the checkpoint was trained on).
        overrides: ``section.key=value`` overrides of the extract config.
        cache_dir: feature cache folder (default: $SENBERT_CACHE or $SENBERT_HOME/features).
        device: where the model runs: cpu, or cuda on a GPU worker (extraction stays on the CPU).
        utterances: how files longer than ``max_s`` seconds are cut (``max_s``, ``pause_s``,
            ``sentence_pause_s``, ``min_s``, ``keep_pause_s``, ``pad_s``, ``silence_db``; docs/utterances.md).
        report: write the HTML report and the PNG timelines.
        precision: what the model computes in: auto (bf16 where the worker's hardware has native
            bf16, else fp32), fp32 or bf16 (docs/scoring.md#precision).
    """
    logger = get_run_logger()
    settings = UtteranceSettings.from_dict(utterances)  # a bad setting fails before any extraction
    skipped: list[tuple[Path, str]] = []
    folder, _ = require_folder_with_videos(videos, skipped=skipped)
    ckpt = resolve_model_path(checkpoint)
    device = check_device(device)
    if precision not in PRECISIONS:  # refused before any extraction
        raise InputError(f"parameter precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    check_checkpoint_fits(ckpt, extract_config, overrides)
    out_dir = resolve_path(out, "out") or default_out(resolve_path(videos, "videos"))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"parameter out={out!r}: {out_dir} is a file; give a folder")
    cache = cache_root(cache_dir)
    built = build_features(videos=str(resolve_path(videos, "videos")),
                           extract_config=extract_config, overrides=overrides, cache_dir=str(cache),
                           allow_all_failed=True, sparse_vision="vision" not in modalities_of(model_meta(ckpt)))
    result = score_task(built["items"], str(ckpt), str(cache), str(out_dir), device, settings.to_dict(),
                        [(str(p), reason) for p, reason in skipped], report, extract_config, overrides,
                        precision)
    rows = result.pop("rows")
    cols = ["clip_id", "status", "score", "polarity", "class7_name", "score_language", "score_sense", "duration",
            "n_utterances", "share_positive", "share_negative", "share_neutral", "most_negative_score",
            "most_negative_start", "most_positive_score", "most_positive_start", "modalities", "face_share",
            "error"]
    publish_table("score-table", [{c: r.get(c) for c in cols} for r in rows],
                  f"Summary of {len(rows)} file(s) from {folder} with {ckpt}")
    counts = {"files": len(rows), "scored": result["scored"], "reused": result["reused"],
              "failed": len(result["failed"]), "skipped": len(result["skipped"]),
              "utterances": result.pop("utterance_count"), "features_done": built["done"],
              "features_cached": built["cached"]}
    publish_markdown("score-summary", "# score\n\n" + md_table([counts], list(counts)) + "\n\n"
                     f"- model: {result['model']} ({result['modalities']}), `{ckpt}` ({result['model_variant']}, "
                     f"fingerprint `{result['checkpoint_fingerprint']}`)\n- utterances: {result['segmentation']}\n"
                     f"- CSV: `{result['csv']}`, utterances: `{result['utterances_csv']}`\n"
                     f"- JSONL: `{result['jsonl']}`\n"
                     f"- report: `{result['report']}`\n- errors: `{result['errors']}`\n",
                     "Files scored, reused, failed and skipped; output files")
    if result["report"]:
        publish_link("score-report", Path(result["report"]).as_uri(), "report/index.html",
                     f"HTML report of {len(rows)} file(s) (open in a browser on the machine that ran the flow)")
    logger.info("scores of %d file(s):\n%s", len(rows), result.pop("table"))
    media = [r for r in rows if r["status"] != "skipped"]
    if media and all(r["status"] != "ok" for r in media):
        first = "; ".join(r["error"] or "" for r in media[:3])
        raise InputError(f"no file could be scored ({len(media)} failed, see {result['errors']}): {first}")
    return result
