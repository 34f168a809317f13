"""The extract config's fingerprint and the feature-cache key are pinned: existing caches stay valid.

The values were computed before the extract code was split into extract_config / clip / batch
(issue 9). They change only when a setting, an extractor's VERSION, a pinned library
(constraints.txt) or a packaged model changes; then existing feature caches are rebuilt, on
purpose, and these values are updated with a note saying why.

Updated (issue 11): missing or silent streams are masked by default (``media.on_silence: mask``,
the new ``media.missing_stream: mask``) and entries record ``meta.modalities`` / ``meta.masked``
(EXTRACT_VERSION 1.1), ``asr.compression_ratio_threshold`` is a new setting, and a clip with
no face is masked too (``visual.on_no_face: mask``), so every fingerprint and cache key
changed; older caches are rebuilt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config_files import apply_overrides, parse_overrides
from common.errors import ConfigError
from pipeline.features.cache import FeatureCache
from pipeline.features.config import config_names, load_extract_config
from pipeline.features.extract import cached_entry, media_key
from pipeline.training.config import load_config
from tests.extract_fixtures import GRID_DIR

# Pinned: a change is deliberate (2026-12-05: acoustic extractor 1.1, voicing_prob in silence).
PINNED_FINGERPRINTS = {
    "default": "b974697e685275a4",
    "egemaps": "bea07a51cb492770",
    "fast": "83e603079b7f9d9e",
    "paper": "a923e744db583af0",
}


def test_fingerprints_of_the_named_configs_are_pinned() -> None:
    assert config_names() == sorted(PINNED_FINGERPRINTS)
    for name, fp in PINNED_FINGERPRINTS.items():
        assert load_extract_config(name).fingerprint() == fp, name
    assert load_extract_config("default", ["visual.fps=5", "asr.model=tiny"]).fingerprint() == "978452b8d8a0341b"


def test_the_cache_key_of_a_clip_is_pinned(tmp_path: Path) -> None:
    cache, cfg = FeatureCache(tmp_path / "c"), load_extract_config("default")
    clip = GRID_DIR / "lbax4n.mpg"
    assert media_key(clip, cfg, cache).key == "a9f3632230ea5a404d20fe233d8a7fa0e5e1f655"
    assert media_key(clip, cfg, cache, "lay blue").key == "cf156b5f5f6d162ba2b800799482f31ce7de0e51"
    assert media_key(clip, cfg, cache, "  ").key == media_key(clip, cfg, cache).key  # empty: no transcript
    assert cached_entry(clip, cfg, cache) is None


def test_one_override_parser_for_train_and_extract_configs() -> None:
    assert parse_overrides(["model.d_model=32", "epochs=2", "visual.fps=5", "epochs=3"]) == \
        {"model.d_model": 32, "epochs": 3, "visual.fps": 5}
    assert apply_overrides({"model": {"a": 1}}, {"model.b": [1, 2], "c.d": None}) == \
        {"model": {"a": 1, "b": [1, 2]}, "c": {"d": None}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["model.d_model"])
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"epochs": 3}, {"epochs.x": 1})
    assert load_config("quick", overrides=parse_overrides(["model.d_model=32"])).model.d_model == 32
    # the extract config keeps its typed coercion and its section.key shape
    assert load_extract_config("default", ["visual.fps=5"]).visual.fps == 5.0
    with pytest.raises(ConfigError, match="section.key=value"):
        load_extract_config("default", ["fps=5"])
    with pytest.raises(ConfigError, match="visual.fps must be a finite number"):
        load_extract_config("default", ["visual.fps=fast"])


def test_values_that_go_together_are_checked_together() -> None:
    from common.errors import ConfigError
    from pipeline.features.config import load_extract_config

    with pytest.raises(ConfigError, match=r"acoustic\.pitch_window_ms 20\.0 must hold two periods of fmin_hz 60\.0"):
        load_extract_config("default", ["acoustic.pitch_window_ms=20"])  # YIN's floor would rise silently
    with pytest.raises(ConfigError, match=r"acoustic\.fmin_hz 500\.0 and fmax_hz 60\.0"):
        load_extract_config("default", ["acoustic.fmin_hz=500", "acoustic.fmax_hz=60"])
    assert load_extract_config("default", ["acoustic.fmin_hz=80", "acoustic.pitch_window_ms=25"]).acoustic.fmin_hz == 80
