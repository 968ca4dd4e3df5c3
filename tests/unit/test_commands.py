"""Tests for pure command parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.telegram.commands import (
    BY_NAME,
    COMMANDS,
    Link,
    Parsed,
    RawCommand,
    Setting,
    Unknown,
    UsageError,
    help_text,
    is_for_me,
    parse,
    split_command,
)


def p(text: str, has_reply: bool = False) -> object:
    raw = split_command(text)
    assert raw is not None
    return parse(raw, has_reply=has_reply)


def cmd(name: str, value: object = None) -> Parsed:
    return Parsed(BY_NAME[name], value)  # type: ignore[arg-type]


def test_split_plain_and_addressed_commands() -> None:
    assert split_command("/start") == RawCommand("start", "", None)
    assert split_command("/Track@Storywatch_Bot  Putin  trip ") == RawCommand(
        "track", "Putin  trip", "Storywatch_Bot"
    )
    assert split_command("hello") is None
    assert split_command("/ nothing") is None
    assert split_command("/track\nmulti\nline") == RawCommand("track", "multi\nline", None)


def test_commands_for_other_bots_are_not_ours() -> None:
    raw = split_command("/start@other_bot")
    assert raw is not None
    assert not is_for_me(raw, "storywatch_bot")
    assert is_for_me(RawCommand("start", "", "STORYWATCH_bot"), "storywatch_bot")
    assert is_for_me(RawCommand("start", "", None), "storywatch_bot")


def test_simple_commands() -> None:
    assert p("/start") == cmd("start")
    assert p("/help extra words") == cmd("help")
    assert p("/frobnicate 1") == Unknown("frobnicate")


def test_track_title_normalised_and_checked() -> None:
    assert p("/track  Putin   trip to China ") == cmd("track", "Putin trip to China")
    assert p("/track", has_reply=True) == cmd("track")
    with pytest.raises(UsageError, match="/track Putin trip to China"):
        p("/track")
    with pytest.raises(UsageError, match="under 200"):
        p("/track " + "x" * 300)
    with pytest.raises(UsageError):
        p("/track ?!")


def test_track_refuses_titles_of_only_stopwords_with_an_example() -> None:
    for title in ("the of and", "The latest news", "breaking news today"):
        with pytest.raises(UsageError, match=r"e\.g\. /track Putin trip to China"):
            p(f"/track {title}")
    assert p("/track News of Gaza") == cmd("track", "News of Gaza")


def test_track_a_link() -> None:
    assert p("/track https://news.example.org/a/b.html#top") == cmd(
        "track", Link("https://news.example.org/a/b.html#top")
    )
    assert p("/track <http://example.org/x>") == cmd("track", Link("http://example.org/x"))
    for mixed in ("/track Putin visit https://example.org/a#frag", "/track see ftp://x.org/a"):
        with pytest.raises(UsageError, match="either a title or one link"):
            p(mixed)


def test_settings() -> None:
    assert p("/settings") == cmd("settings", Setting(None))
    assert p("/settings tz Europe/Paris") == cmd("settings", Setting("tz", "Europe/Paris"))
    for bad in ("/settings colour blue", "/settings tz", "/settings tz a b"):
        with pytest.raises(UsageError, match="Example: /settings tz Europe/Paris"):
            p(bad)


def test_ids() -> None:
    assert p("/untrack 3") == cmd("untrack", 3)
    assert p("/subscribe #12") == cmd("subscribe", 12)
    assert p("/removefeed 2") == cmd("removefeed", 2)
    assert p("/delete 7") == cmd("delete", 7)
    for bad in ("/untrack", "/untrack x", "/untrack 0", "/untrack -1", "/subscribe 1 2",
                "/untrack 99999999999999999"):
        with pytest.raises(UsageError) as err:
            p(bad)
        assert "Example:" in str(err.value)


def test_addfeed_url() -> None:
    assert p("/addfeed https://example.org/rss") == cmd("addfeed", "https://example.org/rss")
    assert p("/addfeed <http://example.org/a.xml>") == cmd("addfeed", "http://example.org/a.xml")
    for bad in ("/addfeed", "/addfeed ftp://x/y", "/addfeed example.org", "/addfeed a b",
                "/addfeed javascript:alert(1)"):
        with pytest.raises(UsageError):
            p(bad)


def test_help_lists_every_command_with_an_example() -> None:
    admin = help_text(admin=True)
    user = help_text(admin=False)
    for spec in COMMANDS:
        assert f"/{spec.name}" in admin and spec.example in admin
        if not spec.admin:
            assert spec.example in user
    assert "/addfeed https://" not in user


@given(st.text(max_size=300))
def test_parsing_never_crashes(text: str) -> None:
    raw = split_command("/" + text)
    if raw is None:
        return
    try:
        parse(raw, has_reply=False)
    except UsageError as exc:
        assert str(exc)
