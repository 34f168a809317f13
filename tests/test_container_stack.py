"""Opt-in (SENBERT_TEST_CONTAINERS=1): the container stack of docker/, built and run with podman.

What it does (about 20 minutes on 2 cores; docker/README.md has the measured times):

1. Installs podman, runc, podman-compose and debootstrap with apt-get when podman is missing,
   and writes /etc/containers/containers.conf (runc, cgroupfs, no default ulimits) only when
   there is none.
2. Builds the images from a clean snapshot of the repository's HEAD (``git archive``), with
   ``docker/build.sh --debian-base``: the Debian stand-in base and PostgreSQL images, then
   SenBERT's image; with ``--pip-from-host`` when this machine's pip configuration names a wheel
   folder, a local index or a CA bundle (mounted read-only, never copied into the image).
3. ``podman-compose up``: PostgreSQL, the Prefect server, the one-shot deploy, two workers
   (one flow run at a time each) and the shared volume.
4. Sharing: four sub-folders of the sample videos (distinct bytes, so that every clip is
   real work), one ``build-features/default`` run and one ``score/default`` run per folder;
   every run completes, the two workers each took runs (the runs' logs name the worker), the
   scores and the feature cache are on the volume.
5. A killed worker: four more folders (six clips each), one ``score/default`` run each; a
   worker is killed (``podman kill``) while its run is extracting. The heartbeat automation
   sets the run Crashed, the retry automation schedules it again, the other worker completes
   it; every file ends scored (or failed with its reason), no clip is extracted twice, and
   every feature-cache entry on the volume loads.
6. Removes every container, volume, network and image it made, and its temporary folders,
   even when a step fails (and fails itself when something is left).

Knobs: SENBERT_TEST_CONTAINERS_BUILD_OPTS (extra options for docker/build.sh, e.g.
``--build-opt --network=host``), SENBERT_TEST_CONTAINERS_REPORT (a JSON file for the timings).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SENBERT_TEST_CONTAINERS") != "1", reason="opt-in: SENBERT_TEST_CONTAINERS=1"),
]

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "examples" / "videos").glob("*.mpg"))
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
CONF_TEXT = """\
# Written by SenBERT's tests/test_container_stack.py (none was here): runc with cgroupfs, no
# default ulimits (crun fails on hybrid cgroups; the default ulimits are refused in some sandboxes).
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def sh(cmd: list[str], timeout: float = 600, env: dict[str, str] | None = None, check: bool = True,
       log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; its output goes to ``log`` when given, and into the error when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ {shlex.join(cmd)}\n{p.stdout}{p.stderr}\n")
    if check and p.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} exited {p.returncode}:\n{(p.stdout + p.stderr)[-4000:]}")
    return p


def ensure_podman() -> None:
    if not shutil.which("podman") or not shutil.which("podman-compose") or not shutil.which("debootstrap"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sh(["apt-get", "update", "-qq"], timeout=600, env=env)
        sh(["apt-get", "install", "-y", "-qq", "podman", "runc", "podman-compose", "debootstrap"],
           timeout=1200, env=env)
    if not CONTAINERS_CONF.exists():
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text(CONF_TEXT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_pip_configured() -> bool:
    out = sh([sys.executable, "-m", "pip", "config", "list"], check=False).stdout
    return bool(re.search(r"\.(find-links|extra-index-url|index-url|cert)=", out))


def make_parts(root: Path, parts: range, copies: int) -> dict[str, list[str]]:
    """Sub-folders part<N> of the sample videos, each file with its own bytes (zeros appended,
    which decoders ignore), so that every clip has its own feature-cache key."""
    made: dict[str, list[str]] = {}
    for p in parts:
        d = root / f"part{p}"
        d.mkdir(parents=True)
        for k in range(copies):
            for src in SAMPLES:
                dst = d / f"{src.stem}_p{p}k{k}.mpg"
                dst.write_bytes(src.read_bytes() + b"\0" * (p * 10 + k))
                made.setdefault(f"part{p}", []).append(dst.name)
    return made


class Api:
    """The few Prefect REST calls the test needs (the server of the stack, from the host)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.c = httpx.Client(base_url=url, timeout=30)

    def run(self, deployment: str, params: dict[str, Any]) -> str:
        dep = self.c.get(f"/deployments/name/{deployment}").raise_for_status().json()["id"]
        r = self.c.post(f"/deployments/{dep}/create_flow_run", json={"parameters": params})
        return str(r.raise_for_status().json()["id"])

    def flow_run(self, i: str) -> dict[str, Any]:
        return self.c.get(f"/flow_runs/{i}").raise_for_status().json()

    def states(self, i: str) -> list[dict[str, Any]]:
        return self.c.get("/flow_run_states/", params={"flow_run_id": i}).raise_for_status().json()

    def workers(self, i: str) -> list[str]:
        """The workers that took the run, in order (from the run's logs)."""
        logs = self.c.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [i]}}, "limit": 200,
                                                 "sort": "TIMESTAMP_ASC"}).raise_for_status().json()
        return [m.group(1) for rec in logs
                for m in [re.search(r"Worker '([^']+)' submitting flow run", rec["message"])] if m]

    def extract_tasks(self, part: str) -> list[dict[str, Any]]:
        """Every `extract <clip>` task run of a folder's clips (any flow run)."""
        tag = "_p" + part.removeprefix("part") + "k"
        return self.c.post("/task_runs/filter", json={"task_runs": {"name": {"like_": tag}}, "limit": 200}
                           ).raise_for_status().json()

    def wait(self, ids: list[str], timeout: float, tick: float = 5.0, each=None) -> list[dict[str, Any]]:
        t0 = time.monotonic()
        while True:
            runs = [self.flow_run(i) for i in ids]
            if each is not None:
                each(runs)
            if all(r["state"]["type"] in TERMINAL for r in runs):
                return runs
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"flow runs not finished after {timeout:.0f} s: "
                                     f"{[(r['name'], r['state']['name']) for r in runs]}")
            time.sleep(tick)


