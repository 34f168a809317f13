"""Transcripts: speech recognition with word times, and tokenisation.

A transcript given by the corpus always wins (the pipeline then runs no recogniser).
Otherwise:

- ``faster_whisper`` (default): Whisper in CTranslate2 int8, offline (:mod:`extractors.assets`):
  ``asr.model`` empty or ``base`` is the packaged Whisper base, ``small`` the packaged Whisper
  small (refused offline for now: its published packages are incomplete; see
  :data:`extractors.assets.WHISPER_PACKAGED`), else a CTranslate2 folder or, with
  ``asr.allow_download``, an online name. ``word_timestamps=True``, ``vad_filter=True`` (silero VAD
  shipped inside faster-whisper), greedy decoding (``beam_size: 1``). The model is loaded
  once per process and kept.

  Speed: Whisper's encoder always reads a 30 s window, so a 3 s clip costs as much as a
  30 s one (about 0.7 s on 2 cores). ``min_window_s`` (default 10) lets the encoder read
  only the part of the window that holds audio (rounded up to whole seconds, at least
  ``min_window_s``). On the LibriVox and GRID clips this gives the same word error rate as
  the full window at about half the time (bench/bench_asr_wer.py). Set 30 for stock Whisper.
- ``pocketsphinx``: CMU pocketsphinx 5 with its bundled en-us model; much less accurate,
  light, a fallback when the Whisper assets are not wanted.

The ``TextTokenizer`` turns a transcript into the encoder's token ids (any Hugging Face
tokenizer id or local folder).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from common.errors import AssetError, ConfigError
from common.process import usable_cores
from extractors.assets import resolve_whisper_model
from extractors.registry import Transcript, Word, register

VERSION = "1.0"

_THREADS = {"budget": 0}  # 0: every usable core; set by the batch runner for its workers


def set_thread_budget(n: int) -> None:
    """CPU threads each recogniser may use in this process (the batch sets cores / workers)."""
    _THREADS["budget"] = max(0, int(n))


def thread_budget() -> int:
    return _THREADS["budget"] or usable_cores()


@dataclass(frozen=True)
class AsrSettings:
    """Config section ``asr``."""

    model: str | None = None  # None / "base" / "small": packaged offline size; a CTranslate2 folder; an online name
    compute_type: str = "int8"
    beam_size: int = 1
    language: str | None = "en"  # None: detect
    vad_filter: bool = True
    word_timestamps: bool = True
    min_window_s: float = 10.0  # encoder window floor for short audio; 30 = stock Whisper
    condition_on_previous_text: bool = False
    # Whisper re-decodes a window at higher temperatures when its text compresses better than
    # this (a sign of a repetition loop). Stock Whisper: 2.4, which real repeated speech (a
    # chorus, a list, a file of looped samples: 2.7) also trips, costing 6 decodes per window
    # and garbled text; None: never.
    compression_ratio_threshold: float | None = 3.0
    cpu_threads: int = 0  # 0: cores / workers (speed only, not part of the fingerprint)
    allow_download: bool = False  # let faster-whisper fetch an official model (online users)


_MODELS: dict[tuple[str, str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def _windowed_model(location: str, compute_type: str, threads: int, min_window_frames: int) -> Any:
    """A faster-whisper model whose encoder reads only the audio-bearing part of a window."""
    from faster_whisper import WhisperModel  # ~0.3 s and ctranslate2: only where ASR runs

    class WindowedWhisperModel(WhisperModel):  # type: ignore[misc]
        window_floor = 3000

        def encode(self, features: np.ndarray) -> Any:
            if self.window_floor < 3000:
                f = features if features.ndim == 3 else features[None]
                cols = np.nonzero(np.abs(f).sum(axis=(0, 1)) > 0)[0]
                content = int(cols[-1]) + 1 if cols.size else 0
                n = int(np.ceil((content + 100) / 100) * 100)  # + 1 s, whole seconds
                n = min(3000, max(self.window_floor, n))
                features = np.ascontiguousarray(f[..., :n])
            return super().encode(features)

    # faster-whisper logs every clip at INFO ("Processing audio ...", "VAD filter removed ...")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    key = (location, compute_type, threads, min_window_frames)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                model = WindowedWhisperModel(location, device="cpu", compute_type=compute_type,
                                             cpu_threads=threads)
            except Exception as e:  # noqa: BLE001 - ctranslate2 / hub errors
                raise AssetError(
                    f"Whisper model {location!r} could not be loaded ({type(e).__name__}: {e}); run "
                    "`senbert assets` to check the offline copy, or fix asr.model"
                ) from e
            model.window_floor = min_window_frames
            _MODELS[key] = model
        return _MODELS[key]


class WhisperTranscriber:
    """The ``faster_whisper`` transcriber."""

    name = "faster_whisper"
    modality = "text"
    version = VERSION

    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        self.asset = resolve_whisper_model(settings.model, settings.allow_download)

    def describe(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings.pop("cpu_threads")
        return {"extractor": self.name, "version": self.version, "settings": settings,
                "faster_whisper": version("faster-whisper"), "ctranslate2": version("ctranslate2"),
                "model": self.asset.location if self.asset.source == "online" else "",
                "model_sha256": self.asset.sha256}

    def model(self) -> Any:
        s = self.settings
        threads = s.cpu_threads or thread_budget()
        frames = int(round(min(max(s.min_window_s, 1.0), 30.0) * 100))
        return _windowed_model(self.asset.location, s.compute_type, threads, frames)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> Transcript:
        s = self.settings
        if sample_rate != 16000:
            raise ConfigError("faster-whisper needs 16 kHz audio; set media.sample_rate: 16000")
        segments, info = self.model().transcribe(
            np.ascontiguousarray(audio, dtype=np.float32),
            language=s.language, beam_size=s.beam_size, word_timestamps=s.word_timestamps,
            vad_filter=s.vad_filter, condition_on_previous_text=s.condition_on_previous_text,
            compression_ratio_threshold=s.compression_ratio_threshold,
        )
        segs = list(segments)
        words: list[Word] = []
        for seg in segs:
            for w in seg.words or []:
                token = w.word.strip()
                if token:
                    words.append(Word(token, float(w.start), float(w.end), float(w.probability)))
        text = " ".join(seg.text.strip() for seg in segs).strip()
        warnings = [] if text else ["no speech detected (voice activity detection found none); empty transcript"]
        return Transcript(text=text, words=words, language=str(info.language or s.language or ""),
                          engine=self.name, warnings=warnings)


_SPHINX: dict[int, Any] = {}
_FILLER = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")


class PocketsphinxTranscriber:
    """The ``pocketsphinx`` transcriber (bundled en-us model, no word probabilities)."""

    name = "pocketsphinx"
    modality = "text"
    version = VERSION

    def __init__(self, settings: AsrSettings) -> None:
        self.settings = settings
        try:
            import pocketsphinx  # noqa: F401 - only to say clearly when it is missing
        except ImportError as e:
            raise AssetError("the pocketsphinx transcriber needs pip install pocketsphinx==5.1.1") from e

    def describe(self) -> dict[str, Any]:
        return {"extractor": self.name, "version": self.version, "pocketsphinx": version("pocketsphinx"),
                "model": "en-us (bundled)"}

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> Transcript:
        from pocketsphinx import Decoder  # the optional engine: only when it is configured

        if sample_rate not in _SPHINX:
            try:
                _SPHINX[sample_rate] = Decoder(samprate=sample_rate, loglevel="FATAL")
            except Exception as e:  # noqa: BLE001
                raise AssetError(f"pocketsphinx could not load its en-us model ({e}); reinstall "
                                 "pocketsphinx==5.1.1") from e
        dec = _SPHINX[sample_rate]
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        frate = float(dec.config["frate"] or 100)
        words = [
            Word(re.sub(r"\(\d+\)$", "", seg.word), seg.start_frame / frate, (seg.end_frame + 1) / frate,
                 float(min(1.0, max(0.0, seg.prob))))
            for seg in dec.seg() if not _FILLER.match(seg.word)
        ]
        text = " ".join(w.word for w in words)
        warnings = [] if hyp is not None and text else ["no speech recognised; empty transcript"]
        return Transcript(text=text, words=words, language="en", engine=self.name, warnings=warnings)


@register("faster_whisper", "text", "faster-whisper (Whisper base or asr.model, int8) with word times and VAD")
def _make_whisper(settings: AsrSettings) -> WhisperTranscriber:
    return WhisperTranscriber(settings)


@register("pocketsphinx", "text", "CMU pocketsphinx en-us: light fallback")
def _make_sphinx(settings: AsrSettings) -> PocketsphinxTranscriber:
    return PocketsphinxTranscriber(settings)


# --------------------------------------------------------------------------- tokenisation

_TOKENIZERS: dict[tuple[str, bool], Any] = {}


class TextTokenizer:
    """The text encoder's tokenizer: a Hugging Face id or local folder (offline by default)."""

    def __init__(self, spec: str, allow_download: bool = False) -> None:
        self.spec = spec
        key = (spec, allow_download)
        if key not in _TOKENIZERS:
            try:
                from transformers import AutoTokenizer  # ~1.3 s: only where text is tokenised

                _TOKENIZERS[key] = AutoTokenizer.from_pretrained(spec, local_files_only=not allow_download)
            except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/HF errors
                raise AssetError(
                    f"tokenizer {spec!r} (config text.tokenizer) could not be loaded ({type(e).__name__}); "
                    "name a local tokenizer folder, install the encoder package (see `senbert assets`), "
                    "or set text.allow_download: true when online"
                ) from e
        self.tokenizer = _TOKENIZERS[key]

    def __call__(self, text: str, max_length: int = 0) -> list[int]:
        kwargs: dict[str, Any] = {"add_special_tokens": True}
        if max_length:
            kwargs.update(truncation=True, max_length=max_length)
        return list(self.tokenizer(text, **kwargs)["input_ids"])

    def describe(self) -> dict[str, Any]:
        return {"tokenizer": self.spec, "class": type(self.tokenizer).__name__,
                "vocab_size": int(getattr(self.tokenizer, "vocab_size", 0) or 0)}
