"""A packed model's figures from speech: the results of ``bench/bench_spoken.py`` (a valid split
read aloud by an offline voice, recognised, cut into utterances and scored, beside the same model
on the gold transcripts) written into its card and manifest.

``senbert release spoken --model DIR RESULT.json ...`` (:func:`add_spoken`) reads the bench's
result files, checks that they measured this model on a valid or train split, records them in
the manifest (``spoken``: one entry per run) and puts a section ``## From speech`` into the card
(in place of an earlier one), then records the card's new SHA-256. The weights are not touched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.io import atomic_write, atomic_write_json, sha256_file
from pipeline.models.packed import MANIFEST, read_manifest, verify_packed

CARD = "MODEL_CARD.md"
HEADING = "## From speech"
#: the section goes before this one (or at the end of a card without it)
BEFORE = "## Intended use"
VOICES = {"piper": "Piper (en_US-joe-medium, neural)", "espeak": "espeak-ng (formant, a harder voice)"}
MODES = {"clip": "a file per clip", "video": "a file per video"}
GOLD_VIEW = {"alone": "clips read alone", "context": "clips with neighbours"}
KEPT = ("n", "mae", "corr", "acc7", "acc2_non0", "f1_non0")


def read_result(path: str | Path) -> dict[str, Any]:
    """One ``bench_spoken.py`` result, reduced to what a card shows; InputError naming the file
    when it is not one (or measured a test split)."""
    p = Path(path)
    try:
        r = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not a readable bench_spoken result ({e})") from None
    missing = [k for k in ("run", "corpus", "split", "voice", "mode", "spoken", "gold", "wer") if k not in r]
    if missing:
        raise InputError(f"{p}: not a bench_spoken result (missing {', '.join(missing)})")
    if r["split"] not in ("train", "valid"):
        raise InputError(f"{p}: measured the {r['split']!r} split; a card reports train or valid splits only")
    return {
        "run": r["run"], "corpus": r["corpus"], "split": r["split"], "voice": r["voice"], "mode": r["mode"],
        "gold_view": r.get("gold_view", "alone" if r["mode"] == "clip" else "context"),
        "asr_model": r.get("asr_model", "whisper base (default)"), "precision": r.get("precision", "fp32"),
        "spoken": {k: r["spoken"][k] for k in KEPT if k in r["spoken"]},
        "gold": {k: r["gold"][k] for k in KEPT if k in r["gold"]},
        "wer": r["wer"].get("wer"), "wer_no_fillers": r["wer"].get("wer_no_fillers"),
        "segmentation": {k: r["segmentation"][k] for k in ("joins", "joins_cut", "cuts_inside_clips",
                                                          "clips_sharing_an_utterance")
                         if k in r["segmentation"]} if r.get("segmentation") else {},
        "checkpoint": r.get("checkpoint", ""),
    }


def section(results: list[dict[str, Any]]) -> str:
    """The card's ``## From speech`` section for ``results`` (:func:`read_result`'s)."""
    rows = []
    for r in results:
        s, g = r["spoken"], r["gold"]
        voice, mode = VOICES.get(r["voice"], r["voice"]), MODES.get(r["mode"], r["mode"])
        what = f"{r['corpus'].upper()} {r['split']}, {voice}, {mode}"
        wer = f"{100 * r['wer']:.1f} ({100 * r['wer_no_fillers']:.1f})" if r.get("wer") is not None else "-"
        rows.append(f"| {what} | {s['n']} | {s['mae']:.3f} | {s['corr']:.3f} | {100 * s['acc2_non0']:.2f} | "
                    f"{100 * s['acc7']:.2f} | {g['mae']:.3f} ({GOLD_VIEW.get(r['gold_view'], r['gold_view'])}) | "
                    f"{s['mae'] - g['mae']:+.3f} | {wer} |")
    segs = [f"{r['run']}: {r['segmentation']['joins_cut']} of {r['segmentation']['joins']} joins cut, "
            f"{r['segmentation']['cuts_inside_clips']} cuts inside a clip, "
            f"{r['segmentation']['clips_sharing_an_utterance']} clips sharing an utterance"
            for r in results if r.get("segmentation", {}).get("joins")]
    asr = sorted({r["asr_model"] for r in results})
    precisions = sorted({r["precision"] for r in results})
    lines = [
        HEADING,
        "What `senbert score` makes of speech instead of transcripts: the split's gold transcripts spoken by",
        "an offline voice, recognised (" + ", ".join(asr) + "), cut into utterances and scored, beside",
        "the same model on the gold transcripts read the same way (a file per clip: each clip alone; a",
        "file per video, its clips joined with pauses: with neighbours; a clip's score is then the",
        "overlap-weighted mean of the utterances over it). Model arithmetic: " + ", ".join(precisions) + ".",
        "`bench/bench_spoken.py` (docs/benchmarks.md); WER in %, without fillers in brackets.",
        "",
        "| speech | clips | MAE | Corr | Acc-2 non0 | Acc-7 | gold transcripts: MAE | change | WER |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if segs:
        lines += ["", "Segmentation of the files per video (tolerance 0.3 s): " + "; ".join(segs) + "."]
    return "\n".join(lines) + "\n"


def with_section(card: str, text: str) -> str:
    """``card`` with its ``## From speech`` section replaced by ``text`` (or put before
    :data:`BEFORE`, or at the end)."""
    card = re.sub(rf"{re.escape(HEADING)}.*?(?=^## |\Z)", "", card, flags=re.S | re.M)
    at = card.find(BEFORE)
    if not card.strip():
        return text
    if at < 0:
        return card.rstrip("\n") + "\n\n" + text
    return card[:at] + text + "\n" + card[at:]


def add_spoken(model: str | Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Record ``results`` (:func:`read_result`'s) in the packed model ``model``: its card's section
    and its manifest's ``spoken`` entry, the card's SHA-256 updated; the manifest, verified."""
    folder = Path(model)
    verify_packed(folder)  # a damaged pack is refused before anything is written into it
    if not results:
        raise InputError("no bench_spoken results given")
    manifest = read_manifest(folder)
    card = (folder / CARD).read_text(encoding="utf-8") if (folder / CARD).is_file() else ""
    atomic_write(folder / CARD, with_section(card, section(results)))
    manifest["spoken"] = results
    manifest["files"][CARD] = sha256_file(folder / CARD)
    atomic_write_json(folder / MANIFEST, manifest)
    return verify_packed(folder)
