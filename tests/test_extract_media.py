"""Media layer: probing, audio decoding, streamed frames, and the bad inputs of issue 3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import InputError, MediaError
from extractors.media import (
    MediaSettings,
    find_ffmpeg,
    open_media,
    output_size,
    peak_dbfs,
    probe,
)
from tests.extract_fixtures import GRID_CLIPS, bad_inputs, run_ffmpeg, unicode_copy  # noqa: F401 - fixture

SETTINGS = MediaSettings()


def test_ffmpeg_binary_comes_from_the_pip_package() -> None:
    binary = find_ffmpeg("auto")
    assert "imageio_ffmpeg" in binary
    assert Path(binary).is_file()


def test_probe_grid_clip() -> None:
    info = probe(GRID_CLIPS[0])
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(2.98, abs=0.05)
    assert (info.video.width, info.video.height) == (360, 288)
    assert info.video.fps == pytest.approx(25.0)
    assert info.audio.sample_rate == 44100


def test_audio_decodes_to_16k_mono_matching_duration() -> None:
    media = open_media(GRID_CLIPS[0], SETTINGS, need_audio=True, need_video=True)
    assert media.audio is not None and media.audio.dtype == np.float32 and media.audio.ndim == 1
    assert media.audio.size / 16000 == pytest.approx(media.duration, abs=0.05)
    assert peak_dbfs(media.audio) > -30


def test_frames_are_streamed_at_the_requested_rate_and_size() -> None:
    media = open_media(GRID_CLIPS[0], SETTINGS, need_audio=False, need_video=True)
    frames = media.frames(fps=5, max_side=180)
    first = next(frames)
    assert first.rgb.shape == (144, 180, 3) and first.rgb.dtype == np.uint8
    rest = list(frames)
    times = [first.time] + [f.time for f in rest]
    assert np.all(np.diff(times) > 0)
    assert len(times) == pytest.approx(5 * media.duration, abs=1.5)
    assert media.warnings == []


def test_output_size_keeps_aspect_and_never_upscales() -> None:
    assert output_size(1920, 1080, 640) == (640, 360)
    assert output_size(360, 288, 640) == (360, 288)
    assert output_size(360, 288, 0) == (360, 288)


def test_path_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    p = unicode_copy(tmp_path)
    media = open_media(p, SETTINGS, need_audio=True, need_video=True)
    assert media.audio is not None and media.audio.size > 16000
    assert sum(1 for _ in media.frames(5, 320)) > 10


def test_a_relative_name_with_a_colon_is_a_file_not_a_protocol(tmp_path: Path, monkeypatch) -> None:
    """``senbert score .`` lists bare relative names; ffmpeg and PyAV read "Review: great.mp4" as
    the protocol "Review" unless they are given the absolute path."""
    import shutil

    shutil.copy(GRID_CLIPS[0], tmp_path / "Review: great.mp4")
    monkeypatch.chdir(tmp_path)
    assert probe("Review: great.mp4").has_audio
    media = open_media(Path("Review: great.mp4"), SETTINGS, need_audio=True, need_video=True)
    assert media.audio is not None and media.audio.size > 16000
    assert sum(1 for _ in media.frames(5, 320)) > 10


@pytest.mark.parametrize(
    ("case", "settings", "exc", "words"),
    [
        ("zero_byte", SETTINGS, MediaError, "empty (0 bytes)"),
        ("not_media", SETTINGS, MediaError, "not a media file"),
        ("truncated_mp4", SETTINGS, MediaError, "truncated"),
        ("missing", SETTINGS, InputError, "file not found"),
        # the error settings keep the old errors
        ("no_audio", MediaSettings(missing_stream="error"), MediaError, "the file has no audio stream"),
        ("no_video", MediaSettings(missing_stream="error"), MediaError, "the file has no video stream (audio only)"),
        ("silence", MediaSettings(on_silence="error"), MediaError, "the audio track is silent"),
    ],
)
def test_bad_input_raises_a_clear_error_naming_the_file(
    bad_inputs: dict[str, Path], case: str, settings: MediaSettings, exc: type, words: str  # noqa: F811
) -> None:
    path = bad_inputs[case]
    with pytest.raises(exc) as err:
        open_media(path, settings, need_audio=True, need_video=True)
    msg = str(err.value)
    assert str(path) in msg and words in msg


@pytest.mark.parametrize(
    ("case", "masked", "reason", "warning"),
    [
        ("no_audio", "audio", "no audio stream", "no audio stream: audio and speech masked"),
        ("no_video", "vision", "no video stream", "no video stream: vision masked"),
        ("silence", "audio", "silent audio (digital silence)", "silent audio (digital silence, below -60 dBFS)"),
    ],
)
def test_missing_or_silent_streams_are_masked_by_default(
    bad_inputs: dict[str, Path], case: str, masked: str, reason: str, warning: str  # noqa: F811
) -> None:
    media = open_media(bad_inputs[case], SETTINGS, need_audio=True, need_video=True)
    assert media.masked == {masked: reason}
    assert any(w.startswith(warning) for w in media.warnings), media.warnings
    if case == "no_video":  # the audio of an audio-only file is decoded as usual
        assert media.audio is not None and peak_dbfs(media.audio) > -30


def test_a_file_without_any_stream_the_config_needs_is_an_error(bad_inputs: dict[str, Path]) -> None:  # noqa: F811
    path = bad_inputs["no_video"]  # audio only, and only the visual extractor configured
    with pytest.raises(MediaError) as err:
        open_media(path, SETTINGS, need_audio=False, need_video=True)
    assert str(path) in str(err.value) and "no video stream" in str(err.value)
    with pytest.raises(MediaError, match="no audio stream"):
        open_media(bad_inputs["no_audio"], SETTINGS, need_audio=True, need_video=False)
    # a stream the config does not need is not looked at
    assert open_media(bad_inputs["no_audio"], SETTINGS, need_audio=False, need_video=True).masked == {}


def test_truncated_mpeg_is_detected_while_decoding(bad_inputs: dict[str, Path]) -> None:  # noqa: F811
    path = bad_inputs["truncated_mpg"]
    media = open_media(path, SETTINGS, need_audio=True, need_video=True)
    with pytest.raises(MediaError) as err:
        list(media.frames(5, 320))
    assert str(path) in str(err.value) and "damaged or truncated" in str(err.value)
    # with on_damage: warn the frames that decode are kept and the damage is recorded
    lenient = open_media(path, MediaSettings(on_damage="warn"), need_audio=True, need_video=True)
    assert len(list(lenient.frames(5, 320))) > 3
    assert any("damaged" in w for w in lenient.warnings)


def test_silence_can_be_kept_with_a_warning(bad_inputs: dict[str, Path]) -> None:  # noqa: F811
    media = open_media(bad_inputs["silence"], MediaSettings(on_silence="warn"), need_audio=True, need_video=True)
    assert media.audio is not None and peak_dbfs(media.audio) == -np.inf
    assert any("silent" in w for w in media.warnings)


def test_a_portrait_phone_video_is_decoded_upright_with_its_proportions(tmp_path: Path) -> None:
    """Phones store portrait video as landscape pixels plus a 90-degree display rotation; ffmpeg
    decodes it upright, so the frame size must come from the upright picture (before: the
    upright frame was squeezed into the stored landscape box, faces distorted about 3x)."""
    land, rot = tmp_path / "land.mp4", tmp_path / "portrait.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(land))
    run_ffmpeg("-display_rotation:v:0", "90", "-i", str(land), "-c", "copy", str(rot))
    info = probe(rot)
    assert (info.video.width, info.video.height, info.video.rotation) == (160, 90, 90)
    assert info.video.display_size == (90, 160)
    frame = next(open_media(rot, SETTINGS, need_audio=False, need_video=True).frames(5, 640))
    assert frame.rgb.shape == (160, 90, 3)
    assert next(open_media(land, SETTINGS, need_audio=False, need_video=True).frames(5, 640)).rgb.shape == (90, 160, 3)


def test_an_mpeg_ts_whose_time_starts_late_is_not_called_truncated(tmp_path: Path) -> None:
    """MPEG-TS and PS files start their clock above 0; the decoded audio starts at the file's
    start, so its expected length is the stream's duration, not its end time (before: an intact
    8 s .ts was refused as truncated)."""
    ts = tmp_path / "broadcast.ts"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=25", "-f", "lavfi", "-i",
               "sine=frequency=220:sample_rate=16000", "-t", "8", "-c:v", "mpeg2video", "-c:a", "mp2",
               "-output_ts_offset", "1.4", str(ts))
    info = probe(ts)
    assert info.start > 1.0 and info.audio.start > 1.0
    media = open_media(ts, SETTINGS, need_audio=True, need_video=True)
    assert media.audio.size / 16000 == pytest.approx(8.0, abs=0.2) and media.warnings == []
