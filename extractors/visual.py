"""Visual features: MediaPipe FaceLandmarker (video mode) on frames sampled from the clip.

Per sampled frame (default 10 fps, see docs/extractors.md), 65 columns:

- ``face_present``: 1 when a face was found in the frame, else 0 (and every other column 0).
- ``bs_*`` (52): the blendshape coefficients in [0, 1] (ARKit-style, the open stand-in for
  Facet's facial action units), e.g. ``bs_browInnerUp``, ``bs_mouthSmileLeft``.
  *Left/*Right refer to the subject's face.
- ``head_yaw_deg``, ``head_pitch_deg``, ``head_roll_deg``: rotation of the head from the
  facial transformation matrix (Z-Y-X Euler angles, degrees; yaw > 0 turns toward the
  subject's left) and ``head_tx_cm``, ``head_ty_cm``, ``head_tz_cm``: its translation in the
  canonical face model's units (about cm).
- geometry from the 478 landmarks, scale free: ``eye_open_left/right`` (lid gap over eye
  width), ``mouth_open`` (inner lip gap over mouth width), ``mouth_width`` (over the
  inter-ocular distance), ``brow_raise_left/right`` (brow-to-upper-lid distance over the
  inter-ocular distance).

One face per clip: with ``num_faces >= 2`` the landmarker reports several faces and the
tracker keeps the one chosen first (the largest) by box overlap from frame to frame; a face
that does not overlap it is taken for it only when near and of a like size (:class:`FaceTracker`),
so a second person is never tracked in its place. A new
landmarker is made for every clip (30-70 ms, while ffmpeg starts decoding the clip), because
video mode tracks across calls and needs increasing timestamps: reusing one would make a
clip's features depend on the clip processed before it (measured: with ``num_faces: 1`` a
reused landmarker gives landmarks up to 0.02 image widths away from a fresh one's).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Any, Literal

import numpy as np

from common.errors import AssetError, MediaError
from extractors.assets import resolve_face_landmarker
from extractors.media import DecodedMedia, effective_fps
from extractors.registry import FACE_PRESENT_COLUMN, FeatureSequence, register

VERSION = "1.0"

BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
POSE_NAMES = ("head_yaw_deg", "head_pitch_deg", "head_roll_deg", "head_tx_cm", "head_ty_cm", "head_tz_cm")
GEOMETRY_NAMES = ("eye_open_left", "eye_open_right", "mouth_open", "mouth_width",
                  "brow_raise_left", "brow_raise_right")
COLUMNS: tuple[str, ...] = (
    (FACE_PRESENT_COLUMN,) + tuple("bs_" + b.lstrip("_") for b in BLENDSHAPES) + POSE_NAMES + GEOMETRY_NAMES
)

# Landmark indices of the MediaPipe face mesh (subject's left/right).
_R_EYE_OUT, _R_EYE_IN, _R_LID_UP, _R_LID_LO = 33, 133, 159, 145
_L_EYE_OUT, _L_EYE_IN, _L_LID_UP, _L_LID_LO = 263, 362, 386, 374
_MOUTH_R, _MOUTH_L, _LIP_UP, _LIP_LO = 61, 291, 13, 14
_R_BROW, _L_BROW = 105, 334
_BOX = (10, 152, 234, 454, 127, 356, 148, 377)  # forehead top, chin, cheeks, temples, jaw
_USED = sorted({_R_EYE_OUT, _R_EYE_IN, _R_LID_UP, _R_LID_LO, _L_EYE_OUT, _L_EYE_IN, _L_LID_UP,
                _L_LID_LO, _MOUTH_R, _MOUTH_L, _LIP_UP, _LIP_LO, _R_BROW, _L_BROW, *_BOX})
_POS = {idx: i for i, idx in enumerate(_USED)}


@dataclass(frozen=True)
class VisualSettings:
    """Config section ``visual``."""

    fps: float = 10.0  # frames sampled per second (at most the file's own rate)
    max_side: int = 640  # frames are scaled down so the longer side is at most this (0: keep)
    num_faces: int = 2  # faces the landmarker looks for; one is tracked and kept
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    model: str | None = None  # a face_landmarker.task path; None: the packaged copy
    # a clip with no face in any frame: mask vision (no step; the clip is scored from what else it
    # has), fail the clip, or keep every frame with face_present = 0 and a warning
    on_no_face: Literal["mask", "error", "warn"] = "mask"
    low_face_share: float = 0.5  # warn when a face is in fewer frames than this share


_STDERR_LOCK = threading.Lock()  # fd 2 is the process's: one redirection at a time (thread runners)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the C++ logging MediaPipe prints on fd 2 while a graph is built. Serialised: two
    threads interleaving their save and restore would leave fd 2 on /dev/null for good."""
    with _STDERR_LOCK, _redirected_stderr():
        yield


