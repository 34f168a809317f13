"""Shared helpers and fixtures of the extractor tests (imported by tests/test_extract_*.py).

Real data only from the repo (tests/fixtures/grid, GRID corpus, CC BY 4.0); bad inputs are
made in the test with imageio-ffmpeg's binary.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.features.cache import FeatureCache
from pipeline.features.config import ExtractConfig, load_extract_config
from pipeline.features.pool import extract_batch

GRID_DIR = Path(__file__).parent / "fixtures" / "grid"
GRID_CLIPS = sorted(GRID_DIR.glob("*.mpg"))

# Faster than the default (fewer frames) but the same extractors.
TEST_OVERRIDES = ("visual.fps=5",)


def grid_sentences() -> dict[str, str]:
    with open(GRID_DIR / "transcripts.csv", encoding="utf-8") as f:
        return {r["file"]: r["transcript"] for r in csv.DictReader(f)}


def grid_alignment(name: str = "swwp2s.align") -> list[tuple[float, float, str]]:
    out = []
    for line in (GRID_DIR / name).read_text().split("\n"):
        if line.strip():
            a, b, w = line.split()
            out.append((int(a) / 25000, int(b) / 25000, w))
    return out


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg(), "-nostdin", "-v", "error", "-y", *args], check=True)


def fast_config(*extra: str) -> ExtractConfig:
    return load_extract_config("default", overrides=[*TEST_OVERRIDES, *extra])


def make_bad_inputs(d: Path) -> dict[str, Path]:
    """The bad inputs of the issue, made small in ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    grid = GRID_CLIPS[0]
    out: dict[str, Path] = {}
    out["zero_byte"] = d / "empty.mp4"
    out["zero_byte"].write_bytes(b"")
    out["not_media"] = d / "notes.mp4"
    out["not_media"].write_text("this is a text file, not a video\n")
    out["truncated_mpg"] = d / "truncated.mpg"
    out["truncated_mpg"].write_bytes(grid.read_bytes()[:200_000])
    full_mp4 = d / "full.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
               "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", str(full_mp4))
    out["truncated_mp4"] = d / "truncated.mp4"
    out["truncated_mp4"].write_bytes(full_mp4.read_bytes()[:15_000])
    full_mp4.unlink()
    out["no_audio"] = d / "video only.mp4"
    run_ffmpeg("-i", str(grid), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-t", "2", str(out["no_audio"]))
    out["no_video"] = d / "audio_only.wav"
    run_ffmpeg("-i", str(grid), "-vn", "-ac", "1", "-ar", "16000", str(out["no_video"]))
    out["no_face"] = d / "testcard.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-i", str(grid), "-map", "0:v", "-map", "1:a",
               "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", str(out["no_face"]))
    out["silence"] = d / "silent face.mkv"
    run_ffmpeg("-i", str(grid), "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v", "-map", "1:a",
               "-t", "2", "-c:v", "copy", "-c:a", "pcm_s16le", str(out["silence"]))
    out["missing"] = d / "does_not_exist.mp4"
    return out


def unicode_copy(d: Path) -> Path:
    """A GRID clip under a path with spaces and non-ASCII characters."""
    target = d / "dossier été" / "clip ñandú 你好 (1).mpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GRID_CLIPS[0], target)
    return target


@pytest.fixture(scope="session")
def grid_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureCache, ExtractConfig, list]:
    """The three GRID clips extracted once with the test config: (cache, config, entries)."""
    cache = FeatureCache(tmp_path_factory.mktemp("grid_cache"))
    cfg = fast_config()
    report = extract_batch(GRID_CLIPS, cfg, cache, workers=1, progress=False)
    assert not report.failed, report.failed
    return cache, cfg, report.entries


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad inputs é"))
