"""psycopg 3 on an event loop: the sync pool through ``asyncio.to_thread`` (what
``storage.repository.Database`` does) against ``psycopg_pool.AsyncConnectionPool``.

The same work both ways, on a fresh schema of the local PostgreSQL server
(``STORYWATCH_TEST_POSTGRES_URL``): ``--tasks`` coroutines each run ``--ops``
small transactions like a poll's (``BEGIN``; read a feed row; update it;
``COMMIT``), pool of 8 connections, client-side binding as the bot's. Prints the
wall seconds and the process's CPU seconds, median of ``--runs`` alternating runs.

Run: .venv/bin/python bench/bench_pgpool.py --tasks 16 --ops 200 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from bench._common import machine, table
from tests.support.engines import fresh_schema

ROWS = 1000
READ = "SELECT id, etag, errors FROM feeds WHERE id = %s"
WRITE = "UPDATE feeds SET etag = %s, errors = errors + 1 WHERE id = %s"


def setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE feeds (id int PRIMARY KEY, etag text, errors int NOT NULL)")
        c.execute("INSERT INTO feeds SELECT g, NULL, 0 FROM generate_series(1, %s) g", (ROWS,))


def sync_op(pool: ConnectionPool, n: int) -> None:
    with pool.connection() as conn:
        conn.execute("BEGIN")
        conn.execute(READ, (n % ROWS + 1,)).fetchone()
        conn.execute(WRITE, (f"e{n}", n % ROWS + 1))
        conn.execute("COMMIT")


async def run_sync(url: str, tasks: int, ops: int) -> None:
    pool = ConnectionPool(url, min_size=8, max_size=8, open=True,
                          kwargs={"autocommit": True, "cursor_factory": psycopg.ClientCursor})
    try:
        pool.wait()

        async def task(t: int) -> None:
            for i in range(ops):
                await asyncio.to_thread(sync_op, pool, t * ops + i)

        await asyncio.gather(*(task(t) for t in range(tasks)))
    finally:
        pool.close()


async def run_async(url: str, tasks: int, ops: int) -> None:
    pool = AsyncConnectionPool(
        url, min_size=8, max_size=8, open=False,
        kwargs={"autocommit": True, "cursor_factory": psycopg.AsyncClientCursor},
    )
    await pool.open(wait=True)
    try:
        async def task(t: int) -> None:
            for i in range(ops):
                n = t * ops + i
                async with pool.connection() as conn:
                    await conn.execute("BEGIN")
                    await (await conn.execute(READ, (n % ROWS + 1,))).fetchone()
                    await conn.execute(WRITE, (f"e{n}", n % ROWS + 1))
                    await conn.execute("COMMIT")

        await asyncio.gather(*(task(t) for t in range(tasks)))
    finally:
        await pool.close()


def measure(kind: str, url: str, tasks: int, ops: int) -> tuple[float, float]:
    fn = run_sync if kind == "sync" else run_async
    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(fn(url, tasks, ops))
    return time.perf_counter() - t0, time.process_time() - cpu0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--ops", type=int, default=200)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    print(machine())
    print(f"load average at start: {os.getloadavg()}")
    got: dict[str, list[tuple[float, float]]] = {"sync": [], "async": []}
    with fresh_schema() as url:
        setup(url)
        for _ in range(args.runs):
            for kind in ("sync", "async"):
                got[kind].append(measure(kind, url, args.tasks, args.ops))
    total = args.tasks * args.ops
    rows = []
    for kind, label in (("sync", "ConnectionPool + asyncio.to_thread"),
                        ("async", "AsyncConnectionPool")):
        wall = statistics.median(w for w, _ in got[kind])
        cpu = statistics.median(c for _, c in got[kind])
        rows.append((label, total, f"{wall:.2f}", f"{cpu:.2f}", f"{total / wall:,.0f}",
                     f"{cpu / total * 1e6:,.0f}"))
    print(table(["pool", "transactions", "wall s", "CPU s", "tx/s", "CPU us/tx"], rows))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
