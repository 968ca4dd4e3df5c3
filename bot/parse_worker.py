"""What the parse pool's workers run: a feed parsed, the facts of each item read for
the matcher; a watch that ends a worker when the bot ends; and wider pipes.

Parsing and reading facts are both pure and per item, so both run in the pool
worker; the bot's own process reads the items' tokens, counts and scores
(``bot.storylines.reading`` says why the reading is split). Kept
apart from ``bot.pipeline`` so that a worker imports the parser and the reader
alone: unpickling the job imports this module, and the pipeline's imports (the
matcher's numpy, httpx, storage) would cost every worker tens of MB.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from bot.parsing.feeds import ParsedFeed, parse_feed
from bot.storylines.reading import with_facts


def parse_and_read(
    body: bytes, headers: Mapping[str, str], url: str, *, max_items: int | None = None
) -> ParsedFeed:
    """:func:`~bot.parsing.feeds.parse_feed`, with each item carrying its facts."""
    parsed = parse_feed(body, headers, url, max_items=max_items)
    return replace(parsed, items=tuple(with_facts(i) for i in parsed.items))


# What a new worker parses before any feed (see warm_up): plain RSS 2.0 that the fast
# path reads, with a place and an office for the reader to look up.
_WARM_UP_FEED = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
    b"<title>warm-up</title><link>https://warm-up.invalid/</link><item>"
    b"<title>Foreign ministers meet in Paris</title><guid>warm-up</guid>"
    b"<link>https://warm-up.invalid/1</link><description>The French foreign minister "
    b"met the US secretary of state in Paris.</description></item></channel></rss>"
)


def warm_up() -> int:
    """Parse and read one small feed, so that a new worker's first-use costs (importing
    lxml, building the reader's word lists and gazetteer) are paid when the pool is
    made, not by the first feed of a pass (about 0.4 s from spawn to the first result,
    measured by hand). Returns how many items it read: 1."""
    parsed = parse_and_read(
        _WARM_UP_FEED, {"content-type": "application/rss+xml"}, "https://warm-up.invalid/feed"
    )
    return len(parsed.items)


def start_worker(bot_pid: int) -> None:
    """Pool initializer: widen the worker's pipes (:func:`widen_pipes`), and end it
    when the bot ends (:func:`die_with`)."""
    widen_pipes()
    die_with(bot_pid)


# Each feed crosses the pool's pipes twice: its body (up to a few hundred KB) to the
# worker, its items read (about 140 KB for a bench-farm feed) back. Through a pipe of
# the default 64 KB a write goes in chunks, and between chunks the bot's thread that
# sends or receives waits for the GIL behind the event loop and the matcher, while the
# worker waits on the pipe: it was blocked writing its results for about a tenth of a
# first pass of 1,000 feeds (py-spy; a fiftieth with 1 MB pipes, issue 18j). With 1 MB
# a feed goes in one write.
PIPE_BYTES = 1 << 20


def widen_pipes(size: int = PIPE_BYTES) -> int:
    """Grow the pool's two queues (jobs in, results out) to ``size`` bytes each, or to
    the system's limit for unprivileged users (``/proc/sys/fs/pipe-max-size``) if lower;
    a pipe already that wide is left as it is.

    The queues are the pipes whose both ends this worker holds (multiprocessing hands
    a worker both ends of each queue); the others (the resource tracker's, the spawn's)
    carry a few bytes and are left, since each pipe's size counts against the user's
    pipe quota. Linux only; elsewhere, or over that quota, pipes stay as they are.
    Returns how many pipes were grown.
    """
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if set_size is None or get_size is None:
        return 0
    try:
        size = min(size, int(Path("/proc/sys/fs/pipe-max-size").read_text()))
        names = os.listdir("/proc/self/fd")
    except (OSError, ValueError):
        return 0
    ends: dict[int, list[int]] = {}
    for name in names:
        try:
            info = os.fstat(int(name))
        except (OSError, ValueError):
            continue  # the listing's own descriptor, closed by now
        if stat.S_ISFIFO(info.st_mode):
            ends.setdefault(info.st_ino, []).append(int(name))
    grown = 0
    for fds in ends.values():
        if len(fds) < 2:
            continue
        try:
            # Never shrunk: a system whose limit is under the default keeps the default.
            if fcntl.fcntl(fds[0], get_size) >= size:
                continue
            fcntl.fcntl(fds[0], set_size, size)
        except OSError:
            continue  # over the user's pipe quota: left at its size
        grown += 1
    return grown


def die_with(pid: int) -> None:
    """End this worker as soon as process ``pid`` (the bot) ends.

    A bot killed outright (SIGKILL, the OOM killer) runs no clean-up. Its parse
    worker would wait for work forever; and as it holds the resource tracker's pipe,
    the tracker stays as well. So each worker watches the bot: a pidfd turns readable
    when the process ends (no polling); without pidfds (Linux before 5.3), it checks
    twice a second. The bot's pid is passed in when the pool is made, not read as
    the worker's parent's, which a killed bot no longer is (the worker is adopted).
    """
    threading.Thread(target=_watch, args=(pid,), name="die-with-bot", daemon=True).start()


def _watch(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)  # already gone
    except (AttributeError, OSError):
        while _alive(pid):
            time.sleep(0.5)
        os._exit(1)
    select.select([fd], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process has the number now: the bot's is gone
    return True
