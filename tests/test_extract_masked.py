"""Every input a folder can hold, end to end: an audio file, a video without sound and a video
with a silent sound track are extracted with the missing modality masked (issue 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import MediaError
from extractors.acoustic import LIBROSA_COLUMNS
from extractors.visual import COLUMNS
from pipeline.corpora.inputs import entries_to_corpus
from pipeline.features.cache import FeatureCache
from pipeline.features.extract import extract_clip
from tests.extract_fixtures import GRID_CLIPS, bad_inputs, fast_config  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    return FeatureCache(tmp_path_factory.mktemp("masked_cache"))


def _stored(cache: FeatureCache, key: str):
    """The entry as read back from the cache (not the object extract_clip returned)."""
    entry = cache.get(key)
    assert entry is not None
    return entry


def test_an_audio_file_gives_audio_and_speech_with_vision_masked(
    bad_inputs: dict[str, Path], cache: FeatureCache  # noqa: F811
) -> None:
    path = bad_inputs["no_video"]  # a .wav of a GRID sentence
    assert path.suffix == ".wav"
    entry = _stored(cache, extract_clip(path, fast_config(), cache).key)
    assert entry.audio.shape[0] > 100 and entry.audio_names == list(LIBROSA_COLUMNS)
    assert entry.vision.shape == (0, len(COLUMNS)) and entry.vision_names == list(COLUMNS)
    assert entry.vision_times.shape == (0,) and entry.face_share == 0.0
    assert entry.transcript.strip() and entry.meta["transcript_source"] == "faster_whisper"
    assert "no video stream: vision masked" in entry.warnings
    assert entry.meta["modalities"] == {"text": True, "audio": True, "vision": False}
    assert entry.meta["masked"] == {"audio": None, "vision": "no video stream", "text": None}
    assert "vision" not in entry.meta["extractors"]  # the visual extractor did not run


@pytest.mark.parametrize(("case", "reason", "warning"), [
    ("no_audio", "no audio stream", "no audio stream: audio and speech masked"),
    ("silence", "silent audio (digital silence)", "silent audio (digital silence, below -60 dBFS): "
                                                   "audio and speech masked"),
])
def test_a_video_without_sound_gives_vision_with_audio_and_speech_masked(
    bad_inputs: dict[str, Path], cache: FeatureCache, case: str, reason: str, warning: str  # noqa: F811
) -> None:
    entry = _stored(cache, extract_clip(bad_inputs[case], fast_config(), cache).key)
    assert entry.vision.shape[0] > 5 and entry.vision_names == list(COLUMNS) and entry.face_share > 0.5
    assert entry.audio.shape == (0, len(LIBROSA_COLUMNS)) and entry.audio_names == list(LIBROSA_COLUMNS)
    assert entry.transcript == "" and entry.words == [] and entry.meta["transcript_source"] == "none"
    assert warning in entry.warnings
    assert entry.meta["modalities"] == {"text": False, "audio": False, "vision": True}
    assert entry.meta["masked"] == {"audio": reason, "vision": None, "text": reason}
    assert "text" not in entry.meta["extractors"] and "audio:librosa" not in entry.meta["extractors"]


def test_a_given_transcript_is_kept_when_the_audio_is_masked(
    bad_inputs: dict[str, Path], cache: FeatureCache  # noqa: F811
) -> None:
    entry = extract_clip(bad_inputs["no_audio"], fast_config(), cache, transcript="bin blue at f two now")
    assert entry.transcript == "bin blue at f two now" and entry.audio.shape == (0, len(LIBROSA_COLUMNS))
    assert entry.meta["modalities"] == {"text": True, "audio": False, "vision": True}
    assert entry.meta["masked"] == {"audio": "no audio stream", "vision": None, "text": None}


def test_masked_entries_share_the_columns_of_full_ones(
    bad_inputs: dict[str, Path], cache: FeatureCache  # noqa: F811
) -> None:
    """Masked and full clips of one config make one corpus: the trainer sees empty sequences."""
    cfg = fast_config()
    entries = [extract_clip(p, cfg, cache) for p in (GRID_CLIPS[0], bad_inputs["no_video"], bad_inputs["silence"])]
    assert entries[0].meta["modalities"] == {"text": True, "audio": True, "vision": True}
    assert entries[0].meta["masked"] == {"audio": None, "vision": None, "text": None}
    corpus = entries_to_corpus(entries)
    corpus.validate()
    assert [c.vision.shape[0] > 0 for c in corpus.clips] == [True, False, True]
    assert [c.audio.shape[0] > 0 for c in corpus.clips] == [True, True, False]


def test_missing_stream_error_keeps_the_old_behaviour(
    bad_inputs: dict[str, Path], cache: FeatureCache  # noqa: F811
) -> None:
    for case, cfg, words in (("no_audio", fast_config("media.missing_stream=error"), "no audio stream"),
                             ("no_video", fast_config("media.missing_stream=error"), "no video stream"),
                             ("silence", fast_config("media.on_silence=error"), "the audio track is silent")):
        with pytest.raises(MediaError) as err:
            extract_clip(bad_inputs[case], cfg, cache)
        assert str(bad_inputs[case]) in str(err.value) and words in str(err.value)


def test_silence_kept_with_warn_runs_the_extractors(
    bad_inputs: dict[str, Path], cache: FeatureCache  # noqa: F811
) -> None:
    entry = extract_clip(bad_inputs["silence"], fast_config("media.on_silence=warn"), cache)
    assert entry.audio.shape[0] > 50 and np.isfinite(entry.audio).all()
    assert entry.transcript == "" and entry.meta["masked"]["text"] == "no speech detected"
    assert entry.meta["modalities"] == {"text": False, "audio": True, "vision": True}
