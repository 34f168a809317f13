"""Acoustic features from 16 kHz mono audio, one row every ``1 / rate_hz`` seconds.

``librosa`` (the default), 29 columns per step (default 50 Hz: 20 ms hop, 25 ms window):

- ``mfcc_01`` .. ``mfcc_12``: mel cepstrum c1..c12 (40 mel bands, 20 Hz - 8 kHz); c0 is
  left out because ``log_energy_db`` carries the level.
- ``log_energy_db``: frame RMS level in dB relative to full scale (floor -100).
- ``f0_hz``: fundamental frequency from YIN (60-500 Hz, 64 ms window); 0 when unvoiced, as
  in COVAREP. ``voiced``: 1/0 decision; ``voicing_prob``: 1 - YIN aperiodicity, in [0, 1].
- ``spectral_centroid_hz``, ``spectral_bandwidth_hz``, ``spectral_rolloff_hz`` (85 %),
  ``spectral_flatness``, ``spectral_flux`` (positive mel-dB change), ``zero_crossing_rate``.
- ``spectral_contrast_1`` .. ``spectral_contrast_7``: peak-to-valley dB in six octave bands
  from 100 Hz plus the top band (a coarse spectral envelope).

Step ``i`` is centred at ``i * hop / sr`` seconds; a clip of ``N`` samples has
``1 + N // hop`` steps, so the count follows the duration exactly.

YIN is computed here with numpy (vectorised over frames, from de Cheveigne & Kawahara 2002)
rather than with ``librosa.yin``, to obtain its aperiodicity (the voicing measure) in the
same pass; ``librosa.pyin`` gives voicing too but costs about 0.13 s per second of audio.

``egemaps`` (optional extra): openSMILE eGeMAPSv02 low-level descriptors (25 columns,
loudness, spectral slopes and ratios, MFCC 1-4, F0 in semitones, jitter, shimmer, HNR,
H1-H2, H1-A3, formants F1-F3), resampled from openSMILE's 100 Hz onto the same grid.
openSMILE's licence is research / non-commercial: it is never a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import librosa
import numpy as np

from common.errors import AssetError, MediaError
from extractors.media import DecodedMedia
from extractors.registry import LOUDNESS_DB_COLUMN, FeatureSequence, register

VERSION = "1.1"  # 1.1: voicing_prob 0 in frames below min_voiced_db (was 1 in digital silence)

LIBROSA_COLUMNS: tuple[str, ...] = (
    tuple(f"mfcc_{i:02d}" for i in range(1, 13))
    + (LOUDNESS_DB_COLUMN, "f0_hz", "voiced", "voicing_prob",
       "spectral_centroid_hz", "spectral_bandwidth_hz", "spectral_rolloff_hz", "spectral_flatness",
       "spectral_flux", "zero_crossing_rate")
    + tuple(f"spectral_contrast_{i}" for i in range(1, 8))
)


@dataclass(frozen=True)
class AcousticSettings:
    """Config section ``acoustic``."""

    rate_hz: float = 50.0  # steps per second (hop = sample_rate / rate_hz)
    window_ms: float = 25.0  # analysis window of MFCC and spectral features
    n_mels: int = 40
    fmin_hz: float = 60.0  # F0 search range
    fmax_hz: float = 500.0
    pitch_window_ms: float = 64.0  # YIN window (must hold two periods of fmin)
    yin_threshold: float = 0.15  # YIN absolute threshold (candidate periods)
    voicing_threshold: float = 0.4  # aperiodicity below this (and some energy) = voiced
    min_voiced_db: float = -50.0  # frames quieter than this (dBFS) are never voiced

    def __post_init__(self) -> None:
        if not 0 < self.fmin_hz < self.fmax_hz:
            raise ValueError(f"fmin_hz {self.fmin_hz} and fmax_hz {self.fmax_hz}: need 0 < fmin_hz < fmax_hz")
        need = 2000.0 / self.fmin_hz
        if self.pitch_window_ms < need:  # YIN could not see a period that long: the floor would rise silently
            raise ValueError(f"pitch_window_ms {self.pitch_window_ms} must hold two periods of fmin_hz "
                             f"{self.fmin_hz} ({need:.1f} ms); lengthen it or raise fmin_hz")


def frame_geometry(sample_rate: int, settings: AcousticSettings) -> tuple[int, int, int]:
    """(hop, window, n_fft) in samples."""
    hop = int(round(sample_rate / settings.rate_hz))
    win = int(round(sample_rate * settings.window_ms / 1000))
    n_fft = 1 << (max(win, 2) - 1).bit_length()
    return hop, win, n_fft


def n_steps(n_samples: int, hop: int) -> int:
    return 1 + n_samples // hop


def _fit(a: np.ndarray, t: int) -> np.ndarray:
    """Trim or edge-pad the last axis to length ``t``."""
    if a.shape[-1] >= t:
        return a[..., :t]
    pad = [(0, 0)] * (a.ndim - 1) + [(0, t - a.shape[-1])]
    return np.pad(a, pad, mode="edge") if a.shape[-1] else np.zeros(a.shape[:-1] + (t,), a.dtype)


def yin(y: np.ndarray, sr: int, fmin: float, fmax: float, frame_length: int, hop: int,
        threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz) and aperiodicity (CMNDF at the chosen period, in [0, 1]) per centred frame."""
    tau_min = max(2, int(np.floor(sr / fmax)))
    tau_max = min(frame_length // 2, int(np.ceil(sr / fmin)))
    w_int = frame_length - tau_max
    yp = np.pad(y.astype(np.float64), frame_length // 2)
    frames = librosa.util.frame(yp, frame_length=frame_length, hop_length=hop, axis=0)  # (T, W)
    t = frames.shape[0]
    n = 1 << (frame_length + w_int - 1).bit_length()
    a_spec = np.fft.rfft(frames[:, :w_int], n=n, axis=1)
    b_spec = np.fft.rfft(frames, n=n, axis=1)
    corr = np.fft.irfft(np.conj(a_spec) * b_spec, n=n, axis=1)[:, : tau_max + 1]  # sum_j a_j b_{j+tau}
    sq = np.concatenate([np.zeros((t, 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    e0 = sq[:, w_int][:, None]
    e_tau = sq[:, taus + w_int] - sq[:, taus]
    diff = np.maximum(e0 + e_tau - 2 * corr, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmndf = np.ones_like(diff)
    cmndf[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    seg = cmndf[:, tau_min: tau_max + 1]  # candidates
    k = np.arange(seg.shape[1])
    local_min = np.zeros_like(seg, dtype=bool)
    local_min[:, 1:-1] = (seg[:, 1:-1] <= seg[:, :-2]) & (seg[:, 1:-1] <= seg[:, 2:])
    below = seg < threshold
    first_below = np.where(below.any(axis=1), np.argmax(below, axis=1), seg.shape[1])
    cand = local_min & (k[None, :] >= first_below[:, None])
    has = cand.any(axis=1) & (first_below < seg.shape[1])
    idx = np.where(has, np.argmax(cand, axis=1), np.argmin(seg, axis=1))
    rows = np.arange(t)
    # parabolic interpolation around the chosen lag
    i0 = np.clip(idx, 1, seg.shape[1] - 2)
    ym, y0, yp1 = seg[rows, i0 - 1], seg[rows, i0], seg[rows, i0 + 1]
    denom = ym - 2 * y0 + yp1
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (ym - yp1) / np.where(denom == 0, 1, denom), 0.0)
    shift = np.where(idx == i0, np.clip(shift, -1, 1), 0.0)
    period = tau_min + idx + shift
    f0 = sr / np.maximum(period, 1e-6)
    aperiodicity = np.clip(seg[rows, idx], 0.0, 1.0)
    return f0, aperiodicity


class LibrosaExtractor:
    """The ``librosa`` audio extractor (the open stand-in for COVAREP)."""

    name = "librosa"
    modality = "audio"
    version = VERSION

    def __init__(self, settings: AcousticSettings) -> None:
        self.settings = settings
        if settings.rate_hz <= 0 or settings.rate_hz > 400:
            raise AssetError(f"acoustic.rate_hz must be in (0, 400], got {settings.rate_hz}")

    def describe(self) -> dict[str, Any]:
        return {"extractor": self.name, "version": self.version, "settings": asdict(self.settings),
                "librosa": librosa.__version__, "numpy": np.__version__}

    def columns(self) -> list[str]:
        """The names of the columns :meth:`extract` returns (also for a masked, empty sequence)."""
        return list(LIBROSA_COLUMNS)

    def features(self, y: np.ndarray, sr: int) -> FeatureSequence:
        s = self.settings
        hop, win, n_fft = frame_geometry(sr, s)
        t = n_steps(y.size, hop)
        y = np.ascontiguousarray(y, dtype=np.float32)
        spec = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
                                   center=True, pad_mode="constant"))
        power = spec**2
        mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=s.n_mels, fmin=20.0,
                                             fmax=sr / 2)
        mel_db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=13)[1:13]
        rms = librosa.feature.rms(y=y, frame_length=win, hop_length=hop, center=True, pad_mode="constant")[0]
        energy_db = np.maximum(20 * np.log10(np.maximum(rms, 1e-5)), -100.0)
        pitch_len = int(round(sr * s.pitch_window_ms / 1000))
        pitch_len += pitch_len % 2
        f0, aper = yin(y, sr, s.fmin_hz, s.fmax_hz, pitch_len, hop, s.yin_threshold)
        f0, aper, energy_db = _fit(f0, t), _fit(aper, t), _fit(energy_db, t)
        voiced = (aper < s.voicing_threshold) & (energy_db > s.min_voiced_db)
        f0_out = np.where(voiced, f0, 0.0)
        centroid = librosa.feature.spectral_centroid(S=spec, sr=sr, n_fft=n_fft)[0]
        bandwidth = librosa.feature.spectral_bandwidth(S=spec, sr=sr, n_fft=n_fft)[0]
        rolloff = librosa.feature.spectral_rolloff(S=spec, sr=sr, n_fft=n_fft, roll_percent=0.85)[0]
        flatness = librosa.feature.spectral_flatness(S=spec, amin=1e-10)[0]
        flux = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=hop, lag=1, max_size=1, center=False)
        zcr = librosa.feature.zero_crossing_rate(y, frame_length=win, hop_length=hop, center=True)[0]
        contrast = librosa.feature.spectral_contrast(S=spec, sr=sr, n_fft=n_fft, n_bands=6, fmin=100.0)
        cols = [
            _fit(mfcc, t), energy_db[None], f0_out[None], voiced[None].astype(np.float64),
            # below min_voiced_db there is no voice to be periodic (YIN calls digital silence periodic)
            np.where(energy_db > s.min_voiced_db, 1.0 - aper, 0.0)[None],
            _fit(centroid, t)[None], _fit(bandwidth, t)[None], _fit(rolloff, t)[None],
            _fit(flatness, t)[None], _fit(flux, t)[None], _fit(zcr, t)[None], _fit(contrast, t),
        ]
        values = np.concatenate([np.asarray(c, dtype=np.float64) for c in cols], axis=0).T
        values[~np.isfinite(values)] = 0.0
        times = np.arange(t) * hop / sr
        return FeatureSequence(values=values.astype(np.float32), names=list(LIBROSA_COLUMNS), times=times,
                               rate=sr / hop, info={"voiced_share": float(voiced.mean()) if t else 0.0})

    def extract(self, media: DecodedMedia) -> FeatureSequence:
        if media.audio is None:
            raise MediaError(f"{media.path}: no audio was decoded for the acoustic extractor")
        return self.features(media.audio, media.sample_rate)


class EgemapsExtractor:
    """The optional ``egemaps`` extractor (openSMILE; research / non-commercial licence)."""

    name = "egemaps"
    modality = "audio"
    version = VERSION

    def __init__(self, settings: AcousticSettings) -> None:
        self.settings = settings
        try:
            import opensmile  # an opt-in extra (research licence), ~2 s to import: only when configured
        except ImportError as e:
            raise AssetError(
                "the egemaps extractor needs openSMILE: pip install opensmile==2.6.0 (its licence "
                "allows research and non-commercial use only); or use the default librosa extractor"
            ) from e
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                      feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self._names = ["egemaps_" + str(c) for c in self._smile.feature_names]
        self._opensmile_version = opensmile.__version__

    def describe(self) -> dict[str, Any]:
        return {"extractor": self.name, "version": self.version, "rate_hz": self.settings.rate_hz,
                "opensmile": self._opensmile_version, "feature_set": "eGeMAPSv02"}

    def columns(self) -> list[str]:
        """The names of the columns :meth:`extract` returns (also for a masked, empty sequence)."""
        return list(self._names)

    def features(self, y: np.ndarray, sr: int) -> FeatureSequence:
        hop = int(round(sr / self.settings.rate_hz))
        t = n_steps(y.size, hop)
        times = np.arange(t) * hop / sr
        df = self._smile.process_signal(np.ascontiguousarray(y, dtype=np.float32), sr)
        src = df.to_numpy(dtype=np.float64)
        if src.shape[0] == 0:
            return FeatureSequence(np.zeros((t, len(self._names)), np.float32), self._names, times, sr / hop)
        starts = df.index.get_level_values("start").total_seconds().to_numpy()
        ends = df.index.get_level_values("end").total_seconds().to_numpy()
        centres = (starts + ends) / 2
        out = np.stack([np.interp(times, centres, src[:, j]) for j in range(src.shape[1])], axis=1)
        out[~np.isfinite(out)] = 0.0
        return FeatureSequence(out.astype(np.float32), self._names, times, sr / hop)

    def extract(self, media: DecodedMedia) -> FeatureSequence:
        if media.audio is None:
            raise MediaError(f"{media.path}: no audio was decoded for the egemaps extractor")
        return self.features(media.audio, media.sample_rate)


@register("librosa", "audio", "librosa: 12 MFCCs, energy, F0 and voicing, spectral shape")
def _make_librosa(settings: AcousticSettings) -> LibrosaExtractor:
    return LibrosaExtractor(settings)


@register("egemaps", "audio", "openSMILE eGeMAPSv02 LLDs (optional, non-commercial licence)", optional=True)
def _make_egemaps(settings: AcousticSettings) -> EgemapsExtractor:
    return EgemapsExtractor(settings)
