"""Word error rate and speed of the speech recognition on LibriVox and GRID clips.

    python bench/bench_asr_wer.py --speech ../shared/data/speech --grid ../shared/data/grid
                                  [--config default] [--engine faster_whisper|pocketsphinx]
                                  [--set asr.min_window_s=30] [--sweep]

LibriVox: ``sense_and_sensibility_*.wav`` with their ``.txt`` references. GRID: every clip
in ``grid_transcripts.csv``. WER is corpus-level (word edits / reference words) after the
normaliser of :mod:`extractors.wer`. ``--sweep`` compares the encoder window floor (10 s vs
Whisper's stock 30 s) and beam sizes (1 vs 5).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_sets(speech: Path, grid: Path) -> dict[str, list[tuple[str, Path, str]]]:
    sets: dict[str, list[tuple[str, Path, str]]] = {"librivox": [], "grid": []}
    for wav in sorted(speech.glob("sense_and_sensibility_*.wav")):
        ref = wav.with_suffix(".txt")
        if ref.is_file():
            sets["librivox"].append((wav.stem, wav, ref.read_text(encoding="utf-8").strip()))
    tr = grid / "grid_transcripts.csv"
    if tr.is_file():
        with open(tr, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                sets["grid"].append((row["grid_code"], grid / row["file"], row["transcript_from_filename"]))
    return {k: v for k, v in sets.items() if v}


def run(config_name: str, overrides: list[str], engine: str, sets: dict, verbose: bool) -> dict[str, tuple]:
    from extractors import registry
    from extractors.media import open_media
    from extractors.wer import word_error_rate
    from pipeline.extract_config import load_extract_config

    cfg = load_extract_config(config_name, overrides=overrides)
    tr = registry.create(engine, cfg.asr)
    if hasattr(tr, "model"):
        tr.model()
    out = {}
    for name, items in sets.items():
        refs, hyps, secs, audio_s = [], [], 0.0, 0.0
        for cid, path, ref in items:
            media = open_media(path, cfg.media, need_audio=True, need_video=False)
            t = time.perf_counter()
            result = tr.transcribe(media.audio, media.sample_rate)
            secs += time.perf_counter() - t
            audio_s += media.audio.size / media.sample_rate
            refs.append(ref)
            hyps.append(result.text)
            if verbose:
                print(f"  {cid:<45} {word_error_rate([ref], [result.text]):5.2f}  {result.text}")
        out[name] = (word_error_rate(refs, hyps), len(items), audio_s, secs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, required=True, help="speech clips with transcripts (../shared/data/speech)")
    ap.add_argument("--grid", type=Path, required=True,
                    help="GRID clips with grid_transcripts.csv (../shared/data/grid)")
    ap.add_argument("--config", default="default")
    ap.add_argument("--engine", default="faster_whisper", choices=("faster_whisper", "pocketsphinx"))
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. asr.beam_size=5")
    ap.add_argument("--sweep", action="store_true", help="compare encoder windows and beam sizes")
    ap.add_argument("--quiet", action="store_true", help="no per-clip lines")
    args = ap.parse_args()
    sets = load_sets(args.speech, args.grid)
    if not sets:
        sys.exit(f"error: no clips with references under {args.speech} or {args.grid}")
    from pipeline.precision import capabilities

    print(f"CPU: {capabilities().describe()}", flush=True)
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}  engine: {args.engine}")
    variants = [("config " + " ".join([args.config, *args.set]), args.set)]
    if args.sweep and args.engine == "faster_whisper":
        variants = [(f"window >= {w:>2} s, beam {b}", [*args.set, f"asr.min_window_s={w}", f"asr.beam_size={b}"])
                    for w in (10, 30) for b in (1, 5)]
    for label, ov in variants:
        print(f"\n== {label}")
        res = run(args.config, ov, args.engine, sets, verbose=not args.quiet)
        for name, (wer, n, audio_s, secs) in res.items():
            print(f"{name:<9} WER {100 * wer:5.1f} %  ({n} clips, {audio_s:.1f} s of audio, "
                  f"ASR {secs:.1f} s = {audio_s / secs:.1f}x real time)")
    print(f"\nload average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
