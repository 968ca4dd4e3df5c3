"""Merging what several matchers learned into the one saved matcher state.

Every ``storywatch worker`` runs its own matcher and saves its state
(``Matcher.export_state``) after each pass. Saved whole, the last worker to save
would win and the others' term statistics would be lost. Instead each saves what
it learned since its last save, its *increment* (its state now minus the state it
started from or saved last), added to whatever is stored, in one locked
transaction (``Database.update_matcher_state``).

Counts (documents, term and capitalisation counts, offices, a storyline's summed
term vector and matches) add up; sets (watched people, activity times) are
unions. A matcher that halved its counts to stay bounded contributes a negative
increment: the shared counts are then roughly halved too; a count that falls to
zero is dropped. Pure: states in, state out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.storylines.matcher import RHYTHM_EVENTS

State = dict[str, Any]
_COUNTS = ("df", "caps", "lows")


def _add_delta(
    stored: Mapping[str, float], base: Mapping[str, float], mine: Mapping[str, float]
) -> dict[str, float]:
    out = dict(stored)
    for key in mine.keys() | base.keys():
        delta = mine.get(key, 0) - base.get(key, 0)
        if not delta:
            continue
        value = out.get(key, 0) + delta
        if value > 1e-9:
            out[key] = value
        else:
            out.pop(key, None)
    return out


def _roles(rows: Any) -> dict[str, float]:
    # RoleBook.export(): [[person words, [[place, office, n], ...]], ...]
    return {repr((tuple(p), pl, o)): n for p, counts in rows for pl, o, n in counts}


def _roles_rows(
    counts: Mapping[str, float], rows: list[Any], watched: set[tuple[str, ...]]
) -> list[Any]:
    # Back to RoleBook.export()'s shape; keys come from the rows seen in any state.
    # Every person known keeps a row, offices or not: RoleBook expects one for each
    # watched person.
    by_person: dict[tuple[str, ...], list[list[object]]] = {tuple(p): [] for p, _ in rows}
    by_person.update({p: [] for p in watched if p not in by_person})
    keys = {repr((tuple(p), pl, o)): (tuple(p), pl, o)
            for p, cs in rows for pl, o, _ in cs}
    for key, n in counts.items():
        person, place, office = keys[key]
        by_person.setdefault(person, []).append([place, office, int(n)])
    return [[list(p), cs] for p, cs in by_person.items()]


def _storyline(stored: State | None, base: State | None, mine: State) -> State:
    if stored is None or stored.get("sig") != mine.get("sig"):
        return mine  # new, or edited since: what this matcher learned for the new one
    if base is None or base.get("sig") != mine.get("sig"):
        base = {"centroid": {}, "matches": 0, "times": []}
    new_times = set(mine["times"]) - set(base["times"])
    return {
        "centroid": _add_delta(stored["centroid"], base["centroid"], mine["centroid"]),
        "matches": max(0, stored["matches"] + mine["matches"] - base["matches"]),
        "times": sorted(set(stored["times"]) | new_times)[-RHYTHM_EVENTS:],
        "sig": mine["sig"],
    }


def merge_states(stored: State | None, base: State | None, mine: State) -> State:
    """``stored`` plus what ``mine`` learned since ``base`` (the state this matcher
    started from or saved last). Nothing stored, or a state of another version:
    ``mine`` as it is."""
    version = mine.get("version")
    if stored is None or stored.get("version") != version:
        return mine
    if base is None or base.get("version") != version:
        base = {"n_docs": 0.0, "df": {}, "caps": {}, "lows": {}, "roles": [], "watched": [],
                "storylines": {}}
    out: State = dict(mine)
    out["n_docs"] = max(0.0, stored["n_docs"] + mine["n_docs"] - base["n_docs"])
    for key in _COUNTS:
        out[key] = {k: int(v) for k, v in
                    _add_delta(stored[key], base[key], mine[key]).items()}
    watched = {tuple(p) for p in (*stored["watched"], *mine["watched"])}
    out["watched"] = [list(p) for p in sorted(watched)]
    roles = _add_delta(_roles(stored["roles"]), _roles(base["roles"]), _roles(mine["roles"]))
    out["roles"] = _roles_rows(roles, [*stored["roles"], *mine["roles"]], watched)
    sids = stored["storylines"].keys() | mine["storylines"].keys()
    out["storylines"] = {
        sid: _storyline(stored["storylines"].get(sid), base["storylines"].get(sid),
                        mine["storylines"][sid])
        if sid in mine["storylines"] else stored["storylines"][sid]
        for sid in sids
    }
    return out
