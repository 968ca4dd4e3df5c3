"""Settings: environment names, TOML validation and the token lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import DEFAULT_API_URL, load_settings


def _env(tmp_path: Path, toml: str = "", **extra: str) -> dict[str, str]:
    cfg = tmp_path / "storywatch.toml"
    cfg.write_text(toml, encoding="utf-8")
    return {"STORYWATCH_CONFIG": str(cfg), **extra}


def test_empty_file_and_defaults(tmp_path: Path) -> None:
    s = load_settings(_env(tmp_path))
    assert s.file.feeds == ()
    assert s.env.telegram_api_url == DEFAULT_API_URL
    assert s.env.poll_interval == 300
    assert s.env.admins == frozenset()
    assert s.env.allow_private_networks is False
    assert s.database_path == Path("data") / "storywatch.db"


def test_environment_values(tmp_path: Path) -> None:
    s = load_settings(
        _env(
            tmp_path,
            STORYWATCH_ADMINS="12, 34,",
            STORYWATCH_POLL_INTERVAL="1",
            STORYWATCH_ALLOW_PRIVATE_NETWORKS="true",
            STORYWATCH_DATA_DIR=str(tmp_path / "d"),
            STORYWATCH_TELEGRAM_API_URL="http://127.0.0.1:9/bot",
        )
    )
    assert s.env.admins == frozenset({12, 34})
    assert s.env.poll_interval == 1
    assert s.env.allow_private_networks is True
    assert s.database_path == tmp_path / "d" / "storywatch.db"
    assert s.env.telegram_api_url == "http://127.0.0.1:9/bot"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"STORYWATCH_ADMINS": "alice"}, "STORYWATCH_ADMINS"),
        ({"STORYWATCH_POLL_INTERVAL": "0"}, "STORYWATCH_POLL_INTERVAL"),
        ({"STORYWATCH_POLL_INTERVAL": "soon"}, "STORYWATCH_POLL_INTERVAL"),
    ],
)
def test_bad_environment_is_a_clear_config_error(
    tmp_path: Path, extra: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(_env(tmp_path, **extra))


def test_bad_toml_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fetch\.deadline_seconds"):
        load_settings(_env(tmp_path, "[fetch]\ndeadline_seconds = -1\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_env(tmp_path, "feeds = [\n"))
    with pytest.raises(ConfigError, match="colour"):
        load_settings(_env(tmp_path, "colour = 'blue'\n"))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"STORYWATCH_CONFIG": str(tmp_path / "nope.toml")})


def test_token_from_variable_or_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        load_settings(_env(tmp_path)).bot_token()
    assert load_settings(_env(tmp_path, TELEGRAM_BOT_TOKEN="1:abc")).bot_token() == "1:abc"
    secret = tmp_path / "token"
    secret.write_text("2:def\n", encoding="utf-8")
    s = load_settings(_env(tmp_path, TELEGRAM_BOT_TOKEN_FILE=str(secret)))
    assert s.bot_token() == "2:def"


def test_token_is_not_in_repr(tmp_path: Path) -> None:
    s = load_settings(_env(tmp_path, TELEGRAM_BOT_TOKEN="123:SECRETSECRET"))
    assert "SECRETSECRET" not in repr(s)
    assert "SECRETSECRET" not in str(s)


def test_the_file_url_defaults_to_telegrams_and_reaches_the_bot(tmp_path: Path) -> None:
    from bot.app import build_application

    default = load_settings(_env(tmp_path))
    assert default.env.telegram_file_url == "https://api.telegram.org/file/bot"
    assert build_application(default, "123:TEST").bot.base_file_url == (
        "https://api.telegram.org/file/bot123:TEST")
    local = load_settings(_env(tmp_path, STORYWATCH_TELEGRAM_FILE_URL="http://127.0.0.1:9/file/bot"))
    assert build_application(local, "123:TEST").bot.base_file_url == (
        "http://127.0.0.1:9/file/bot123:TEST")
