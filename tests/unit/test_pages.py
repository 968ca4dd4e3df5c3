"""Long lists cut into pages (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.delivery.render import tg_len
from bot.telegram.pages import paginate, parse_page_data


def test_short_list_is_one_page_without_buttons() -> None:
    page = paginate("things", "3 things", ["a", "b", "c"], "footer", 1)
    assert page.text == "3 things:\na\nb\nc\n\nfooter"
    assert (page.number, page.count, page.buttons) == (1, 1, ())


def test_pages_cover_every_line_once_with_buttons_both_ways() -> None:
    lines = [f"line {n}" for n in range(40)]
    first = paginate("things", "40 things", lines, "", 1, per_page=15)
    assert first.count == 3 and first.buttons == (("⟩", "page:things:2"),)
    middle = paginate("things", "40 things", lines, "", 2, per_page=15)
    assert middle.buttons == (("⟨", "page:things:1"), ("⟩", "page:things:3"))
    assert middle.text.split("\n")[0] == "40 things, page 2 of 3:"
    seen = [ln for n in (1, 2, 3)
            for ln in paginate("things", "h", lines, "", n, per_page=15).text.split("\n")[1:]]
    assert seen == lines
    assert paginate("things", "h", lines, "", 99, per_page=15).number == 3  # clamped


@given(st.lists(st.text(min_size=1, max_size=3000).map(lambda t: t.replace("\n", " ")),
                max_size=60), st.integers(1, 10))
def test_every_page_fits_a_telegram_message(lines: list[str], number: int) -> None:
    page = paginate("x", "header", lines, "footer " * 10, number)
    assert tg_len(page.text) <= 4096


def test_button_data() -> None:
    assert parse_page_data("page:storylines:2") == ("storylines", 2)
    for bad in ("page:storylines", "page:x:-1", "other:x:1", "page:x:9999999", ""):
        assert parse_page_data(bad) is None