@contextlib.contextmanager
def _redirected_stderr() -> Iterator[None]:
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Keeps one face across frames: the largest at first, then the best overlapping one. When
    none overlaps it (the face turned away or left for a moment), a face is taken for it only if
    it is near where it was last seen (centre within 1.5 box diagonals) and of a like size (area
    within 2x); otherwise the frame has no face (-1): another person in view is never taken for
    the subject."""

    REACH = 1.5  # box diagonals
    SIZE_RATIO = 2.0

    def __init__(self) -> None:
        self.box: np.ndarray | None = None

    def choose(self, boxes: list[np.ndarray]) -> int:
        if not boxes:
            return -1
        if self.box is None:
            idx = int(np.argmax([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]))
        else:
            ious = [_box_iou(b, self.box) for b in boxes]
            if max(ious) > 0.05:
                idx = int(np.argmax(ious))
            else:  # the tracked face vanished for a while: the nearest face, if it can be the same one
                c = np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])
                d = [np.hypot((b[0] + b[2]) / 2 - c[0], (b[1] + b[3]) / 2 - c[1]) for b in boxes]
                idx = int(np.argmin(d))
                area = (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])
                b = boxes[idx]
                ratio = (b[2] - b[0]) * (b[3] - b[1]) / area if area > 0 else math.inf
                diag = math.hypot(self.box[2] - self.box[0], self.box[3] - self.box[1])
                if d[idx] > self.REACH * diag or not 1 / self.SIZE_RATIO <= ratio <= self.SIZE_RATIO:
                    return -1  # someone else: this frame has no face of the subject; keep its last box
        self.box = boxes[idx]
        return idx


def head_pose(matrix: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Yaw, pitch, roll (degrees) and translation from a 4x4 facial transformation matrix."""
    m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    r = m[:3, :3]
    norms = np.linalg.norm(r, axis=0)
    r = r / np.where(norms > 0, norms, 1.0)
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    yaw = math.degrees(math.atan2(-r[2, 0], math.hypot(r[2, 1], r[2, 2])))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll, float(m[0, 3]), float(m[1, 3]), float(m[2, 3])


def _points(landmarks: Any, width: int, height: int) -> np.ndarray:
    """Pixel coordinates (len(_USED), 2) of the landmarks this module uses."""
    return np.array([(landmarks[i].x * width, landmarks[i].y * height) for i in _USED], dtype=np.float64)


def _box(pts: np.ndarray) -> np.ndarray:
    sel = pts[[_POS[i] for i in _BOX]]
    return np.array([sel[:, 0].min(), sel[:, 1].min(), sel[:, 0].max(), sel[:, 1].max()])


def geometry(pts: np.ndarray) -> tuple[float, ...]:
    """The six scale-free geometric features from landmark pixel coordinates."""

    def d(a: int, b: int) -> float:
        return float(np.linalg.norm(pts[_POS[a]] - pts[_POS[b]]))

    eps = 1e-6
    iod = max(d(_R_EYE_OUT, _L_EYE_OUT), eps)
    return (
        d(_L_LID_UP, _L_LID_LO) / max(d(_L_EYE_OUT, _L_EYE_IN), eps),
        d(_R_LID_UP, _R_LID_LO) / max(d(_R_EYE_OUT, _R_EYE_IN), eps),
        d(_LIP_UP, _LIP_LO) / max(d(_MOUTH_R, _MOUTH_L), eps),
        d(_MOUTH_R, _MOUTH_L) / iod,
        d(_L_BROW, _L_LID_UP) / iod,
        d(_R_BROW, _R_LID_UP) / iod,
    )


