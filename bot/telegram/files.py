"""Downloading a file a user sent (a document) from Telegram, within a size limit.

python-telegram-bot asks ``getFile`` for the file's path, then downloads it from its
``base_file_url`` (``STORYWATCH_TELEGRAM_FILE_URL``) followed by the token and that
path. That URL holds the token, so it is never put in a message or a log line: a
failed download is reported by the kind of error alone.
"""

from __future__ import annotations

import logging

from telegram import Bot
from telegram.error import TelegramError

log = logging.getLogger(__name__)


class DownloadError(Exception):
    """The file could not be had; the message is fit for the user (no URL, no token)."""


async def download(bot: Bot, file_id: str, limit: int) -> bytes:
    """The file's bytes; DownloadError if Telegram does not give it or it is over ``limit``
    bytes (checked on what getFile says, before downloading, and on what arrived)."""
    try:
        file = await bot.get_file(file_id)
        if file.file_size is not None and file.file_size > limit:
            raise DownloadError(
                f"That file is {file.file_size:,} bytes; the limit is {limit:,}."
            )
        data = bytes(await file.download_as_bytearray())
    except (TelegramError, RuntimeError) as exc:
        # The exception's text may quote the file URL, and with it the token.
        log.warning("could not download an uploaded file: %s", type(exc).__name__)
        raise DownloadError(
            "I couldn't download that file from Telegram. Please send it again."
        ) from None
    if len(data) > limit:
        raise DownloadError(f"That file is {len(data):,} bytes; the limit is {limit:,}.")
    return data
