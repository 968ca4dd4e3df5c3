"""One sender per database: a Sender runs only while its process holds the
``sender`` lease (the ``leases`` table).

``storywatch worker`` and the all-in-one ``storywatch run`` both deliver through
a :class:`SenderSeat`, so a ``run`` beside workers, several workers, or a second
``run`` on one PostgreSQL database never send at once: Telegram's limits (one
``SendLimiter``) hold, and an alert claimed by one sender is not also sent by
another. The holder renews the lease every few seconds; one that cannot renew
stops sending, and when one dies (SIGKILL included) another takes the lease once
it runs out.
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

    async def _hold(self) -> bool:
        try:
            return await asyncio.to_thread(
                self._db.take_lease, SENDER_LEASE, self.holder, now=datetime.now(UTC),
                ttl=self._ttl,
            )
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
