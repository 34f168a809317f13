"""Media: probe a file, decode its audio to 16 kHz mono, stream its frames.

Probing uses PyAV (``av``, a dependency of faster-whisper), because imageio-ffmpeg ships
no ``ffprobe``. Decoding runs the ``ffmpeg`` binary through ffmpeg-python: audio comes back
whole as float32 (16 kHz mono: 230 MB for an hour), video frames are streamed through a
pipe one frame at a time at a reduced rate and size, so a long video never sits whole in
memory.

The binary is, in order: an explicit path (config ``media.ffmpeg`` or ``$SENBERT_FFMPEG``),
the static build shipped by the ``imageio-ffmpeg`` pip package, a system ``ffmpeg`` on
``PATH``. ``media.ffmpeg: system`` picks the system one first.

Every problem a user can cause (missing, empty, truncated or damaged file, not a media
file) raises :class:`~common.errors.MediaError` or :class:`~common.errors.InputError` with the
file named and what to do. A missing stream (an audio file has no video, a video may have no
sound) or a silent audio track is not an error by default: :func:`open_media` marks that
modality as masked (``DecodedMedia.masked``), its extractors do not run and the clip keeps
the modalities it has (``media.missing_stream`` and ``media.on_silence`` choose).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import ffmpeg as ffmpeg_python  # not "ffmpeg": that name is the binary's path in this module
import numpy as np

from common.errors import AssetError, InputError, MediaError

VIDEO_EXTENSIONS = (
    ".mp4", ".mov", ".mkv", ".avi", ".mpg", ".mpeg", ".webm", ".m4v", ".flv", ".wmv", ".3gp", ".ts",
)
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".flac", ".ogg")
#: What a folder of inputs is searched for: videos and audio files (audio only: vision masked).
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS

# ffmpeg stderr lines that are not about damaged input (muxer chatter on a pipe).
_BENIGN = (
    "non monotonically increasing dts",
    "Last message repeated",
    "deprecated pixel format",
    "Guessed Channel Layout",
)
# Words in ffmpeg's messages that mean the input data itself is broken.
_DAMAGE_WORDS = re.compile(
    r"damaged|corrupt|invalid data|truncat|error while decoding|invalid mb type|"
    r"concealing|missing picture|partial file|end of file|incomplete|overread|"
    r"header missing|invalid frame|decode_slice|no frame",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class MediaSettings:
    """How media is decoded (config section ``media``)."""

    ffmpeg: str = "auto"  # "auto" | "system" | a path to an ffmpeg binary
    sample_rate: int = 16000  # audio is decoded to mono at this rate
    on_damage: Literal["error", "warn"] = "error"  # decoder errors: fail the clip or warn
    # audio whose peak is below silence_dbfs: mask it (no acoustic features, no speech
    # recognition), fail the clip, or keep it with a warning (features of silence)
    on_silence: Literal["mask", "error", "warn"] = "mask"
    silence_dbfs: float = -60.0
    # a stream the config needs is missing (no video in an audio file, no sound in a video):
    # mask that modality, or fail the clip
    missing_stream: Literal["mask", "error"] = "mask"


@dataclass(frozen=True)
class VideoStream:
    codec: str
    width: int  # as stored (before rotation and pixel aspect)
    height: int
    fps: float  # average frame rate; 0.0 when unknown
    start: float  # seconds
    duration: float  # seconds; 0.0 when unknown
    rotation: int = 0  # degrees the player turns the picture (phones: 90 / 270 for portrait)
    pixel_aspect: float = 1.0  # width of a stored pixel over its height (1 for square pixels)

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as the picture is shown (what ffmpeg decodes, upright and with
        square pixels, once scaled): what frames are sized from, never the stored size."""
        w, h = max(1, round(self.width * self.pixel_aspect)), self.height
        return (h, w) if self.rotation % 180 == 90 else (w, h)


