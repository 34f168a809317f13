"""bench/bench_language.py end to end on the shipped sample corpus (tiny: 1 epoch, 2 seeds)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import SENTENCES

ROOT = SENTENCES.parents[2]
SCRIPT = ROOT / "bench" / "bench_language.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_five_seed_protocol_tables_and_resume(tmp_path):
    out = tmp_path / "lang"
    args = ("--mosi", str(SENTENCES), "--out", str(out), "--experiments", "minilm", "--seeds", "1,2",
            "--epochs", "1", "--eval-split", "test")
    r = run(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "CPU: " in r.stdout and "native bf16:" in r.stdout  # every bench says which CPU its figures are from
    res = json.loads((out / "results.json").read_text())["minilm"]
    for split in ("valid", "test"):
        for k in ("mae", "corr", "acc7", "acc5", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0"):
            assert res[split][k]["n"] == 2 and res[split][k]["std"] >= 0
    seeds = [json.loads((out / "minilm" / f"seed_{s}" / "result.json").read_text())["valid"]["mae"] for s in (1, 2)]
    assert res["valid"]["mae"]["mean"] == pytest.approx(sum(seeds) / 2)  # the table is of the seeds' own figures
    assert res["valid"]["mae"]["std"] == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5)  # sample std of two
    assert res["seconds_per_epoch"]["mean"] > 0
    md = (out / "results.md").read_text()
    assert "| minilm |" in md and "## test" in md and "paper: language only" in md
    before = (out / "minilm" / "seed_1" / "result.json").stat().st_mtime
    again = run(*args, "--eval-split", "holdout")  # finished seeds are reused, not retrained
    assert again.returncode == 0, again.stderr[-2000:]
    # a split the file has no labels for is said at the start and skipped, not a crash after training
    assert "--eval-split holdout: " in again.stdout and "no labelled clip in that split; skipped" in again.stdout
    assert (out / "minilm" / "seed_1" / "result.json").stat().st_mtime == before


def test_every_experiment_resolves_to_a_valid_config():
    """Each named experiment's config, ablation and overrides load (a typo in a key is refused by the
    config loader), and an experiment that reuses a MOSEI stage names one that builds it."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_language", SCRIPT)
    bl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bl)

    args = argparse.Namespace(epochs=None, encoder=None)
    for name, spec in bl.EXPERIMENTS.items():
        cfg, needs = bl.experiment_config(name, args)
        assert cfg.name == name
        for key, value in spec.get("set", {}).items():
            target = cfg.model if key.startswith("model.") else cfg
            assert getattr(target, key.removeprefix("model.")) == value, (name, key)
        donor = spec.get("stage_from")
        if donor:
            assert needs == "mosei_pretrain" and bl.EXPERIMENTS[donor].get("needs") == "mosei_pretrain"
            assert not bl.EXPERIMENTS[donor].get("stage_from"), (name, donor)


def test_reusing_a_stage_that_was_not_run_is_refused(tmp_path):
    r = run("--mosi", str(SENTENCES), "--mosei", str(SENTENCES), "--out", str(tmp_path),
            "--experiments", "mpnet_mosei_pretrain_ld")
    assert r.returncode == 2 and "run mpnet_mosei_pretrain first" in r.stderr


def test_speed_bench_times_the_recipe_it_is_given(tmp_path):
    """bench_language_speed.py with a LoRA config and utterance context: only the adapters and the
    head train (a small share of the parameters), every chosen setting gets a row."""
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_language_speed.py"), "--data", str(SENTENCES),
           "--config", "quick", "--steps", "2", "--settings", "fp32,+grouped", "--json", str(out),
           "--set", "model.variant=language_only", "--set", "model.adapter=lora", "--set", "model.lora_r=2",
           "--set", "context=1", "--set", "context_dropout=0.3", "--set", "max_context_len=16"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "CPU:" in r.stdout and "adapter lora, context 1" in r.stdout
    rows = json.loads(out.read_text())
    assert [row["setting"] for row in rows] == ["fp32", "+grouped"]
    for row in rows:
        assert row["seconds_per_step"] > 0 and row["padded_tokens_per_step"] > 0
        assert 0 < row["trained_parameters"] < 0.2 * row["parameters"]  # the encoder itself is frozen
    bad = subprocess.run(cmd[:2] + ["--data", str(SENTENCES), "--settings", "fp16"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "unknown ['fp16']" in bad.stderr
