"""A bot killed outright (SIGKILL: no clean-up of its own) leaves no process behind.

Its parse pool's worker waits for work, and it holds the pipe that keeps the pool's
resource tracker alive; before the worker watched the bot, both ran on after it (and
the forkserver the pool used then), hundreds over a test run. Only
the bot's own process is killed here, not its process group, as the OOM killer or
a ``kill -9`` of its pid would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import BotProcess, wait_until


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2:].split()


def _descendants(root: int) -> dict[int, str]:
    """Every process under ``root``, each with its start time (against pid reuse)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, (parent, started) in parents.items():
            if parent == pid and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def _running(pid: int, started: str) -> bool:
    fields = _stat(pid)
    # A zombie has ended; only its exit status waits for whoever adopted it.
    return fields is not None and fields[19] == started and fields[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


@pytest.mark.parametrize("engine", ["sqlite"])
def test_a_killed_bot_takes_its_parse_pool_with_it(bot: BotProcess) -> None:
    assert bot.proc is not None
    family = _descendants(bot.proc.pid)
    pool = [p for p in family if "multiprocessing" in _cmdline(p)]
    # The worker and the resource tracker: the feed was parsed before the fixture returned.
    assert any("multiprocessing.spawn" in _cmdline(p) for p in pool), \
        {p: _cmdline(p) for p in family}
    assert any("multiprocessing.resource_tracker" in _cmdline(p) for p in pool), \
        {p: _cmdline(p) for p in family}
    os.kill(bot.proc.pid, signal.SIGKILL)
    bot.proc.wait(timeout=30)
    # Generous: on a loaded machine the watch thread may wait its turn for a core.
    wait_until(lambda: not any(_running(p, s) for p, s in family.items()), timeout=120,
               what="the bot's parse worker and resource tracker to end")
