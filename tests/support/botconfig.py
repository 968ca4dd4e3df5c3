"""The TOML file a bot started by a test or a benchmark reads: feeds, an empty seeds dir."""

from __future__ import annotations

from pathlib import Path


def write_config(
    tmp: Path,
    feed_urls: list[str],
    *,
    log_level: str = "INFO",
    commands_per_minute: int | None = 20,
    alerts_per_storyline_hour: int | None = None,
) -> Path:
    """Write ``tmp/storywatch.toml`` watching ``feed_urls``, with ``tmp/seeds`` (empty)
    as the seeds dir; a limit left None keeps its default."""
    seeds = tmp / "seeds"
    seeds.mkdir(exist_ok=True)
    lines = [f'seeds_dir = "{seeds}"', f'log_level = "{log_level}"', ""]
    for url in feed_urls:
        lines += ["[[feeds]]", f'url = "{url}"', ""]
    limits = {"commands_per_minute": commands_per_minute,
              "alerts_per_storyline_hour": alerts_per_storyline_hour}
    if any(v is not None for v in limits.values()):
        lines.append("[limits]")
        lines += [f"{k} = {v}" for k, v in limits.items() if v is not None]
    path = tmp / "storywatch.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
