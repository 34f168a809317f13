"""A worker process that dies (a native crash, an OOM kill) in a parallel batch: only the clip that
kills it is failed; the clips that shared its pool finish. Real spawned processes, a real death."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

from pipeline.features.pool import run_isolating_crashes

FATAL = 3


def _job(i: int) -> int:
    """Kills its process, as a segfault in a native library or the kernel's OOM killer would."""
    if i == FATAL:
        os._exit(9)
    return 10 * i


def _pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))


def test_only_the_clip_that_kills_its_worker_fails_and_the_others_finish() -> None:
    done: dict[int, int] = {}
    crashed: list[int] = []
    pools: list[int] = []

    def make_pool(n: int) -> ProcessPoolExecutor:
        pools.append(n)
        return _pool(n)

    run_isolating_crashes([5, 0, 1, 2, 3, 4], 2, make_pool, lambda i: (_job, i), done.__setitem__, crashed.append)
    assert crashed == [FATAL]
    assert done == {i: 10 * i for i in (0, 1, 2, 4, 5)}
    # two pools of two break; then one-worker pools isolate it: the last one runs the clips after it
    assert pools[:2] == [2, 2] and set(pools[2:]) == {1} and len(pools) <= 4


def test_a_batch_without_deaths_uses_one_pool() -> None:
    done: dict[int, int] = {}
    pools: list[int] = []

    def make_pool(n: int) -> ProcessPoolExecutor:
        pools.append(n)
        return _pool(n)

    run_isolating_crashes([0, 1, 2], 2, make_pool, lambda i: (_job, i), done.__setitem__, [].append)
    assert done == {0: 0, 1: 10, 2: 20} and pools == [2]
