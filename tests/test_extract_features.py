"""The real extractors on GRID clips: face, acoustic features, speech recognition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import MediaError
from extractors import registry
from extractors.acoustic import LIBROSA_COLUMNS, AcousticSettings, LibrosaExtractor, yin
from extractors.media import MediaSettings, open_media
from extractors.transcript import AsrSettings
from extractors.visual import BLENDSHAPES, COLUMNS, FaceTracker, VisualSettings, head_pose
from extractors.wer import normalize_words, word_error_rate
from tests.extract_fixtures import GRID_CLIPS, GRID_DIR, bad_inputs, grid_alignment, grid_sentences  # noqa: F401

SR = 16000


@pytest.fixture(scope="module")
def grid_media() -> list:
    return [open_media(p, MediaSettings(), need_audio=True, need_video=True) for p in GRID_CLIPS]


# --------------------------------------------------------------------------- visual


def test_face_found_in_grid_frames_with_named_columns(grid_media: list) -> None:
    ex = registry.create("mediapipe_face", VisualSettings(fps=5))
    for media in grid_media:
        seq = ex.extract(media)
        assert seq.names == list(COLUMNS) and len(seq.names) == 65
        assert seq.values.shape == (len(seq.times), 65) and seq.values.dtype == np.float32
        assert seq.info["face_share"] > 0.9
        assert np.all(np.diff(seq.times) > 0)
        assert seq.times[-1] <= media.duration
        present = seq.values[:, 0] == 1
        bs = seq.values[present, 1:53]
        assert np.all((bs >= 0) & (bs <= 1)) and bs.max() > 0.1
        yaw, pitch, roll = (seq.values[present, seq.names.index(n)] for n in
                            ("head_yaw_deg", "head_pitch_deg", "head_roll_deg"))
        assert np.all(np.abs(yaw) < 30) and np.all(np.abs(roll) < 30)  # frontal speakers
        mouth = seq.values[present, seq.names.index("mouth_open")]
        assert mouth.max() > mouth.min()  # the speaker's mouth moves
    for name in ("bs_neutral", "bs_browInnerUp", "bs_jawOpen", "bs_mouthSmileLeft", "face_present",
                 "eye_open_left", "brow_raise_right", "head_tz_cm"):
        assert name in COLUMNS
    assert len(BLENDSHAPES) == 52


def test_frames_without_a_face_are_marked_not_dropped(bad_inputs: dict[str, Path]) -> None:  # noqa: F811
    media = open_media(bad_inputs["no_face"], MediaSettings(), need_audio=False, need_video=True)
    masked = registry.create("mediapipe_face", VisualSettings(fps=5)).extract(media)  # the default: mask
    assert masked.values.shape == (0, len(masked.names)) and masked.info["masked"] == "no face in any frame"
    assert masked.info["face_share"] == 0.0 and any("vision masked" in w for w in masked.warnings)
    strict = registry.create("mediapipe_face", VisualSettings(fps=5, on_no_face="error"))
    with pytest.raises(MediaError) as err:
        strict.extract(media)
    assert str(bad_inputs["no_face"]) in str(err.value) and "no face" in str(err.value)
    lenient = registry.create("mediapipe_face", VisualSettings(fps=5, on_no_face="warn"))
    seq = lenient.extract(media)
    assert seq.values.shape[0] == pytest.approx(10, abs=1)
    assert not seq.values.any() and seq.info["face_share"] == 0.0
    assert any("no face" in w for w in seq.warnings)


def test_tracker_keeps_the_first_largest_face() -> None:
    tr = FaceTracker()
    big, small = np.array([100, 100, 200, 220.0]), np.array([10, 10, 40, 45.0])
    assert tr.choose([small, big]) == 1
    moved = big + 5
    assert tr.choose([moved, small]) == 0
    assert tr.choose([]) == -1


def test_tracker_never_takes_another_person_for_the_subject() -> None:
    """The subject turns away while the interviewer is in view: no face for those frames, and
    the subject is found again where it was (before: the track jumped to the interviewer)."""
    tr = FaceTracker()
    subject, interviewer = np.array([300, 100, 400, 220.0]), np.array([20, 40, 90, 120.0])
    assert tr.choose([interviewer, subject]) == 1
    assert tr.choose([interviewer]) == -1  # far away and smaller: not the subject
    assert tr.choose([interviewer, subject + 30]) == 1  # back, having moved a little
    jumped = subject + 30 + np.array([110, 0, 110, 0.0])  # no overlap with the last box, but near and alike
    assert _iou_zero(jumped, subject + 30) and tr.choose([jumped]) == 0  # the same face, moved fast
    bigger = np.array([550, 130, 800, 430.0])  # beside it, not overlapping, six times its area: not it
    assert _iou_zero(bigger, jumped) and tr.choose([bigger]) == -1


def _iou_zero(a: np.ndarray, b: np.ndarray) -> bool:
    from extractors.visual import _box_iou

    return _box_iou(a, b) <= 0.05


def test_head_pose_of_known_rotation() -> None:
    a = np.radians(20)
    m = np.eye(4)
    m[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]  # about y
    m[:3, 3] = [1, 2, -30]
    yaw, pitch, roll, tx, ty, tz = head_pose(m)
    assert yaw == pytest.approx(20) and pitch == pytest.approx(0, abs=1e-6) and roll == pytest.approx(0, abs=1e-6)
    assert (tx, ty, tz) == (1, 2, -30)


# --------------------------------------------------------------------------- acoustic


def test_acoustic_frame_count_matches_duration(grid_media: list) -> None:
    ex = registry.create("librosa", AcousticSettings())
    for media in grid_media:
        seq = ex.extract(media)
        assert seq.names == list(LIBROSA_COLUMNS) and len(seq.names) == 29
        assert seq.rate == pytest.approx(50.0)
        assert seq.values.shape[0] == 1 + media.audio.size // 320
        assert seq.values.shape[0] == pytest.approx(media.duration * 50, abs=2)
        assert np.all(np.diff(seq.times) > 0) and np.isfinite(seq.values).all()
        f0 = seq.values[:, seq.names.index("f0_hz")]
        voiced = seq.values[:, seq.names.index("voiced")] == 1
        assert 0.1 < voiced.mean() < 0.9  # speech with pauses
        assert np.all((f0[voiced] > 60) & (f0[voiced] < 500)) and np.all(f0[~voiced] == 0)


def test_rate_is_configurable() -> None:
    y = np.random.default_rng(0).normal(0, 0.1, SR * 2).astype(np.float32)
    seq = LibrosaExtractor(AcousticSettings(rate_hz=25, window_ms=40)).features(y, SR)
    assert seq.values.shape == (1 + y.size // 640, 29)
    assert seq.times[1] == pytest.approx(0.04)


def test_yin_recovers_a_tone_and_its_voicing() -> None:
    t = np.arange(SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 180 * t)
    f0, aper = yin(tone, SR, 60, 500, 1024, 320, 0.15)
    assert np.median(f0) == pytest.approx(180, rel=0.01)
    assert np.median(aper) < 0.05
    noise = np.random.default_rng(1).normal(0, 0.3, SR)
    _, aper_noise = yin(noise, SR, 60, 500, 1024, 320, 0.15)
    assert np.median(aper_noise) > 0.4


def test_digital_silence_has_no_voicing_probability() -> None:
    """The zeros ffmpeg pads late-starting audio with are not a periodic voice (YIN alone calls
    them perfectly periodic: voicing_prob was 1 there, as for a clean tone)."""
    t = np.arange(SR) / SR
    y = np.concatenate([np.zeros(SR), 0.3 * np.sin(2 * np.pi * 150 * t)]).astype(np.float32)
    seq = LibrosaExtractor(AcousticSettings()).features(y, SR)
    prob = seq.values[:, seq.names.index("voicing_prob")]
    silent, tone = seq.times < 0.9, seq.times > 1.1
    assert np.all(prob[silent] == 0) and np.median(prob[tone]) > 0.9


def test_egemaps_extra_when_installed(grid_media: list) -> None:
    import importlib.util

    # the README's test command sets up with --dev, which installs it: a missing one is a failure
    assert importlib.util.find_spec("opensmile"), "openSMILE is missing: run scripts/setup.sh --dev"
    seq = registry.create("egemaps", AcousticSettings()).extract(grid_media[0])
    assert len(seq.names) == 25 and all(n.startswith("egemaps_") for n in seq.names)
    assert seq.values.shape[0] == 1 + grid_media[0].audio.size // 320


# --------------------------------------------------------------------------- transcripts


def test_whisper_transcribes_grid_close_to_the_sentence(grid_media: list) -> None:
    tr = registry.create("faster_whisper", AsrSettings())
    sentences = grid_sentences()
    refs, hyps = [], []
    for path, media in zip(GRID_CLIPS, grid_media, strict=True):
        result = tr.transcribe(media.audio, SR)
        refs.append(sentences[path.name])
        hyps.append(result.text)
        assert result.words, path
        starts = [w.start for w in result.words]
        assert starts == sorted(starts) and all(w.end >= w.start for w in result.words)
    by_name = dict(zip([p.name for p in GRID_CLIPS], hyps, strict=True))
    assert word_error_rate([sentences["swwp2s.mpg"]], [by_name["swwp2s.mpg"]]) <= 0.2, by_name
    assert word_error_rate(refs, hyps) <= 0.4, hyps


def test_whisper_word_times_follow_the_grid_alignment(grid_media: list) -> None:
    tr = registry.create("faster_whisper", AsrSettings())
    idx = [p.name for p in GRID_CLIPS].index("swwp2s.mpg")
    words = tr.transcribe(grid_media[idx].audio, SR).words
    align = {w: (a, b) for a, b, w in grid_alignment() if w != "sil"}
    matched = 0
    for w in words:
        key = normalize_words(w.word)
        if key and key[0] in align:
            start, _ = align[key[0]]
            assert abs(w.start - start) < 0.5, (w, start)
            matched += 1
    assert matched >= 3


def test_silence_gives_an_empty_transcript_with_a_warning() -> None:
    result = registry.create("faster_whisper", AsrSettings()).transcribe(np.zeros(SR * 2, np.float32), SR)
    assert result.text == "" and result.words == [] and result.warnings


def test_pocketsphinx_fallback_returns_timed_words(grid_media: list) -> None:
    result = registry.create("pocketsphinx", AsrSettings()).transcribe(grid_media[0].audio, SR)
    assert result.text and result.words
    assert all(0 <= w.start <= w.end <= 3.1 for w in result.words)


def test_wer_normaliser() -> None:
    assert normalize_words("Been read by K7 now.") == ["been", "read", "by", "k", "seven", "now"]
    assert normalize_words("Mr. Dashwood, ill-disposed") == ["mister", "dashwood", "ill", "disposed"]
    assert word_error_rate(["a b c d"], ["a x c"]) == pytest.approx(0.5)
    assert (GRID_DIR / "README.md").read_text().count("CC BY 4.0") >= 1
