"""What the alert buttons, /mute, /sensitivity and the /track preview do (apart from Telegram).

A press on an alert's button names an outbox row in its callback data, which any
client can forge: it counts only if that row was delivered to this chat, as this
very message, and names this storyline. The rest follows the feedback rules of
``bot.storylines.feedback``: a chat's own storyline learns from the chat; a shared
one (or a seed) learns only from the bot's admins, and anyone else's 👎 becomes an
exclusion for their own chat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.delivery.buttons import MUTES, AlertPress, ButtonState, Row, alert_keyboard
from bot.delivery.render import format_time, safe_link
from bot.models import Storyline
from bot.storage.ports import CommandStore
from bot.storage.repository import OutboxEntry
from bot.storylines.facets import describe, parse_title
from bot.storylines.feedback import SENSITIVITIES
from bot.storylines.preview import PREVIEW_DAYS, SHOWN, Preview, preview

log = logging.getLogger(__name__)

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)  # "until unmuted"
PREVIEW_ITEMS = 5000  # newest stored items a preview reads, at most
TRACK_PREFIX = "t"


@dataclass(frozen=True, slots=True)
class PressAnswer:
    """The toast for a press (answerCallbackQuery), and the keyboard to show now
    (None: leave it; ``()``: remove it)."""

    text: str
    keyboard: tuple[Row, ...] | None = None


def mute_until(choice: str, now: datetime) -> datetime | None:
    """When a mute chosen as ``1d``, ``1w``, ``on`` (until unmuted) or ``off`` ends."""
    if choice == "1d":
        return now + timedelta(days=1)
    if choice == "1w":
        return now + timedelta(weeks=1)
    if choice == "on":
        return FOREVER
    return None


def mute_words(until: datetime | None, tz: str | None) -> str:
    if until is None:
        return "unmuted"
    if until.year >= 9999:
        return "muted until unmuted"
    return f"muted until {format_time(until, tz)}"


def track_data(token: int, action: str) -> str:
    return f"{TRACK_PREFIX}:{token}:{action}"


def parse_track_data(raw: str) -> tuple[int, str] | None:
    """(the preview's token, "keep" | "cancel" | "f<N>") from a preview button's data."""
    parts = raw.split(":")
    if (len(parts) != 3 or parts[0] != TRACK_PREFIX or not parts[1].isdecimal()
            or len(parts[1]) > 16):  # a token is under 2^53: no forged number overflows SQL
        return None
    action = parts[2]
    if action in ("keep", "cancel") or (action[:1] == "f" and action[1:].isdecimal()):
        return int(parts[1]), action
    return None


def preview_text(storyline: Storyline, found: Preview) -> str:
    """The preview: what it looks for, the week's matches (5 with links), a warning
    if it looks broad, and shared storylines close to it."""
    looks_for = found.looks_for or describe(parse_title(storyline.title, storyline.aliases))
    lines = [f"I'll look for:\n{looks_for}", ""]
    n = len(found.hits)
    if not n:
        lines.append(f"In the last {PREVIEW_DAYS} days it would have matched nothing stored.")
    else:
        lines.append(f"In the last {PREVIEW_DAYS} days it would have matched {n} item(s):")
        for item in found.hits[:SHOWN]:
            link = safe_link(item.link)
            title = " ".join(item.title.split())[:200]
            lines.append(f"• {title}" + (f"\n  {link}" if link else ""))
        if n > SHOWN:
            lines.append(f"and {n - SHOWN} more")
    if found.broad:
        lines.append(f"\nThis looks broad (about {found.per_day:.0f} a day): add a place or a "
                     "person to the title.")
    for s in found.close[:3]:
        lines.append(f"\nShared storyline #{s.id} ({s.title}) is close: you could follow it "
                     "instead.")
    return "\n".join(lines)


class Steerer:
    """Carries out presses on alerts and the steering commands, for one bot."""

    def __init__(
        self, db: CommandStore, admins: frozenset[int] | set[int],
        utcnow: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._admins = admins
        self._now = utcnow

    # -- preview ----------------------------------------------------------------

    async def preview(self, storyline: Storyline) -> Preview:
        since = self._now() - timedelta(days=PREVIEW_DAYS)
        items = await asyncio.to_thread(self._db.items_since, since, PREVIEW_ITEMS)
        shared = [s for s in await asyncio.to_thread(self._db.active_storylines) if s.shared]
        return await asyncio.to_thread(preview, storyline, items, shared)

    # -- alert buttons ------------------------------------------------------------

    async def keyboard(
        self, rows: list[OutboxEntry], *, menu: int | None = None
    ) -> tuple[Row, ...]:
        first = rows[0]
        sids = [r.storyline_id for r in rows]
        marks = await asyncio.to_thread(
            self._db.alert_marks, first.chat_id, first.item_id, sids, self._now()
        )
        states = {sid: ButtonState(v, muted, following, menu == sid)
                  for sid, (v, muted, following) in marks.items()}
        return alert_keyboard(first.id, sids, states, feedback=first.summary_count == 0)

    async def press(
        self, press: AlertPress, *, chat_id: int, user_id: int | None, message_id: int,
        tz: str | None = None,
    ) -> PressAnswer:
        """Check a press against the stored alert, then act on it."""
        rows = await asyncio.to_thread(self._db.message_rows, press.outbox_id)
        own = [r for r in rows if r.chat_id == chat_id and r.message_id == message_id]
        if not own or press.storyline_id not in {r.storyline_id for r in own}:
            # Forged, or a button from another message: says nothing about any alert.
            log.warning("alert button refused in chat %s (names outbox row %s)",
                        chat_id, press.outbox_id)
            return PressAnswer("This button doesn't belong to this alert.")
        sid = press.storyline_id
        storyline = await asyncio.to_thread(self._db.get_storyline, sid)
        if storyline is None:
            return PressAnswer(f"Storyline #{sid} was removed, so there is nothing to change. "
                               "/storylines lists what is left.", ())
        entry = next(r for r in own if r.storyline_id == sid)
        action = press.action
        if action in ("up", "down"):
            if entry.summary_count > 0:
                return PressAnswer("A summary is no single item to judge.")
            text = await self._feedback(entry, storyline, action, chat_id, user_id)
        elif action in ("mute", "back"):
            return PressAnswer(
                f"Mute #{sid} for how long?" if action == "mute" else "",
                await self.keyboard(own, menu=sid if action == "mute" else None),
            )
        elif action in MUTES:
            until = mute_until(MUTES[action], self._now())
            if not await asyncio.to_thread(self._db.set_mute, chat_id, sid, until):
                return PressAnswer(f"This chat doesn't follow #{sid}.",
                                   await self.keyboard(own))
            text = f"#{sid} is {mute_words(until, tz)} in this chat."
        elif action == "stop":
            await asyncio.to_thread(self._db.unsubscribe, chat_id, sid)
            text = f"This chat no longer follows #{sid}. /subscribe {sid} follows it again."
        else:  # follow again
            await asyncio.to_thread(self._db.subscribe, chat_id, sid, now=self._now())
            text = f"Following #{sid} again."
        return PressAnswer(text, await self.keyboard(own))

    async def _feedback(
        self, entry: OutboxEntry, storyline: Storyline, verdict: str, chat_id: int,
        user_id: int | None,
    ) -> str:
        row = await asyncio.to_thread(self._db.storylines_for_chat, chat_id)
        created_by = next((r.created_by for r in row if r.storyline.id == storyline.id), None)
        teaches = (not storyline.shared and created_by == chat_id) or (
            user_id is not None and user_id in self._admins)
        await asyncio.to_thread(
            self._db.record_feedback, storyline_id=storyline.id, chat_id=chat_id,
            user_id=user_id, item_id=entry.item_id, verdict=verdict,
            scope="storyline" if teaches else "chat", title=entry.item.title,
            summary=entry.item.summary, now=self._now(),
        )
        sid = storyline.id
        if verdict == "up":
            return (f"Noted: on story. #{sid} keeps items like this one, whatever you 👎."
                    if teaches else "Noted, thanks.")
        if teaches:
            return f"Noted: not this story. Items like this one need more evidence for #{sid}."
        return (f"Noted for this chat: items like this one of shared storyline #{sid} "
                "won't be sent here.")

    # -- commands ----------------------------------------------------------------

    async def mute(self, chat_id: int, sid: int, choice: str | None, tz: str | None) -> str:
        until = mute_until(choice or "on", self._now())
        if not await asyncio.to_thread(self._db.set_mute, chat_id, sid, until):
            return f"This chat doesn't follow #{sid}. /storylines shows what it follows."
        if until is None:
            return f"#{sid} is unmuted: its alerts come here again."
        return (f"#{sid} is {mute_words(until, tz)} in this chat; matches meanwhile are not "
                f"sent. /mute {sid} off unmutes it.")

    async def sensitivity(self, storyline: Storyline, choice: str | None) -> str:
        sid = storyline.id
        if choice is None:
            current = (await asyncio.to_thread(self._db.sensitivities)).get(sid, "normal")
            return (f"#{sid} is {current}. /sensitivity {sid} strict|normal|broad changes it "
                    "(strict: fewer alerts, broad: more).")
        await asyncio.to_thread(self._db.set_sensitivity, sid, choice)
        bar = SENSITIVITIES[choice]
        what = {"strict": "it needs stronger evidence: fewer, surer alerts",
                "broad": "it takes weaker evidence: more alerts, more of them off story",
                "normal": "it alerts as every storyline does"}[choice]
        shown = f" (threshold {bar:.2f})" if bar is not None else ""
        return f"#{sid} is now {choice}{shown}: {what}."
