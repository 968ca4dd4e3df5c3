"""Settings: environment variables plus one TOML file, validated once at start.

The environment names are public interface (see README). The TOML file lists
feeds and tunables; an empty file is valid. Settings are built once by the
composition root and passed in, never read as a global.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError

DEFAULT_API_URL = "https://api.telegram.org/bot"
DEFAULT_FILE_URL = "https://api.telegram.org/file/bot"


class FeedConfig(BaseModel):
    """One feed listed in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    title: str | None = None


class FetchOptions(BaseModel):
    """Limits for fetching; the defaults suit a small machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deadline_seconds: float = Field(20.0, gt=0)
    connect_timeout_seconds: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(5, ge=0)
    concurrency: int = Field(16, ge=1)
    per_host: int = Field(2, ge=1)
    max_backoff_seconds: float = Field(6 * 3600.0, gt=0)
    user_agent: str = "Storywatch/0.1 (+https://github.com/storywatch/storywatch)"


class LimitOptions(BaseModel):
    """Per-chat limits that keep one chat from exhausting the bot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    storylines_per_chat: int = Field(50, ge=1)
    commands_per_minute: int = Field(30, ge=1)
    items_per_feed_poll: int = Field(500, ge=1)
    """The newest items taken from one feed in one poll; the rest are ignored (logged)."""
    alerts_per_storyline_hour: int = Field(10, ge=1)
    """Alerts one chat gets for one storyline in any hour; more go into one summary."""


class RetentionOptions(BaseModel):
    """How long rows are kept; pruning runs every ``every_minutes`` in small batches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items_days: float = Field(14.0, gt=0)
    """Items no longer in their feed and never matched, counted from when last seen."""
    alerts_days: float = Field(180.0, gt=0)
    """Matches, their items, and sent, failed or dropped alerts (alert history)."""
    every_minutes: float = Field(60.0, gt=0)
    batch_rows: int = Field(500, ge=1)
    """Rows deleted per write transaction: keeps each hold of the write lock short."""


class StorageOptions(BaseModel):
    """How long to wait for a database another process holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    busy_timeout_seconds: float = Field(30.0, gt=0)
    lock_attempts: int = Field(3, ge=1)


class MatchingOptions(BaseModel):
    """How items are matched to storylines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    semantic: bool = False
    """Add MiniLM sentence embeddings to the word matcher (needs the ``semantic`` extra
    and the weights package; see docs/semantic.md)."""


class FileConfig(BaseModel):
    """The contents of the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feeds: tuple[FeedConfig, ...] = ()
    fetch: FetchOptions = FetchOptions()
    limits: LimitOptions = LimitOptions()
    retention: RetentionOptions = RetentionOptions()
    storage: StorageOptions = StorageOptions()
    matching: MatchingOptions = MatchingOptions()
    seeds_dir: str | None = None
    log_format: str = Field("console", pattern="^(console|json)$")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")


class EnvSettings(BaseSettings):
    """Settings from the environment."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    telegram_bot_token: SecretStr | None = Field(None, alias="TELEGRAM_BOT_TOKEN")
    telegram_bot_token_file: Path | None = Field(None, alias="TELEGRAM_BOT_TOKEN_FILE")
    telegram_api_url: str = Field(DEFAULT_API_URL, alias="STORYWATCH_TELEGRAM_API_URL")
    # Where uploaded files are downloaded from (python-telegram-bot's base_file_url).
    telegram_file_url: str = Field(DEFAULT_FILE_URL, alias="STORYWATCH_TELEGRAM_FILE_URL")
    config_path: Path = Field(Path("config/storywatch.toml"), alias="STORYWATCH_CONFIG")
    data_dir: Path = Field(Path("./data"), alias="STORYWATCH_DATA_DIR")
    poll_interval: float = Field(300.0, ge=1, alias="STORYWATCH_POLL_INTERVAL")
    admins: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), alias="STORYWATCH_ADMINS"
    )
    allow_private_networks: bool = Field(False, alias="STORYWATCH_ALLOW_PRIVATE_NETWORKS")
    metrics_port: int | None = Field(None, ge=1, le=65535, alias="STORYWATCH_METRICS_PORT")
    # postgresql://... selects PostgreSQL; unset, SQLite in data_dir. Secret: may hold a password.
    database_url: SecretStr | None = Field(None, alias="STORYWATCH_DATABASE_URL")

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return frozenset(int(p) for p in parts)
            except ValueError as exc:
                raise ValueError(
                    f"STORYWATCH_ADMINS must be comma-separated Telegram user ids, got {value!r}"
                ) from exc
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value: Any) -> Any:
        if value == "" or value is None:
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not text.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "STORYWATCH_DATABASE_URL must start with postgresql:// (unset it to use "
                "SQLite in STORYWATCH_DATA_DIR)"
            )
        return value


class Settings(BaseModel):
    """Everything the program is configured with."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    env: EnvSettings
    file: FileConfig

    @property
    def database_path(self) -> Path:
        return self.env.data_dir / "storywatch.db"

    def bot_token(self) -> str:
        """The Bot API token, from the variable or the secret file; ConfigError if absent."""
        if self.env.telegram_bot_token is not None:
            token = self.env.telegram_bot_token.get_secret_value().strip()
        elif self.env.telegram_bot_token_file is not None:
            try:
                token = self.env.telegram_bot_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read TELEGRAM_BOT_TOKEN_FILE "
                    f"{self.env.telegram_bot_token_file}: {exc.strerror}"
                ) from None
        else:
            token = ""
        if not token:
            raise ConfigError(
                "no Telegram bot token: set TELEGRAM_BOT_TOKEN (from @BotFather) "
                "or TELEGRAM_BOT_TOKEN_FILE"
            )
        return token


def _describe(exc: ValidationError, where: str) -> str:
    lines = [f"invalid settings in {where}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def load_file_config(path: Path) -> FileConfig:
    """Read and validate the TOML file; a missing default file counts as empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (set STORYWATCH_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        return FileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment (``os.environ`` by default) and the TOML file."""
    env_map = dict(os.environ if environ is None else environ)
    try:
        env = EnvSettings.model_validate(
            {k: v for k, v in env_map.items() if k.startswith(("STORYWATCH_", "TELEGRAM_"))}
        )
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "the environment")) from None
    return Settings(env=env, file=load_file_config(env.config_path))
