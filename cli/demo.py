"""``senbert demo``: the whole project in one command, on data shipped in the repo.

1. Takes the shipped default model (``pipeline/default_model/``, its SHA-256 checked: a
   text-only sentiment model trained on the CMU-MOSI and CMU-MOSEI transcripts; see its
   MODEL_CARD.md). With ``--train-sample`` it instead trains a *language-only* model (the quick
   config, 3 epochs) on ``examples/sample_corpus/sentences.csv``, a small template corpus written
   for this project (see ``make_sentences.py``), unless ``<out>/text_model/checkpoint`` exists.
2. Brings up the local Prefect stack (``flows/stack.py``: a server on 127.0.0.1 with its
   SQLite database under ``<out>/prefect`` and one serving process), runs
   ``prefect deployment run build-features/default`` and ``score/default`` through the
   Prefect CLI on ``examples/videos/`` (three GRID clips, CC BY 4.0), prints the scores
   table and shuts the stack down. With ``--no-stack`` the same pipeline runs directly.

Both models read the transcript only (no multimodal training data ships with the project).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = ROOT / "examples" / "sample_corpus" / "sentences.csv"
SAMPLE_VIDEOS = ROOT / "examples" / "videos"

CAVEAT = ("NOTE: the default model reads the transcript only (not the face or the voice); it was trained on the "
          "CMU-MOSI and CMU-MOSEI transcripts (English spoken opinions, research use; see "
          "pipeline/default_model/MODEL_CARD.md). The GRID sample clips are neutral spoken commands "
          "('bin blue at f two now'), so scores near 0 are the expected answer.")
SAMPLE_CAVEAT = ("NOTE: this checkpoint is a language-only model trained for 3 epochs on a small template corpus "
                 "written for this project (examples/sample_corpus). Its scores demonstrate the pipeline end to end; "
                 "it is not a sentiment model of real videos.")


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="the embedded example: score the sample videos with the default model")
    p.add_argument("--out", default="runs/demo", help="where the demo writes (default: runs/demo)")
    p.add_argument("--no-stack", action="store_true", help="run the pipeline directly, without Prefect")
    p.add_argument("--train-sample", action="store_true",
                   help="train a small model on the shipped template sentences and score with it instead")
    p.set_defaults(func=run_demo)


def _say(msg: str) -> None:
    print(msg, flush=True)


def train_text_model(out: Path) -> Path:
    """The demo's language-only checkpoint under ``out/text_model`` (trained when missing)."""
    from pipeline.corpora.load import load_corpus
    from pipeline.models.checkpoint import META_FILE, WEIGHTS_FILE
    from pipeline.training.config import load_config
    from pipeline.training.trainer import state_path, train

    run = out / "text_model"
    ckpt = run / "checkpoint"
    if (ckpt / WEIGHTS_FILE).is_file() and (ckpt / META_FILE).is_file() and (run / "result.json").is_file():
        _say(f"[1/3] language-only checkpoint found: {ckpt} (delete {run} to train it again)")
        return ckpt
    corpus = load_corpus(SAMPLE_CORPUS)
    cfg = load_config("quick", ablation="language_only", overrides={"epochs": 3})
    _say(f"[1/3] training a language-only model ({cfg.name}, encoder {cfg.model.encoder}, {cfg.epochs} epochs) on "
         f"{SAMPLE_CORPUS.relative_to(ROOT)} {corpus.split_sizes()} ...")
    t0 = time.perf_counter()
    res = train(corpus, cfg, run, resume=state_path(run).exists(), progress=False)
    _say(f"      done in {time.perf_counter() - t0:.0f} s; checkpoint {res.checkpoint}")
    if res.test:
        keys = ("mae", "corr", "acc7", "acc2_non0", "f1_non0")
        _say("      test split of the template corpus: " + "  ".join(f"{k} {res.test[k]:.3f}" for k in keys))
    return res.checkpoint


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().split("\n")[-n:])


def default_model() -> Path:
    from pipeline.models.packed import default_model_dir, read_manifest

    folder = default_model_dir()  # verifies every file's SHA-256
    _say(f"[1/3] default model {read_manifest(folder).get('name')}: {folder} (SHA-256 verified)")
    return folder


def score_with_stack(out: Path, ckpt: Path) -> tuple[int, Path]:
    from flows.stack import LocalStack

    home = out / "prefect"
    cache = (out / "features").resolve()
    scores = (out / "scores").resolve()
    stack = LocalStack(home=home, ui=False, serve_log=home / "serve.log")
    _say(f"[2/3] starting the local Prefect stack (server on 127.0.0.1, SQLite under {stack.home}) ...")
    t0 = time.perf_counter()
    with stack:
        _say(f"      up in {time.perf_counter() - t0:.0f} s: {stack.url}; serving log {stack.serve_log}")
        runs: list[tuple[str, dict[str, Any]]] = [
            ("build-features", {"videos": str(SAMPLE_VIDEOS), "cache_dir": str(cache)}),
            ("score", {"videos": str(SAMPLE_VIDEOS), "checkpoint": str(ckpt.resolve()), "out": str(scores),
                       "cache_dir": str(cache)}),
        ]
        for flow, params in runs:
            _say(f"      $ PREFECT_API_URL={stack.api_url} {stack.shown_command(flow, params)}")
            t1 = time.perf_counter()
            r = stack.run_deployment(flow, params)
            if r.returncode != 0:
                _say(f"      {flow} failed (exit {r.returncode}):\n{_tail(r.stdout + r.stderr)}\n"
                     f"      the flow run's log is in {stack.serve_log}")
                return 1, scores
            _say(f"      {flow}/{stack.name}: Completed in {time.perf_counter() - t1:.1f} s")
    _say("      stack stopped")
    return 0, scores


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.scoring.score import format_scores_table, read_scores

    out = Path(getattr(args, "out", None) or "runs/demo")
    out.mkdir(parents=True, exist_ok=True)
    sample = getattr(args, "train_sample", False)
    ckpt = train_text_model(out) if sample else default_model()
    if getattr(args, "no_stack", False):
        from pipeline.corpora.inputs import list_videos
        from pipeline.scoring.api import Scorer

        _say(f"[2/3] scoring {SAMPLE_VIDEOS.relative_to(ROOT)} directly (no Prefect) ...")
        result = Scorer.load(ckpt, cache_dir=out / "features").score(list_videos(SAMPLE_VIDEOS), out=out / "scores")
        rc, scores = (1 if result.failed else 0), Path(result.report.out_dir)
    else:
        rc, scores = score_with_stack(out, ckpt)
    rows = read_scores(scores)
    if rows:
        _say(f"[3/3] scores of {SAMPLE_VIDEOS.relative_to(ROOT)} ({scores / 'scores.csv'}):\n")
        _say(format_scores_table(rows, max_transcript=60))
        _say("")
        if (scores / "report" / "index.html").is_file():
            _say(f"      per-utterance rows: {scores / 'utterances.csv'}; report: {scores / 'report' / 'index.html'}\n")
    _say(SAMPLE_CAVEAT if sample else CAVEAT)
    return rc
