"""Opt-in: the local stack with its Prefect server on PostgreSQL (SENBERT_TEST_POSTGRES=1).

Needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``; a test never
installs anything). With ``SENBERT_TEST_POSTGRES_URL=postgresql+asyncpg://...`` it uses that
database; without, a throwaway cluster in a temporary folder (bench/bench_postgres.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SENBERT_TEST_POSTGRES") != "1", reason="opt-in: SENBERT_TEST_POSTGRES=1"),
]

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_postgres.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_postgres", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_features_and_score_on_postgresql(tmp_path: Path) -> None:
    from tests.test_flows_scoring import tiny_checkpoint

    bench = _bench()
    url = os.environ.get("SENBERT_TEST_POSTGRES_URL")
    ckpt = tiny_checkpoint(tmp_path)
    with (contextlib.nullcontext(url) if url else bench.throwaway_cluster()) as db:
        before = bench.count_rows(db) if url else {"flow_run": 0, "task_run": 0}
        times = bench.exercise("postgresql", db, tmp_path, ckpt)  # asserts the score rows
        after = bench.count_rows(db)
    assert after["flow_run"] - before["flow_run"] >= 4  # build-features x2, score and its subflow
    assert after["task_run"] - before["task_run"] >= 8
    assert set(times) >= {"stack up", "score"}
