"""The buttons under an alert (pure: state in, keyboard rows out; data in, a press out).

Under every alert, one row per storyline it names: 👍 (on story), 👎 (not this
story), 🔕 (mute: 1 day, 1 week or until unmuted) and Stop following. A press
edits the keyboard to show what was recorded; no message is sent.

Callback data is ``a:<outbox id>:<storyline id>:<action>`` (well under Telegram's
64 bytes). Any client can send any data, so it only *names* an alert: the service
checks the outbox row against the chat and message the press came from
(``ChatService.press``). The outbox id is the first row of the message, which is
in the database, so a press works as well after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PREFIX = "a"
ACTIONS = frozenset({
    "up", "down",  # 👍 / 👎
    "mute", "back",  # open / close the mute menu
    "m1d", "m1w", "mall", "unmute",  # mute for a day, a week, until unmuted; unmute
    "stop", "follow",  # stop following; follow again
})
MUTES = {"m1d": "1d", "m1w": "1w", "mall": "on", "unmute": "off"}

Row = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AlertPress:
    """A press on an alert's button, as its data claims (to be checked)."""

    outbox_id: int
    storyline_id: int
    action: str


@dataclass(frozen=True, slots=True)
class ButtonState:
    """What the chat has recorded about one storyline of an alert."""

    verdict: str | None = None  # "up" / "down" on this item
    muted: bool = False
    following: bool = True
    menu: bool = False  # the mute menu is open


def data(outbox_id: int, storyline_id: int, action: str) -> str:
    return f"{PREFIX}:{outbox_id}:{storyline_id}:{action}"


def parse_alert_data(raw: str) -> AlertPress | None:
    """The press ``raw`` names, or None if it is not an alert button's data."""
    parts = raw.split(":")
    if len(parts) != 4 or parts[0] != PREFIX or parts[3] not in ACTIONS:
        return None
    if not all(p.isdecimal() and len(p) <= 12 for p in parts[1:3]):
        return None
    return AlertPress(int(parts[1]), int(parts[2]), parts[3])


def storyline_row(
    outbox_id: int, storyline_id: int, state: ButtonState, *, label: str = "",
    feedback: bool = True,
) -> Row:
    """One storyline's buttons; ``label`` (" #3") tells storylines apart."""
    def b(text: str, action: str) -> tuple[str, str]:
        return (text, data(outbox_id, storyline_id, action))

    if not state.following:
        return (b(f"↩ Follow{label} again", "follow"),)
    if state.menu:
        options = [b("1 day", "m1d"), b("1 week", "m1w"), b("Until unmuted", "mall")]
        if state.muted:
            options.append(b("Unmute", "unmute"))
        return (*options, b("‹", "back"))
    row: list[tuple[str, str]] = []
    if feedback:
        row.append(b(("✅ " if state.verdict == "up" else "") + "👍" + label, "up"))
        row.append(b(("✅ " if state.verdict == "down" else "") + "👎" + label, "down"))
    row.append(b(("🔕 muted" if state.muted else "🔕") + label, "mute"))
    row.append(b("Stop following" + label, "stop"))
    return tuple(row)


def alert_keyboard(
    outbox_id: int,
    storyline_ids: Sequence[int],
    states: Mapping[int, ButtonState],
    *,
    feedback: bool = True,
) -> tuple[Row, ...]:
    """The keyboard of an alert naming ``storyline_ids`` (each once, in order);
    ``feedback`` False for a storm summary, which is no one item to judge."""
    ids = list(dict.fromkeys(storyline_ids))
    several = len(ids) > 1
    return tuple(
        storyline_row(outbox_id, sid, states.get(sid, ButtonState()),
                      label=f" #{sid}" if several else "", feedback=feedback)
        for sid in ids
    )
