"""Shared helpers for the Storywatch benchmarks (poll, deliver, latency, growth).

What lives here, so no bench repeats it:

* :func:`machine` - the line every bench prints first (cores, Python, platform);
* process accounting from ``/proc`` (Linux): CPU seconds and peak RSS of a process
  *and all its descendants* (the parse pool's workers are grandchildren, through
  the forkserver, so ``RUSAGE_CHILDREN`` would miss them while they run);
* :func:`run_worker` - run one measured phase in a fresh interpreter and read back
  the JSON it prints, so every run starts with a clean heap and its own peak RSS;
* settings and database set-up for a throwaway data directory;
* statistics and Markdown tables.

Nothing here asserts on timings: benchmarks only print.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULT_PREFIX = "BENCH-RESULT "


def machine() -> str:
    """One line naming what the figures were measured on."""
    return (
        f"machine: {os.cpu_count()} cores (nproc), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, {platform.machine()}"
    )


# --- /proc accounting --------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (0.0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of one live process, MB."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class TreeSample:
    """CPU seconds per pid of a process tree at one moment."""

    cpu: dict[int, float]

    @classmethod
    def take(cls, root: int | None = None) -> TreeSample:
        root = os.getpid() if root is None else root
        pids = [root, *descendants(root)]
        return cls({p: cpu_seconds(p) for p in pids})


@dataclass(frozen=True, slots=True)
class Usage:
    """What one measured phase cost: wall seconds, CPU seconds, peak RSS (MB)."""

    wall: float
    cpu_self: float
    cpu_children: float
    rss_self_mb: float
    rss_children_mb: float  # the largest single child (pool workers run side by side)
    rss_tree_mb: float  # self + every child's peak: an upper bound of the tree's peak

    @property
    def cpu(self) -> float:
        return self.cpu_self + self.cpu_children


class Meter:
    """Measures a phase of this process and its descendants (the parse pool).

    ``with Meter() as m: ...`` then ``m.usage``. CPU of children is the difference of
    their /proc counters, so children must still be alive at the end (the pool is
    shut down after the last phase). Peak RSS is reset at the start when the kernel
    allows it, so each phase reports its own peak.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self._pid = os.getpid()
        self._t0 = 0.0
        self._c0 = 0.0
        self._before = TreeSample({})

    def __enter__(self) -> Meter:
        for pid in [self._pid, *descendants(self._pid)]:
            reset_peak_rss(pid)
        self._before = TreeSample.take(self._pid)
        self._c0 = time.process_time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        cpu_self = time.process_time() - self._c0
        after = TreeSample.take(self._pid)
        children = [p for p in after.cpu if p != self._pid]
        cpu_children = sum(after.cpu[p] - self._before.cpu.get(p, 0.0) for p in children)
        child_rss = [peak_rss_mb(p) for p in children]
        own = peak_rss_mb(self._pid)
        self.usage = Usage(
            wall=wall,
            cpu_self=cpu_self,
            cpu_children=cpu_children,
            rss_self_mb=own,
            rss_children_mb=max(child_rss, default=0.0),
            rss_tree_mb=own + sum(child_rss),
        )


# --- one measured run per interpreter ----------------------------------------------


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result where :func:`run_worker` finds it."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(script: Path, args: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a fresh interpreter; return the JSON it emitted."""
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["NO_PROXY"] = "127.0.0.1"
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(
        f"worker {script.name} {' '.join(args)} failed (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


# --- Storywatch set-up ---------------------------------------------------------------


def bench_settings(
    data_dir: Path, *, poll_interval: float = 300.0, concurrency: int = 16,
    per_host: int | None = None,
) -> Any:
    """Settings for a throwaway data dir that may fetch from 127.0.0.1.

    ``per_host`` defaults to ``concurrency``: every local feed shares the host
    127.0.0.1, while 1,000 real feeds are spread over hundreds of hosts.
    """
    from bot.settings import EnvSettings, FetchOptions, FileConfig, Settings

    env = EnvSettings.model_validate({
        "STORYWATCH_DATA_DIR": str(data_dir),
        "STORYWATCH_POLL_INTERVAL": poll_interval,
        "STORYWATCH_ALLOW_PRIVATE_NETWORKS": True,
    })
    fetch = FetchOptions(concurrency=concurrency, per_host=per_host or concurrency)
    return Settings(env=env, file=FileConfig(fetch=fetch, log_level="WARNING"))


# --- statistics and tables -----------------------------------------------------------


def callgrind(args: Sequence[str], cwd: Path) -> tuple[int, str]:
    """Run this interpreter with ``args`` in ``cwd`` under valgrind's callgrind: the
    instructions it counted, and the run's standard output. A failed run ends the
    bench with valgrind's own message."""
    with tempfile.TemporaryDirectory(prefix="sw-bench-cg-") as tmp:
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
             sys.executable, *args],
            capture_output=True, text=True, cwd=cwd, timeout=3600,
        )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed in {cwd}:\n{run.stderr[-2000:]}")
    return int(found.group(1)), run.stdout


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def med(runs: Sequence[dict[str, Any]], key: str) -> float:
    """Median of ``key`` over a list of result dicts."""
    return median(float(r[key]) for r in runs)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats printed with sensible precision."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def timed_wait(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``cond`` until true or ``timeout`` seconds pass; returns the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()
