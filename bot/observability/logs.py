"""Logging for the whole process: one structlog pipeline, stdlib logging routed
through it, and every secret redacted from every line.

Call ``configure_logging`` once at start, from the composition root, with the
file config's ``log_format`` ("console": key=value lines for people, "json":
one object per line for collectors) and ``log_level``, and the secrets to hide
(the bot token). Redaction runs on the finished line, after rendering, so it
also covers exception text, tracebacks and values logged by libraries: the Bot
API puts the token in every request URL, and httpx logs URLs.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO
from urllib.parse import quote

import structlog
from structlog.typing import Processor

REDACTED = "***"

# A Bot API token in a URL path: /bot123456:AAE...; also seen percent-encoded.
# The "bot" prefix stays so a reader still sees that a bot URL was logged.
BOT_URL_TOKEN = re.compile(r"(/bot)\d+(?::|%3[Aa])[A-Za-z0-9_-]+")
# Anything else shaped like a token (digits, colon, 35 URL-safe characters), in
# case another bot's token or an old one turns up outside a URL.
BARE_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")

# Libraries that log a line (and a URL with the token in it) per request.
NOISY_LOGGERS = ("httpx", "httpcore")

# Shorter "secrets" would redact ordinary words; a real token is ~46 characters.
MIN_SECRET_LENGTH = 6


class Redactor:
    """Replaces each secret, and any Bot API token in a URL, with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            secret = secret.strip()
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            # Also the forms a secret takes in URLs and repr()s of bytes.
            forms.update({secret, quote(secret, safe=""), quote(secret)})
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(forms, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in self._secrets)) if self._secrets else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        text = BOT_URL_TOKEN.sub(r"\1" + REDACTED, text)
        return BARE_TOKEN.sub(REDACTED, text)


class RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's bridge formatter, with the finished line passed through a Redactor."""

    def __init__(self, redactor: Redactor, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor(super().format(record))


class RedactingHandler(logging.StreamHandler[TextIO]):
    """A stream handler that redacts even when formatting itself fails.

    ``logging.Handler.handleError`` would print the record's raw arguments to
    stderr, unredacted, so a broken log call is reported here instead.
    """

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        super().__init__(stream)
        self._redactor = redactor

    def handleError(self, record: logging.LogRecord) -> None:
        # A failing log call must never crash the bot, so errors here are dropped.
        with contextlib.suppress(Exception):
            self.stream.write(
                self._redactor(
                    f"logging error in {record.name}: {record.msg!r} % {record.args!r}"
                )
                + "\n"
            )


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


def _renderer(fmt: str) -> list[Processor]:
    if fmt == "json":
        return [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    if fmt == "console":
        return [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    raise ValueError(f"log format must be 'console' or 'json', not {fmt!r}")


def configure_logging(
    fmt: str, level: str, secrets: Sequence[str], *, stream: TextIO | None = None
) -> None:
    """Send every log record, structlog's and the stdlib's, to ``stream`` (stderr).

    Idempotent: a second call replaces the handler the first one installed.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    redactor = Redactor(secrets)
    formatter = RedactingFormatter(
        redactor,
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderer(fmt),
        ],
    )
    handler = RedactingHandler(stream if stream is not None else sys.stderr, redactor)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
