"""``senbert release`` end to end, tiny (pipeline/training/release/): ``release build``, the one
command that builds a part of the shipped model (here a MiniLM LoRA recipe with utterance context
on the sample corpus), trains, packs, measures on both valid splits and writes a model card that
says what the model reads; ``--recalibrate`` refits its calibration without training;
``release combine`` packs the members of several such models into one, as the shipped default
combines two recipes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from pipeline.models.packed import read_manifest, verify_packed
from pipeline.models.predictor import Predictor
from pipeline.training.release.build import card_only
from pipeline.training.release.spoken import add_spoken, read_result, section
from tests.conftest import SENTENCES, TINY

ROOT = SENTENCES.parents[2]
BUILD = [sys.executable, "-m", "cli", "release", "build"]
COMBINE = [sys.executable, "-m", "cli", "release", "combine"]


def test_rebuild_packs_a_verified_model_with_its_card(tmp_path):
    sets = [f"{k}={v}" for k, v in {**TINY, "epochs": 1, "pretrain_epochs": 1}.items()]
    sets += ["model.variant=language_only", "model.adapter=lora", "model.lora_r=2", "context=1",
             "pretrain_context=0", "max_context_len=8", "context_dropout=0.25"]
    out, work = tmp_path / "model", tmp_path / "work"
    cmd = BUILD + ["--mosi", str(SENTENCES), "--mosei", str(SENTENCES), "--config", "quick", "--seeds", "1,2",
                   "--work", str(work), "--out", str(out), "--name", "tiny-ctx"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "CPU:" in r.stdout and "packed" in r.stdout
    manifest = verify_packed(out)
    assert manifest["members"] == ["member_1", "member_2"]
    assert set(manifest["figures"]) == {"MOSI", "MOSEI", "MOSI alone"}  # a context model: also read alone
    assert manifest["figures"]["MOSI alone"]["n"] == manifest["figures"]["MOSI"]["n"]
    assert manifest["recipe"]["members"] == [1, 2]
    assert json.loads((work / "pretrain" / "result.json").read_text())["epochs_run"] == 1
    card = (out / "MODEL_CARD.md").read_text()
    assert "# tiny-ctx" in card and "Utterance context" in card
    assert "without context, then MOSI's train split with context 1 (context dropout 0.25)" in card
    assert "neighbouring utterances of the same recording" in card  # its intended use says so
    assert "25 % of the clips read alone" in card and "MOSI valid, each clip alone" in card
    # the rebuild command is complete: every option that differs from the command's defaults
    assert "- Rebuild: `senbert release build --mosi MOSI/label.csv --mosei MOSEI/label.csv --config quick" in card
    assert "--set context_dropout=0.25" in card and "--set max_context_len=8" in card and "--name tiny-ctx" in card
    assert "--seeds 1,2" in card
    assert "MOSI valid" in card and "MOSEI valid" in card
    model = Predictor.load(out)
    assert model.meta.context == 1
    assert read_manifest(out)["files"]["MODEL_CARD.md"]
    # the calibration of the ensemble's score, fitted on MOSI train, ships with it and is measured both ways
    assert model.calibration is not None and model.calibration.fitted_on.endswith("train, 240 clips")
    assert "calibration.json" in manifest["files"] and "uncalibrated" in manifest["figures"]["MOSI"]
    assert "- Calibration (`calibration.json`, `quantile`)" in card and "ensemble before calibration" in card
    assert manifest["built"]["train_hours"] > 0 and manifest["built"]["cpu"]

    # --recalibrate: the packed members as they are (no training), the calibration refitted, the card rewritten;
    # --text-style plain: the members now read transcripts in MOSI's style (the sample's are in it already,
    # but for the case of "I", which the uncased encoder does not see: the same figures)
    weights = {k: v for k, v in manifest["files"].items() if k.endswith(".safetensors")}
    shutil.rmtree(work)  # it needs no training runs; the build record comes from the manifest
    r = subprocess.run(BUILD + ["--mosi", str(SENTENCES), "--mosei", str(SENTENCES), "--config", "quick", "--work",
                                str(work), "--out", str(out), "--name", "tiny-ctx", "--recalibrate", "--text-style",
                                "plain"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    again = verify_packed(out)
    assert {k: v for k, v in again["files"].items() if k.endswith(".safetensors")} == weights
    assert again["built"] == manifest["built"] and again["recipe"]["text_style"] == "plain"
    assert {k: v for k, v in again["recipe"].items() if k != "text_style"} == \
        {k: v for k, v in manifest["recipe"].items() if k != "text_style"}
    assert Predictor.load(out).meta.text_style == "plain"
    assert again["figures"]["MOSI"]["ensemble"] == manifest["figures"]["MOSI"]["ensemble"]  # the same map again
    card2 = (out / "MODEL_CARD.md").read_text()
    assert "--set context_dropout=0.25" in card2 and "- Calibration" in card2
    assert "--seeds 1,2" in card2  # the packed model's recipe, not this command's defaults
    assert "Transcripts are read in plain style" in card2 and "Transcripts are read in plain style" not in card
    assert not (work / "members_of_packed").exists()

    # --members-from: a third seed added to the packed model without training the two it has; --weights int8
    out3 = tmp_path / "model3"
    cmd3 = cmd[:] + ["--members-from", str(out), "--weights", "int8"]
    cmd3[cmd3.index("--seeds") + 1] = "1,2,3"
    cmd3[cmd3.index("--out") + 1] = str(out3)
    r = subprocess.run(cmd3, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "seeds [1, 2] are its members (not trained again)" in r.stdout + r.stderr  # logged
    assert (work / "seed_3" / "result.json").is_file() and not (work / "seed_1").exists()
    assert not (work / "members_of_packed").exists()
    third = verify_packed(out3)
    assert third["members"] == ["member_1", "member_2", "member_3"] and third["weights"] == "int8"
    assert third["recipe"]["seeds"] == [1, 2, 3] and third["built"]["train_hours"] > manifest["built"]["train_hours"]
    assert third["recipe"]["weights"] == "int8" and manifest["recipe"]["weights"] == "auto"  # the option given
    card3 = (out3 / "MODEL_CARD.md").read_text()
    assert "3 member(s) (seeds 1, 2, 3)" in card3 and "in int8 with one fp32 scale per rank line" in card3
    assert "--weights int8" in card3 and "--members-from" not in card3  # seeds 1,2,3: the default
    # --weights auto (the default) with members from an int8 pack: packed in int8 as they are, not refused
    out4 = tmp_path / "model4"
    cmd4 = cmd3[:-2]
    cmd4[cmd4.index("--members-from") + 1] = str(out3)
    cmd4[cmd4.index("--out") + 1] = str(out4)
    r = subprocess.run(cmd4, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stored in int8 already: packing every member in int8" in r.stdout + r.stderr  # logged
    fourth = verify_packed(out4)
    assert fourth["weights"] == "int8" and fourth["recipe"]["seeds"] == [1, 2, 3]
    assert {k: v for k, v in fourth["files"].items() if k.endswith(".safetensors")} == \
        {k: v for k, v in third["files"].items() if k.endswith(".safetensors")}  # byte for byte
    # senbert release combine: the members of several packed models in one, each part named in its card;
    # parts that read transcripts in different styles are refused (out reads plain since --text-style plain)
    mix = tmp_path / "combined"
    combine = COMBINE + ["--mosi", str(SENTENCES), "--mosei", str(SENTENCES), "--work", str(work), "--out", str(mix),
                         "--name", "tiny-mix"]
    r = subprocess.run(combine + ["--parts", str(out), str(out3)], capture_output=True, text=True, cwd=ROOT,
                       timeout=900)
    assert r.returncode != 0 and "read transcripts in different styles" in r.stderr and not mix.exists()
    r = subprocess.run(combine + ["--parts", str(out3), str(out4)], capture_output=True, text=True, cwd=ROOT,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    combined = verify_packed(mix)
    assert combined["members"] == [f"member_{i}" for i in range(1, 7)] and combined["weights"] == "int8"
    assert [p["n_members"] for p in combined["recipe"]["parts"]] == [3, 3] and "calibration.json" in combined["files"]
    assert set(combined["figures"]) == {"MOSI", "MOSEI", "MOSI alone"}
    assert combined["built"]["train_hours"] == pytest.approx(2 * fourth["built"]["train_hours"])
    card_mix = (mix / "MODEL_CARD.md").read_text()
    assert "# tiny-mix" in card_mix and "6 members whose predictions are averaged" in card_mix
    assert "members 1-3: part 1, `tiny-ctx`" in card_mix and "members 4-6: part 2" in card_mix
    assert "### Part 2: `tiny-ctx`" in card_mix and "context dropout 0.25" in card_mix
    assert "- Rebuild: `bash scripts/rebuild_default_model.sh" in card_mix and "part 1 alone" in card_mix
    assert card_mix.count("- Calibration") == 1 and card_mix.count("- Rebuild") == 1
    assert not (work / "members_of_packed").exists()
    model_mix = Predictor.load(mix)
    assert model_mix.name == "tiny-mix" and model_mix.calibration is not None
    # a combination is not rebuilt by the one-recipe command
    r = subprocess.run(BUILD + ["--mosi", str(SENTENCES), "--mosei", str(SENTENCES), "--out", str(mix),
                                "--recalibrate"], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode != 0 and "senbert release combine" in r.stderr
    # the members of a model of another recipe cannot stand for seeds of this one
    r = subprocess.run(cmd3[:-4] + ["--members-from", str(out), "--set", "epochs=2"], capture_output=True,
                       text=True, cwd=ROOT, timeout=900)
    assert r.returncode != 0 and "cannot stand for seeds" in r.stderr


def test_rebuild_with_mosei_as_extra_data_then_the_card_alone(tmp_path):
    """``--mosei-as extra``: no preliminary stage, one run per seed on both train splits, said so in
    the card and its rebuild command; members trained in plain style (``--set text_style=plain``)
    are packed to read in it; ``--card-only`` re-renders that card from the packed model alone (no
    training runs), its weights untouched."""
    sets = [f"{k}={v}" for k, v in {**TINY, "epochs": 1}.items()]
    sets += ["model.variant=language_only", "model.adapter=lora", "model.lora_r=2", "context=1", "max_context_len=8",
             "text_style=plain"]
    out, work = tmp_path / "model", tmp_path / "work"
    cmd = BUILD + ["--mosi", str(SENTENCES), "--mosei", str(SENTENCES), "--config", "quick", "--seeds", "1",
                   "--work", str(work), "--out", str(out), "--name", "tiny-extra", "--mosei-as", "extra"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (work / "pretrain").exists()
    run_cfg = yaml.safe_load((work / "seed_1" / "config.yaml").read_text())
    assert run_cfg["extra_train"] == [str(SENTENCES.resolve())] and run_cfg["pretrain"] == []
    manifest = verify_packed(out)
    assert manifest["recipe"]["mosei_as"] == "extra"
    card = (out / "MODEL_CARD.md").read_text()
    assert ("one run on MOSI's and MOSEI's train splits together with context 1 (context dropout 0.3), "
            "up to 1 epochs") in card
    assert "preliminary stage" not in card and "--mosei-as extra" in card
    # trained plain, read plain: no --text-style needed to say so, and the card tells how it reads
    assert Predictor.load(out).meta.text_style == "plain" and manifest["recipe"]["text_style"] == "plain"
    assert "Transcripts are read in plain style" in card and "--set text_style=plain" in card
    assert "--text-style" not in card

    shutil.rmtree(work)  # --card-only packs from the packed model's own members
    (out / "MODEL_CARD.md").unlink()
    manifest["files"].pop("MODEL_CARD.md")
    (out / "manifest.json").write_text(json.dumps(manifest))  # a pack without its card
    r = subprocess.run(cmd[:cmd.index("--set")] + ["--card-only"], capture_output=True, text=True, cwd=ROOT,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "MODEL_CARD.md").read_text() == card
    again = verify_packed(out)
    assert {k: v for k, v in again["files"].items() if k.endswith(".safetensors")} == \
        {k: v for k, v in manifest["files"].items() if k.endswith(".safetensors")}
    assert not (work / "members_of_packed").exists()
    # the same from Python, without --name: the packed model keeps its own
    done = card_only(out, work=work)
    assert done.card == card and done.manifest["name"] == "tiny-extra" and done.figures == manifest["figures"]
    # figures from speech, added by `release spoken`, survive a new card (the scores are the same)
    spoken = add_spoken(out, [read_result(spoken_result(tmp_path / "r.json"))])
    done = card_only(out, work=work)
    assert done.manifest["spoken"] == spoken["spoken"] and done.card.count("## From speech") == 1
    assert done.card.replace(section(spoken["spoken"]) + "\n", "") == card

    r = subprocess.run(cmd + ["--stage-from", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode != 0 and "--mosei-as extra has none" in r.stderr
    r = subprocess.run(BUILD + ["--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 2 and "--mosi and --mosei are needed" in r.stderr


def test_the_cards_stage_context_comes_from_the_stage_run_or_else_the_members_recipe(tmp_path):
    """Under ``--card-only`` / ``--recalibrate`` the training runs may be gone: the card's "stage
    with/without context" then follows what the members' own training config gave the stage, not
    a default."""
    from pipeline.training.release import build
    from pipeline.training.release.card import data_text

    gone = tmp_path / "pretrain"  # no stage run at hand
    assert build._stage_context(gone, {"pretrain_context": 2}, 1) == 2
    assert build._stage_context(gone, {"pretrain_context": None}, 1) == 1  # unset: the members' context
    assert build._stage_context(gone, {"pretrain_context": 0}, 1) == 0
    assert build._stage_context(None, {"pretrain_context": 2}, 1) == 0  # MOSEI as extra data: no stage
    gone.mkdir()
    (gone / "config.yaml").write_text("context: 3\n")  # the stage's own run wins (a reused --stage-from)
    assert build._stage_context(gone, {"pretrain_context": 0}, 1) == 3
    # and the card says it
    text = data_text("pretrain", 2, 1, 64, build._stage_context(gone, {}, 1))
    assert "with context 3, then MOSI's train split with context 1" in text["data_line"]


def test_the_command_lines_choices_are_the_librarys():
    """cli/release.py reads its choices from a module without torch: they must be the library's."""
    from pipeline.corpora.clips import TEXT_STYLES
    from pipeline.models.calibration import KINDS
    from pipeline.models.packed import WEIGHT_FORMATS
    from pipeline.training.release import recipe

    assert recipe.WEIGHT_CHOICES == ("auto", *WEIGHT_FORMATS)
    assert recipe.CALIBRATION_CHOICES == KINDS and recipe.TEXT_STYLE_CHOICES == TEXT_STYLES
    r = subprocess.run([sys.executable, "-c", "import sys, cli; cli.build_parser(); "
                        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-2000:]


def spoken_result(path, split="valid", mode="clip", voice="piper", mae=0.57):
    """A result file as bench/bench_spoken.py writes it (the keys the card reads)."""
    metrics = {"n": 20, "mae": mae, "corr": 0.87, "acc7": 0.55, "acc5": 0.6, "acc2_has0": 0.88, "f1_has0": 0.88,
               "acc2_non0": 0.9, "f1_non0": 0.9}
    result = {"run": f"tiny-{split}-{voice}-{mode}", "corpus": "mosi", "split": split, "voice": voice, "mode": mode,
              "asr_model": "whisper base (default)", "precision": "fp32", "gold_view": "alone",
              "spoken": metrics, "gold": {**metrics, "mae": 0.54}, "wer": {"wer": 0.141, "wer_no_fillers": 0.135}}
    if mode == "video":
        result["gold_view"] = "context"
        result["segmentation"] = {"joins": 19, "joins_cut": 19, "cuts_inside_clips": 1, "clips_sharing_an_utterance": 0}
    path.write_text(json.dumps(result))
    return path


def test_release_spoken_puts_the_figures_from_speech_into_the_card_and_manifest(tmp_path):
    from pipeline.models.packed import pack_model
    from pipeline.training.config import load_config
    from pipeline.training.trainer import train
    from tests.conftest import make_corpus

    over = {**TINY, "epochs": 1, "model.adapter": "lora", "model.lora_r": 2, "model.variant": "language_only"}
    ckpt = train(make_corpus(16, text_only=True), load_config("quick", overrides=over), tmp_path / "run",
                 progress=False).checkpoint
    card = "# tiny\n\n## Metrics\nrows\n\n## Intended use\nreviews\n"
    out = pack_model([ckpt], tmp_path / "pack", "tiny", card=card)
    weights = {k: v for k, v in read_manifest(out)["files"].items() if k != "MODEL_CARD.md"}
    clip, video = spoken_result(tmp_path / "clip.json"), spoken_result(tmp_path / "video.json", mode="video")
    r = subprocess.run([sys.executable, "-m", "cli", "release", "spoken", "--model", str(out), "--results",
                        str(clip), str(video)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = verify_packed(out)  # the card's new SHA-256 recorded; the rest untouched
    assert {k: v for k, v in manifest["files"].items() if k != "MODEL_CARD.md"} == weights
    assert [s["mode"] for s in manifest["spoken"]] == ["clip", "video"]
    text = (out / "MODEL_CARD.md").read_text()
    assert text.index("## Metrics") < text.index("## From speech") < text.index("## Intended use")
    assert "| MOSI valid, Piper (en_US-joe-medium, neural), a file per clip | 20 | 0.570 | 0.870 | 90.00 | " \
           "55.00 | 0.540 (clips read alone) | +0.030 | 14.1 (13.5) |" in text
    assert "19 of 19 joins cut, 1 cuts inside a clip, 0 clips sharing an utterance" in text
    # again with other results: the section is replaced, not added
    add_spoken(out, [read_result(spoken_result(tmp_path / "e.json", voice="espeak", mae=0.77))])
    text = (out / "MODEL_CARD.md").read_text()
    assert text.count("## From speech") == 1 and "espeak-ng" in text and "Piper" not in text
    assert len(verify_packed(out)["spoken"]) == 1
    # what is not a result, or measured a test split, is refused with the file named
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    test_split = spoken_result(tmp_path / "test.json", split="test")
    for path, why in ((bad, "not a readable bench_spoken result"), (test_split, "measured the 'test' split"),
                      (tmp_path / "missing.json", "not a readable bench_spoken result")):
        r = subprocess.run([sys.executable, "-m", "cli", "release", "spoken", "--model", str(out), "--results",
                            str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode != 0 and str(path) in r.stderr and why in r.stderr, r.stderr[-2000:]
