"""Extractors: from a media file to named feature sequences, offline.

- :mod:`extractors.media`: probe (PyAV) and decode (ffmpeg binary through ffmpeg-python).
- :mod:`extractors.visual`: MediaPipe FaceLandmarker features (``mediapipe_face``).
- :mod:`extractors.acoustic`: librosa features (``librosa``), openSMILE eGeMAPS (``egemaps``).
- :mod:`extractors.transcript`: faster-whisper / pocketsphinx transcribers, tokenizer.
- :mod:`extractors.assets`: offline model assets, SHA-256 pins, ``senbert assets``.
- :mod:`extractors.registry`: name -> extractor; the extract config selects by name.

This package knows media and signal processing only; caching, batches and corpora live in
``pipeline/`` (``pipeline.features``: one file, the worker pool, the cache; ``pipeline.corpora``).
"""

from extractors.registry import FeatureSequence, Transcript, Word, available, create

__all__ = ["FeatureSequence", "Transcript", "Word", "available", "create"]
