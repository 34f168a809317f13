"""Worker processes that end with their parent.

A worker of a process pool (``senbert extract --workers N``, ``senbert score``, Prefect's
process task runner) keeps its models in memory, several hundred MB each. If the parent is
killed (``kill -9``, an OOM kill, a closed terminal) the workers are reparented to init and,
without this, finish their queue and then wait forever for the next task. Each worker calls
:func:`exit_with_parent` once: a daemon thread notices that the parent is gone (the parent
process id is no longer the one multiprocessing recorded when it started the worker) and ends
the worker at once, with status 1. The expected parent comes from multiprocessing, not from
``os.getppid()`` at the call, so a parent killed while its workers were still importing
(seconds, for torch and MediaPipe) is noticed too. Whatever the worker had
written is safe, since every write of the project is atomic.

It acts only in a child started by ``multiprocessing`` (a pool worker): a command-line process
whose shell goes away (``nohup``) keeps running.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

_guard: dict[int, threading.Thread] = {}  # pid -> its watcher (a forked child needs its own)


def exit_with_parent(poll_seconds: float = 0.5) -> None:
    """Start (once per process) the watcher that ends this pool worker when its parent dies;
    a no-op in a process that multiprocessing did not start."""
    pid = os.getpid()
    origin = multiprocessing.parent_process()
    if pid in _guard or origin is None:
        return
    parent = origin.pid
    if os.getppid() != parent:  # already gone before this worker got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)

    t = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    t.start()
    _guard[pid] = t


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` set),
    not the machine's: ``os.cpu_count()`` on a 64-core host is 64 in a container given 2."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)
