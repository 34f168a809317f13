"""HTML reports and timeline plots (pipeline/scoring/report.py) on synthetic rows and timelines.

One test opens a report in headless Chromium (Debian's ``chromium``) over the DevTools
protocol: the page must render without console errors, uncaught exceptions or failed loads,
and its screenshot must not be blank. A page with a deliberate ``console.error`` and a thrown
error goes through the same check first (the negative control). That test is skipped when
chromium is missing, unless ``SENBERT_TEST_BROWSER`` is set (``.ci/run`` sets it to 1 once it
has installed chromium): then a missing chromium fails it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pipeline.features.cache import CacheEntry
from pipeline.scoring.report import (
    MAX_BINS,
    ReportFiles,
    Timeline,
    bin_series,
    fmt_clock,
    plot_timeline,
    render_file_report,
    render_index,
    report_names,
    timeline_from_entry,
    write_reports,
)

ROOT = Path(__file__).resolve().parent.parent
XSS = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SENTENCES = [
    "Honestly I expected a lot more from this film.", "The opening scene was beautiful though.",
    "But the story drags for the whole middle hour.", "I kept checking my watch.",
    f"The villain was great fun {XSS} to watch.", "The music is easily the best part.",
    "Some of the dialogue is just painful.", "The ending surprised me in a good way.",
    "I would not pay full price again.", "Still, my kids absolutely loved it.",
    "Overall it is an okay movie, nothing special.",
]
SCORES = [-1.6, 1.8, -2.2, -1.4, 1.2, 2.6, -2.8, 1.9, -1.1, 2.2, 0.0]


# --------------------------------------------------------------------------- synthetic data


def make_utterances(path: str = "/videos/review 01.mp4", n: int = 11, gap: float = 0.4,
                    span: float = 33.0, failed: tuple[int, ...] = (), seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    step = span / n
    out = []
    for i in range(n):
        start = i * step + 0.1
        end = start + step - gap
        s = SCORES[i % len(SCORES)] + float(rng.normal(0, 0.05))
        bad = i in failed
        out.append({
            "path": path, "clip_id": Path(path).stem, "index": i, "start": round(start, 2), "end": round(end, 2),
            "transcript": SENTENCES[i % len(SENTENCES)] if n <= len(SENTENCES) else f"utterance {i} words",
            "score": None if bad else round(s, 3), "polarity": None if bad else ("positive" if s > 0 else "negative"),
            "class7_name": None if bad else "weakly positive", "score_language": None if bad else round(s * 0.9, 3),
            "score_sense": None if bad else round(s * 0.4, 3), "face_share": 0.9, "modalities": "text+audio+vision",
            "status": "failed" if bad else "ok", "error": "utterance model failed: <oops>" if bad else None,
            "notes": ["transcript cut to 50 tokens"] if i == 2 else [],
        })
    return out


def make_file_row(path: str = "/videos/review 01.mp4", score: float = -0.42, status: str = "ok",
                  error: str | None = None, duration: float = 33.0, n: int = 11, clip_id: str | None = None) -> dict:
    ok = status == "ok"
    return {
        "path": path, "clip_id": clip_id if clip_id is not None else Path(path).stem, "status": status,
        "error": error, "score": score if ok else None, "polarity": ("negative" if score < 0 else "positive") if ok
        else None, "class7_name": "neutral" if ok else None, "duration": duration, "n_utterances": n if ok else 0,
        "most_negative": {"index": 6, "start": 18.1, "end": 20.7, "score": -2.8,
                          "transcript": "Some of the dialogue is just painful."} if ok else None,
        "most_positive": {"index": 5, "start": 15.1, "end": 17.7, "score": 2.6,
                          "transcript": "The music is easily the best part."} if ok else None,
        "share_positive": 0.45 if ok else None, "share_negative": 0.47 if ok else None,
        "share_neutral": 0.08 if ok else None, "model": "senbert-default-v1 (text+audio+vision)",
        "modalities": "text+audio+vision", "face_share": 0.92 if ok else None,
    }


def make_timeline(duration: float = 33.0, fps: float = 10.0, rate: float = 50.0, seed: int = 0,
                  video: bool = True, audio: bool = True) -> Timeline:
    rng = np.random.default_rng(seed)
    ft = np.arange(0, duration, 1 / fps) if video else np.zeros(0)
    face = (rng.random(ft.size) > 0.1).astype(np.float64)
    if face.size > 40:
        face[int(face.size * 0.4):int(face.size * 0.45)] = 0  # the speaker looks away
    lt = np.arange(0, duration, 1 / rate) if audio else np.zeros(0)
    loud = -32 + 6 * np.sin(lt / 1.7) + rng.normal(0, 2, lt.size)
    loud[rng.random(lt.size) < 0.05] = -100.0  # digital silence
    return Timeline(duration, ft, face, lt, loud)


def _decode_png(path_or_bytes) -> np.ndarray:
    import cv2

    blob = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, bytes) else path_or_bytes
    assert blob[:8] == PNG_MAGIC, "not a PNG"
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "the PNG does not decode"
    return img


def _assert_non_trivial(img: np.ndarray, min_colours: int = 8) -> None:
    assert img.shape[0] >= 100 and img.shape[1] >= 100, img.shape
    assert float(img.std()) > 5.0, "the image is (nearly) blank"
    colours = np.unique(img.reshape(-1, img.shape[-1])[::7], axis=0)
    assert len(colours) >= min_colours, f"only {len(colours)} distinct colours"


# --------------------------------------------------------------------------- timeline


def _entry(audio_names, audio_rows, vision_names, vision_rows, duration=12.0) -> CacheEntry:
    rng = np.random.default_rng(1)
    return CacheEntry(
        key="k", source_path="/x/a.mp4", duration=duration,
        audio=rng.normal(size=(audio_rows, len(audio_names))).astype(np.float32), audio_names=list(audio_names),
        audio_times=np.arange(audio_rows) / 50.0,
        vision=(rng.random(size=(vision_rows, len(vision_names))) > 0.5).astype(np.float32),
        vision_names=list(vision_names), vision_times=np.arange(vision_rows) / 10.0,
        transcript="", words=[], face_share=0.5, warnings=[], meta={},
    )


def test_timeline_from_entry_picks_face_and_loudness_columns():
    e = _entry(["rms", "log_energy_db", "f0_hz"], 600, ["bs_neutral", "face_present", "yaw"], 120)
    tl = timeline_from_entry(e)
    assert tl.duration == 12.0 and tl.loudness_label == "loudness (dB)"
    np.testing.assert_allclose(tl.face_present, e.vision[:, 1])
    np.testing.assert_allclose(tl.face_times, e.vision_times)
    np.testing.assert_allclose(tl.loudness_db, e.audio[:, 1], rtol=1e-6)
    assert tl.loud_times.shape == (600,)


def test_timeline_from_entry_modalities_absent_and_egemaps():
    audio_only = timeline_from_entry(_entry(["log_energy_db"], 300, ["face_present", "yaw"], 0))
    assert audio_only.face_times.size == 0 and audio_only.face_present.size == 0
    assert audio_only.loudness_db.size == 300
    silent = timeline_from_entry(_entry(["log_energy_db"], 0, ["face_present"], 50))
    assert silent.loud_times.size == 0 and silent.loudness_db.size == 0 and silent.face_present.size == 50
    ege = timeline_from_entry(_entry(["egemaps_F0semitoneFrom27.5Hz_sma3nz", "egemaps_Loudness_sma3"], 80,
                                     [], 0))
    assert ege.loudness_db.size == 80 and "eGeMAPS" in ege.loudness_label
    none = timeline_from_entry(_entry([], 0, [], 0))
    assert none.face_present.size == 0 and none.loudness_db.size == 0


def test_bin_series_downsamples_long_series():
    t = np.arange(30000) / 50.0  # 10 minutes at 50 Hz
    v = np.full(t.size, -20.0)
    bt, bv = bin_series(t, v, 600.0)
    assert bt.size == MAX_BINS and np.allclose(bv, -20.0)
    assert np.all(np.diff(bt) > 0) and 0 < bt[0] < bt[-1] < 600.0
    st, sv = bin_series(t[:100], v[:100], 2.0)  # short series: as they are
    assert st.size == 100
    gt, gv = bin_series(np.r_[t[:5000], t[20000:]], np.r_[v[:5000], v[20000:]], 600.0)
    assert np.isnan(gv).any() and np.nanmax(gv) == -20.0  # a gap stays a gap
    et, ev = bin_series(np.zeros(0), np.zeros(0), 10.0)
    assert et.size == 0 and ev.size == 0


def test_fmt_clock():
    assert fmt_clock(0) == "00:00" and fmt_clock(75.4) == "01:15" and fmt_clock(3725) == "1:02:05"
    assert fmt_clock(3.25, tenths=True) == "00:03.2"  # round() to tenths: half to even, as numpy
    assert fmt_clock(3.26, tenths=True) == "00:03.3"
    assert fmt_clock(59.96, tenths=True) == "01:00.0"
    assert fmt_clock(None) == "-" and fmt_clock(float("nan")) == "-"


def test_importing_report_does_not_import_matplotlib():
    code = "import sys, pipeline.scoring.report; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# --------------------------------------------------------------------------- plots


def test_plot_timeline_writes_a_real_png(tmp_path):
    row, utts = make_file_row(), make_utterances(failed=(3,))
    p = plot_timeline(tmp_path / "plots" / "a.png", row, utts, make_timeline())
    assert p == tmp_path / "plots" / "a.png" and p.is_file()
    img = _decode_png(p)
    _assert_non_trivial(img, min_colours=30)
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize("case", ["no utterances", "all failed", "one second", "no timeline", "audio only",
                                  "silent video", "nan and out of range"])
def test_plot_timeline_edge_cases(tmp_path, case):
    row, utts, tl = make_file_row(), make_utterances(), make_timeline()
    if case == "no utterances":
        utts, row = [], dict(row, n_utterances=0, score=0.0)
    elif case == "all failed":
        utts = make_utterances(failed=tuple(range(11)))
    elif case == "one second":
        row = dict(row, duration=1.0)
        utts = [dict(make_utterances(n=1)[0], start=0.05, end=0.9)]
        tl = make_timeline(duration=1.0)
    elif case == "no timeline":
        tl = None
    elif case == "audio only":
        tl = make_timeline(video=False)
    elif case == "silent video":
        tl = make_timeline(audio=False)
    else:
        utts[0]["score"], utts[1]["score"], utts[2]["start"] = float("nan"), 7.5, None
        tl.loudness_db[:10] = np.nan
    img = _decode_png(plot_timeline(tmp_path / "x.png", row, utts, tl))
    _assert_non_trivial(img)


def test_plot_one_hour_file(tmp_path):
    """An hour at 10 fps / 50 Hz with ~800 utterances: binned, so it plots quickly."""
    d = 3600.0
    rng = np.random.default_rng(3)
    starts = np.sort(rng.uniform(0, d - 5, 800))
    utts = [{"index": i, "start": float(s), "end": float(s + rng.uniform(1, 4)), "transcript": f"u{i}",
             "score": float(rng.uniform(-3, 3)) if i % 97 else None} for i, s in enumerate(starts)]
    tl = make_timeline(duration=d)
    assert tl.face_present.size == 36000 and tl.loudness_db.size == 180000
    img = _decode_png(plot_timeline(tmp_path / "hour.png", make_file_row(duration=d, n=800), utts, tl))
    _assert_non_trivial(img, min_colours=30)


# --------------------------------------------------------------------------- HTML


def _assert_self_contained(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    for m in re.finditer(r"""\bsrc\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I):
        assert m.group(1).startswith("data:"), f"src= outside data: {m.group(1)[:60]}"
    for m in re.finditer(r"""\bhref\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I):
        assert not re.match(r"^[a-z][a-z0-9+.-]*:(?!,)", m.group(1), flags=re.I) or m.group(1).startswith("data:"), \
            f"href to another scheme: {m.group(1)}"
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    assert "<link rel=\"stylesheet\"" not in page


def test_file_report_is_self_contained_and_escaped():
    import html as html_mod

    row, utts = make_file_row(), make_utterances(failed=(8,))
    row["most_negative"]["transcript"] = XSS
    page = render_file_report(row, utts, make_timeline(), None)
    _assert_self_contained(page)
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 1
    m = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    _assert_non_trivial(_decode_png(base64.b64decode(m.group(1))), min_colours=30)
    for u in utts:
        assert html_mod.escape(u["transcript"]) in page
    assert html_mod.escape(row["model"]) in page
    assert "review 01.mp4" in page  # the title
    assert "transcript cut to 50 tokens" in page and "utterance model failed: &lt;oops&gt;" in page
    for needle in ("-0.42", "neutral", "00:33", "00:18", "-2.80", "+2.60", "45%", "47%", "8%", "text+audio+vision",
                   "92%", "language", "sense"):
        assert needle in page, needle
    assert 'title="#5 00:15.1-00:17.7, score +2.' in page  # time and score on the transcript span
    # coloured by score: a red background for the most negative utterance, green for the most positive
    bg = {i: c for c, i in re.findall(r'style="background:(#[0-9a-f]{6})" title="#(\d+) ', page)}
    neg, pos = ([int(bg[k][i:i + 2], 16) for i in (1, 3, 5)] for k in ("6", "5"))
    assert neg[0] > neg[1] and pos[1] > pos[0]  # red > green, green > red


def test_file_report_with_png_path_and_without_optional_scores(tmp_path):
    utts = [dict(u, score_language=None, score_sense=None) for u in make_utterances()]
    png = plot_timeline(tmp_path / "p.png", make_file_row(), utts, None)
    page = render_file_report(make_file_row(), utts, None, png)
    _assert_self_contained(page)
    assert "<th>language</th>" not in page and "<th>sense</th>" not in page
    assert page.count("data:image/png;base64,") == 1


def test_report_of_a_failed_file_shows_its_error():
    row = make_file_row(status="failed", error=f"cannot decode the audio stream {XSS}")
    page = render_file_report(row, [], None, None)
    _assert_self_contained(page)
    assert "cannot decode the audio stream &lt;script&gt;" in page and XSS not in page
    assert "data:image/png" not in page


def test_index_sorts_by_score_and_lists_failed_and_skipped():
    rows = [
        make_file_row("/v/mild.mp4", 0.4), make_file_row("/v/worst.mp4", -2.5),
        make_file_row("/v/broken.mp4", status="failed", error="no audio or video <stream>"),
        make_file_row("/v/best.mp4", 2.9), make_file_row("/v/notes.txt", status="skipped", error="not a media file"),
        make_file_row("/v/bad.mp4", -1.0),
    ]
    links = {r["path"]: Path(r["path"]).stem + ".html" for r in rows if r["status"] == "ok"}
    page = render_index(rows, links)
    _assert_self_contained(page)
    order = [m.group(1) for m in re.finditer(r"<tr><td[^>]*>(?:<a[^>]*>)?([\w.]+)", page)]
    assert order == ["worst.mp4", "bad.mp4", "mild.mp4", "best.mp4", "broken.mp4", "notes.txt"]
    assert 'href="worst.html"' in page and 'href="broken.html"' not in page
    assert "no audio or video &lt;stream&gt;" in page and "not a media file" in page
    assert "6 files: 4 scored, 1 failed, 1 skipped" in page


def test_report_names_are_safe_and_unique():
    rows = [make_file_row("/a/talk.mp4"), make_file_row("/b/talk.mp4"), make_file_row("/c/Talk.MP4"),
            make_file_row("/d/../we ird$name?.mp4"), make_file_row("/e/index.mp4"),
            make_file_row("/f/x.mp4", clip_id=""), make_file_row("/g/.hidden.mp4")]
    names = report_names(rows)
    assert len(set(n.lower() for n in names.values())) == len(rows)
    for n in names.values():
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n), n
    assert names["/a/talk.mp4"].startswith("talk-") and names["/a/talk.mp4"] != names["/b/talk.mp4"]
    assert names["/d/../we ird$name?.mp4"] == "we_ird_name"
    assert names["/e/index.mp4"] != "index" and names["/f/x.mp4"] == "x"
    assert report_names(rows) == names  # stable


def test_write_reports_layout(tmp_path):
    ok1, ok2 = make_file_row("/a/talk.mp4", 1.2), make_file_row("/b/talk.mp4", -0.7)
    failed = make_file_row("/c/dead.mp4", status="failed", error="ffmpeg: invalid data")
    skipped = make_file_row("/c/readme.md", status="skipped", error="not a media file")
    rows = [ok1, ok2, failed, skipped]
    utts = {ok1["path"]: make_utterances(ok1["path"]), ok2["path"]: make_utterances(ok2["path"], n=3)}
    tls = {ok1["path"]: make_timeline()}  # ok2 has none: its plot shows scores only
    files = write_reports(tmp_path, rows, utts, tls)
    assert isinstance(files, ReportFiles)
    assert files.index == tmp_path / "report" / "index.html" and files.index.is_file()
    assert set(files.html) == set(files.png) == {ok1["path"], ok2["path"]}
    for p in (ok1["path"], ok2["path"]):
        assert files.html[p].parent == tmp_path / "report" and files.html[p].suffix == ".html"
        assert files.png[p].parent == tmp_path / "plots" and files.png[p].stem == files.html[p].stem
        _assert_non_trivial(_decode_png(files.png[p]))
        page = files.html[p].read_text(encoding="utf-8")
        _assert_self_contained(page)
        assert 'href="index.html"' in page and f'href="../plots/{files.png[p].name}"' in page
    assert files.html[ok1["path"]] != files.html[ok2["path"]]
    index = files.index.read_text(encoding="utf-8")
    for p in (ok1["path"], ok2["path"]):
        assert f'href="{files.html[p].name}"' in index
    assert index.index(files.html[ok2["path"]].name) < index.index(files.html[ok1["path"]].name)
    assert "ffmpeg: invalid data" in index and "not a media file" in index
    assert sorted(x.name for x in (tmp_path / "report").iterdir()) == sorted(
        ["index.html", files.html[ok1["path"]].name, files.html[ok2["path"]].name])
    assert not list(tmp_path.rglob("*.partial"))
    again = write_reports(tmp_path, rows, utts, tls)  # rewriting is fine (atomic replace)
    assert again.html == files.html


def test_file_names_with_dollar_signs_are_plotted_as_text(tmp_path):
    """MMSA's clip names ("<video>$_$<clip>") and other "$" pairs are file names, not mathtext:
    before, saving the plot raised ValueError and the whole scoring run lost its output."""
    rows = [make_file_row(f"/v/{n}", 0.8) for n in ("deal $_$ 2.mp4", "a$^$b.mp4", "cost $5 or $6.mp4")]
    utts = {r["path"]: make_utterances(r["path"]) for r in rows}
    files = write_reports(tmp_path, rows, utts, {r["path"]: make_timeline() for r in rows})
    assert not files.failed and set(files.html) == {r["path"] for r in rows}
    for r in rows:
        _assert_non_trivial(_decode_png(files.png[r["path"]]))


def test_a_page_that_cannot_be_made_costs_the_other_files_nothing(tmp_path, monkeypatch):
    import pipeline.scoring.report as report

    good, bad = make_file_row("/v/good.mp4", 0.5), make_file_row("/v/bad.mp4", -0.5)
    real = report.timeline_png

    def fails_for_bad(row, *a, **k):
        if row["path"] == bad["path"]:
            raise ValueError("cannot draw this one")
        return real(row, *a, **k)

    monkeypatch.setattr(report, "timeline_png", fails_for_bad)
    utts = {r["path"]: make_utterances(r["path"]) for r in (good, bad)}
    files = write_reports(tmp_path, [good, bad], utts, {})
    assert set(files.html) == {good["path"]} and files.failed == {bad["path"]: "ValueError: cannot draw this one"}
    assert files.index.is_file() and files.html[good["path"]].name in files.index.read_text(encoding="utf-8")
    assert sorted(x.name for x in (tmp_path / "plots").iterdir()) == [files.png[good["path"]].name]


# --------------------------------------------------------------------------- the browser


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def _require_chromium() -> str:
    exe = _chromium()
    if exe:
        return exe
    if os.environ.get("SENBERT_TEST_BROWSER", "") not in ("", "0"):
        pytest.fail("SENBERT_TEST_BROWSER is set but chromium is missing: install Debian's chromium "
                    "(apt-get install chromium) or unset SENBERT_TEST_BROWSER")
    pytest.skip("chromium is missing (apt-get install chromium; SENBERT_TEST_BROWSER=1 makes this a failure)")


class _Browser:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, exe: str, width: int, height: int) -> None:
        from websockets.sync.client import connect

        self.width, self.height = width, height
        self._dir = tempfile.mkdtemp(prefix="senbert-chromium-")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-sync", "--mute-audio",
             f"--user-data-dir={self._dir}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(self._dir) / "DevToolsActivePort"
            deadline = time.monotonic() + 20
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (exit code {self.proc.poll()})")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:  # noqa: S310
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, proxy=None, open_timeout=10)
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.events: list[dict] = []
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(m)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict | None = None, timeout: float = 15) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError):
            while (left := deadline - time.monotonic()) > 0:
                self.events.append(json.loads(self.ws.recv(timeout=left)))

    def open(self, url: str, timeout: float = 15) -> list[str]:
        """Load ``url``; the console errors, uncaught exceptions and error log entries it caused."""
        self.events = []
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            self._drain(0.1)
        self._drain(0.5)  # late messages (decoding images, timers)
        errors = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console." + p["type"] + ": "
                              + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + str(p["entry"].get("text")) + " " + str(p["entry"].get("url", "")))
        return errors

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)


def test_report_renders_in_headless_chromium(tmp_path):
    exe = _require_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>control</title></head><body><p>x</p>"
                   "<script>console.error('deliberate control error'); throw new Error('deliberate throw');</script>"
                   "<img src='missing-image.png' alt=''></body></html>", encoding="utf-8")
    row = make_file_row()
    files = write_reports(tmp_path / "out", [row, make_file_row("/v/failed.mp4", status="failed", error="boom")],
                          {row["path"]: make_utterances(failed=(4,))}, {row["path"]: make_timeline()})
    browser = _Browser(exe, 1200, 1600)
    try:
        control = browser.open(bad.as_uri())
        # the negative control: the check sees a console error, a thrown error and a failed load
        assert any("deliberate control error" in e for e in control), control
        assert any("deliberate throw" in e for e in control), control
        assert any("missing-image.png" in e for e in control), control

        errors = browser.open(files.html[row["path"]].as_uri())
        assert errors == [], f"the report logged errors in the browser: {errors}"
        assert browser.evaluate("document.title").startswith("SenBERT report")
        # the inline timeline image decoded (a data: URI the page's CSP allows)
        assert browser.evaluate("Array.from(document.images).map(i => i.naturalWidth).join(',')") == "1200"
        assert browser.evaluate("document.querySelectorAll('span.utt').length") == 11
        assert browser.evaluate("document.body.innerText.includes('<script>alert(1)</script>')")
        assert browser.evaluate("document.scripts.length") == 0  # the transcript's script tag stays text
        shot = _decode_png(browser.screenshot())
        assert shot.shape[:2] == (1600, 1200)
        _assert_non_trivial(shot, min_colours=50)

        assert browser.open(files.index.as_uri()) == []
        assert browser.evaluate("document.querySelectorAll('a[href$=\".html\"]').length") == 1
    finally:
        browser.close()


def test_missing_chromium_skips_unless_required(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.delenv("SENBERT_TEST_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _require_chromium()
    monkeypatch.setenv("SENBERT_TEST_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium is missing"):
        _require_chromium()
