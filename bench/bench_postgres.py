"""The local stack on PostgreSQL instead of SQLite: does it work, and how fast.

    python bench/bench_postgres.py                        # a throwaway PostgreSQL cluster (initdb)
    python bench/bench_postgres.py --url postgresql+asyncpg://prefect:prefect@127.0.0.1:5432/prefect

Needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``; ``initdb`` and
``pg_ctl`` are looked up on PATH and under /usr/lib/postgresql/*/bin). Without ``--url`` it
creates a cluster in a temporary folder on a free port (as the ``postgres`` user when run as
root: PostgreSQL refuses root), and removes it at the end.

Then: ``senbert``'s local stack (flows/stack.py) with
``PREFECT_SERVER_DATABASE_CONNECTION_URL`` set to that database, ``build-features/default``
twice (the second run must recompute nothing) and ``score/default`` on the GRID clips of
tests/fixtures/grid through the Prefect CLI; the rows Prefect wrote into PostgreSQL's
``flow_run`` and ``task_run`` tables are counted to show where the state lives. The same
flow runs are timed on SQLite for comparison (``--no-sqlite`` to skip).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = ROOT / "tests" / "fixtures" / "grid"


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                        None)
    if not found:
        raise SystemExit(f"{name} not found: install PostgreSQL's server (Debian: apt-get install postgresql) "
                         "or pass --url of an existing database")
    return found


def _run(*cmd: str) -> None:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-1500:]}{r.stderr[-1500:]}")


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A PostgreSQL cluster in a new temporary folder on a free port; its asyncpg URL."""
    from flows.stack import free_port

    as_user: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="senbert_pg_"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(tmp, "postgres", "postgres")
    data, sock = tmp / "pgdata", tmp / "pgsock"
    for d in (data, sock):
        d.mkdir()
        if as_user:
            shutil.chown(d, "postgres", "postgres")
    port = free_port()
    run = lambda *cmd: _run(*as_user, *cmd)  # noqa: E731
    run(pg_bin("initdb"), "-D", str(data), "-U", "prefect", "--auth=trust", "-E", "UTF8")
    run(pg_bin("pg_ctl"), "-D", str(data), "-l", str(tmp / "postgres.log"), "-w", "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start")
    try:
        run(pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect")
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*as_user, pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def count_rows(url: str) -> dict[str, int]:
    """Rows of Prefect's flow_run and task_run tables, read with asyncpg directly."""
    import asyncio

    import asyncpg

    async def q() -> dict[str, int]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return {t: int(await conn.fetchval(f"select count(*) from {t}")) for t in ("flow_run", "task_run")}
        finally:
            await conn.close()

    return asyncio.run(q())


def tiny_checkpoint(out: Path) -> Path:
    """A small language-only checkpoint on the shipped template corpus (1 epoch)."""
    from pipeline.corpora.load import load_corpus
    from pipeline.training.config import load_config
    from pipeline.training.trainer import train

    overrides = {"epochs": 1, "model.d_model": 16, "model.num_heads": 2, "model.low_level_layers": 1,
                 "model.self_attn_layers": 1, "model.high_level_layers": 1, "max_text_len": 16}
    cfg = load_config("quick", ablation="language_only", overrides=overrides)
    corpus = load_corpus(ROOT / "examples" / "sample_corpus" / "sentences.csv")
    return train(corpus, cfg, out, progress=False).checkpoint


def exercise(label: str, database_url: str | None, tmp: Path, checkpoint: Path) -> dict[str, float]:
    """Stack up, build-features twice, score once; seconds of each step."""
    from flows.stack import LocalStack
    from pipeline.scoring.score import read_scores

    videos = tmp / f"videos-{label}"
    videos.mkdir()
    for p in sorted(GRID.glob("*.mpg")):
        shutil.copyfile(p, videos / p.name)
    (videos / "broken clip.mp4").write_bytes(b"")
    cache, out = tmp / f"cache-{label}", tmp / f"scores-{label}"
    stack = LocalStack(home=tmp / f"home-{label}", ui=False, database_url=database_url,
                       serve_log=tmp / f"home-{label}" / "serve.log", cwd=tmp)
    times: dict[str, float] = {}
    t = time.perf_counter()
    with stack:
        times["stack up"] = time.perf_counter() - t
        bf = {"videos": str(videos), "overrides": ["visual.fps=5"], "cache_dir": str(cache)}
        for step, flow, params in (
            ("build-features (3 clips + 1 broken)", "build-features", bf),
            ("build-features again (all cached)", "build-features", bf),
            ("score", "score", {**bf, "checkpoint": str(checkpoint), "out": str(out)}),
        ):
            t = time.perf_counter()
            r = stack.run_deployment(flow, params)
            times[step] = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"[{label}] {step} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}\n"
                                 f"serve log: {stack.serve_log}")
        rows = read_scores(out)
        ok = sum(r["status"] == "ok" for r in rows)
        assert len(rows) == 4 and ok == 3, rows
        print(f"[{label}] {ok} clips scored, 1 failed as expected; database: {stack.database}")
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="an existing database (postgresql+asyncpg://user:pass@host:port/db)")
    ap.add_argument("--no-sqlite", action="store_true", help="skip the SQLite comparison")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipeline.models.precision import capabilities

    print(f"CPU: {capabilities().describe()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pg_"))
    try:
        print("training a tiny language-only checkpoint ...", flush=True)
        ckpt = tiny_checkpoint(tmp / "tiny")
        results: dict[str, dict[str, float]] = {}
        with (contextlib.nullcontext(args.url) if args.url else throwaway_cluster()) as url:
            print(f"PostgreSQL: {url}", flush=True)
            results["postgresql"] = exercise("postgresql", url, tmp, ckpt)
            rows = count_rows(url)
            print(f"rows in PostgreSQL: {rows['flow_run']} flow runs, {rows['task_run']} task runs")
            assert rows["flow_run"] >= 4 and rows["task_run"] >= 8, rows
        if not args.no_sqlite:
            results["sqlite"] = exercise("sqlite", None, tmp, ckpt)
        steps = list(next(iter(results.values())))
        print(f"\n{'seconds':<40}" + "".join(f"{k:>12}" for k in results))
        for s in steps:
            print(f"{s:<40}" + "".join(f"{results[k][s]:12.1f}" for k in results))
        print(f"load average: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
