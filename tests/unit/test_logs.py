"""Logging: both formats, stdlib routed through structlog, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bot.observability.logs import Redactor, configure_logging

TOKEN = "123456789:AAEhBOweik6ad6PsVMRxjeQKa8T5nwHXYZ0"
OTHER = "5550001:ZZZabcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def configured(fmt: str, level: str = "INFO", secrets: tuple[str, ...] = (TOKEN,)) -> io.StringIO:
    out = io.StringIO()
    configure_logging(fmt, level, secrets, stream=out)
    return out


def log_everything() -> None:
    """Every way a token can reach a log line."""
    url = f"https://api.telegram.org/bot{TOKEN}/getUpdates"
    logging.getLogger("httpx").warning("HTTP Request: POST %s", url)
    logging.getLogger("bot.sender").info("token in args %s", TOKEN)
    logging.getLogger("bot.sender").info("in extra", extra={"where": url})
    structlog.get_logger("bot.app").info("structlog event", url=url, token=TOKEN)
    logging.getLogger("bot.app").info("percent-encoded %s", url.replace(":", "%3A"))
    logging.getLogger("bot.app").info("another bot's token %s", OTHER)
    try:
        raise RuntimeError(f"request to {url} failed")
    except RuntimeError:
        logging.getLogger("bot.app").exception("stdlib exception")
        structlog.get_logger("bot.app").exception("structlog exception")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_no_secret_survives_in_any_line(fmt: str) -> None:
    out = configured(fmt)
    log_everything()
    text = out.getvalue()
    assert TOKEN not in text
    assert TOKEN.split(":")[1] not in text
    assert OTHER not in text
    assert "bot***/getUpdates" in text
    assert text.count("***") >= 9
    assert "RuntimeError: request to https://api.telegram.org/bot***/getUpdates failed" in text


def test_json_lines_are_objects_with_level_logger_and_fields() -> None:
    out = configured("json")
    structlog.get_logger("bot.pipeline").info("pass done", feeds=3)
    logging.getLogger("bot.sender").warning("retry in %d s", 4, extra={"chat": 7})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "pass done"
    assert first["feeds"] == 3
    assert first["level"] == "info"
    assert first["logger"] == "bot.pipeline"
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "retry in 4 s"
    assert second["chat"] == 7
    assert second["level"] == "warning"


def test_json_exception_is_a_redacted_string_field() -> None:
    out = configured("json")
    try:
        raise ValueError(TOKEN)
    except ValueError:
        logging.getLogger("bot").exception("oops")
    record = json.loads(out.getvalue())
    assert "ValueError: ***" in record["exception"]


def test_console_lines_are_key_value() -> None:
    out = configured("console")
    structlog.get_logger("bot.pipeline").info("pass done", feeds=3, errors=0)
    line = out.getvalue().strip()
    assert "[info" in line
    assert "pass done" in line
    assert "feeds=3" in line
    assert "errors=0" in line
    assert "[bot.pipeline]" in line


def test_level_filters_and_http_loggers_are_held_at_warning() -> None:
    out = configured("console", level="DEBUG")
    logging.getLogger("bot").debug("debug shown")
    logging.getLogger("httpx").info("request line hidden")
    logging.getLogger("httpcore").debug("connection detail hidden")
    logging.getLogger("httpx").warning("httpx warning shown")
    text = out.getvalue()
    assert "debug shown" in text
    assert "hidden" not in text
    assert "httpx warning shown" in text
    out = configured("console", level="WARNING")
    logging.getLogger("bot").info("info hidden")
    structlog.get_logger("bot").info("structlog info hidden")
    assert out.getvalue() == ""


def test_reconfiguring_replaces_the_handler() -> None:
    configured("console")
    out = configured("json")
    logging.getLogger("bot").info("once")
    assert len(logging.getLogger().handlers) == 1
    assert len(out.getvalue().splitlines()) == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "INFO", [])
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "LOUD", [])


def test_redactor_ignores_empty_and_tiny_secrets() -> None:
    redact = Redactor(["", "  ", "abc", "s3cr3t-value"])
    assert redact("abc s3cr3t-value") == "abc ***"
    assert redact("plain text 12:30") == "plain text 12:30"


def test_redactor_replaces_the_longest_secret_whole() -> None:
    redact = Redactor(["password", "password-extended"])
    assert redact("x password-extended y password") == "x *** y ***"


def test_a_broken_log_call_is_reported_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    out = configured("console")
    logging.getLogger("bot").info("%d items for %s", "not a number", TOKEN)
    text = out.getvalue()
    assert "logging error in bot" in text
    assert TOKEN not in text
    assert TOKEN not in capsys.readouterr().err
