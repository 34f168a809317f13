"""``senbert stack``: the local Prefect stack (a server and one process serving every deployment).

    senbert stack [--port 4200] [--home .senbert/prefect] [--task-runner threads] [--no-ui]

See flows/stack.py and docs/flows.md. Prefect is imported when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``stack`` subcommand."""
    p = sub.add_parser(
        "stack", help="bring up a local Prefect server and serve every deployment (Ctrl-C stops both)",
        description="Start a Prefect server on 127.0.0.1 (SQLite under --home) and one process serving "
                    "build-features/default, score/default, train/default and evaluate/default.",
    )
    p.add_argument("--port", type=int, help="server port (default 4200, or a free one when 4200 is taken)")
    p.add_argument("--home", default=".senbert/prefect",
                   help="PREFECT_HOME: database, logs (default: .senbert/prefect in this folder)")
    p.add_argument("--task-runner", help="threads[:N] | processes[:N] | dask | dask://host:port "
                                         "(default: $SENBERT_TASK_RUNNER or threads)")
    p.add_argument("--name", default="default", help="deployment name (default: default)")
    p.add_argument("--database-url", help="server database instead of SQLite, e.g. "
                                          "postgresql+asyncpg://user:pass@localhost:5432/prefect")
    p.add_argument("--no-ui", action="store_true", help="serve the API only")
    p.set_defaults(func=cmd_stack)


def cmd_stack(args: argparse.Namespace) -> int:
    from flows.stack import run_stack

    return run_stack(home=args.home, port=args.port, task_runner=args.task_runner, name=args.name,
                     ui=not args.no_ui, database_url=args.database_url)