@dataclass(frozen=True)
class AudioStream:
    codec: str
    sample_rate: int
    channels: int
    start: float
    duration: float


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a file."""

    path: Path
    size_bytes: int
    format_name: str
    duration: float  # seconds (container duration, else the longest stream)
    video: VideoStream | None
    audio: AudioStream | None
    start: float = 0.0  # seconds: where the file's time starts (MPEG-TS / PS: not 0); decoding starts there

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "format": self.format_name,
            "duration": self.duration,
            "start": self.start,
            "video": None if self.video is None else self.video.__dict__.copy(),
            "audio": None if self.audio is None else self.audio.__dict__.copy(),
        }


# --------------------------------------------------------------------------- the binary

_FFMPEG_CACHE: dict[str, str] = {}


def find_ffmpeg(preference: str = "auto") -> str:
    """Path of the ffmpeg binary to run; :class:`AssetError` when there is none."""
    if preference in _FFMPEG_CACHE:
        return _FFMPEG_CACHE[preference]
    env = os.environ.get("SENBERT_FFMPEG")
    found: str | None = None
    if preference not in ("auto", "system"):
        p = Path(preference).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise AssetError(
                f"ffmpeg binary {preference!r} (config media.ffmpeg) is not an executable file; "
                "fix the path, or set media.ffmpeg: auto to use the one from imageio-ffmpeg"
            )
        found = str(p)
    elif env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise AssetError(f"$SENBERT_FFMPEG={env!r} is not an executable file; fix or unset it")
        found = env
    else:
        system = shutil.which("ffmpeg")
        packaged: str | None = None
        try:
            import imageio_ffmpeg  # a fallback that may be missing: its absence is not an error here

            packaged = imageio_ffmpeg.get_ffmpeg_exe()
        except Exception:  # noqa: BLE001 - package missing or its binary missing
            packaged = None
        found = (system or packaged) if preference == "system" else (packaged or system)
    if not found:
        raise AssetError(
            "no ffmpeg binary found: install the pinned pip package "
            "(pip install imageio-ffmpeg==0.8.1) or a system ffmpeg (apt-get install ffmpeg), "
            "or set media.ffmpeg / $SENBERT_FFMPEG to a binary"
        )
    _FFMPEG_CACHE[preference] = found
    return found


_VERSIONS: dict[str, str] = {}


def ffmpeg_version(binary: str) -> str:
    """First line of ``ffmpeg -version`` (recorded with the features, ``meta["ffmpeg"]``; asked
    once per binary and process)."""
    if binary not in _VERSIONS:
        try:
            out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30)
            _VERSIONS[binary] = out.stdout.splitlines()[0] if out.stdout else "unknown"
        except (OSError, subprocess.SubprocessError):
            return "unknown"
    return _VERSIONS[binary]


# --------------------------------------------------------------------------- probing


def check_file(path: str | os.PathLike[str]) -> Path:
    """The path as a Path if it names a non-empty regular file; InputError/MediaError if not."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found; check the path (quote it if it has spaces)")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a media file; pass the folder to `senbert extract` instead")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{p}: the file is empty (0 bytes); re-copy or re-download it")
    return p


def _media_arg(path: str | os.PathLike[str]) -> str:
    """``path`` as ffmpeg and PyAV are given it: absolute, so that a relative name with a colon
    (``Review: great.mp4``) is a file, not a protocol ("Protocol not found")."""
    return os.path.abspath(path)


def _ffmpeg_open_error(path: Path, ffmpeg: str) -> str:
    """ffmpeg's own words on why it cannot open ``path`` (for an error message)."""
    try:
        r = subprocess.run(
            [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", _media_arg(path)],
            capture_output=True, text=True, errors="replace", timeout=60,
        )
        lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln).strip() for ln in r.stderr.splitlines()]
        lines = [ln for ln in lines if ln and "output file" not in ln.lower()]
        return lines[0] if lines else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _looks_like_mp4(path: Path) -> bool:
    """True when the file starts like an MP4/MOV (an 'ftyp' box), i.e. it is media, cut short."""
    with open(path, "rb") as f:
        head = f.read(12)
    return head[4:8] in (b"ftyp", b"mdat", b"wide", b"free", b"moov")


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 32 or b in (9, 10, 13) for b in head)


def _seconds(value: Any, time_base: Any) -> float:
    if value is None or time_base is None:
        return 0.0
    return float(value * time_base)


