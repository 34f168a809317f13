"""The serving process: one ``prefect.serve`` of every SenBERT deployment.

    python -m flows.serve [--name default] [--task-runner threads] [--poll-seconds 2]

Serves ``build-features/<name>``, ``score/<name>``, ``train/<name>`` and
``evaluate/<name>`` against the server named by ``PREFECT_API_URL`` (``senbert stack``
starts both). Prefect runs each flow run in a child process of this one; the models are
loaded once per flow run and shared by all its tasks (threads), or once per worker process
with ``--task-runner processes:N``. Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from flows.runtime import TASK_RUNNER_ENV

DEFAULT_NAME = os.environ.get("SENBERT_DEPLOYMENT_NAME", "default")
FLOW_NAMES = ("build-features", "score", "train", "evaluate")


def all_flows() -> list[Any]:
    from flows.build_features import build_features
    from flows.evaluate import evaluate_flow
    from flows.score import score
    from flows.train import train_flow

    return [build_features, score, train_flow, evaluate_flow]


def deployments(name: str = DEFAULT_NAME) -> list[Any]:
    """One RunnerDeployment per flow, all under the deployment name ``name``."""
    return [f.to_deployment(name=name, tags=["senbert"], description=f.description) for f in all_flows()]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n")[0])
    p.add_argument("--name", default=DEFAULT_NAME, help="deployment name (default: default)")
    p.add_argument("--task-runner", help=f"threads[:N] | processes[:N] | dask | dask://host:port "
                                         f"(default: ${TASK_RUNNER_ENV} or threads)")
    p.add_argument("--poll-seconds", type=float, default=float(os.environ.get("SENBERT_POLL_SECONDS", 2)),
                   help="how often to look for new flow runs (default 2)")
    p.add_argument("--limit", type=int, default=None, help="most flow runs at once (default: Prefect's)")
    args = p.parse_args(argv)
    if args.task_runner:
        from flows.runtime import make_task_runner

        make_task_runner(args.task_runner)  # fail now on a bad setting
        os.environ[TASK_RUNNER_ENV] = args.task_runner  # read by the flow modules here and in every run
    from prefect import serve

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    deps = deployments(args.name)
    print(f"serving {', '.join(f'{d.flow_name}/{d.name}' for d in deps)} "
          f"(task runner {os.environ.get(TASK_RUNNER_ENV) or 'threads'})", flush=True)
    try:
        serve(*deps, print_starting_message=False, limit=args.limit, query_seconds=args.poll_seconds)
    except KeyboardInterrupt:
        pass
    print("serve: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
