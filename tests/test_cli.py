"""The senbert command line on an MMSA pickle and on a text-only label.csv."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cli import main
from tests.conftest import SENTENCES
from tests.test_corpora import write_mmsa_like

TINY_SET = ["--set", "model.d_model=16", "--set", "model.num_heads=2", "--set", "model.low_level_layers=1",
            "--set", "model.self_attn_layers=1", "--set", "model.high_level_layers=1", "--set", "max_text_len=16"]


def test_train_evaluate_predict_on_pkl(tmp_path, capsys):
    write_mmsa_like(tmp_path / "unaligned_50.pkl", n_per_split=(8, 4, 4))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "unaligned_50.pkl"), "--out", str(run), "--epochs", "1",
                 "--batch-size", "4", "--quiet", *TINY_SET]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(tmp_path / "unaligned_50.pkl"),
                 "--split", "test", "--json", str(tmp_path / "m.json"), "--quiet"]) == 0
    m = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert m["n"] == 4 and {"mae", "corr", "acc7", "acc5", "acc2_has0", "acc2_non0", "f1_has0", "f1_non0"} <= set(m)
    assert main(["predict", "--checkpoint", str(run / "checkpoint"), "--data", str(tmp_path / "unaligned_50.pkl"),
                 "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert len(rows) == 16 and rows[0]["score_sense"] != "" and rows[0]["score_language"] != ""
    assert main(["export-mmsa", "--data", str(tmp_path / "unaligned_50.pkl"), "--out", str(tmp_path / "e.pkl")]) == 0
    from pipeline.corpora.load import load_corpus

    src, back = load_corpus(tmp_path / "unaligned_50.pkl"), load_corpus(tmp_path / "e.pkl")
    assert back.split_sizes() == src.split_sizes() and back.audio_names == src.audio_names
    by_id = {c.clip_id: c for c in back.clips}
    for c in src.clips:  # labels, transcripts and the unaligned sequences come back as they were
        b = by_id[c.clip_id]
        assert (b.label, b.text, b.split) == (c.label, c.text, c.split)
        np.testing.assert_allclose(b.audio, c.audio, rtol=1e-6)
        np.testing.assert_allclose(b.vision, c.vision, rtol=1e-6)


def test_train_on_label_csv_language_only_and_errors(tmp_path, capsys):
    p = tmp_path / "label.csv"
    lines = ["video_id,clip_id,text,label,mode"]
    for i in range(12):
        lines.append(f"v{i},1,{'great fun' if i % 2 else 'awful mess'},{2.0 if i % 2 else -2.0},"
                     f"{('train', 'train', 'valid', 'test')[i % 4]}")
    lines.append("v99,1,,0.0,train")
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # the full model on a text-only corpus: a clear error, exit code 2, no traceback
    assert main(["train", "--data", str(p), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "language_only" in capsys.readouterr().err
    run = tmp_path / "lo"
    assert main(["train", "--data", str(p), "--ablation", "language_only", "--out", str(run), "--epochs", "1",
                 "--quiet", *TINY_SET]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(p), "--quiet"]) == 0
    assert "test (3 clips)" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_train_with_a_preliminary_corpus(tmp_path, capsys):
    """`--pretrain CORPUS` with the language config: stage 1 on CORPUS, then --data from it."""
    run = tmp_path / "lang"
    args = ["train", "--config", "language", "--encoder", "all-MiniLM-L6-v2", "--data", str(SENTENCES),
            "--out", str(run), "--epochs", "1", "--set", "pretrain_epochs=1", "--quiet", *TINY_SET]
    assert main([*args, "--pretrain", str(tmp_path / "nope.csv")]) == 2
    assert "pretrain corpus" in capsys.readouterr().err and not run.exists()
    assert main([*args, "--pretrain", str(SENTENCES)]) == 0
    assert (run / "pretrain" / "checkpoint" / "model.safetensors").is_file()
    assert f"init_from: {run / 'pretrain' / 'checkpoint'}" in (run / "config.yaml").read_text()


def test_unknown_config_and_ablation(tmp_path, capsys):
    assert main(["train", "--data", "x.pkl", "--out", str(tmp_path), "--config", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["train", "--data", "x.pkl", "--out", str(tmp_path), "--ablation", "nosuch"]) == 2


def test_named_configs_load():
    from common.config_files import CONFIG_DIR
    from pipeline.training.config import load_config

    for f in list(CONFIG_DIR.glob("*.yaml")) + list(CONFIG_DIR.glob("ablations/*.yaml")):
        rel = f.relative_to(CONFIG_DIR).with_suffix("")
        cfg = load_config(str(rel))
        assert cfg.model.num_heads == 8 and cfg.model.low_level_layers == 4 and cfg.model.dropout == 0.3
        # the paper's rates, except the language-only recipes' encoder rates (issue 5; the adapters of LoRA)
        assert cfg.lr_encoder == {"language": 2e-5, "language_lora": 5e-4}.get(str(rel), 5e-5)  # LoRA: adapters
        assert cfg.lr_other == 1e-3 and cfg.batch_size == 32
    assert load_config("paper").model.encoder == "bert-base-uncased"
    assert load_config("default").model.encoder == "all-mpnet-base-v2"
    assert load_config("ablations/frozen_encoder").model.encoder_mode == "frozen"


@pytest.mark.parametrize("name", ["bert-base-uncased", "./no/such/dir"])
def test_missing_encoder_says_how_to_get_it(name, monkeypatch):
    from common.errors import AssetError
    from pipeline.models.encoders import load_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError) as ei:
        load_encoder(name)
    msg = str(ei.value)
    if name.startswith("."):
        assert "no/such/dir does not exist" in msg
    else:
        assert name in msg and "HF_HUB_OFFLINE is set" in msg and "huggingface-cli download" in msg, msg


def test_config_names_are_the_leaf_names():
    from pipeline.training.config import load_config

    assert load_config("paper").name == "paper"
    assert load_config("default").name == "default"
    assert load_config("ablations/frozen_encoder").name == "ablations/frozen_encoder"
    assert load_config("quick", ablation="sense_only").name == "quick+sense_only"


def test_an_ablation_that_would_change_nothing_is_refused():
    from common.errors import ConfigError
    from pipeline.training.config import load_config

    for ablation in ("full", "no_language_task", "no_sense_task"):  # one head: no auxiliary tasks
        with pytest.raises(ConfigError, match=f"--ablation {ablation} .*language_only variant"):
            load_config("language", ablation=ablation)
    with pytest.raises(ConfigError, match="changes the text encoder.*sense_only"):
        load_config("quick", overrides={"model.variant": "sense_only"}, ablation="frozen_encoder")
    assert load_config("quick", ablation="no_sense_task").model.use_sense_task is False  # the full model: applies
    assert load_config("language", ablation="frozen_encoder").model.encoder_mode == "frozen"


def test_select_metric_is_checked_when_the_config_loads():
    from common.errors import ConfigError
    from pipeline.training.config import load_config

    with pytest.raises(ConfigError, match="select_metric must be one of .*not 'loss'"):
        load_config("quick", overrides={"select_metric": "loss"})  # no valid loss is computed
    with pytest.raises(ConfigError, match="select_metric sense_mae: the language_only model has no sense head"):
        load_config("language", overrides={"select_metric": "sense_mae"})
    assert load_config("quick", overrides={"select_metric": "corr"}).select_metric == "corr"
    assert load_config("language", overrides={"select_metric": "language_mae"}).select_metric == "language_mae"
    # the full model without its language task has a language head that no loss trains
    with pytest.raises(ConfigError, match="select_metric language_mae: the language head is not trained"):
        load_config("paper", "no_language_task", {"select_metric": "language_mae"})
    assert load_config("paper", "no_language_task", {"select_metric": "sense_mae"}).select_metric == "sense_mae"


def test_an_override_that_undoes_the_ablation_is_refused():
    from common.errors import ConfigError
    from pipeline.training.config import load_config

    with pytest.raises(ConfigError, match=r"override model.variant='full' undoes the ablation 'language_only'"):
        load_config("paper", "language_only", {"model.variant": "full"})
    with pytest.raises(ConfigError, match="model.encoder_mode='finetune' undoes the ablation 'frozen_encoder'"):
        load_config("paper", "frozen_encoder", {"model.encoder_mode": "finetune"})
    # an override the ablation does not set, or one that repeats it, is fine
    assert load_config("paper", "language_only", {"model.variant": "language_only", "epochs": 2}).epochs == 2


def test_an_unknown_split_is_refused_before_any_data_is_read(tmp_path, capsys):
    from cli import main

    for cmd in (["evaluate", "--split", "dev"], ["predict", "--split", "dev", "--out", str(tmp_path / "p.csv")]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--data", str(tmp_path / "nowhere.pkl")])
        assert e.value.code == 2 and "invalid choice: 'dev'" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