CHECK_VOLUME = r"""
import csv, json, pathlib
from safetensors.numpy import load_file
root = pathlib.Path("/data")
bad, keys = [], []
for d in sorted((root / "cache" / "entries").glob("*/*")):
    try:
        m = json.loads((d / "meta.json").read_text())
        arrays = load_file(str(d / "features.safetensors"))
        assert m["key"] == d.name, "meta.json names another key"
        assert {"audio", "vision"} <= set(arrays), "arrays missing"
        keys.append(d.name)
    except Exception as e:
        bad.append(f"{d.name}: {type(e).__name__}: {e}")
scores = {f.parent.name: list(csv.DictReader(open(f, encoding="utf-8")))
          for f in sorted((root / "scores").glob("*/scores.csv"))}
print(json.dumps({"entries": keys, "damaged": bad, "scores": scores}))
"""


def test_container_stack(tmp_path_factory: pytest.TempPathFactory) -> None:
    ensure_podman()
    proj = "senbert-t" + uuid.uuid4().hex[:8]
    tags = {"image": f"localhost/senbert-worker:{proj}", "base": f"localhost/senbert-base:{proj}",
            "postgres": f"localhost/senbert-postgres:{proj}"}
    work = Path(tempfile.mkdtemp(prefix=proj + "-"))
    log = work / "commands.log"
    port = free_port()
    env = {**os.environ, "SENBERT_IMAGE": tags["image"], "SENBERT_POSTGRES_IMAGE": tags["postgres"],
           "SENBERT_PORT": str(port), "SENBERT_WORKERS": "2", "SENBERT_WORKER_LIMIT": "1",
           "PYTHON": sys.executable}
    times: dict[str, float] = {}
    t_all = time.monotonic()
    ctx = work / "ctx"
    compose = ["podman-compose", "-p", proj, "-f", str(ctx / "docker" / "compose.yaml")]
    volume = f"{proj}_senbert-data"
    failure: BaseException | None = None
    try:
        # ---- the images, from a clean snapshot of HEAD
        ctx.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(ctx)], input=archive, check=True)
        build = ["bash", str(ctx / "docker" / "build.sh"), "--engine", "podman", "--debian-base",
                 "--tag", tags["image"], "--base-tag", tags["base"], "--postgres-tag", tags["postgres"],
                 "--no-layer-cache", "--build-opt", "--force-rm"]
        if host_pip_configured():
            build.append("--pip-from-host")
        build += shlex.split(os.environ.get("SENBERT_TEST_CONTAINERS_BUILD_OPTS", ""))
        t0 = time.monotonic()
        sh(build, timeout=2700, env=env, log=log)
        times["build images (base, postgres, senbert)"] = time.monotonic() - t0

        # ---- the stack
        t0 = time.monotonic()
        sh([*compose, "up", "-d", "--no-build"], timeout=300, env=env, log=log)
        deploy_rc = sh(["podman", "wait", f"{proj}_deploy_1"], timeout=900, log=log).stdout.strip()
        assert deploy_rc == "0", "deploy exited " + deploy_rc + ":\n" + sh(
            ["podman", "logs", f"{proj}_deploy_1"], check=False).stdout[-3000:]
        api = Api(f"http://127.0.0.1:{port}/api")
        assert api.c.get("/health").json() is True
        times["stack up (postgres, server, deploy done)"] = time.monotonic() - t0
        hostname = {sh(["podman", "inspect", "-f", "{{.Config.Hostname}}", f"{proj}_worker_{n}"]).stdout.strip():
                    f"{proj}_worker_{n}" for n in (1, 2)}
        worker_names = {f"senbert-{h}": c for h, c in hostname.items()}

        def put_videos(parts: range, copies: int) -> dict[str, list[str]]:
            src = work / f"videos-{parts.start}"
            made = make_parts(src, parts, copies)
            sh(["podman", "run", "--rm", "--label", f"senbert.test={proj}", "-v", f"{volume}:/data",
                "-v", f"{src}:/src:ro", tags["image"],
                "bash", "-c", "mkdir -p /data/videos && cp -r /src/. /data/videos/"],
               timeout=300, log=log)
            return made

        # ---- two workers share the runs of build-features and score
        files = put_videos(range(1, 5), copies=1)
        t0 = time.monotonic()
        build_ids = [api.run("build-features/default", {"videos": f"/data/videos/{p}"}) for p in files]
        runs = api.wait(build_ids, timeout=1200)
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 4, [(r["name"], r["state"]) for r in runs]
        times["build-features, 4 runs x 3 clips"] = time.monotonic() - t0
        t0 = time.monotonic()
        score_ids = [api.run("score/default", {"videos": f"/data/videos/{p}", "out": f"/data/scores/{p}"})
                     for p in files]
        runs = api.wait(score_ids, timeout=1200)
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 4, [(r["name"], r["state"]) for r in runs]
        times["score, 4 runs x 3 files"] = time.monotonic() - t0
        for ids in (build_ids, score_ids):
            took = {i: api.workers(i) for i in ids}
            assert all(len(w) == 1 and w[0] in worker_names for w in took.values()), took
            assert {w[0] for w in took.values()} == set(worker_names), f"one worker took every run: {took}"

        # ---- a worker killed while its run extracts
        more = put_videos(range(5, 9), copies=2)
        t0 = time.monotonic()
        kill_ids = [api.run("score/default", {"videos": f"/data/videos/{p}", "out": f"/data/scores/{p}"})
                    for p in more]
        killed: dict[str, Any] = {}

        def kill_one(runs: list[dict[str, Any]]) -> None:
            if killed:
                return
            for r in runs:
                if r["state"]["type"] != "RUNNING":
                    continue
                w = api.workers(r["id"])
                part = r["parameters"]["videos"].rsplit("/", 1)[1]
                done = sum(t["state"]["type"] == "COMPLETED" for t in api.extract_tasks(part))
                if w and 1 <= done < len(more[part]):
                    sh(["podman", "kill", worker_names[w[-1]]], log=log)
                    killed.update(run=r["id"], part=part, worker=w[-1], done_before=done, at=time.time())
                    return

        runs = api.wait(kill_ids, timeout=1500, tick=2.0, each=kill_one)
        times["score with a worker killed, 4 runs x 6 files"] = time.monotonic() - t0
        assert killed, "no run was caught mid-extraction (the runs were too quick): nothing was killed"
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 4, [(r["name"], r["state"]) for r in runs]
        # the killed run: Crashed (no heartbeat), scheduled again, completed by the other worker
        states = api.states(killed["run"])
        history = [(s["type"], s["name"]) for s in states]
        assert ("CRASHED", "Crashed") in history and ("SCHEDULED", "AwaitingRetry") in history, history
        assert history[-1] == ("COMPLETED", "Completed"), history
        took = api.workers(killed["run"])
        assert took[0] == killed["worker"] and took[-1] != killed["worker"], took
        assert api.flow_run(killed["run"])["run_count"] == 2
        # no clip extracted twice: at most one Completed extract task per clip. In the killed
        # run's folder the clips done before the kill are Cached in the retry; a clip in flight is
        # left Running in the dead attempt's record, and is then either Completed in the retry
        # or, when its features and task record were written just before the kill (the state
        # report was lost with the process), Cached there. Every other folder: one Completed each.
        for part, names in more.items():
            tasks = api.extract_tasks(part)
            for name in names:
                stem = Path(name).stem
                mine = [t["state"]["name"] for t in tasks if t["name"] == f"extract {stem}"]
                if part != killed["part"]:
                    assert mine == ["Completed"], (part, stem, mine)
                    continue
                assert set(mine) <= {"Completed", "Cached", "Running"}, (stem, mine)
                assert mine.count("Completed") <= 1 and mine.count("Completed") + mine.count("Cached") >= 1, (
                    stem, mine)
        retried = [t["state"]["name"] for t in api.extract_tasks(killed["part"])]
        assert retried.count("Cached") >= killed["done_before"], retried

        # ---- what is on the volume
        out = sh(["podman", "run", "--rm", "--label", f"senbert.test={proj}", "-v", f"{volume}:/data",
                  tags["image"], "python", "-c", CHECK_VOLUME], timeout=300, log=log).stdout
        vol = json.loads(out.strip().splitlines()[-1])
        assert vol["damaged"] == [], vol["damaged"]
        assert len(vol["entries"]) == sum(len(v) for v in {**files, **more}.values())
        for part, names in {**files, **more}.items():
            rows = {Path(r["path"]).name: r for r in vol["scores"].get(part, [])}
            assert set(rows) == set(names), (part, sorted(rows))
            for name, r in rows.items():
                assert r["status"] == "ok" or (r["status"] == "failed" and r["error"]), (part, name, r)
        from datetime import datetime

        def after_kill(kind: str) -> float:
            ts = [s["timestamp"] for s in states if s["type"] == kind][-1]
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() - killed["at"]

        times["killed run: Crashed and rescheduled, after the kill"] = after_kill("CRASHED")
        times["killed run: Completed, after the kill"] = after_kill("COMPLETED")
    except BaseException as e:  # noqa: BLE001 - cleaned up below, then raised again
        failure = e
    finally:
        left = cleanup(proj, tags, work, log)
        times["total"] = time.monotonic() - t_all
        report = {"project": proj, "seconds": {k: round(v, 1) for k, v in times.items()}, "left": left}
        if os.environ.get("SENBERT_TEST_CONTAINERS_REPORT"):
            Path(os.environ["SENBERT_TEST_CONTAINERS_REPORT"]).write_text(json.dumps(report, indent=1))
        print("\ncontainer stack:", json.dumps(report, indent=1), file=sys.stderr)
    if failure is not None:
        raise failure
    assert not left, f"left behind: {left}"