def probe(path: str | os.PathLike[str], ffmpeg: str | None = None) -> MediaInfo:
    """Duration and streams of a media file, without decoding it."""
    p = check_file(path)
    try:
        import av  # not a direct dependency (it comes with faster-whisper): a clear error if missing
    except ImportError as e:  # pragma: no cover - av comes with faster-whisper
        raise AssetError("PyAV is needed to probe media: pip install av (it comes with faster-whisper)") from e
    try:
        container = av.open(_media_arg(p))
    except Exception as e:  # noqa: BLE001 - PyAV raises many types; all mean "unreadable"
        detail = _ffmpeg_open_error(p, ffmpeg or find_ffmpeg())
        if "moov atom not found" in detail and _looks_like_mp4(p):
            raise MediaError(
                f"{p}: not a readable media file: its index (the 'moov atom') is missing, which is what "
                "a truncated or unfinished download looks like; re-download or re-encode the file"
            ) from e
        what = "it looks like a text file" if _looks_like_text(p) else "ffmpeg: " + (detail or str(e))
        raise MediaError(
            f"{p}: not a media file ({what}); check that it is a video, "
            "or re-encode it (ffmpeg -i in.ext out.mp4)"
        ) from e
    try:
        video: VideoStream | None = None
        audio: AudioStream | None = None
        for s in container.streams:
            if s.type == "video" and video is None:
                cc = s.codec_context
                if not cc.width or not cc.height:
                    continue  # cover art or a broken stream
                rate = s.average_rate or s.guessed_rate or Fraction(0)
                sar = s.sample_aspect_ratio
                video = VideoStream(
                    codec=str(cc.name),
                    width=int(cc.width),
                    height=int(cc.height),
                    fps=float(rate),
                    start=_seconds(s.start_time, s.time_base),
                    duration=_seconds(s.duration, s.time_base),
                    rotation=_rotation(container, s),
                    pixel_aspect=float(sar) if sar and 0.2 <= float(sar) <= 5.0 else 1.0,
                )
            elif s.type == "audio" and audio is None:
                cc = s.codec_context
                audio = AudioStream(
                    codec=str(cc.name),
                    sample_rate=int(cc.sample_rate or 0),
                    channels=int(getattr(cc, "channels", 0) or 0),
                    start=_seconds(s.start_time, s.time_base),
                    duration=_seconds(s.duration, s.time_base),
                )
        duration = float(container.duration) / 1_000_000 if container.duration else 0.0
        if duration <= 0.0:
            duration = max(
                (st.duration + st.start for st in (video, audio) if st is not None), default=0.0
            )
        fmt = str(container.format.name)
        start = float(container.start_time) / 1_000_000 if container.start_time else 0.0
    finally:
        container.close()
    if video is None and audio is None:
        raise MediaError(f"{p}: the file has neither a video nor an audio stream; it is not a usable clip")
    return MediaInfo(p, p.stat().st_size, fmt, duration, video, audio, start)


def _rotation(container: Any, stream: Any) -> int:
    """The display rotation of a video stream (0, 90, 180 or 270), read off its first frame
    (PyAV shows the display matrix there only); 0 when that frame does not decode."""
    try:
        for frame in container.decode(stream):
            return int(round(float(getattr(frame, "rotation", 0) or 0))) % 360
    except Exception:  # noqa: BLE001 - a damaged first frame: decoding reports it later
        pass
    finally:
        with contextlib.suppress(Exception):
            container.seek(0)
    return 0


# --------------------------------------------------------------------------- decoding


def _damage_lines(stderr: str, codecs: tuple[str, ...]) -> list[str]:
    """Lines of ffmpeg's stderr that report broken input data."""
    out = []
    for ln in stderr.splitlines():
        s = ln.strip()
        if not s or any(b in s for b in _BENIGN):
            continue
        from_decoder = any(s.startswith(f"[{c} @") for c in codecs if c)
        if from_decoder or _DAMAGE_WORDS.search(s):
            out.append(re.sub(r"^\[(\S+) @ 0x[0-9a-f]+\]\s*", r"\1: ", s))
    return out


