"""What a failed Bot API call's transport error says about its message: never sent,
or perhaps in the chat already.

The sender and the digest courier act on the answer. A message that never left is
tried again as if nothing happened; one that may have arrived is retried once and
counted, as a possible duplicate. A reply to a command that waited for a connection
waits again rather than counting it as a network failure.

python-telegram-bot raises ``TimedOut`` for both a send that waited too long for one
of our own connections and one whose answer came too late; only the chained httpx
error tells them apart.
"""

from __future__ import annotations

import httpx
from telegram.error import NetworkError, TimedOut

# A send that found every connection busy goes back in the queue for this long:
# the connections are busy with sends that will end within their own time-out.
CONNECTION_WAIT_SECONDS = 1.0
# Why a row waits, on its record.
CONNECTION_BUSY = "held: every connection to Telegram was busy"

_NEVER_SENT = (httpx.PoolTimeout, httpx.ConnectTimeout, httpx.ConnectError)
_SENT_THEN_LOST = (httpx.ReadError, httpx.RemoteProtocolError)


def waited_for_connection(exc: NetworkError) -> bool:
    """True if the call gave up waiting for a free connection of our own pool.

    Nothing went out, and Telegram is not at fault: the pool was busy with other
    sends (a slow Telegram, many chats at once).
    """
    return isinstance(exc, TimedOut) and isinstance(exc.__cause__, httpx.PoolTimeout)


def may_have_arrived(exc: NetworkError) -> bool:
    """True if the request may have reached Telegram before the transport failed.

    A call that never got a connection, or never connected, sent nothing. A
    time-out after that, or a connection dropped while waiting for the answer
    (read error, "server disconnected without sending a response"), leaves the
    message perhaps in the chat already.
    """
    cause = exc.__cause__
    if isinstance(cause, _NEVER_SENT):
        return False
    return isinstance(exc, TimedOut) or isinstance(cause, _SENT_THEN_LOST)