def cleanup(proj: str, tags: dict[str, str], work: Path, log: Path) -> list[str]:
    """Remove every container, volume, network and image of the run; what is still there."""
    def ids(*cmd: str) -> list[str]:
        return sh(list(cmd), check=False).stdout.split()

    for label in (f"io.podman.compose.project={proj}", f"senbert.test={proj}"):
        cs = ids("podman", "ps", "-aq", "--filter", f"label={label}")
        if cs:
            sh(["podman", "rm", "-f", "-v", *cs], check=False, timeout=300)
        vs = ids("podman", "volume", "ls", "-q", "--filter", f"label={label}")
        if vs:
            sh(["podman", "volume", "rm", "-f", *vs], check=False, timeout=300)
    nets = [n for n in ids("podman", "network", "ls", "--format", "{{.Name}}") if n.startswith(proj)]
    if nets:
        sh(["podman", "network", "rm", "-f", *nets], check=False)
    for tag in tags.values():
        sh(["podman", "rmi", "-f", tag], check=False, timeout=300)
    mine = f"label=io.podman.compose.project={proj}"
    left = [f"container {c}" for c in ids("podman", "ps", "-aq", "--filter", mine)]
    left += [f"volume {v}" for v in ids("podman", "volume", "ls", "-q", "--filter", mine)]
    left += [f"network {n}" for n in ids("podman", "network", "ls", "--format", "{{.Name}}") if n.startswith(proj)]
    left += [f"image {t}" for t in tags.values() if sh(["podman", "image", "exists", t], check=False).returncode == 0]
    if log.exists() and os.environ.get("SENBERT_TEST_CONTAINERS_LOG"):
        shutil.copy(log, os.environ["SENBERT_TEST_CONTAINERS_LOG"])
    shutil.rmtree(work, ignore_errors=True)
    return left
