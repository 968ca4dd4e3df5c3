"""Long lists cut into pages that fit one Telegram message, with ⟨ ⟩ buttons (pure).

A page holds at most ``per_page`` lines and never more than Telegram's 4,096
characters with its header and footer; a single overlong line is clipped. The
buttons carry ``page:LIST:N`` as callback data, which the handlers turn back
into a request for page N of that list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.delivery.render import tg_len

MAX_MESSAGE = 4096
PER_PAGE = 15
MAX_LINE = 600
PREFIX = "page"


@dataclass(frozen=True, slots=True)
class Page:
    text: str
    number: int  # 1-based, clamped into range
    count: int
    buttons: tuple[tuple[str, str], ...]  # (label, callback data), one row


def _clip(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def split_pages(
    lines: Sequence[str], *, room: int, per_page: int = PER_PAGE
) -> list[list[str]]:
    """Greedy pages of ``lines``: at most ``per_page`` each, joined length ≤ ``room``."""
    pages: list[list[str]] = [[]]
    used = 0
    for raw in lines:
        line = _clip(raw)
        cost = tg_len(line) + 1
        if pages[-1] and (len(pages[-1]) >= per_page or used + cost > room):
            pages.append([])
            used = 0
        pages[-1].append(line)
        used += cost
    return pages


def paginate(
    list_name: str,
    header: str,
    lines: Sequence[str],
    footer: str,
    page: int,
    *,
    per_page: int = PER_PAGE,
    limit: int = MAX_MESSAGE,
) -> Page:
    """Page ``page`` (1-based) of ``lines`` under ``header`` (which gets ", page 2 of 4:"
    or ":"), above ``footer``."""
    marker_room = len(", page 999 of 999:")
    room = limit - tg_len(header) - tg_len(footer) - marker_room - 4
    pages = split_pages(lines, room=room, per_page=per_page)
    count = len(pages)
    number = min(max(page, 1), count)
    head = f"{header}, page {number} of {count}:" if count > 1 else f"{header}:"
    parts = [head, *pages[number - 1]]
    if footer:
        parts += ["", footer]
    buttons: list[tuple[str, str]] = []
    if number > 1:
        buttons.append(("⟨", f"{PREFIX}:{list_name}:{number - 1}"))
    if number < count:
        buttons.append(("⟩", f"{PREFIX}:{list_name}:{number + 1}"))
    return Page("\n".join(parts), number, count, tuple(buttons))


def parse_page_data(data: str) -> tuple[str, int] | None:
    """``("storylines", 2)`` from ``page:storylines:2``; ``None`` for anything else."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[2].isdecimal() or len(parts[2]) > 6:
        return None
    return parts[1], int(parts[2])
