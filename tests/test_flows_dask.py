"""The Dask task runner on an existing cluster: ``SENBERT_TASK_RUNNER=dask://host:port``.

A real ``distributed.LocalCluster`` (tcp on 127.0.0.1, one worker process with one thread,
no dashboard), closed in the fixture's teardown also when the test fails. The
``build-features`` flow runs in this process against a temporary Prefect server
(``prefect_test_harness``) on two GRID clips (tests/fixtures/grid, CC BY 4.0), with the
task runner made from the setting string by :func:`flows.runtime.make_task_runner` and
given to the run with ``with_options`` (the flow module reads the setting once, at import).

Checked: both clips land in the feature cache; the extract tasks ran in the Dask worker
process (a scheduler plugin records each task that finished computing, by key and worker:
two ``extract_clip_task`` tasks, both on the one worker; the worker process counts them as
executed and has built the extract config); a second run reports both clips cached, its
tasks also going through the cluster.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import distributed
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

from flows.build_features import build_features
from flows.runtime import TASK_RUNNER_ENV, make_task_runner
from pipeline.features.cache import FeatureCache

GRID_DIR = Path(__file__).parent / "fixtures" / "grid"
CLIPS = ["brbk7n.mpg", "lbax4n.mpg"]
FAST = ["visual.fps=5"]  # fewer frames, same extractors
TASK_PREFIX = "extract_clip_task"  # Dask key prefix: the name of the Prefect task's function

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    """One worker process, one thread; closed (workers included) whatever the test does."""
    c = distributed.LocalCluster(protocol="tcp", host="127.0.0.1", n_workers=1, threads_per_worker=1,
                                 processes=True, dashboard_address=None)
    try:
        yield c
    finally:
        c.close(timeout=30)


@pytest.fixture
def prefect_api(monkeypatch: pytest.MonkeyPatch):
    """A temporary Prefect server and database for this test (no telemetry)."""
    from prefect.testing.utilities import prefect_test_harness

    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        yield


class TaskLedger(SchedulerPlugin):
    """On the scheduler: every task that finished computing (processing -> memory), by key and worker."""

    name = "senbert-test-ledger"

    def __init__(self) -> None:
        self.done: list[tuple[str, str | None]] = []

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.done.append((str(key), kwargs.get("worker")))


def _ledger(dask_scheduler: Any) -> dict[str, Any]:
    tp = dask_scheduler.task_prefixes.get(TASK_PREFIX)
    return {"done": list(dask_scheduler.plugins[TaskLedger.name].done),
            "compute_s": float(tp.all_durations.get("compute", 0.0)) if tp is not None else 0.0}


def _worker_view(dask_worker: Any) -> dict[str, Any]:
    mod = sys.modules.get("flows.build_features")
    return {"pid": os.getpid(), "executed": dask_worker.state.executed_count,
            "configs": len(mod._CONFIGS) if mod is not None else None}


def test_build_features_on_an_existing_dask_cluster(tmp_path: Path, prefect_api: None,
                                                    cluster: distributed.LocalCluster,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_dask import DaskTaskRunner

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in CLIPS:
        shutil.copyfile(GRID_DIR / name, videos / name)
    cache = tmp_path / "cache"
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    setting = "dask://" + address.removeprefix("tcp://")
    monkeypatch.setenv(TASK_RUNNER_ENV, setting)
    runner = make_task_runner()  # the setting, as the flow modules read it
    assert isinstance(runner, DaskTaskRunner) and runner.address == address
    flow = build_features.with_options(task_runner=runner)
    params = {"videos": str(videos), "overrides": FAST, "cache_dir": str(cache)}

    with distributed.Client(address, timeout=60) as client:
        (worker_addr,) = client.scheduler_info()["workers"]
        before = client.run(_worker_view)[worker_addr]
        assert before["pid"] != os.getpid() and before["executed"] == 0
        client.register_plugin(TaskLedger())

        first = flow(**params)
        assert (first["clips"], first["done"], first["cached"], first["failed"]) == (2, 2, 0, 0), first
        assert sorted(it["clip_id"] for it in first["items"]) == sorted(Path(c).stem for c in CLIPS)
        fc = FeatureCache(cache)
        for it in first["items"]:
            assert it["status"] == "done" and fc.has(it["key"]), it
        sched = client.run_on_scheduler(_ledger)
        assert len(sched["done"]) == 2 and sched["compute_s"] > 0, sched
        assert all(k.startswith(TASK_PREFIX + "-") and w == worker_addr for k, w in sched["done"]), sched
        worker = client.run(_worker_view)[worker_addr]
        assert worker["pid"] == before["pid"]  # the same worker process did both clips
        assert worker["executed"] >= 2 and worker["configs"] == 1, worker

        second = flow(**params)
        assert (second["done"], second["cached"], second["failed"]) == (0, 2, 0), second
        assert {it["status"] for it in second["items"]} == {"cached"}
        assert [it["key"] for it in second["items"]] == [it["key"] for it in first["items"]]
        sched = client.run_on_scheduler(_ledger)
        assert len(sched["done"]) == 4, sched  # the cached tasks went through the cluster too
        assert all(k.startswith(TASK_PREFIX + "-") and w == worker_addr for k, w in sched["done"]), sched
        assert client.run(_worker_view)[worker_addr]["executed"] >= 4