_INPUT = "senbert-input"  # stands for the file while ffmpeg-python builds the command line


def _ffmpeg_stream(path: Path, binary: str, **output_kwargs: Any) -> list[str]:
    """ffmpeg's command line decoding ``path`` to a pipe. The file goes in after the build:
    ffmpeg-python hashes its arguments as UTF-8, which a Linux name that is not UTF-8 (lone
    surrogates) fails; the command line itself takes any name the file system has."""
    cmd = (
        ffmpeg_python.input(_INPUT)
        .output("pipe:", **output_kwargs)
        .global_args("-nostdin", "-hide_banner", "-v", "error")
        .compile(cmd=binary)
    )
    return [_media_arg(path) if a == _INPUT else a for a in cmd]


def decode_audio(info: MediaInfo, settings: MediaSettings) -> tuple[np.ndarray, list[str]]:
    """The audio track as float32 mono at ``settings.sample_rate``, aligned to time 0.

    Returns the samples and warnings. A late-starting audio track is padded with silence at
    the front, so sample ``i`` is at time ``i / sample_rate`` on the same clock as the frames.
    """
    if info.audio is None:
        raise MediaError(f"{info.path}: the file has no audio stream; the acoustic and speech "
                         "extractors need one (or disable them in the extract config)")
    binary = find_ffmpeg(settings.ffmpeg)
    sr = settings.sample_rate
    cmd = _ffmpeg_stream(
        info.path, binary, format="f32le", acodec="pcm_f32le", ac=1, ar=sr, vn=None,
        af=f"aresample={sr}:async=1:first_pts=0",
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=max(120.0, 4 * info.duration))
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"{info.path}: decoding the audio took too long; re-encode the file") from e
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        first = next((ln for ln in stderr.splitlines() if ln.strip()), "unknown error")
        raise MediaError(f"{info.path}: ffmpeg could not decode the audio ({first}); re-encode the file")
    samples = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    warnings = _check_damage(info, stderr, settings, "audio")
    if samples.size == 0:
        raise MediaError(f"{info.path}: the audio stream decodes to no samples; the file is damaged or "
                         "truncated; re-encode or re-download it")
    # decoded audio starts at the file's start (MPEG-TS / PS: often 1 s or more), not at 0
    expected = info.audio.duration + info.audio.start - info.start if info.audio.duration else 0.0
    got = samples.size / sr
    if expected > 1.0 and got < 0.9 * expected - 0.25:
        _damage(info, settings, warnings,
                f"audio ends at {got:.2f} s but the stream says {expected:.2f} s (truncated file)")
    return samples, warnings


def _damage(info: MediaInfo, settings: MediaSettings, warnings: list[str], what: str) -> None:
    if settings.on_damage == "error":
        raise MediaError(
            f"{info.path}: the file is damaged or truncated: {what}; re-download or re-encode it, "
            "or set media.on_damage: warn to keep what decodes"
        )
    warnings.append(f"damaged media: {what}")


def _check_damage(info: MediaInfo, stderr: str, settings: MediaSettings, kind: str) -> list[str]:
    codecs = tuple(s.codec for s in (info.video, info.audio) if s is not None)
    lines = _damage_lines(stderr, codecs)
    warnings: list[str] = []
    if lines:
        _damage(info, settings, warnings, f"ffmpeg reported while decoding the {kind}: {lines[0]!r}"
                + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""))
    return warnings


@dataclass
class Frame:
    """One decoded frame: its time in seconds, its index and its RGB pixels (H, W, 3) uint8."""

    index: int
    time: float
    rgb: np.ndarray


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Frame size after scaling down so the longer side is at most ``max_side`` (even sizes)."""
    scale = 1.0 if max_side <= 0 else min(1.0, max_side / max(width, height))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def effective_fps(info: MediaInfo, fps: float) -> float:
    """The sampling rate actually used: the requested one, at most the file's own rate."""
    if info.video is None:
        return 0.0
    if fps <= 0:
        return info.video.fps or 25.0
    return min(fps, info.video.fps) if info.video.fps > 0 else fps


