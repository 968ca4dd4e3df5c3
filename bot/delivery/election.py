"""One sender per database: a Sender runs only while its process holds the
``sender`` lease (the ``leases`` table).

``storywatch worker`` and the all-in-one ``storywatch run`` both deliver through
a :class:`SenderSeat`, so a ``run`` beside workers, several workers, or a second
``run`` on one PostgreSQL database never send at once: Telegram's limits (one
``SendLimiter``) hold, and an alert claimed by one sender is not also sent by
another. The holder renews the lease every few seconds; one that cannot renew
stops sending, and when one dies (SIGKILL included) another takes the lease once
it runs out, or at once when the dead one ran on the same host (a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bot.delivery.sender import Sender
from bot.storage.ports import LeaseStore

log = logging.getLogger(__name__)

SENDER_LEASE = "sender"


def holder_id() -> str:
    """Names this process in leases: host, pid and a few random characters."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def holder_is_dead(holder: str, me: str) -> bool:
    """Whether the process ``holder`` (from :func:`holder_id`) is known to have ended:
    it ran on this host and no process has its pid, or its pid is this process's
    (a container restarted with the same host name). A holder on another host,
    or a pid now in use, is presumed alive: its lease is waited out."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or holder == me:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class SenderSeat:
    """Runs the Sender ``make`` builds while ``holder`` holds the sender lease.

    ``make`` returns None when no Sender can start yet (Telegram unreachable);
    it is asked again at the next renewal.
    """

    def __init__(
        self,
        db: LeaseStore,
        holder: str,
        make: Callable[[], Awaitable[Sender | None]],
        *,
        ttl: float = 15.0,
        renew_every: float = 5.0,
        grace: float = 5.0,
    ) -> None:
        self._db = db
        self.holder = holder
        self._make = make
        self._ttl = timedelta(seconds=ttl)
        self._renew_every = renew_every
        self._grace = grace
        self.sender: Sender | None = None

    def wake(self) -> None:
        """New alerts are queued: the sender (if this process has it) looks at once."""
        if self.sender is not None:
            self.sender.wake()

    def _take(self) -> bool:
        now = datetime.now(UTC)
        if self._db.take_lease(SENDER_LEASE, self.holder, now=now, ttl=self._ttl):
            return True
        # A holder on this host whose process is gone (a restart after SIGKILL) is
        # not waited out: its lease goes at once.
        holder = self._db.lease_holder(SENDER_LEASE, now)
        if holder is None or not holder_is_dead(holder, self.holder):
            return False
        log.info("the sender lease's holder %s is gone; taking the lease over", holder)
        self._db.drop_lease(SENDER_LEASE, holder)
        return self._db.take_lease(SENDER_LEASE, self.holder, now=now, ttl=self._ttl)

    async def _hold(self) -> bool:
        try:
            return await asyncio.to_thread(self._take)
        except Exception as exc:  # a lease we cannot renew is a lease we lose
            log.error("cannot renew the sender lease: %s", exc)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: take or renew the lease, start or stop the Sender."""
        try:
            while not stop.is_set():
                leader = await self._hold()
                if leader and self.sender is None:
                    self.sender = await self._make()
                    if self.sender is not None:
                        self.sender.start()
                        log.info("%s is the sender now", self.holder)
                elif not leader and self.sender is not None:
                    log.warning("%s lost the sender lease; stops sending", self.holder)
                    await self.sender.stop()
                    self.sender = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._renew_every)
        finally:
            if self.sender is not None:
                await self.sender.stop(self._grace)
                self.sender = None
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._db.drop_lease, SENDER_LEASE, self.holder)
