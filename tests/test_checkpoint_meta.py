"""A checkpoint description (senbert.json) that is damaged, or written by another version, is
refused when it is read, naming the file, not as a bare TypeError / KeyError when the model is
built or the first clip is normalised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import InputError
from model.config import ModelConfig
from pipeline.models.checkpoint import META_FILE, CheckpointMeta, read_meta


def _write(folder: Path, raw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).write_text(raw if isinstance(raw, str) else json.dumps(raw), encoding="utf-8")
    return folder


def _good() -> dict:
    meta = CheckpointMeta(model=ModelConfig(audio_dim=3, vision_dim=2).to_dict(), train={},
                          audio_norm={"mean": [0.0] * 3, "std": [1.0] * 3})
    return dict(meta.__dict__)


def test_a_good_description_reads(tmp_path: Path) -> None:
    meta = read_meta(_write(tmp_path / "ok", _good()))
    assert meta.model_config.audio_dim == 3 and meta.normalizers()[0] is not None


@pytest.mark.parametrize("change, found", [
    (lambda m: m["model"].update(future_option=1), "unknown model config keys"),
    (lambda m: m["model"].update(d_model="64"), "TypeError"),
    (lambda m: m.update(model=None), "TypeError"),
    (lambda m: m["model"].update(variant="text"), "variant must be one of"),
    (lambda m: m.update(audio_norm={"mean": [0.0, 0.0, 0.0]}), "KeyError: 'std'"),
    (lambda m: m.update(unknown_field=1), "unexpected keyword"),
])
def test_a_damaged_description_is_refused_naming_its_file(tmp_path: Path, change, found: str) -> None:
    raw = _good()
    change(raw)
    folder = _write(tmp_path / "ck", raw)
    with pytest.raises(InputError, match=found) as err:
        read_meta(folder)
    assert str(folder / META_FILE) in str(err.value) and "unreadable checkpoint description" in str(err.value)


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", b"\xff\xfe{}"])
def test_a_description_that_is_not_a_json_object_is_refused(tmp_path: Path, content) -> None:
    folder = tmp_path / "ck"
    folder.mkdir()
    f = folder / META_FILE
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match="unreadable checkpoint description"):
        read_meta(folder)


def test_a_damaged_weights_file_is_named_wherever_it_is_read(tmp_path: Path) -> None:
    """init_from, loading and packing read weights through one function: a truncated or foreign
    model.safetensors is refused naming it, not as a bare SafetensorError."""
    import torch
    from safetensors.torch import save_file

    from common.errors import CheckpointMismatchError
    from pipeline.models.checkpoint import WEIGHTS_FILE, load_weights_file, read_weights
    from pipeline.training.trainer import init_weights

    folder = _write(tmp_path / "ck", _good())
    weights = folder / WEIGHTS_FILE
    save_file({"w": torch.zeros(4, 4)}, str(weights))
    assert set(read_weights(weights)) == {"w"}
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    for read in (load_weights_file, read_weights):
        with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: not a readable weights file"):
            read(weights)
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: not a readable weights file"):
        init_weights(torch.nn.Linear(4, 4), folder)
