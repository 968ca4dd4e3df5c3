"""Evaluation protocol on a hand-made benchmark with known answers."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.evaluation import (
    evaluate,
    leave_one_out,
    load_benchmark,
    parse_grid,
    run_eval,
    write_loo,
)
from bot.models import Item, Storyline
from bot.storylines.matcher import Assessment


def _write(tmp_path: Path) -> Path:
    items = [
        ("i1", "Volkswagen admits diesel cheating", ["s1"]),
        ("i2", "Hajj stampede near Mecca kills hundreds", ["s2"]),
        ("i3", "Volkswagen chief resigns", ["s1"]),
        ("i4", "Weather is nice", []),
        ("i5", "Mecca stampede toll rises", ["s2"]),
    ]
    doc = {
        "name": "tiny",
        "storylines": [
            {"id": "s1", "title": "Volkswagen scandal", "seed_documents": [], "seed_items": []},
            {"id": "s2", "title": "Hajj stampede",
             "seed_documents": [{"title": "Seed", "text": "Pilgrims crushed at Mecca"}],
             "seed_items": ["i2"]},
        ],
        "items": [
            {"id": k, "title": t, "summary": "", "link": "", "source": "x",
             "published": f"2015-09-0{n}T12:00:00Z", "storylines": labels}
            for n, (k, t, labels) in enumerate(items, 1)
        ],
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(doc))
    return path


class _Keyword:
    """Matches when the storyline's first title word is in the item title; records calls."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []
        self.built: dict[int, Storyline] = {}

    def observe(self, items: Sequence[Item]) -> None:
        self.seen.append([i.key for i in items])

    def assess(self, items: Sequence[Item], storylines: Sequence[Storyline]) -> list[Assessment]:
        self.observe(items)
        out = []
        for item in items:
            for s in storylines:
                self.built[s.id] = s
                hit = s.title.split()[0].lower() in item.title.lower()
                out.append(Assessment(item.key, s.id, 1.0 if hit else 0.0, hit, ""))
        return out


def test_protocol_pairs_and_figures(tmp_path: Path) -> None:
    bench = load_benchmark(_write(tmp_path))
    fake = _Keyword()
    r = evaluate(bench, lambda: fake)
    pairs = {(p.storyline, p.item) for p in r.predictions}
    # s1 scores every item; s2 only items after its seed i2 (never i2 itself).
    assert pairs == {("s1", k) for k in ("i1", "i2", "i3", "i4", "i5")} | {
        ("s2", k) for k in ("i3", "i4", "i5")
    }
    # Items one at a time, in order.
    assert fake.seen == [["i1"], ["i2"], ["i3"], ["i4"], ["i5"]]
    # The storyline is built from title + seed documents + seed items.
    s2 = next(s for s in fake.built.values() if s.slug == "s2")
    assert "Pilgrims crushed" in s2.seed_text and "Hajj stampede near Mecca" in s2.seed_text
    # "volkswagen" hits i1, i3 (both gold); "hajj" hits nothing after the seed (i5 missed).
    assert (r.tp, r.fp, r.fn) == (2, 0, 1)
    assert r.precision == 1.0 and r.recall == pytest.approx(2 / 3)
    # Cdet: s1 P_miss 0, P_fa 0; s2 P_miss 1, P_fa 0 -> mean P_miss 0.5.
    assert r.cdet == pytest.approx(0.5)


def test_run_eval_output_and_predictions(tmp_path: Path) -> None:
    out = io.StringIO()
    preds = tmp_path / "p.jsonl"
    assert run_eval(_write(tmp_path), preds, out) == 0
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("F1 ") and " P " in last and " R " in last and " Cdet " in last
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert len(lines) == 8 and set(lines[0]) == {"storyline", "item", "score", "match"}


def test_bad_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{}")
    with pytest.raises(ConfigError):
        load_benchmark(p)


def test_shared_benchmarks_load() -> None:
    shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks"
    path = shared / "wcep-2015-09-seed1.json"
    if not path.exists():
        pytest.skip(f"shared benchmarks not found at {shared}")
    bench = load_benchmark(path)
    assert len(bench.storylines) == 19 and len(bench.items) == 428


def test_parse_grid_checks_knobs() -> None:
    assert parse_grid(["threshold=0.2,0.3", "competition=0.5"]) == {
        "threshold": [0.2, 0.3], "competition": [0.5]
    }
    for bad in ("nonsense=1", "threshold", "threshold=a", "semantic=1"):
        with pytest.raises(ConfigError):
            parse_grid([bad])


def test_leave_one_out_chooses_on_the_other_files(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    paths = [_write(a), _write(b)]
    report = leave_one_out(paths, {"threshold": [0.05, 0.9]})
    assert len(report.table) == 2 and len(report.rounds) == 2
    # Identical files: each round's choice is the best setting on the other (same) file.
    f1s = [figs[0][0] for _, figs in report.table]
    best = max(range(2), key=lambda i: (f1s[i], -i))
    assert all(r.chosen == report.table[best][0] for r in report.rounds)
    assert report.median == report.table[best][0]
    out = io.StringIO()
    write_loo(report, out)
    assert "| held-out file |" in out.getvalue() and "median of the choices" in out.getvalue()
    with pytest.raises(ConfigError):
        leave_one_out(paths[:1], {"threshold": [0.2]})
