"""One exception hierarchy; leaf errors carry what the caller needs to act."""

from __future__ import annotations


class StorywatchError(Exception):
    """Base of every error Storywatch raises on purpose."""


class ConfigError(StorywatchError):
    """The setup is broken (settings, config file, data dir): the operator must act."""


class FetchError(StorywatchError):
    """A feed could not be fetched. ``kind`` is a short stable label for metrics."""

    kind = "fetch"

    def __init__(self, message: str, *, url: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.retry_after = retry_after


class BlockedAddressError(FetchError):
    """The URL or one of its redirects points at an address we refuse to reach."""

    kind = "blocked"


class HTTPStatusError(FetchError):
    """The server answered with a status other than 200 or 304."""

    kind = "status"

    def __init__(
        self, message: str, *, url: str, status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url, retry_after=retry_after)
        self.status = status


class TooLargeError(FetchError):
    """The decoded body went past the configured cap."""

    kind = "too_large"


class DeadlineError(FetchError):
    """The whole fetch took longer than its deadline."""

    kind = "deadline"


class ParseError(StorywatchError):
    """The body is not a feed we can read."""

    kind = "parse"


class StorageError(StorywatchError):
    """The database refused a read or a write; the message names the database,
    what SQLite said, and what the operator can do about it."""

    kind = "storage"


class StorageBusyError(StorageError):
    """Another process held the database's write lock for longer than we wait."""


class StorageFullError(StorageError):
    """The database or the disk under it is full."""


class OpmlError(StorywatchError):
    """A feed list (OPML) that cannot be taken; the message says why, for whoever gave it.
    Nothing was changed."""
