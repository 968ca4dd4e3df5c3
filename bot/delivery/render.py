"""Rendering alerts as Telegram messages (pure: values in, strings out).

Every piece of feed or user text is escaped with :func:`html.escape`; the only
tags emitted are ``b``, ``i`` and ``a href`` from Telegram's HTML subset; links
are kept only for http(s) URLs. A message never exceeds Telegram's 4,096
characters: the summary is cut first, then the explanation, then the title.
The plain-text variant is the fallback when Telegram refuses our HTML.

An item that matched several storylines a chat follows is ONE message: its
header names every storyline with its id, and each gets its own "Why" line.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.models import Item

MAX_MESSAGE_CHARS = 4096
SUMMARY_CHARS = 400  # a teaser, not the article
MORE_CHARS = 300
NAME_CHARS = 100  # each storyline's title in a header naming several
ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Hit:
    """One storyline an alert's item matched, and why."""

    title: str
    reason: str
    storyline_id: int | None = None


@dataclass(frozen=True, slots=True)
class AlertView:
    """What an alert message shows: an item, the storyline it matched (and ``also``
    the chat's other storylines it matched), and later reports of it (``more``)."""

    storyline_title: str
    item: Item
    reason: str
    more: tuple[Item, ...] = ()
    also: tuple[Hit, ...] = ()
    storyline_id: int | None = None

    @property
    def hits(self) -> tuple[Hit, ...]:
        return (Hit(self.storyline_title, self.reason, self.storyline_id), *self.also)

    @classmethod
    def of(cls, hits: Sequence[Hit], item: Item, more: Sequence[Item] = ()) -> AlertView:
        """The view of ``item`` matching every storyline of ``hits`` (at least one)."""
        first, *rest = hits
        return cls(first.title, item, first.reason, tuple(more), tuple(rest), first.storyline_id)
    tz: str | None = None  # the chat's IANA time zone; None is UTC


def summary_view(
    storyline_title: str, held: int, latest: Sequence[Item], limit_per_hour: int | None = None
) -> AlertView:
    """A storm summary as an alert: "…and N more" with the latest titles, rendered
    (escaped, cut to fit) by the same code as every alert."""
    titles = " · ".join(" ".join(i.title.split()) for i in latest)
    rule = f" (more than {limit_per_hour} an hour)" if limit_per_hour else ""
    item = Item(
        key="summary", title=f"…and {held} more matches in the last hour", summary=titles,
        link=None, published=None, source="",
    )
    return AlertView(storyline_title, item, f"too many to send one by one{rule}; the latest:")


