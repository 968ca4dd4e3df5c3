"""Tests for alert rendering: escaping, safe links, the 4,096-character limit."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.delivery.render import (
    MAX_MESSAGE_CHARS,
    AlertView,
    Hit,
    more_line,
    render_html,
    render_plain,
    safe_link,
    tg_len,
)
from bot.models import Item
from tests.support.fake_telegram import validate_plain, validate_telegram_html


def item(**kw: object) -> Item:
    base: dict[str, object] = {
        "key": "k1",
        "title": "Wang Yi meets Lavrov in Beijing",
        "summary": "The foreign ministers discussed the visit.",
        "link": "https://example.org/a?x=1&y=2",
        "published": datetime(2025, 3, 4, 14, 5, tzinfo=UTC),
        "source": "Example News",
    }
    base.update(kw)
    return Item(**base)  # type: ignore[arg-type]


def view(**kw: object) -> AlertView:
    return AlertView(storyline_title="Wang Yi visit", item=item(**kw), reason="Wang Yi, visit")


def test_alert_shows_storyline_linked_title_source_time_and_why() -> None:
    text = render_html(view())
    assert validate_telegram_html(text) is None
    assert "<b>Wang Yi visit</b>" in text
    assert '<a href="https://example.org/a?x=1&amp;y=2">Wang Yi meets Lavrov in Beijing</a>' in text
    assert "Example News · 14:05 UTC, 4 Mar 2025" in text
    assert "Why: Wang Yi, visit" in text


def test_feed_text_is_escaped() -> None:
    v = AlertView(
        storyline_title="<script>",
        item=item(title="A <b>bold</b> & </a> claim", summary="x < y & z > w", source="R&D <x>"),
        reason="a&b",
    )
    text = render_html(v)
    assert validate_telegram_html(text) is None
    assert "&lt;script&gt;" in text and "A &lt;b&gt;bold&lt;/b&gt; &amp; &lt;/a&gt;" in text
    assert "R&amp;D &lt;x&gt;" in text


def test_only_http_links() -> None:
    for bad in ("javascript:alert(1)", "data:text/html,x", "ftp://x/y", "/relative", "http://",
                "https://ex ample.org", None, ""):
        assert safe_link(bad) is None
        text = render_html(view(link=bad))
        assert "<a " not in text and validate_telegram_html(text) is None
    assert safe_link("HTTPS://example.org/x") == "HTTPS://example.org/x"
    quote = render_html(view(link='https://e.org/"><b>x'))
    assert validate_telegram_html(quote) is None and "&quot;" in quote


def test_missing_time_and_source() -> None:
    text = render_html(view(published=None, source=""))
    assert validate_telegram_html(text) is None and "UTC" not in text


def test_more_line_names_each_source_once() -> None:
    more = (item(key="2", source="A"), item(key="3", source="B"), item(key="4", source="A"))
    assert more_line(more) == "+3 more: A, B"
    assert more_line(()) is None
    text = render_html(AlertView("S", item(), "why", more=more))
    assert text.endswith("<i>+3 more: A, B</i>") and validate_telegram_html(text) is None


def test_long_summary_is_cut_first() -> None:
    text = render_html(view(summary="word " * 5000))
    assert tg_len(text) <= MAX_MESSAGE_CHARS
    assert "Why: Wang Yi, visit" in text and "…" in text


def test_huge_everything_still_fits_and_parses() -> None:
    v = AlertView(
        storyline_title="T&" * 3000,
        item=item(title="<&>" * 3000, summary="&" * 9000, source="S" * 5000,
                  link="https://e.org/" + "a" * 5000),
        reason="<" * 5000,
        more=tuple(item(key=str(i), source=f"Source {i}") for i in range(500)),
    )
    text = render_html(v)
    assert tg_len(text) <= MAX_MESSAGE_CHARS
    assert validate_telegram_html(text) is None
    plain = render_plain(v)
    assert tg_len(plain) <= MAX_MESSAGE_CHARS and validate_plain(plain) is None


def test_emoji_count_as_two_utf16_units() -> None:
    text = render_html(view(title="😀" * 3000))
    assert tg_len(text) <= MAX_MESSAGE_CHARS
    assert validate_telegram_html(text) is None


def test_plain_variant_has_the_link_as_text() -> None:
    text = render_plain(view())
    assert "https://example.org/a?x=1&y=2" in text and "<" not in text


@settings(max_examples=150, deadline=None)
@given(
    title=st.text(max_size=5000),
    summary=st.text(max_size=6000),
    reason=st.text(max_size=3000),
    source=st.text(max_size=200),
    link=st.one_of(st.none(), st.text(max_size=100), st.just("https://x.org/<&>\"'")),
)
def test_any_text_renders_valid_telegram_html(
    title: str, summary: str, reason: str, source: str, link: str | None
) -> None:
    v = AlertView("Story <&>", item(title=title, summary=summary, source=source, link=link), reason)
    text = render_html(v)
    assert tg_len(text) <= MAX_MESSAGE_CHARS
    assert validate_telegram_html(text) is None, text
    assert tg_len(render_plain(v)) <= MAX_MESSAGE_CHARS


TWO = (Hit("Wang Yi visit to Russia", "Wang Yi; Russia", 3),
       Hit("Putin trip to China", "Putin; China; trip", 4))


def test_item_of_two_storylines_names_both_with_ids_and_each_reason() -> None:
    text = render_html(AlertView.of(TWO, item()))
    assert validate_telegram_html(text) is None
    head, linked = text.split("\n")[:2]
    assert head == "📰 <b>Wang Yi visit to Russia</b> (#3) + <b>Putin trip to China</b> (#4)"
    assert linked.startswith('<a href="https://example.org/a?x=1&amp;y=2">')
    assert "<i>Why (#3): Wang Yi; Russia</i>\n<i>Why (#4): Putin; China; trip</i>" in text
    plain = render_plain(AlertView.of(TWO, item()))
    assert plain.startswith("📰 Wang Yi visit to Russia (#3) + Putin trip to China (#4)\n")
    assert "Why (#3): Wang Yi; Russia\nWhy (#4): Putin; China; trip" in plain


def test_one_storyline_reads_as_it_always_did() -> None:
    assert render_html(AlertView.of(TWO[:1], item())) == render_html(
        AlertView("Wang Yi visit to Russia", item(), "Wang Yi; Russia"))


@settings(max_examples=60, deadline=None)
@given(
    hits=st.lists(st.tuples(st.text(max_size=300), st.text(max_size=2000)), min_size=2,
                  max_size=50),
    title=st.text(max_size=3000),
    summary=st.text(max_size=3000),
)
def test_many_storylines_still_fit_in_valid_html(
    hits: list[tuple[str, str]], title: str, summary: str
) -> None:
    v = AlertView.of([Hit(t or "x", r, n) for n, (t, r) in enumerate(hits, 1)],
                     item(title=title, summary=summary),
                     more=tuple(item(key=str(i), source=f"S{i}") for i in range(20)))
    text = render_html(v)
    assert tg_len(text) <= MAX_MESSAGE_CHARS
    assert validate_telegram_html(text) is None, text
    assert 0 < tg_len(render_plain(v)) <= MAX_MESSAGE_CHARS


def test_storm_summary_is_an_ordinary_safe_alert() -> None:
    from bot.delivery.render import summary_view

    latest = [Item(f"k{n}", f"Report <{n}> & more", "", None, None, "W") for n in range(8)]
    view = summary_view("Wang Yi visit", 480, latest, 10)
    html_text = render_html(view)
    assert "…and 480 more matches in the last hour" in html_text
    assert "Report &lt;7&gt; &amp; more" in html_text
    assert "more than 10 an hour" in render_plain(view)
