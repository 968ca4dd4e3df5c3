"""A digest as Telegram messages (pure: developments in, HTML parts out).

One digest per chat and slot: developments grouped by storyline, the storyline
that moved last first, each storyline's developments newest first. A
development is told once, with its outlets (the item's own and those of the
reports collapsed into it, "+N more" past a few); an item that matched several
of the chat's storylines is told under the first and names the others.

The digest is cut into parts of at most 4,096 characters (Telegram's UTF-16
count) at line boundaries; every part after the first says "(continued)", and
so does a storyline whose lines run on into the next part. Only ``b`` and
``a href`` tags are emitted and every text is escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.delivery.render import ELLIPSIS, MAX_MESSAGE_CHARS, safe_link, tg_len, zone

TITLE_CHARS = 300
OUTLETS_SHOWN = 4
CONTINUED = "(continued)"
MAX_LINK = 1000


@dataclass(frozen=True, slots=True)
class Development:
    """One development for a digest: an item and the storyline it moved."""

    storyline_id: int
    storyline_title: str
    title: str
    link: str | None
    when: datetime
    outlets: tuple[str, ...] = ()
    duplicates: int = 0  # reports collapsed into it
    also: tuple[int, ...] = ()  # other storylines of the chat it matched


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _esc(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False)


def outlets_text(outlets: Sequence[str], duplicates: int) -> str:
    """"Reuters, AP +3 more" (raw text): outlets named once, a few at most."""
    names: list[str] = []
    for o in outlets:
        o = " ".join(o.split())
        if o and o not in names:
            names.append(o)
    shown = [_clip(n, 60) for n in names[:OUTLETS_SHOWN]]
    hidden = max(len(names) - OUTLETS_SHOWN, 0)
    text = ", ".join(shown)
    if duplicates:
        text += f" ({duplicates + 1} reports)"
    if hidden:
        text += f" +{hidden} more"
    return text


def _stamp(when: datetime, slot: datetime, tz: str | None) -> str:
    local = when.astimezone(zone(tz))
    if local.date() == slot.astimezone(zone(tz)).date():
        return f"{local:%H:%M}"
    return f"{local.day} {local:%b} {local:%H:%M}"


def line_html(d: Development, slot: datetime, tz: str | None) -> str:
    title = _esc(_clip(d.title or "(untitled)", TITLE_CHARS))
    link = safe_link(d.link)
    if link is not None and len(link) <= MAX_LINK:  # a huge address would not fit a part
        title = f'<a href="{html.escape(link, quote=True)}">{title}</a>'
    parts = [f"• {_stamp(d.when, slot, tz)} {title}"]
    outlets = outlets_text(d.outlets, d.duplicates)
    if outlets:
        parts.append(f"— {_esc(outlets)}")
    if d.also:
        parts.append("(also " + ", ".join(f"#{s}" for s in d.also) + ")")
    return " ".join(parts)


def _storyline_head(d: Development, *, continued: bool = False) -> str:
    more = f", {CONTINUED[1:-1]}" if continued else ""
    return f"<b>{_esc(_clip(d.storyline_title, 200))}</b> (#{d.storyline_id}{more})"


def grouped(devs: Sequence[Development]) -> list[list[Development]]:
    """Developments per storyline; the storyline that moved last first, each one's
    developments newest first."""
    groups: dict[int, list[Development]] = {}
    for d in sorted(devs, key=lambda d: d.when, reverse=True):
        groups.setdefault(d.storyline_id, []).append(d)
    return list(groups.values())


def render_digest(
    devs: Sequence[Development], slot: datetime, tz: str | None,
    *, limit: int = MAX_MESSAGE_CHARS,
) -> list[str]:
    """The digest's messages, in order; [] when there is nothing to tell."""
    if not devs:
        return []
    groups = grouped(devs)
    local = slot.astimezone(zone(tz))
    label = local.strftime("%Z") or "UTC"
    n, s = len(devs), len(groups)
    head = (f"🗞 <b>Digest</b> · {local:%H:%M} {label}, {local.day} {local:%b %Y} · "
            f"{n} development{'s' if n != 1 else ''} in {s} storyline{'s' if s != 1 else ''}")
    parts: list[list[str]] = [[head]]

    def room(extra: str) -> bool:
        return tg_len("\n".join([*parts[-1], extra])) <= limit

    for group in groups:
        first = True
        for d in group:
            line = line_html(d, slot, tz)
            block = ["", _storyline_head(d), line] if first else [line]
            if not room("\n".join(block)):
                parts.append([f"🗞 <b>Digest</b> {CONTINUED}", "",
                              _storyline_head(d, continued=not first), line])
            else:
                parts[-1].extend(block)
            first = False
    return ["\n".join(p) for p in parts]


_TAG_RE = re.compile(r"<[^>]+>")


def as_plain(part: str) -> str:
    """A part without its HTML (the fallback when Telegram refuses our HTML)."""
    return html.unescape(_TAG_RE.sub("", part))
