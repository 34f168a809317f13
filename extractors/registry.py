"""One registry from a name to an extractor; a config selects them by name.

Every sequence extractor takes :class:`~extractors.media.DecodedMedia` and returns a
:class:`FeatureSequence`: values ``(T, d)`` float32, the names of the ``d`` columns, the
time of each of the ``T`` steps in seconds, plus warnings. Its ``columns()`` gives those
names without any data (a masked modality is stored as ``(0, d)`` with them). A transcriber returns a
:class:`Transcript` (text and words with times) instead.

=====================  ========  ===========================================================
name                   modality  what
=====================  ========  ===========================================================
``mediapipe_face``     vision    MediaPipe FaceLandmarker: blendshapes, head pose, geometry
``librosa``            audio     MFCC, energy, F0 and voicing, spectral shape (librosa)
``egemaps``            audio     openSMILE eGeMAPSv02 low-level descriptors (optional extra,
                                 non-commercial licence; never the default)
``faster_whisper``     text      Whisper (CTranslate2) with word times and VAD
``pocketsphinx``       text      CMU pocketsphinx en-us: light fallback
=====================  ========  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common.errors import ConfigError

MODALITIES = ("vision", "audio", "text")

#: Columns that other parts read by name (the face-presence flag of the face extractor, the
#: frame loudness of the librosa acoustic extractor): the extractors and their readers share these.
FACE_PRESENT_COLUMN = "face_present"
LOUDNESS_DB_COLUMN = "log_energy_db"


@dataclass
class FeatureSequence:
    """A sequence ``(T, d)`` with its column names and step times (seconds)."""

    values: np.ndarray  # (T, d) float32
    names: list[str]
    times: np.ndarray  # (T,) float64, non-decreasing
    rate: float  # nominal steps per second
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. face_share

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.times = np.asarray(self.times, dtype=np.float64)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(f"values {self.values.shape} do not match {len(self.names)} column names")
        if self.times.shape != (self.values.shape[0],):
            raise ValueError(f"times {self.times.shape} do not match {self.values.shape[0]} steps")


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3),
                "probability": round(self.probability, 4)}


@dataclass
class Transcript:
    """What a transcriber heard: the text, its words with times, and notes."""

    text: str
    words: list[Word]
    language: str = ""
    engine: str = ""
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class SequenceExtractor(Protocol):
    name: str
    modality: str
    version: str

    def describe(self) -> dict[str, Any]:
        """Settings, library versions and asset hashes that determine the output."""
        ...

    def columns(self) -> list[str]:
        """The names of the ``d`` columns of :meth:`extract`'s output, known without data."""
        ...

    def extract(self, media: Any) -> FeatureSequence:
        ...


@runtime_checkable
class Transcriber(Protocol):
    name: str
    modality: str
    version: str

    def describe(self) -> dict[str, Any]:
        ...

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> Transcript:
        ...


@dataclass(frozen=True)
class Spec:
    name: str
    modality: str
    factory: Callable[[Any], Any]  # settings object -> extractor
    description: str
    optional: bool = False  # an extra (not installed by default)


_REGISTRY: dict[str, Spec] = {}


def register(name: str, modality: str, description: str, optional: bool = False
             ) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Decorator: register a factory ``settings -> extractor`` under ``name``."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}")

    def deco(factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
        _REGISTRY[name] = Spec(name, modality, factory, description, optional)
        return factory

    return deco


def _load_builtins() -> None:
    # Importing the modules runs their @register decorators; they import this module, so not at the top.
    from extractors import acoustic, transcript, visual  # noqa: F401


def spec(name: str) -> Spec:
    _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown extractor {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available(modality: str | None = None) -> list[str]:
    _load_builtins()
    return sorted(n for n, s in _REGISTRY.items() if modality is None or s.modality == modality)


_INSTANCES: dict[tuple[str, str], Any] = {}


def create(name: str, settings: Any) -> Any:
    """The extractor ``name`` built from ``settings``; one instance per process and settings.

    Extractors hold loaded models (Whisper, the landmarker asset), so a batch reuses them.
    """
    s = spec(name)
    key = (name, repr(settings))
    if key not in _INSTANCES:
        _INSTANCES[key] = s.factory(settings)
    return _INSTANCES[key]
