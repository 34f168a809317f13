"""Word error rate and speed of the speech recognition on real read speech (LibriVox, GRID, CMU).

    python bench/bench_asr_wer.py --speech ../shared/data/speech --grid ../shared/data/grid
                                  [--model base --model small] [--threads 2] [--config default]
                                  [--engine faster_whisper|pocketsphinx] [--set asr.min_window_s=30]
                                  [--sweep] [--quiet]

Sets: ``librivox``, the ``sense_and_sensibility_*.wav`` clips with their ``.txt`` references;
``grid``, every clip in ``grid_transcripts.csv``; ``grid-joined``, the same GRID clips' audio
joined into one WAV file with 0.8 s pauses (one longer recording: the VAD and the 30 s windows
cut it, not the clip boundaries); ``cmu``, pocketsphinx's test speech with a known reference
(``goforward.wav``, "go forward ten meters", and ``cards/*.wav`` with ``cards.transcription``).
WER is corpus-level (word edits / reference words) after the normaliser of
:mod:`extractors.wer`; ``pooled`` is LibriVox and GRID clips together (the joined file and the
CMU set are reported, not pooled). RTF is ASR seconds per second of audio (model loading
excluded); ``x rt`` its inverse. ``--model`` names ``asr.model`` (``base``, ``small``, a folder);
give it more than once to compare. ``--sweep`` compares the encoder window floor (10 s vs
Whisper's stock 30 s) and beam sizes (1 vs 5).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOIN_PAUSE_S = 0.8
POOLED = ("librivox", "grid")


@dataclass
class SetResult:
    errors: int = 0
    words: int = 0
    clips: int = 0
    audio_s: float = 0.0
    asr_s: float = 0.0

    def add(self, other: SetResult) -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def line(self, name: str) -> str:
        wer = 100 * self.errors / max(self.words, 1)
        rtf = self.asr_s / max(self.audio_s, 1e-9)
        return (f"{name:<12} WER {wer:5.1f} % ({self.errors:>3}/{self.words:<4} words, {self.clips:>2} files, "
                f"{self.audio_s:6.1f} s audio)  ASR {self.asr_s:6.1f} s  RTF {rtf:.3f}  "
                f"{1 / max(rtf, 1e-9):5.1f}x rt")


def load_sets(speech: Path, grid: Path) -> dict[str, list[tuple[str, Path, str]]]:
    sets: dict[str, list[tuple[str, Path, str]]] = {"librivox": [], "grid": [], "cmu": []}
    for wav in sorted(speech.glob("sense_and_sensibility_*.wav")):
        ref = wav.with_suffix(".txt")
        if ref.is_file():
            sets["librivox"].append((wav.stem, wav, ref.read_text(encoding="utf-8").strip()))
    tr = grid / "grid_transcripts.csv"
    if tr.is_file():
        with open(tr, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                sets["grid"].append((row["grid_code"], grid / row["file"], row["transcript_from_filename"]))
    if (speech / "goforward.wav").is_file():
        sets["cmu"].append(("goforward", speech / "goforward.wav", "go forward ten meters"))
    cards = speech / "cards" / "cards.transcription"
    if cards.is_file():  # "<s> ten of clubs  </s> (001)"
        for line in cards.read_text(encoding="utf-8").splitlines():
            words, _, cid = line.rpartition("(")
            cid = cid.strip(" )")
            if (speech / "cards" / f"{cid}.wav").is_file():
                ref = words.replace("<s>", "").replace("</s>", "").strip()
                sets["cmu"].append((f"cards/{cid}", speech / "cards" / f"{cid}.wav", ref))
    return {k: v for k, v in sets.items() if v}


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def run(config_name: str, overrides: list[str], engine: str, sets: dict, verbose: bool,
        workdir: Path) -> tuple[dict[str, SetResult], float]:
    """Per-set results, and the seconds it took to load the model."""
    from extractors import registry
    from extractors.media import open_media
    from extractors.wer import edit_distance, normalize_words
    from pipeline.features.config import load_extract_config

    cfg = load_extract_config(config_name, overrides=overrides)
    t = time.perf_counter()
    tr = registry.create(engine, cfg.asr)
    if hasattr(tr, "model"):
        tr.model()
    load_s = time.perf_counter() - t
    if verbose and hasattr(tr, "asset"):
        print(f"  model: {tr.asset.location} (model.bin sha256 {tr.asset.sha256[:12]}...)")

    def one(cid: str, path: Path, ref: str) -> tuple[SetResult, np.ndarray]:
        media = open_media(path, cfg.media, need_audio=True, need_video=False)
        t = time.perf_counter()
        result = tr.transcribe(media.audio, media.sample_rate)
        secs = time.perf_counter() - t
        rw, hw = normalize_words(ref), normalize_words(result.text)
        r = SetResult(edit_distance(rw, hw), len(rw), 1, media.audio.size / media.sample_rate, secs)
        if verbose:
            print(f"  {cid:<45} {r.errors / max(r.words, 1):5.2f}  {result.text}")
        return r, media.audio

    out: dict[str, SetResult] = {}
    for name, items in sets.items():
        out[name] = SetResult()
        audio = []
        for cid, path, ref in items:
            r, a = one(cid, path, ref)
            out[name].add(r)
            audio.append(a)
        if name == "grid":  # the same clips as one recording
            pause = np.zeros(int(JOIN_PAUSE_S * cfg.media.sample_rate), np.float32)
            joined = np.concatenate([x for a in audio for x in (a, pause)][:-1])
            path = workdir / "grid_joined.wav"
            write_wav(path, joined, cfg.media.sample_rate)
            out["grid-joined"], _ = one("grid-joined", path, " ".join(ref for _, _, ref in items))
    return out, load_s


def cpu_lines() -> list[str]:
    from pipeline.models.precision import capabilities

    lines = [f"CPU: {capabilities().describe()}"]
    if shutil.which("lscpu"):
        info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        flags = fields.get("Flags", "").split()
        simd = [f for f in flags if f == "avx2" or f.startswith("avx512")]
        lines.append(f"lscpu Model name: {fields.get('Model name', '?').strip()}; "
                     f"{' '.join(simd) or 'no avx2 / avx512'}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, required=True, help="speech clips with transcripts (../shared/data/speech)")
    ap.add_argument("--grid", type=Path, required=True,
                    help="GRID clips with grid_transcripts.csv (../shared/data/grid)")
    ap.add_argument("--config", default="default")
    ap.add_argument("--engine", default="faster_whisper", choices=("faster_whisper", "pocketsphinx"))
    ap.add_argument("--model", action="append", default=[],
                    help="asr.model: base, small or a CTranslate2 folder; repeat to compare (default: the config's)")
    ap.add_argument("--threads", type=int, default=2, help="asr.cpu_threads (default 2; 0: every core)")
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. asr.beam_size=5")
    ap.add_argument("--sweep", action="store_true", help="compare encoder windows and beam sizes")
    ap.add_argument("--quiet", action="store_true", help="no per-clip lines")
    args = ap.parse_args()
    from common.errors import AssetError

    sets = load_sets(args.speech, args.grid)
    if not sets:
        sys.exit(f"error: no clips with references under {args.speech} or {args.grid}")
    for line in cpu_lines():
        print(line, flush=True)
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}  engine: {args.engine}  "
          f"threads: {args.threads or 'all'}")
    base = [*args.set, f"asr.cpu_threads={args.threads}"]
    variants = [(f"asr.model={m}", [*base, f"asr.model={m}"]) for m in args.model] or [("", base)]
    if args.sweep and args.engine == "faster_whisper":
        variants = [(f"{label} window >= {w:>2} s, beam {b}".strip(),
                     [*ov, f"asr.min_window_s={w}", f"asr.beam_size={b}"])
                    for label, ov in variants for w in (10, 30) for b in (1, 5)]
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, ov in variants:
            print(f"\n== config {args.config} {label}".rstrip())
            try:
                res, load_s = run(args.config, ov, args.engine, sets, not args.quiet, Path(tmp))
            except AssetError as e:  # e.g. a size with no offline copy: say so, measure the others
                print(f"not measured: {e}")
                continue
            pooled = SetResult()
            for name in POOLED:
                if name in res:
                    pooled.add(res[name])
            print(f"model load {load_s:.1f} s")
            for name, r in res.items():
                print(r.line(name))
            print(pooled.line("pooled"))
            summary.append((label or "config", res, pooled))
    if len(summary) > 1:
        print("\n== summary (WER %, RTF)")
        names = list(summary[0][1]) + ["pooled"]
        print(f"{'':<20}" + "".join(f"{n:>20}" for n in names))
        for label, res, pooled in summary:
            cells = [*(res[n] for n in names[:-1]), pooled]
            print(f"{label:<20}" + "".join(f"{100 * c.errors / max(c.words, 1):>11.1f} {c.asr_s / c.audio_s:>7.3f} "
                                           for c in cells))
        first = summary[0][2]
        for label, _, pooled in summary[1:]:
            a, b = first.errors / max(first.words, 1), pooled.errors / max(pooled.words, 1)
            print(f"pooled WER {label} vs {summary[0][0]}: {100 * (b - a) / max(a, 1e-9):+.1f} % relative")
    print(f"\nload average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
