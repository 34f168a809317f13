"""The local stack in one command: a Prefect server on 127.0.0.1 plus one serving process.

    senbert stack [--port 4200] [--home .senbert/prefect] [--task-runner threads]

starts ``prefect server start --host 127.0.0.1 --port PORT`` with ``PREFECT_HOME`` (and so
its SQLite database, ``prefect.db``) under ``--home``, waits until it answers, starts
``python -m flows.serve`` (all four deployments, named ``default``), waits until every
deployment has been polled, prints how to run them from another terminal, and keeps both
running. Ctrl-C or SIGTERM stops the serving process first, then the server. Each child
runs in its own process group, so whatever they started goes with them.

From Python (tests, the demo, benchmarks)::

    with LocalStack(home=tmp / "prefect", ui=False) as stack:
        stack.run_deployment("build-features", {"videos": "/abs/videos"})
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from common.errors import ConfigError, SenbertError
from flows.runtime import TASK_RUNNER_ENV

DEFAULT_HOME = Path(".senbert") / "prefect"
DEFAULT_PORT = 4200
HOME_LOCK = "stack.lock"  # in --home: held by the stack that uses it
FLOW_NAMES = ("build-features", "score", "train", "evaluate")


class StackError(SenbertError):
    """The local stack could not be brought up (a port in use, a server that never answered, ...)."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def prefect_exe() -> str:
    """The ``prefect`` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("prefect")
    return str(exe) if exe.exists() else "prefect"


def _stop_process(proc: subprocess.Popen[Any] | None, first: int, grace: float) -> None:
    """Send ``first`` to the process, then SIGTERM and SIGKILL to its whole group."""
    if proc is None or proc.poll() is not None and _group_gone(proc.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        if proc.poll() is None:
            os.kill(proc.pid, first)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if _group_gone(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not _group_gone(proc.pid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # zombies of the group count as gone
    try:
        out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True, timeout=5)
        states = [s.strip() for s in out.stdout.split("\n") if s.strip()]
        return all(s.startswith("Z") for s in states)
    except (OSError, subprocess.SubprocessError):
        return False


class LocalStack:
    """A Prefect server (SQLite under ``home`` by default) and the serving process, as children."""

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        port: int | None = None,
        task_runner: str | None = None,
        name: str = "default",
        ui: bool = True,
        database_url: str | None = None,
        poll_seconds: float = 2.0,
        serve_log: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.home = Path(home or DEFAULT_HOME).expanduser().resolve()
        self.host = host
        self.port = port
        self.task_runner = task_runner
        self.name = name
        self.ui = ui
        self.database_url = database_url
        self.poll_seconds = poll_seconds
        self.serve_log = Path(serve_log) if serve_log else None
        self.extra_env = dict(env or {})
        self.cwd = Path(cwd).resolve() if cwd else Path.cwd()
        self.server: subprocess.Popen[Any] | None = None
        self.serve: subprocess.Popen[Any] | None = None
        self._logs: list[IO[Any]] = []
        self._home_lock: IO[Any] | None = None

    # ------------------------------------------------------------------ settings

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def database(self) -> str:
        return self.database_url or f"SQLite {self.home / 'prefect.db'}"

    def env(self) -> dict[str, str]:
        """The environment of the children, and of any client of this stack (`prefect` CLI)."""
        env = dict(os.environ)
        env.update({
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "true" if self.ui else "false",
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("PREFECT_PROFILE", None)
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        if self.task_runner:
            env[TASK_RUNNER_ENV] = self.task_runner
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------ start / stop

    def start(self, timeout: float = 180.0) -> LocalStack:
        if self.task_runner:
            from flows.runtime import make_task_runner

            make_task_runner(self.task_runner)  # a bad setting fails before anything starts
        if self.port is None:
            self.port = DEFAULT_PORT if port_is_free(DEFAULT_PORT, self.host) else free_port(self.host)
        elif not port_is_free(self.port, self.host):
            raise StackError(f"port {self.port} on {self.host} is in use (another Prefect server?); "
                             "choose another with --port, or leave it out to take a free one")
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{self.home}: cannot create the Prefect home folder ({e}); choose --home") from e
        self._lock_home()
        env = self.env()
        deadline = time.monotonic() + timeout
        try:
            server_log = open(self.home / "server.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(server_log)
            cmd = [prefect_exe(), "server", "start", "--host", self.host, "--port", str(self.port),
                   "--analytics-off", "--ui" if self.ui else "--no-ui"]
            self.server = subprocess.Popen(cmd, env=env, cwd=self.cwd, stdout=server_log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
            self._wait_healthy(deadline)
            started = datetime.now(UTC)
            out: Any = None
            if self.serve_log:
                self.serve_log.parent.mkdir(parents=True, exist_ok=True)
                out = open(self.serve_log, "ab")  # noqa: SIM115 - closed in stop()
                self._logs.append(out)
            cmd = [sys.executable, "-m", "flows.serve", "--name", self.name, "--poll-seconds", str(self.poll_seconds)]
            self.serve = subprocess.Popen(cmd, env=env, cwd=self.cwd, stdout=out,
                                          stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            self._wait_served(started, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _get(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(f"{self.api_url}{path}", timeout=timeout) as r:  # noqa: S310 - local
            return json.loads(r.read().decode() or "null")

    def _check_alive(self) -> None:
        for what, proc, log in (("Prefect server", self.server, self.home / "server.log"),
                                ("serving process", self.serve, self.serve_log)):
            if proc is not None and proc.poll() is not None:
                where = f"; see {log}" if log else " (its output is above)"
                raise StackError(f"the {what} exited with status {proc.returncode} while starting{where}")

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError):
                if self._get("/health", timeout=2) is True:
                    return
            time.sleep(0.5)
        raise StackError(f"the Prefect server did not answer on {self.api_url} in time; see {self.home / 'server.log'}")

    def _wait_served(self, started: datetime, deadline: float) -> None:
        pending = set(FLOW_NAMES)
        while time.monotonic() < deadline:
            self._check_alive()
            for flow in sorted(pending):
                with contextlib.suppress(OSError, ValueError):
                    d = self._get(f"/deployments/name/{flow}/{self.name}")
                    polled = d.get("last_polled") if isinstance(d, dict) else None
                    if polled and datetime.fromisoformat(polled.replace("Z", "+00:00")) >= started:
                        pending.discard(flow)
            if not pending:
                return
            time.sleep(0.5)
        raise StackError(f"the serving process did not register {sorted(pending)} in time")

    def _lock_home(self) -> None:
        """One stack per home: its SQLite database takes one server, and a second stack on another
        port would serve the same deployments from it. The lock goes with this process."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        f = open(self.home / HOME_LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "a running process"
            f.close()
            raise StackError(f"{self.home} is in use by another senbert stack ({holder}); stop it, or give this "
                             "one its own --home") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, API {self.api_url}\n")
        f.flush()
        self._home_lock = f

    def stop(self) -> None:
        """Stop the serving process, then the server (each with its process group)."""
        _stop_process(self.serve, signal.SIGINT, grace=20.0)
        _stop_process(self.server, signal.SIGTERM, grace=20.0)
        for f in [*self._logs, *([self._home_lock] if self._home_lock else [])]:
            with contextlib.suppress(OSError):
                f.close()
        self._logs.clear()
        self._home_lock = None

    def __enter__(self) -> LocalStack:
        return self.start() if self.server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients

    def deployment_run_command(self, flow: str, params: Mapping[str, Any], watch: bool = True,
                               watch_interval: int = 1) -> list[str]:
        """``prefect deployment run <flow>/<name> -p key=<json> ... [--watch]``."""
        cmd = [prefect_exe(), "deployment", "run", f"{flow}/{self.name}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}={json.dumps(v)}"]
        if watch:
            cmd += ["--watch", "--watch-interval", str(watch_interval)]
        return cmd

    def shown_command(self, flow: str, params: Mapping[str, Any]) -> str:
        """The same command as a user would type it (``-p videos=/abs/path``, ``--watch``)."""
        parts = ["prefect", "deployment", "run", f"{flow}/{self.name}"]
        for k, v in params.items():
            plain = isinstance(v, str) and '"' not in v and not _parses_as_json(v)
            parts += ["-p", f"{k}={v if plain else json.dumps(v)}"]
        return shlex.join([*parts, "--watch"])

    def run_deployment(self, flow: str, params: Mapping[str, Any], watch: bool = True, timeout: float = 600,
                       capture: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a deployment through the Prefect CLI (and wait for it with ``--watch``)."""
        return subprocess.run(self.deployment_run_command(flow, params, watch), env=self.env(), cwd=self.cwd,
                              capture_output=capture, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def wait(self) -> int:
        """Block until a child exits (an error: 1) or Ctrl-C / SIGTERM (0)."""
        while True:
            for what, proc in (("serving process", self.serve), ("Prefect server", self.server)):
                if proc is not None and proc.poll() is not None:
                    print(f"the {what} exited (status {proc.returncode}); stopping the stack", file=sys.stderr)
                    return 1
            time.sleep(1.0)

    def instructions(self, videos: str | None = None) -> str:
        v = videos or str(Path.cwd() / "examples" / "videos")
        return "\n".join([
            f"Prefect server  {self.url}{'  (UI)' if self.ui else ''}   database: {self.database}",
            f"API             {self.api_url}",
            f"Serving         {', '.join(f'{f}/{self.name}' for f in FLOW_NAMES)} "
            f"(task runner: {self.task_runner or os.environ.get(TASK_RUNNER_ENV) or 'threads'})",
            "",
            "From another terminal:",
            f"  export PREFECT_API_URL={self.api_url}",
            f"  prefect deployment run build-features/{self.name} -p videos={v} --watch",
            f"  prefect deployment run score/{self.name} -p videos={v} --watch   # the default model",
            "(paths: absolute, or relative to the folder this stack was started in)",
            "",
            "Ctrl-C stops the serving process, then the server.",
        ])


def _parses_as_json(v: str) -> bool:
    try:
        json.loads(v)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt for the duration (clean shutdown on `kill` and
    Ctrl-C, also when the process was started with SIGINT ignored, as background jobs are)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def run_stack(home: str | None = None, port: int | None = None, task_runner: str | None = None,
              name: str = "default", ui: bool = True, database_url: str | None = None) -> int:
    """``senbert stack``: bring the stack up, print how to use it, keep it up until Ctrl-C."""
    stack = LocalStack(home=home, port=port, task_runner=task_runner, name=name, ui=ui, database_url=database_url)
    with sigterm_as_interrupt():
        try:
            print(f"starting the Prefect server on {stack.host} (home {stack.home}) ...", flush=True)
            stack.start()
            print(stack.instructions(), flush=True)
            return stack.wait()
        except KeyboardInterrupt:
            print("\nstopping: serving process, then server ...", file=sys.stderr, flush=True)
            return 0
        finally:
            stack.stop()
            print("stack stopped", file=sys.stderr, flush=True)