def safe_link(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL, else ``None`` (no javascript:, data:...)."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    return url


def zone(name: str | None) -> tzinfo:
    """The time zone called ``name`` (IANA, e.g. ``Europe/Paris``); UTC for None or unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def format_time(value: datetime | None, tz: str | None = None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone(tz))
    label = local.strftime("%Z") or "UTC"
    return f"{local:%H:%M} {label}, {local.day} {local:%b %Y}"


def more_line(more: Sequence[Item]) -> str | None:
    """"+N more: Source1, Source2" (raw text), sources named once in order."""
    if not more:
        return None
    sources: list[str] = []
    for it in more:
        if it.source and it.source not in sources:
            sources.append(it.source)
    text = f"+{len(more)} more"
    return f"{text}: {', '.join(sources)}" if sources else text


def tg_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji can count two)."""
    return len(text.encode("utf-16-le")) // 2


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


def _fit_escaped(raw: str, budget: int) -> str:
    """The longest clipped prefix of ``raw`` whose *escaped* form fits ``budget``.

    Clipping the raw text (not the escaped one) guarantees no entity such as
    ``&amp;`` is ever cut in half.
    """
    raw = " ".join(raw.split())
    if tg_len(html.escape(raw, quote=False)) <= budget:
        return html.escape(raw, quote=False)
    lo, hi = 0, len(raw)
    while lo < hi:  # largest n with len(escape(clip(raw, n))) <= budget
        mid = (lo + hi + 1) // 2
        if tg_len(html.escape(_clip(raw, mid), quote=False)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return html.escape(_clip(raw, lo), quote=False) if lo > 0 else ""


def _esc(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False)


def _names(hits: Sequence[Hit]) -> list[tuple[str, str]]:
    """(title, id suffix) per storyline for the header, raw text. One storyline is
    named as it always was; several are each clipped and told apart by their ids."""
    if len(hits) == 1:
        return [(" ".join(hits[0].title.split()), "")]
    return [(_clip(h.title, NAME_CHARS),
             "" if h.storyline_id is None else f" (#{h.storyline_id})") for h in hits]


def _why_labels(hits: Sequence[Hit]) -> list[str]:
    """"Why" for one storyline; "Why (#3)" per storyline when there are several."""
    if len(hits) == 1:
        return ["Why"]
    return [f"Why (#{h.storyline_id})" if h.storyline_id is not None
            else f"Why ({_clip(h.title, 40)})" for h in hits]


def render_html(view: AlertView, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The alert in Telegram HTML, at most ``limit`` characters."""
    item = view.item
    link = safe_link(item.link)
    hits = view.hits
    names = " + ".join(f"<b>{_esc(t)}</b>{suffix}" for t, suffix in _names(hits))
    labels = _why_labels(hits)

    def head(title_html: str) -> str:
        if link is not None:
            title_html = f'<a href="{html.escape(link, quote=True)}">{title_html}</a>'
        return f"📰 {names}\n{title_html}"

    meta = _esc(" · ".join(p for p in (item.source, format_time(item.published, view.tz)) if p))
    more = more_line(view.more)
    tail = f"\n<i>{_esc(_clip(more, MORE_CHARS))}</i>" if more else ""

    title_raw = item.title or "(untitled)"
    summary_raw = _clip(item.summary, SUMMARY_CHARS) if item.summary else ""
    whys_raw = [h.reason for h in hits]
    no_whys = [""] * len(hits)

    def assemble(title: str, whys: Sequence[str], summary: str) -> str:
        parts = [head(title)]
        if meta:
            parts.append(meta)
        parts += [f"<i>{_esc(label)}: {why}</i>" for label, why in zip(labels, whys, strict=True)
                  if why]
        if summary:
            parts.append(summary)
        return "\n".join(parts) + tail

    title_h, summary_h = _esc(title_raw), _esc(summary_raw)
    whys_h = [_esc(w) for w in whys_raw]
    text = assemble(title_h, whys_h, summary_h)
    if tg_len(text) <= limit:
        return text
    # Too long: shrink the summary, then the explanations (an equal share each),
    # then the title.
    fixed = tg_len(assemble(title_h, whys_h, ""))
    summary_h = _fit_escaped(summary_raw, limit - fixed - 1)
    text = assemble(title_h, whys_h, summary_h)
    if tg_len(text) <= limit:
        return text
    share = (limit - tg_len(assemble(title_h, no_whys, ""))) // len(hits)
    whys_h = [_fit_escaped(w, share - tg_len(f"\n<i>{_esc(label)}: </i>"))
              for w, label in zip(whys_raw, labels, strict=True)]
    text = assemble(title_h, whys_h, "")
    if tg_len(text) <= limit:
        return text
    fixed = tg_len(assemble("", no_whys, ""))
    title_h = _fit_escaped(title_raw, limit - fixed) or _esc(ELLIPSIS)
    text = assemble(title_h, no_whys, "")
    if tg_len(text) <= limit:
        return text
    # What is left to blame is a huge link or storyline title: drop the link,
    # then hard-cut, rather than send something Telegram would refuse.
    if item.link is not None or view.more:
        return render_html(replace(view, item=replace(item, link=None), more=()), limit)
    return _fit_escaped(render_plain(view, limit), limit)


def render_plain(view: AlertView, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The same alert as plain text (no parse mode), at most ``limit`` characters."""
    item = view.item
    link = safe_link(item.link)
    hits = view.hits
    names = " + ".join(t + suffix for t, suffix in _names(hits))
    lines = [f"📰 {names}", " ".join(item.title.split())]
    if link:
        lines.append(link)
    meta = " · ".join(p for p in (item.source, format_time(item.published, view.tz)) if p)
    if meta:
        lines.append(meta)
    for label, hit in zip(_why_labels(hits), hits, strict=True):
        if hit.reason:
            lines.append(f"{label}: {' '.join(hit.reason.split())}")
    more = more_line(view.more)
    if item.summary:
        lines.append(_clip(item.summary, SUMMARY_CHARS))
    if more:
        lines.append(_clip(more, MORE_CHARS))
    return _clip_lines("\n".join(lines), limit)


def _clip_lines(text: str, limit: int) -> str:
    while tg_len(text) > limit:  # slicing counts code points; Telegram counts UTF-16 units
        # Never a negative index: with many astral characters (emoji count two units)
        # the excess can exceed the length, and text[:-n] would loop forever.
        keep = max(0, len(text) - max(1, tg_len(text) - limit) - 1)
        text = text[:keep] + ELLIPSIS
    return text
