"""Matcher state saved by several workers: each adds what it learned, none
overwrites the others (``storylines.state_merge``, ``Database.update_matcher_state``).
The storage tests run on both engines."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.models import Item
from bot.storage.repository import Database
from bot.storylines.matcher import Matcher
from bot.storylines.state_merge import merge_states
from tests.support.engines import database_env, open_for_env

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def items(prefix: str, *titles: str) -> list[Item]:
    return [Item(f"{prefix}{n}", t, "", None, T0, "wire") for n, t in enumerate(titles)]


def learned(state: dict[str, Any]) -> Matcher:
    m = Matcher()
    assert m.restore_state(state)
    return m


def test_two_workers_saving_in_turn_both_count(db: Database) -> None:
    start = Matcher().export_state()  # both workers start from the same state
    a, b = Matcher(), Matcher()
    a.observe(items("a", "Glacier melt speeds up in Greenland", "Glacier retreat in Alps"))
    b.observe(items("b", "Volcano erupts in Iceland", "Volcano ash closes airports",
                    "Volcano quiet again"))
    for m in (a, b):
        mine = m.export_state()
        db.update_matcher_state(lambda saved, mine=mine: merge_states(saved, start, mine))
    state = db.load_matcher_state()
    assert state is not None
    assert state["n_docs"] == 5
    assert state["df"]["glacier"] == 2 and state["df"]["volcano"] == 3
    both = learned(state)
    assert both.idf("volcano") < learned(b.export_state()).idf("glacier")

    # Saved whole (one process), the last save wins: the other worker's terms go.
    db.save_matcher_state(b.export_state())
    stored = db.load_matcher_state()
    assert stored is not None and "glacier" not in stored["df"]


def test_a_worker_adds_only_what_it_learned_since_its_last_save(db: Database) -> None:
    m = Matcher()
    base = m.export_state()
    for n in range(3):
        m.observe(items(f"p{n}", f"Harbour strike day {n}"))
        mine = m.export_state()
        db.update_matcher_state(lambda saved, b=base, mi=mine: merge_states(saved, b, mi))
        base = mine
    state = db.load_matcher_state()
    assert state is not None and state["n_docs"] == 3 and state["df"]["harbour"] == 3


def test_concurrent_saves_from_separate_connections_lose_nothing(
    engine: str, tmp_path: Path
) -> None:
    rounds, threads = 15, 4
    with database_env(engine) as env:
        stores = [open_for_env(env, tmp_path / "data") for _ in range(threads)]
        try:
            def save(db: Database, n: int) -> None:
                m = Matcher()
                base = m.export_state()
                for r in range(rounds):
                    m.observe(items(f"w{n}r{r}", f"Shared term news {n} {r}"))
                    mine = m.export_state()
                    db.update_matcher_state(
                        lambda saved, b=base, mi=mine: merge_states(saved, b, mi))
                    base = mine

            workers = [threading.Thread(target=save, args=(db, n))
                       for n, db in enumerate(stores)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout=300)
            state = stores[0].load_matcher_state()
        finally:
            for db in stores:
                db.close()
    assert state is not None
    assert state["n_docs"] == rounds * threads
    assert state["df"]["shared"] == rounds * threads


def test_halving_lowers_the_shared_counts_and_zeros_are_dropped() -> None:
    stored = Matcher()
    stored.observe(items("s", "Alpha beta", "Alpha gamma"))
    base = Matcher().export_state()
    mine = dict(base, n_docs=0.5, df={"delta": 1})  # a worker that halved to almost nothing
    merged = merge_states(stored.export_state(), base, mine)
    assert merged["n_docs"] == 2.5
    assert merged["df"] == {"alpha": 2, "beta": 1, "gamma": 1, "delta": 1}
    shrunk = merge_states(merged, dict(mine, df={"alpha": 2, "delta": 1}), mine)
    assert shrunk["df"] == {"beta": 1, "gamma": 1, "delta": 1}


def test_storylines_add_up_unless_edited_and_another_version_is_not_merged() -> None:
    line = {"centroid": {"port": 1.0}, "matches": 2, "times": [1.0, 2.0], "sig": "s1"}
    base = dict(Matcher().export_state(), storylines={"7": line})
    stored = dict(base, storylines={"7": dict(line, matches=5, times=[1.0, 2.0, 3.0]),
                                    "8": dict(line, sig="other")})
    mine = dict(base, storylines={"7": {"centroid": {"port": 1.5, "strike": 0.5},
                                        "matches": 4, "times": [1.0, 2.0, 4.0], "sig": "s1"}})
    merged = merge_states(stored, base, mine)["storylines"]
    assert merged["7"] == {"centroid": {"port": 1.5, "strike": 0.5}, "matches": 7,
                           "times": [1.0, 2.0, 3.0, 4.0], "sig": "s1"}
    assert merged["8"] == stored["storylines"]["8"]  # this worker did not touch it
    edited = dict(mine, storylines={"7": dict(line, sig="s2", matches=1)})
    assert merge_states(stored, base, edited)["storylines"]["7"]["matches"] == 1
    assert merge_states(dict(stored, version=-1), base, mine) is mine


def test_offices_and_watched_people_merge() -> None:
    base = Matcher().export_state()
    stored = dict(base, roles=[[["wang", "yi"], [["china", "minister", 3]]]],
                  watched=[["wang", "yi"]])
    mine = dict(base, roles=[[["wang", "yi"], [["china", "minister", 2]]],
                             [["lavrov"], [["russia", "minister", 1]]]],
                watched=[["lavrov"]])
    merged = merge_states(stored, base, mine)
    assert sorted(map(str, merged["roles"])) == sorted(map(str, [
        [["wang", "yi"], [["china", "minister", 5]]], [["lavrov"], [["russia", "minister", 1]]],
    ]))
    assert merged["watched"] == [["lavrov"], ["wang", "yi"]]
    assert learned(merged).roles.counts[("wang", "yi")] == {("china", "minister"): 5}


def test_people_watched_without_offices_keep_their_rows() -> None:
    # A storyline about Putin watches him before any office is learned: the matcher
    # needs his (empty) row back, or reading the next item fails.
    a = Matcher()
    a.roles.watch(("putin",))
    base = Matcher().export_state()
    stored = Matcher()
    stored.roles.watch(("xi",))
    merged = merge_states(stored.export_state(), base, a.export_state())
    m = learned(merged)
    assert set(m.roles.counts) >= {("putin",), ("xi",)}
    m.observe(items("p", "Putin meets Xi in Beijing", "President Putin speaks"))
