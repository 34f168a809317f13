"""Packed models with int8 adapters: the quantisation's error bound, a tiny LoRA ensemble packed
in int8 that predicts what its fp16 pack predicts (within the bound's effect) at about half the
size, a packed int8 member packed again byte for byte, and damaged scales refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from common.errors import CheckpointMismatchError, InputError
from pipeline.models.checkpoint import QSCALE, quantize_int8, read_weights
from pipeline.models.packed import member_dirs, pack_model, read_manifest
from pipeline.models.predictor import Predictor
from tests.conftest import SENTENCES, make_corpus, tiny_lora_runs


def test_int8_rounds_each_weight_to_within_half_a_step_of_its_line(tmp_path):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 96, generator=g)  # a LoRA A: rank x in, one scale per row
    b = torch.randn(64, 4, generator=g) * 1e-3  # a LoRA B: out x rank, one scale per column
    b[:, 2] = 0.0  # an all-zero line stays zero
    head = torch.randn(3, 5, generator=g)
    q = quantize_int8({"a": a, "b": b, "head": head}, {"a", "b"})
    assert q["a"].dtype == torch.int8 and q["a" + QSCALE].shape == (4, 1)
    assert q["b"].dtype == torch.int8 and q["b" + QSCALE].shape == (1, 4)
    assert q["head"] is head  # not named: unchanged
    save_file(q, str(tmp_path / "w.safetensors"))
    back = read_weights(tmp_path / "w.safetensors")
    assert set(back) == {"a", "b", "head"} and back["a"].dtype == torch.float32
    for name, w in (("a", a), ("b", b)):
        step = q[name + QSCALE]
        assert torch.all((back[name] - w).abs() <= step / 2 + 1e-7)
        peak = w.abs().amax(dim=1 if name == "a" else 0, keepdim=True)
        assert torch.allclose(step[peak > 0], peak[peak > 0] / 127)  # the line's largest weight is +-127
    assert torch.all(back["b"][:, 2] == 0) and torch.all(q["b"][:, 2] == 0)
    assert torch.equal(back["head"], head)


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    corpus = make_corpus(32, text_only=True, seed=7)
    return root, corpus, tiny_lora_runs(root, corpus)


def test_an_int8_pack_predicts_what_the_fp16_pack_does_at_a_smaller_size(lora_runs):
    root, corpus, ckpts = lora_runs
    fp16 = pack_model(ckpts, root / "fp16", "tiny")
    int8 = pack_model(ckpts, root / "int8", "tiny", weights="int8")
    assert read_manifest(fp16)["weights"] == "fp16" and read_manifest(int8)["weights"] == "int8"
    stored = load_file(str(int8 / "member_1" / "model.safetensors"))
    adapters = [k for k in stored if (".lora_A." in k or ".lora_B." in k) and not k.endswith(QSCALE)]
    assert adapters and all(stored[k].dtype == torch.int8 for k in adapters)
    assert all(v.dtype == torch.float16 for k, v in stored.items() if k not in adapters and not k.endswith(QSCALE))

    def size(folder):
        return sum(f.stat().st_size for f in folder.rglob("*.safetensors"))

    assert size(int8) < size(fp16)
    clips = corpus.split("valid")
    a = np.array(Predictor.load(fp16).predict_clips(clips)["multimodal"])
    b = np.array(Predictor.load(int8).predict_clips(clips)["multimodal"])
    assert np.abs(a - b).max() < 0.02 and not np.array_equal(a, np.zeros_like(a))

    # an int8 member packed again is kept byte for byte (no second rounding), and not as fp16
    folders, _ = member_dirs(int8)
    again = pack_model(folders, root / "again", "tiny", weights="int8")
    assert read_manifest(again)["files"]["member_1/model.safetensors"] == \
        read_manifest(int8)["files"]["member_1/model.safetensors"]
    with pytest.raises(InputError, match="stored in int8"):
        pack_model(folders, root / "as_fp16", "tiny", weights="fp16")
    with pytest.raises(InputError, match="weights='int4'"):
        pack_model(ckpts, root / "int4", "tiny", weights="int4")


def test_a_damaged_scale_is_refused_with_the_file_named(lora_runs, tmp_path):
    root, _, ckpts = lora_runs
    out = pack_model(ckpts[:1], tmp_path / "packed", "tiny", weights="int8")
    member = tmp_path / "alone"  # an int8 checkpoint outside its pack: no manifest hash to refuse it first
    shutil.copytree(out / "member_1", member)
    f = member / "model.safetensors"
    state = load_file(str(f))
    key = next(k for k in state if k.endswith(QSCALE))
    state[key] = torch.ones(3, 3)  # fits no line of its tensor
    save_file(state, str(f))
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors.*qscale.*one scale per row or per column"):
        Predictor.load(member)
    save_file(state, str(out / "member_1" / "model.safetensors"))  # inside its pack: its hash refuses it
    with pytest.raises(CheckpointMismatchError, match=r"model\.safetensors: SHA-256 .* was changed or damaged"):
        Predictor.load(out / "member_1")


def test_bench_int8_measures_both_packs_on_the_same_clips(lora_runs, tmp_path, capsys):
    import importlib.util

    _, _, ckpts = lora_runs
    spec = importlib.util.spec_from_file_location("bench_int8", SENTENCES.parents[2] / "bench" / "bench_int8.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fp16 = pack_model(ckpts, tmp_path / "fp16", "tiny")
    assert bench.main(["--data", str(SENTENCES), "--model", str(fp16), "--limit", "24"]) == 0
    out = capsys.readouterr().out
    assert "CPU:" in out and "fp16: 2 member(s)" in out and "int8: 2 member(s)" in out and "clips/s" in out
    assert "member 2: |int8 - fp16| of the raw score: max" in out
    assert "| fp16, uncalibrated |" in out and "| int8, uncalibrated |" in out
    int8 = pack_model(ckpts, tmp_path / "int8", "tiny", weights="int8")
    with pytest.raises(SystemExit):
        bench.main(["--data", str(SENTENCES), "--model", str(int8)])
    assert "stored in int8; give a pack in fp16" in capsys.readouterr().err


def test_an_ensemble_holds_its_frozen_base_encoder_once_and_predicts_the_same(lora_runs):
    root, corpus, ckpts = lora_runs
    folder = root / "shared_base"
    pack_model(ckpts, folder, "tiny")
    ens = Predictor.load(folder)
    first, second = (dict(m.model.named_parameters()) for m in ens.members)
    base = [k for k in first if k.startswith("language.encoder.") and ".lora_" not in k]
    own = [k for k in first if k not in base]
    assert base and own
    assert all(first[k].data_ptr() == second[k].data_ptr() for k in base)  # one copy of the base
    assert all(first[k].data_ptr() != second[k].data_ptr() for k in own)  # adapters and heads per member
    assert any(not torch.equal(first[k], second[k]) for k in own)
    # the members loaded alone, nothing shared, predict exactly what the ensemble's members predict
    clips = corpus.split("valid")
    for member, m in zip(member_dirs(folder)[0], ens.members):
        alone = Predictor.load(member).predict_clips(clips, raw=True)["multimodal"]
        assert np.array_equal(np.array(alone), np.array(m.predict_clips(clips, raw=True)["multimodal"]))
    # bench_load_memory loads it both ways in fresh processes and prints both rows
    import subprocess
    import sys

    bench = SENTENCES.parents[2] / "bench" / "bench_load_memory.py"
    done = subprocess.run([sys.executable, str(bench), "--checkpoint", str(folder), "--data", str(SENTENCES)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CPU:" in done.stdout and "| one copy each | 2 |" in done.stdout and "| shared | 2 |" in done.stdout
