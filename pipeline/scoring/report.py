"""Self-contained HTML reports of scored files, with a PNG timeline plot per file.

A report needs no server and no network: one HTML file per scored input file, its CSS inline,
its plot inline as a ``data:`` URI, no JavaScript, no web fonts. Written under ``<out>``::

    report/index.html        every file: ok ones by score (most negative first), then the
                             failed and skipped ones with their reasons
    report/<name>.html       one per ok file: summary, model, timeline, coloured transcript,
                             utterance table
    plots/<name>.png         the timeline plot of that file (the same image the page shows)

``<name>`` is a filesystem-safe form of the clip id; when two files would get the same name
(same stem in two folders), a short hash of the path is added to each.

The rows are the plain dicts of the scoring code: a *file row* per input file (``path``,
``clip_id``, ``status``, ``score``, ``most_negative`` ...) and *utterance rows* per file
(``index``, ``start``, ``end``, ``transcript``, ``score`` ...; a failed utterance has score
None). A :class:`Timeline` holds what the plot shows under the scores: face presence and
loudness over time, read from a feature-cache entry by :func:`timeline_from_entry`.

matplotlib is imported inside the plotting function only (Agg, no pyplot), so importing
this module stays cheap.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from common.io import atomic_write, display_text
from extractors.registry import FACE_PRESENT_COLUMN, LOUDNESS_DB_COLUMN

if TYPE_CHECKING:
    from pipeline.features.cache import CacheEntry

log = logging.getLogger(__name__)

REPORT_DIR = "report"
PLOTS_DIR = "plots"
INDEX_NAME = "index.html"

#: at most this many points per curve in the plot (a 1-hour file is binned down to it)
MAX_BINS = 400
FACE_COLUMN = FACE_PRESENT_COLUMN
LOUDNESS_COLUMN = LOUDNESS_DB_COLUMN  # librosa extractor; eGeMAPS: a column containing "Loudness"


# --------------------------------------------------------------------------- timeline


@dataclass
class Timeline:
    """Face presence and loudness of one file over time (arrays may be empty)."""

    duration: float
    face_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    face_present: np.ndarray = field(default_factory=lambda: np.zeros(0))  # 0/1 per visual frame
    loud_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loudness_db: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loudness_label: str = "loudness (dB)"  # eGeMAPS loudness is not in dB: its label says so


def _column(data: np.ndarray, names: Sequence[str], times: np.ndarray, pick) -> tuple[np.ndarray, np.ndarray, str]:
    data = np.asarray(data)
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if data.ndim != 2 or data.shape[0] == 0 or times.shape[0] != data.shape[0]:
        return np.zeros(0), np.zeros(0), ""
    for j, name in enumerate(names):
        if j < data.shape[1] and pick(str(name)):
            return times, data[:, j].astype(np.float64), str(name)
    return np.zeros(0), np.zeros(0), ""


def timeline_from_entry(entry: CacheEntry) -> Timeline:
    """The :class:`Timeline` of a feature-cache entry.

    Face presence is the vision column ``face_present``; loudness the audio column
    ``log_energy_db`` (librosa extractor) or, failing that, one whose name contains
    ``Loudness`` (eGeMAPS). A modality the entry lacks (an audio-only file has no vision
    rows, a silent video no audio rows) gives empty arrays.
    """
    ft, fv, _ = _column(entry.vision, entry.vision_names, entry.vision_times, lambda n: n == FACE_COLUMN)
    lt, lv, _ = _column(entry.audio, entry.audio_names, entry.audio_times, lambda n: n == LOUDNESS_COLUMN)
    label = "loudness (dB)"
    if not lt.size:
        lt, lv, _ = _column(entry.audio, entry.audio_names, entry.audio_times, lambda n: "loudness" in n.lower())
        if lt.size:
            label = "loudness (eGeMAPS)"
    return Timeline(duration=float(entry.duration or 0.0), face_times=ft, face_present=fv,
                    loud_times=lt, loudness_db=lv, loudness_label=label)


def bin_series(times: np.ndarray, values: np.ndarray, t_end: float,
               max_bins: int = MAX_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` in at most ``max_bins`` equal time bins over ``[0, t_end]``.

    Short series are returned as they are (finite points only); empty bins are NaN, so a
    gap in the data shows as a gap in the curve.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = min(t.size, v.size)
    t, v = t[:n], v[:n]
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if t.size <= max_bins:
        return t, v
    end = max(float(t_end), float(t.max()), 1e-9)
    idx = np.minimum((t / end * max_bins).astype(np.int64), max_bins - 1)
    idx = np.maximum(idx, 0)
    counts = np.bincount(idx, minlength=max_bins)
    sums = np.bincount(idx, weights=v, minlength=max_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    centres = (np.arange(max_bins) + 0.5) * end / max_bins
    return centres, means


# --------------------------------------------------------------------------- formatting


def fmt_clock(seconds: Any, tenths: bool = False) -> str:
    """``mm:ss`` (``h:mm:ss`` from one hour on); ``mm:ss.s`` with ``tenths``; '-' if unknown."""
    s = _num(seconds)
    if s is None:
        return "-"
    s = max(0.0, s)
    if tenths:
        s = round(s, 1)
        whole = int(s)
        frac = f".{int(round((s - whole) * 10)) % 10}"
    else:
        whole, frac = int(round(s)), ""
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}{frac}" if h else f"{m:02d}:{sec:02d}{frac}"


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt_score(v: Any) -> str:
    f = _num(v)
    return "-" if f is None else f"{f:+.2f}"


def _fmt_share(v: Any) -> str:
    f = _num(v)
    return "-" if f is None else f"{100 * f:.0f}%"


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def score_colour(score: Any) -> str:
    """Background colour of a score: red (-3) .. white (0) .. green (+3); grey when None."""
    s = _num(score)
    if s is None:
        return "#e0e0e0"
    a = min(abs(s), 3.0) / 3.0
    end = (229, 115, 115) if s < 0 else (102, 187, 106)  # light enough for black text at full scale
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def _file_name(row: Mapping[str, Any]) -> str:
    """The file's name for display: bytes that are not UTF-8 (lone surrogates) as escapes, which
    a plot title can draw."""
    p = str(row.get("path") or "")
    return display_text(os.path.basename(p) or str(row.get("clip_id") or "file"))


# --------------------------------------------------------------------------- plot


def _t_end(file_row: Mapping[str, Any] | None, utterances: Sequence[Mapping[str, Any]],
           timeline: Timeline | None) -> float:
    cands = [_num((file_row or {}).get("duration")) or 0.0]
    if timeline is not None:
        cands.append(_num(timeline.duration) or 0.0)
        for t in (timeline.face_times, timeline.loud_times):
            t = np.asarray(t, dtype=np.float64)
            if t.size and np.isfinite(t).any():
                cands.append(float(np.nanmax(t)))
    cands += [_num(u.get("end")) or 0.0 for u in utterances]
    end = max(cands)
    return end if end > 0 else 1.0


def timeline_png(file_row: Mapping[str, Any], utterances: Sequence[Mapping[str, Any]],
                 timeline: Timeline | None, dpi: int = 100) -> bytes:
    """The timeline plot as PNG bytes (see :func:`plot_timeline`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    tl = timeline if timeline is not None else Timeline(duration=0.0)
    t_end = _t_end(file_row, utterances, tl)
    cmap = LinearSegmentedColormap.from_list("senbert_score", ["#c62828", "#9e9e9e", "#2e7d32"])
    norm = Normalize(-3.0, 3.0)

    fig = Figure(figsize=(12, 6.2), dpi=dpi)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3, 1, height_ratios=[3.0, 1.0, 1.3], hspace=0.12)
    ax_s = fig.add_subplot(gs[0])
    ax_f = fig.add_subplot(gs[1], sharex=ax_s)
    ax_l = fig.add_subplot(gs[2], sharex=ax_s)

    # -- scores: a bar from 0 to the score over each utterance, its top edge drawn bold
    bars, tops, colours, failed = [], [], [], []
    for u in utterances:
        a, b = _num(u.get("start")), _num(u.get("end"))
        if a is None or b is None:
            continue
        b = max(b, a + t_end * 1e-4)
        s = _num(u.get("score"))
        if s is None:
            failed.append([(a, -3.0), (b, -3.0), (b, 3.0), (a, 3.0)])
            continue
        s = float(np.clip(s, -3.0, 3.0))
        bars.append([(a, 0.0), (b, 0.0), (b, s), (a, s)])
        tops.append([(a, s), (b, s)])
        colours.append(cmap(norm(s)))
    if failed:
        ax_s.add_collection(PolyCollection(failed, facecolors="#bdbdbd", edgecolors="none", alpha=0.35,
                                           hatch="//", label="failed utterance"))
    if bars:
        ax_s.add_collection(PolyCollection(bars, facecolors=colours, edgecolors="none", alpha=0.55))
        from matplotlib.collections import LineCollection

        ax_s.add_collection(LineCollection(tops, colors=colours, linewidths=2.5))
    ax_s.axhline(0.0, color="#424242", linewidth=0.8)
    mean = _num(file_row.get("score"))
    if mean is not None and bars:
        ax_s.axhline(mean, color="#1565c0", linewidth=1.0, linestyle="--", label=f"file score {mean:+.2f}")
    if not bars and not failed:
        ax_s.text(0.5, 0.5, "no utterances", transform=ax_s.transAxes, ha="center", va="center", color="#757575")
    if failed or (mean is not None and bars):
        ax_s.legend(loc="upper right", fontsize=8, frameon=False)
    ax_s.set_ylim(-3.2, 3.2)
    ax_s.set_yticks([-3, -2, -1, 0, 1, 2, 3])
    ax_s.set_ylabel("sentiment score")
    ax_s.grid(axis="y", color="#eeeeee", linewidth=0.6)
    ax_s.set_axisbelow(True)
    # a file name is text, not mathtext: "$" (MMSA ids: "<video>$_$<clip>") must not be parsed
    ax_s.set_title(f"{_file_name(file_row)}: utterance scores, face presence and loudness", fontsize=11,
                   parse_math=False)

    # -- face presence: share of frames with a face, per bin
    ft, fv = bin_series(tl.face_times, tl.face_present, t_end)
    if ft.size:
        ax_f.fill_between(ft, 0.0, fv, step="mid", color="#7e57c2", alpha=0.45, linewidth=0)
        ax_f.plot(ft, fv, drawstyle="steps-mid", color="#5e35b1", linewidth=0.8)
    else:
        ax_f.text(0.5, 0.5, "no video frames", transform=ax_f.transAxes, ha="center", va="center", color="#757575")
    ax_f.set_ylim(-0.05, 1.05)
    ax_f.set_yticks([0, 0.5, 1] if ft.size else [])
    ax_f.set_ylabel("face", rotation=0, ha="right", va="center")

    # -- loudness
    lt, lv = bin_series(tl.loud_times, tl.loudness_db, t_end)
    if lt.size and np.isfinite(lv).any():
        ax_l.plot(lt, lv, color="#ef6c00", linewidth=0.9)
        lo, hi = float(np.nanmin(lv)), float(np.nanmax(lv))
        lo = max(lo, hi - 80.0)  # a -100 dB floor (digital silence) does not squash the rest
        pad = max(1.0, 0.08 * (hi - lo))
        ax_l.set_ylim(lo - pad, hi + pad)
        ax_l.yaxis.set_major_locator(MaxNLocator(3))
    else:
        ax_l.text(0.5, 0.5, "no audio", transform=ax_l.transAxes, ha="center", va="center", color="#757575")
        ax_l.set_yticks([])
    ax_l.set_ylabel(tl.loudness_label)

    # -- shared time axis: seconds, mm:ss for long files
    ax_s.set_xlim(0.0, t_end)
    for ax in (ax_s, ax_f):
        ax.tick_params(labelbottom=False)
    if t_end >= 120:
        ax_l.xaxis.set_major_locator(MaxNLocator(nbins=12, steps=[1, 2, 3, 5, 6, 10]))
        ax_l.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt_clock(x)))
        ax_l.set_xlabel("time (mm:ss)")
    else:
        ax_l.set_xlabel("time (s)")
    for ax in (ax_s, ax_f, ax_l):
        ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.08)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_timeline(png_path: str | os.PathLike[str], file_row: Mapping[str, Any],
                  utterances: Sequence[Mapping[str, Any]], timeline: Timeline | None) -> Path:
    """Write one PNG: utterance scores over time (a bar per utterance from its start to its end,
    red .. grey .. green by score, y in [-3, 3], a zero line; failed utterances hatched grey),
    beneath it face presence (share of frames with a face, binned) and loudness, on a shared
    time axis (seconds; mm:ss from two minutes on). Written atomically; returns the path."""
    return atomic_write(png_path, timeline_png(file_row, utterances, timeline))


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; color: #212121; background: #fff;
       line-height: 1.45; }
