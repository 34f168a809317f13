"""Train config values are checked against their types where they are read, with the file
named: a number YAML read as a string (``5e-5``, ``--set lr_encoder=5e-5`` as the README shows)
is that number, and a wrong value is refused before any data is loaded, not as a TypeError deep
in the first training step."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config_files import parse_overrides
from common.errors import ConfigError
from common.typed import coerce
from pipeline.training.config import load_config


def test_numbers_written_as_yaml_reads_them_are_numbers() -> None:
    cfg = load_config("language", overrides=parse_overrides(["lr_encoder=5e-5", "lr_other=1e-3", "epochs=3",
                                                              "model.lora_alpha=32", "pretrain=mosei.csv"]))
    assert cfg.lr_encoder == 5e-5 and isinstance(cfg.lr_encoder, float)
    assert cfg.lr_other == 1e-3 and cfg.epochs == 3 and cfg.model.lora_alpha == 32.0
    assert cfg.pretrain == ["mosei.csv"]  # one corpus where a list is expected


@pytest.mark.parametrize("override, message", [
    ("batch_size=sixteen", "batch_size must be an integer, got 'sixteen'"),
    ("epochs=2.5", "epochs must be an integer, got 2.5"),
    ("lr_encoder=fast", "lr_encoder must be a finite number, got 'fast'"),
    ("lr_encoder=.nan", "lr_encoder must be a finite number"),
    ("group_by_length=maybe", "group_by_length must be true or false, got 'maybe'"),
    ("context=two", "context must be an integer, got 'two'"),
    ("model.d_model=wide", "model.d_model must be an integer, got 'wide'"),
    ("model.use_sense_task=1", "model.use_sense_task must be true or false, got 1"),
    ("model=3", "'model' must be a mapping of model settings, got 3"),
    ("pretrain={a: 1}", "pretrain must be a list of strings"),
    ("batchsize=3", r"unknown key\(s\) \['batchsize'\]"),
])
def test_a_wrong_value_is_refused_naming_the_key_and_the_config(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config("quick", overrides=parse_overrides([override]))
    assert "configs/quick.yaml" in str(err.value) and f"overrides: {override.split('=')[0]}" in str(err.value)


def test_a_wrong_value_in_a_users_yaml_names_that_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: quick\nname: 2024\nepochs: '3'\nlr_other: 1e-3\nwarmup_ratio: ten percent\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: warmup_ratio must be a finite number, got 'ten percent'"):
        load_config(str(mine))
    mine.write_text("base: quick\nname: 2024\nepochs: '3'\nlr_other: 1e-3\n")
    cfg = load_config(str(mine))
    assert cfg.name == "2024" and cfg.epochs == 3 and cfg.lr_other == 1e-3


def test_coerce_keeps_what_fits_and_names_what_does_not() -> None:
    assert coerce(int, 10**20, "n") == 10**20  # not rounded through a float
    assert coerce(int | None, "none", "n") is None and coerce(int | None, "2", "n") == 2
    assert coerce(tuple[str, ...], ["a", 1], "t") == ("a", "1")
    with pytest.raises(ValueError, match="x must be a finite number, got True"):
        coerce(float, True, "x")
    with pytest.raises(ValueError, match="s must be a string"):
        coerce(str, None, "s")