class FaceLandmarkerExtractor:
    """The ``mediapipe_face`` vision extractor."""

    name = "mediapipe_face"
    modality = "vision"
    version = VERSION

    def __init__(self, settings: VisualSettings) -> None:
        self.settings = settings
        self.asset = resolve_face_landmarker(settings.model)  # verified once per process
        with open(self.asset.location, "rb") as f:
            self._model_bytes = f.read()
        self._names_checked = False

    def describe(self) -> dict[str, Any]:
        return {"extractor": self.name, "version": self.version, "settings": asdict(self.settings),
                "mediapipe": version("mediapipe"), "model_sha256": self.asset.sha256}

    def columns(self) -> list[str]:
        """The names of the columns :meth:`extract` returns (also for a masked, empty sequence)."""
        return list(COLUMNS)

    def create_landmarker(self) -> Any:
        """A fresh FaceLandmarker in video mode with blendshapes and transformation matrices."""
        # mediapipe takes ~1 s to import: only in the processes that run the face extractor
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        s = self.settings
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=self._model_bytes),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=max(1, s.num_faces),
            min_face_detection_confidence=s.min_detection_confidence,
            min_face_presence_confidence=s.min_presence_confidence,
            min_tracking_confidence=s.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            with _quiet_native_stderr():
                return vision.FaceLandmarker.create_from_options(opts)
        except Exception as e:  # noqa: BLE001 - the C API raises RuntimeError/ValueError
            raise AssetError(f"face landmarker {self.asset.location} could not be loaded ({e}); "
                             "reinstall it (senbert assets) or point visual.model at a valid .task file") from e

    def extract(self, media: DecodedMedia) -> FeatureSequence:
        import mediapipe as mp  # ~1 s to import: only where the face extractor runs

        s = self.settings
        rate = effective_fps(media.info, s.fps)
        rows: list[np.ndarray] = []
        times: list[float] = []
        tracker = FaceTracker()
        max_faces = 0
        d = len(COLUMNS)
        n_bs = len(BLENDSHAPES)
        stream = media.frames(rate, s.max_side)  # ffmpeg starts decoding while the graph is built
        try:
            landmarker = self.create_landmarker()
        except BaseException:
            stream.close()
            raise
        try:
            last_ts = -1
            for frame in stream:
                h, w = frame.rgb.shape[:2]
                ts = max(int(round(frame.time * 1000)), last_ts + 1)
                last_ts = ts
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame.rgb))
                try:
                    res = landmarker.detect_for_video(image, ts)
                except Exception as e:  # noqa: BLE001
                    raise MediaError(f"{media.path}: the face landmarker failed on frame {frame.index} "
                                     f"at {frame.time:.2f} s ({e}); re-encode the file") from e
                row = np.zeros(d, dtype=np.float32)
                faces = res.face_landmarks
                max_faces = max(max_faces, len(faces))
                pts_all = [_points(lm, w, h) for lm in faces]
                idx = tracker.choose([_box(p) for p in pts_all])
                if idx >= 0:
                    row[0] = 1.0
                    cats = res.face_blendshapes[idx] if res.face_blendshapes else []
                    if len(cats) == n_bs:
                        row[1:1 + n_bs] = [c.score for c in cats]
                        if not self._names_checked:
                            got = tuple(c.category_name for c in cats)
                            if got != BLENDSHAPES:
                                raise AssetError(
                                    f"face landmarker {self.asset.location} returns blendshapes "
                                    f"{got[:3]}... not the 52 expected; use the pinned model")
                            self._names_checked = True
                    if res.facial_transformation_matrixes:
                        row[1 + n_bs:1 + n_bs + 6] = head_pose(res.facial_transformation_matrixes[idx])
                    row[1 + n_bs + 6:] = geometry(pts_all[idx])
                rows.append(row)
                times.append(frame.time)
        finally:
            stream.close()
            landmarker.close()
        values = np.stack(rows) if rows else np.zeros((0, d), dtype=np.float32)
        n = len(rows)
        present = int(values[:, 0].sum()) if n else 0
        share = present / n if n else 0.0
        warnings: list[str] = []
        if present == 0:
            msg = (f"{media.path}: no face found in any of the {n} frames sampled at {rate:g} fps")
            if s.on_no_face == "error":
                raise MediaError(msg + "; use a clip with a visible face, or set visual.on_no_face: mask "
                                 "to keep it without vision, or warn to keep it with face_present = 0 everywhere")
            if s.on_no_face == "mask":
                return FeatureSequence(
                    values=np.zeros((0, d), dtype=np.float32), names=list(COLUMNS), times=np.zeros(0), rate=rate,
                    warnings=[f"no face found in any of the {n} frames: vision masked"],
                    info={"face_share": 0.0, "frames": n, "max_faces": 0, "masked": "no face in any frame"},
                )
            warnings.append("no face found in any frame (face_present = 0 everywhere)")
        elif share < s.low_face_share:
            warnings.append(f"face found in only {share:.0%} of {n} frames (face_present marks them)")
        if max_faces > 1:
            warnings.append(f"up to {max_faces} faces in a frame; one face was tracked (the largest at first)")
        return FeatureSequence(
            values=values, names=list(COLUMNS), times=np.asarray(times), rate=rate, warnings=warnings,
            info={"face_share": share, "frames": n, "max_faces": max_faces},
        )


@register("mediapipe_face", "vision", "MediaPipe FaceLandmarker: blendshapes, head pose, geometry")
def _make(settings: VisualSettings) -> FaceLandmarkerExtractor:
    return FaceLandmarkerExtractor(settings)