class FrameStream:
    """RGB frames sampled at ``fps`` (at most the file's rate), scaled to ``max_side``, streamed.

    ffmpeg starts when the stream is made; a reader thread keeps up to ``prefetch`` decoded
    frames ready, so decoding overlaps with whatever consumes the frames (and a consumer can
    set itself up, e.g. load a model, while ffmpeg starts). Frame ``i`` is at ``i / fps``
    seconds. After the last frame, ffmpeg's exit status and messages are checked: a damaged
    or truncated file raises MediaError (or adds to ``warnings`` with ``on_damage: warn``).
    Only ``prefetch`` frames are ever held in memory.
    """

    def __init__(self, info: MediaInfo, settings: MediaSettings, fps: float, max_side: int,
                 warnings: list[str], prefetch: int = 6) -> None:
        if info.video is None:
            raise MediaError(f"{info.path}: the file has no video stream (audio only); the visual "
                             "extractor needs one (or disable it in the extract config)")
        self.info, self.settings, self.warnings = info, settings, warnings
        self.rate = effective_fps(info, fps)
        # ffmpeg turns the picture upright and to square pixels before the scale filter: size from that
        self.width, self.height = output_size(*info.video.display_size, max_side)
        cmd = _ffmpeg_stream(
            info.path, find_ffmpeg(settings.ffmpeg), format="rawvideo", pix_fmt="rgb24", an=None,
            vf=f"fps={self.rate:.6f},scale={self.width}:{self.height}:flags=area",
        )
        self._frame_bytes = self.width * self.height * 3
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._err: list[bytes] = []
        self._index = 0
        self._done = False
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._drain, daemon=True)]
        for t in self._threads:
            t.start()

    def _drain(self) -> None:  # keep stderr flowing so a chatty decoder cannot block the pipe
        assert self._proc.stderr is not None
        for chunk in iter(lambda: self._proc.stderr.read(4096), b""):  # type: ignore[union-attr]
            self._err.append(chunk)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        try:
            while not self._stop.is_set():
                buf = self._proc.stdout.read(self._frame_bytes)
                if len(buf) < self._frame_bytes:
                    break
                while not self._stop.is_set():
                    try:
                        self._queue.put(buf, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        finally:
            while True:  # the end marker must get through, unless the consumer left
                try:
                    self._queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        break

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> Frame:
        if self._done:
            raise StopIteration
        buf = self._queue.get()
        if buf is None:
            self._finish()
            raise StopIteration
        rgb = np.frombuffer(buf, dtype=np.uint8).reshape(self.height, self.width, 3)
        frame = Frame(index=self._index, time=self._index / self.rate, rgb=rgb)
        self._index += 1
        return frame

    def _finish(self) -> None:
        self._done = True
        rc = self._proc.wait(timeout=60)
        for t in self._threads:
            t.join(timeout=5)
        self._close_pipes()
        stderr = b"".join(self._err).decode("utf-8", "replace")
        if rc != 0:
            first = next((ln for ln in stderr.splitlines() if ln.strip()), f"exit status {rc}")
            raise MediaError(f"{self.info.path}: ffmpeg could not decode the video ({first}); re-encode the file")
        self.warnings.extend(_check_damage(self.info, stderr, self.settings, "video"))
        if self._index == 0:
            raise MediaError(f"{self.info.path}: the video stream decodes to no frames; the file is damaged "
                             "or truncated; re-encode or re-download it")

    def _close_pipes(self) -> None:
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def close(self) -> None:
        """Stop early: end ffmpeg and the reader (idempotent)."""
        self._stop.set()
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        self._close_pipes()
        self._done = True

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._done:
                self.close()


def iter_frames(
    info: MediaInfo, settings: MediaSettings, fps: float, max_side: int, warnings: list[str]
) -> Iterator[Frame]:
    """Frames of ``info`` as a generator (see :class:`FrameStream`)."""
    with FrameStream(info, settings, fps, max_side, warnings) as stream:
        yield from stream


@dataclass
class DecodedMedia:
    """A probed file with its audio decoded and its frames available as a stream.

    ``audio`` is None when the config needs no audio or the file has none; ``frames()``
    decodes afresh on each call. Decoder warnings (``media.on_damage: warn``) accumulate in
    ``warnings``. ``masked`` maps a modality (``"audio"``, ``"vision"``) whose stream is
    missing or silent to the reason (``"no audio stream"``, ``"silent audio (digital
    silence)"``, ``"no video stream"``): its extractors must not run on this file.
    """

    info: MediaInfo
    settings: MediaSettings
    audio: np.ndarray | None = None
    sample_rate: int = 16000
    warnings: list[str] = field(default_factory=list)
    masked: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def duration(self) -> float:
        if self.info.duration > 0:
            return self.info.duration
        return 0.0 if self.audio is None else self.audio.size / self.sample_rate

    def frames(self, fps: float, max_side: int) -> FrameStream:
        """A new stream of frames (ffmpeg starts now; iterate it, or close() it)."""
        return FrameStream(self.info, self.settings, fps, max_side, self.warnings)


def open_media(
    path: str | os.PathLike[str], settings: MediaSettings, *, need_audio: bool, need_video: bool
) -> DecodedMedia:
    """Probe ``path``, check it has the streams the config needs, decode its audio.

    A needed stream that is missing, or an audio track whose peak is below
    ``settings.silence_dbfs``, masks that modality (``DecodedMedia.masked``, with a warning)
    under the defaults ``missing_stream: mask`` and ``on_silence: mask``; ``error`` raises
    :class:`MediaError` instead (``on_silence: warn`` keeps the silence, with a warning). A
    file that lacks every stream the config needs is a MediaError in any case: nothing could
    be extracted from it.
    """
    info = probe(path, find_ffmpeg(settings.ffmpeg))
    media = DecodedMedia(info=info, settings=settings, sample_rate=settings.sample_rate)
    no_video = need_video and info.video is None
    no_audio = need_audio and info.audio is None
    if no_video and settings.missing_stream == "error":
        raise MediaError(f"{info.path}: the file has no video stream (audio only); the visual "
                         "extractor needs one; pass a video, or run a config without the visual extractor "
                         "(or set media.missing_stream: mask to keep the clip without vision)")
    if no_audio and settings.missing_stream == "error":
        raise MediaError(f"{info.path}: the file has no audio stream; the acoustic and speech "
                         "extractors need one; pass a video with sound, or run a config without them "
                         "(or set media.missing_stream: mask to keep the clip without audio)")
    if (no_video or no_audio) and (no_video or not need_video) and (no_audio or not need_audio):
        missing = "video" if no_video else "audio"
        raise MediaError(f"{info.path}: the file has no {missing} stream, and the config extracts nothing "
                         f"else from it; pass a file with {missing}, or run a config with other extractors")
    if no_video:
        media.masked["vision"] = "no video stream"
        media.warnings.append("no video stream: vision masked")
    if no_audio:
        media.masked["audio"] = "no audio stream"
        media.warnings.append("no audio stream: audio and speech masked")
    if need_audio and not no_audio:
        media.audio, warns = decode_audio(info, settings)
        media.warnings.extend(warns)
        peak = peak_dbfs(media.audio)
        if peak < settings.silence_dbfs:
            level = "digital silence" if peak == -np.inf else f"peak {peak:.0f} dBFS"
            if settings.on_silence == "error":
                raise MediaError(
                    f"{info.path}: the audio track is silent ({level}, below {settings.silence_dbfs:g} dBFS); "
                    "check the file's sound, or set media.on_silence: mask to keep the clip without audio, "
                    "or warn to keep it (features of silence and an empty transcript)"
                )
            if settings.on_silence == "mask":
                media.masked["audio"] = f"silent audio ({level})"
                media.warnings.append(f"silent audio ({level}, below {settings.silence_dbfs:g} dBFS): "
                                      "audio and speech masked")
            else:
                media.warnings.append(f"silent audio ({level}); acoustic features describe silence")
    return media


def peak_dbfs(samples: np.ndarray) -> float:
    """Peak level of float samples in dB relative to full scale (-inf for all zeros)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")