h1 { font-size: 1.5em; margin: 0.2em 0 0.1em; word-break: break-all; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.5em; border-bottom: 1px solid #e0e0e0; padding-bottom: 0.2em; }
.sub { color: #616161; font-size: 0.9em; word-break: break-all; }
nav { font-size: 0.9em; margin-bottom: 0.5em; }
a { color: #1565c0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #e0e0e0; border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card .k { color: #616161; font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.03em; }
.card .v { font-size: 1.25em; font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: #616161; }
dl.facts dd { margin: 0; }
.score { padding: 1px 6px; border-radius: 4px; font-variant-numeric: tabular-nums; }
.bar { display: flex; height: 14px; border-radius: 3px; overflow: hidden; max-width: 420px;
       border: 1px solid #e0e0e0; }
.bar span { display: block; height: 100%; }
.scale { display: inline-block; width: 180px; height: 10px; vertical-align: middle; border: 1px solid #e0e0e0;
         background: linear-gradient(to right, #e57373, #ffffff, #66bb6a); }
img.timeline { width: 100%; height: auto; border: 1px solid #eeeeee; }
.transcript { font-size: 1.05em; line-height: 2; }
.utt { padding: 2px 3px; border-radius: 3px; -webkit-box-decoration-break: clone; box-decoration-break: clone; }
.utt.failed { color: #757575; text-decoration: line-through; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { border-bottom: 1px solid #eeeeee; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #fafafa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.t { white-space: nowrap; font-variant-numeric: tabular-nums; }
.error { border: 1px solid #ef9a9a; background: #ffebee; border-radius: 6px; padding: 10px 14px;
         white-space: pre-wrap; word-break: break-word; }
.muted { color: #757575; }
.notes { color: #6d4c41; font-size: 0.9em; }
footer { margin-top: 2em; color: #9e9e9e; font-size: 0.8em; }
"""

# A page that loads nothing from outside: images only as data: URIs, inline CSS, no scripts.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_esc(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        "<footer>SenBERT report: a self-contained page (no network, no scripts).</footer>\n</body>\n</html>\n"
    )


def _score_span(v: Any) -> str:
    return f"<span class=\"score\" style=\"background:{score_colour(v)}\">{_esc(_fmt_score(v))}</span>"


def _moment(m: Any) -> str:
    """'"text" 00:12-00:15, score -2.10' for most_negative / most_positive."""
    if not isinstance(m, Mapping) or _num(m.get("score")) is None:
        return "<span class=\"muted\">-</span>"
    text = str(m.get("transcript") or "").strip()
    if len(text) > 160:
        text = text[:157] + "..."
    idx = m.get("index")
    which = f"#{_esc(idx)} " if idx is not None else ""
    return (f"{which}<span class=\"t\">{_esc(fmt_clock(m.get('start')))}&ndash;{_esc(fmt_clock(m.get('end')))}</span> "
            f"{_score_span(m.get('score'))} &ldquo;{_esc(text)}&rdquo;")


def _shares_bar(row: Mapping[str, Any]) -> str:
    parts = [("share_negative", "#e57373", "negative"), ("share_neutral", "#e0e0e0", "neutral"),
             ("share_positive", "#66bb6a", "positive")]
    vals = [(max(0.0, _num(row.get(k)) or 0.0), c, n) for k, c, n in parts]
    if sum(v for v, _, _ in vals) <= 0:
        return ""
    spans = "".join(f"<span style=\"width:{100 * v:.2f}%;background:{c}\" title=\"{n} {100 * v:.0f}%\"></span>"
                    for v, c, n in vals if v > 0)
    return f"<div class=\"bar\" aria-hidden=\"true\">{spans}</div>"


def _png_data_uri(png: bytes | str | os.PathLike[str] | None) -> str | None:
    if png is None:
        return None
    blob = bytes(png) if isinstance(png, bytes | bytearray | memoryview) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(blob).decode("ascii")


def _utt_title(u: Mapping[str, Any]) -> str:
    t = f"#{u.get('index', '?')} {fmt_clock(u.get('start'), True)}-{fmt_clock(u.get('end'), True)}"
    s = _num(u.get("score"))
    if s is None:
        return f"{t}, failed: {u.get('error') or 'no score'}"
    return f"{t}, score {s:+.2f}" + (f" ({u['class7_name']})" if u.get("class7_name") else "")


def render_file_report(file_row: Mapping[str, Any], utterances: Sequence[Mapping[str, Any]],
                       timeline: Timeline | None = None,
                       png_bytes_or_path: bytes | str | os.PathLike[str] | None = None,
                       index_href: str | None = INDEX_NAME, png_href: str | None = None) -> str:
    """The HTML report of one file (a complete, self-contained page).

    ``png_bytes_or_path`` is the timeline image (bytes, or a PNG file); when None and a
    ``timeline`` is given, the plot is drawn here. Every text of the rows is escaped.
    ``index_href`` / ``png_href``: relative links to the index page and the PNG file (None:
    no link).
    """
    row = file_row
    name = _file_name(row)
    status = str(row.get("status") or "ok")
    utts = sorted(utterances, key=lambda u: (_num(u.get("start")) or 0.0, _num(u.get("index")) or 0.0))
    out: list[str] = []
    if index_href:
        out.append(f"<nav><a href=\"{_esc(index_href)}\">&larr; all files</a></nav>")
    out.append(f"<h1>{_esc(name)}</h1>")
    out.append(f"<div class=\"sub\">{_esc(row.get('path') or '')}"
               + (f" &middot; clip id {_esc(row.get('clip_id'))}" if row.get("clip_id") else "") + "</div>")

    if status != "ok":
        out.append(f"<h2>{_esc(status.capitalize())}</h2>")
        out.append(f"<div class=\"error\">{_esc(row.get('error') or 'no reason given')}</div>")

    # -- summary
    out.append("<div class=\"cards\">")
    for k, v in (("score", _score_span(row.get("score"))), ("polarity", _esc(row.get("polarity") or "-")),
                 ("7-class", _esc(row.get("class7_name") or "-")),
                 ("duration", _esc(fmt_clock(row.get("duration")))),
                 ("utterances", _esc(row.get("n_utterances", len(utts))))):
        out.append(f"<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div></div>")
    out.append("</div>")
    out.append("<h2>Summary</h2><dl class=\"facts\">")
    dur = _num(row.get("duration"))
    facts = [
        ("score", f"{_score_span(row.get('score'))} <span class=\"muted\">(duration-weighted mean of the "
                  f"utterance scores, -3 .. +3)</span>"),
        ("polarity / 7-class", f"{_esc(row.get('polarity') or '-')} / {_esc(row.get('class7_name') or '-')}"),
        ("duration", f"{_esc(fmt_clock(dur))}" + (f" ({dur:.1f} s)" if dur is not None else "")),
        ("utterances", _esc(row.get("n_utterances", len(utts)))),
        ("most negative", _moment(row.get("most_negative"))),
        ("most positive", _moment(row.get("most_positive"))),
        ("speech time", f"positive {_fmt_share(row.get('share_positive'))}, negative "
                        f"{_fmt_share(row.get('share_negative'))}, neutral {_fmt_share(row.get('share_neutral'))}"
                        + _shares_bar(row)),
        ("modalities", _esc(row.get("modalities") or "-")),
        ("face share", f"{_esc(_fmt_share(row.get('face_share')))} <span class=\"muted\">(of video frames)</span>"),
        ("model", _esc(row.get("model") or "-")),
    ]
    out += [f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts]
    out.append("</dl>")

    # -- timeline
    if png_bytes_or_path is None and timeline is not None and status == "ok":
        png_bytes_or_path = timeline_png(row, utts, timeline)
    uri = _png_data_uri(png_bytes_or_path)
    if uri:
        out.append("<h2>Timeline</h2>")
        out.append(f"<img class=\"timeline\" src=\"{uri}\" alt=\"utterance scores, face presence and loudness "
                   f"over time\">")
        if png_href:
            out.append(f"<div class=\"sub\"><a href=\"{_esc(png_href)}\">the plot as a PNG file</a></div>")

    # -- transcript
    if utts:
        out.append("<h2>Transcript</h2>")
        out.append("<p class=\"sub\">Each utterance's background shows its score: "
                   "<span class=\"scale\"></span> -3 (red) .. 0 (white) .. +3 (green); grey struck-through: "
                   "failed. Hover for time and score.</p>")
        spans = []
        for u in utts:
            cls = "utt" if _num(u.get("score")) is not None else "utt failed"
            text = str(u.get("transcript") or "").strip() or "\u2026"
            spans.append(f"<span class=\"{cls}\" style=\"background:{score_colour(u.get('score'))}\" "
                         f"title=\"{_esc(_utt_title(u))}\">{_esc(text)}</span>")
        out.append("<p class=\"transcript\">" + " ".join(spans) + "</p>")

        # -- table
        has_lang = any(_num(u.get("score_language")) is not None for u in utts)
        has_sense = any(_num(u.get("score_sense")) is not None for u in utts)
        has_face = any(_num(u.get("face_share")) is not None for u in utts)
        head = ["#", "time", "score", "7-class"] + (["language"] if has_lang else []) + \
            (["sense"] if has_sense else []) + (["face"] if has_face else []) + ["transcript", "notes"]
        out.append("<h2>Utterances</h2><table><thead><tr>"
                   + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>")
        for u in utts:
            raw = u.get("notes") or []
            notes = [raw] if isinstance(raw, str) else [str(n) for n in raw]  # a list (a CSV row: one string)
            if u.get("status") not in (None, "ok") or u.get("error"):
                notes.insert(0, f"{u.get('status') or 'failed'}: {u.get('error') or 'no score'}")
            cells = [f"<td class=\"num\">{_esc(u.get('index', ''))}</td>",
                     f"<td class=\"t\">{_esc(fmt_clock(u.get('start'), True))}&ndash;"
                     f"{_esc(fmt_clock(u.get('end'), True))}</td>",
                     f"<td class=\"num\">{_score_span(u.get('score'))}</td>",
                     f"<td>{_esc(u.get('class7_name') or '')}</td>"]
            if has_lang:
                cells.append(f"<td class=\"num\">{_esc(_fmt_score(u.get('score_language')))}</td>")
            if has_sense:
                cells.append(f"<td class=\"num\">{_esc(_fmt_score(u.get('score_sense')))}</td>")
            if has_face:
                cells.append(f"<td class=\"num\">{_esc(_fmt_share(u.get('face_share')))}</td>")
            cells.append(f"<td>{_esc(u.get('transcript') or '')}</td>")
            cells.append(f"<td class=\"notes\">{'<br>'.join(_esc(n) for n in notes)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    elif status == "ok":
        out.append("<h2>Transcript</h2><p class=\"muted\">No utterances (no speech found).</p>")
    return _page(f"SenBERT report: {name}", "\n".join(out))


def _index_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def key(r: Mapping[str, Any]) -> tuple[int, float, str]:
        st = str(r.get("status") or "ok")
        s = _num(r.get("score"))
        group = 0 if st == "ok" and s is not None else 1 if st == "ok" else 2 if st == "failed" else 3
        return group, s if s is not None else 0.0, str(r.get("path") or "")

    return sorted(rows, key=key)


def render_index(file_rows: Sequence[Mapping[str, Any]], links: Mapping[str, str] | None = None) -> str:
    """One page listing every file: ok ones by score (most negative first), then the failed
    and the skipped ones with their reasons. ``links`` maps a file's path to the (relative)
    href of its report; a file without one is listed unlinked."""
    links = links or {}
    rows = _index_order(file_rows)
    n_ok = sum(1 for r in rows if (r.get("status") or "ok") == "ok")
    n_failed = sum(1 for r in rows if r.get("status") == "failed")
    n_skipped = sum(1 for r in rows if r.get("status") == "skipped")
    out = ["<h1>SenBERT scores</h1>",
           f"<div class=\"sub\">{len(rows)} files: {n_ok} scored, {n_failed} failed, {n_skipped} skipped. "
           "Scored files are listed by score, most negative first. <span class=\"scale\"></span> "
           "-3 .. +3</div>"]
    models = sorted({str(r.get("model")) for r in rows if r.get("model")})
    if models:
        out.append(f"<div class=\"sub\">model: {_esc(', '.join(models))}</div>")
    out.append("<table><thead><tr><th>file</th><th>score</th><th>polarity</th><th>7-class</th><th>duration</th>"
               "<th>utterances</th><th>modalities</th><th>status</th></tr></thead><tbody>")
    seen: dict[str, int] = {}
    for r in rows:
        seen[_file_name(r)] = seen.get(_file_name(r), 0) + 1
    for r in rows:
        st = str(r.get("status") or "ok")
        name = _esc(_file_name(r))
        href = links.get(str(r.get("path")))
        cell = f"<a href=\"{_esc(href)}\">{name}</a>" if href else name
        if seen[_file_name(r)] > 1:  # two files of one name: their folders tell them apart
            cell += f"<br><span class=\"sub\">{_esc(os.path.dirname(str(r.get('path') or '')))}</span>"
        title = _esc(r.get("path") or "")
        status = _esc(st) if st == "ok" else f"<b>{_esc(st)}</b>: {_esc(r.get('error') or 'no reason given')}"
        out.append(
            f"<tr><td title=\"{title}\">{cell}</td><td class=\"num\">"
            f"{_score_span(r.get('score')) if st == 'ok' else ''}</td>"
            f"<td>{_esc(r.get('polarity') or '')}</td><td>{_esc(r.get('class7_name') or '')}</td>"
            f"<td class=\"t\">{_esc(fmt_clock(r.get('duration')) if _num(r.get('duration')) is not None else '')}</td>"
            f"<td class=\"num\">{_esc(r.get('n_utterances', '') if st == 'ok' else '')}</td>"
            f"<td>{_esc(r.get('modalities') or '')}</td><td>{status}</td></tr>")
    out.append("</tbody></table>")
    return _page("SenBERT scores", "\n".join(out))


# --------------------------------------------------------------------------- writing


@dataclass
class ReportFiles:
    """What :func:`write_reports` wrote: the index page, and per file path its page and plot."""

    index: Path
    html: dict[str, Path] = field(default_factory=dict)
    png: dict[str, Path] = field(default_factory=dict)
    #: file path -> why its page could not be written (the other files' pages still are)
    failed: dict[str, str] = field(default_factory=dict)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"index", "con", "prn", "aux", "nul"}  # index.html is the index page; the others trip Windows


def safe_name(text: str, max_len: int = 80) -> str:
    """A filesystem-safe name: ASCII letters, digits, ``. _ -``; never empty, never hidden."""
    s = _UNSAFE.sub("_", str(text)).strip("._-")[:max_len].rstrip("._-")
    return s or "file"


def report_names(file_rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """path -> a unique safe name (clip id, else the file stem; plus a short hash of the path
    for every file whose name clashes with another's, case-insensitively)."""
    base: dict[str, str] = {}
    for r in file_rows:
        p = str(r.get("path") or "")
        base.setdefault(p, safe_name(str(r.get("clip_id") or "") or Path(p).stem or p))
    counts: dict[str, int] = {}
    for n in base.values():
        counts[n.lower()] = counts.get(n.lower(), 0) + 1
    out: dict[str, str] = {}
    taken: set[str] = set()
    for p, n in base.items():
        if counts[n.lower()] > 1 or n.lower() in _RESERVED:
            n = f"{n}-{hashlib.sha256(p.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        cand, i = n, 2
        while cand.lower() in taken:
            cand, i = f"{n}-{i}", i + 1
        taken.add(cand.lower())
        out[p] = cand
    return out


def write_reports(out_dir: str | os.PathLike[str], file_rows: Sequence[Mapping[str, Any]],
                  utterances_by_path: Mapping[str, Sequence[Mapping[str, Any]]],
                  timelines: Mapping[str, Timeline]) -> ReportFiles:
    """Write ``<out>/plots/<name>.png`` and ``<out>/report/<name>.html`` per ok file and
    ``<out>/report/index.html`` listing them all (atomic writes). A file whose page cannot be
    made is left without one and named in ``failed``; the other pages are still written."""
    out = Path(out_dir)
    rdir, pdir = out / REPORT_DIR, out / PLOTS_DIR
    names = report_names(file_rows)
    files = ReportFiles(index=rdir / INDEX_NAME)
    links: dict[str, str] = {}
    for r in file_rows:
        if (r.get("status") or "ok") != "ok":
            continue
        p = str(r.get("path") or "")
        name = names[p]
        utts = list(utterances_by_path.get(p, ()))
        try:
            png = timeline_png(r, utts, timelines.get(p))
            page = render_file_report(r, utts, timelines.get(p), png, index_href=INDEX_NAME,
                                      png_href=f"../{PLOTS_DIR}/{quote(name)}.png")
        except Exception as exc:  # noqa: BLE001 -- one file's page must not cost the others theirs
            files.failed[p] = f"{type(exc).__name__}: {exc}"
            log.warning("%s: no report page (%s)", p, files.failed[p])
            continue
        png_path = atomic_write(pdir / f"{name}.png", png)
        files.html[p] = atomic_write(rdir / f"{name}.html", page)
        files.png[p] = png_path
        links[p] = quote(f"{name}.html")
    rdir.mkdir(parents=True, exist_ok=True)
    atomic_write(files.index, render_index(file_rows, links))
    return files
