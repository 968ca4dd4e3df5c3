"""The role book at its largest: how many bytes its bounds allow, in memory and as saved.

``facets.RoleBook`` learns people's offices from what the bot reads. It is bounded in
entries (``max_people`` people, ``max_roles`` offices each) and, since issue 18g, in
the length of a name (``max_name_words`` words of ``max_name_chars`` characters).
This bench fills a book to those bounds with the worst case (every name as long as
allowed, every person with as many offices as allowed, each office with a place),
through ``RoleBook``'s own methods, and prints its size:

    .venv/bin/python bench/bench_rolebook.py

Memory is what ``tracemalloc`` counts as allocated while the book is filled and kept;
"saved" is the length of the JSON the matcher's state stores for it
(``RoleBook.export``). It only prints.
"""

from __future__ import annotations

import json
import string
import tracemalloc
from collections import Counter

from _common import machine

from bot.storylines.facets import ROLE_PHRASES, RoleBook
from bot.storylines.knowledge import gazetteer


def _longest_name(n: int, words: int, chars: int) -> tuple[str, ...]:
    """A distinct name of ``words`` words of ``chars`` letters, the ``n``-th."""
    letters = string.ascii_lowercase
    tag = ""
    k = n
    while True:
        tag += letters[k % 26]
        k //= 26
        if not k:
            break
    return tuple((f"{tag}{w}" + "x" * chars)[:chars] for w in range(words))


def fill(book: RoleBook) -> None:
    """Every person and office the bounds allow, each name as long as allowed."""
    # A role is an (office, place) pair: a person can hold ``max_roles`` of them even
    # where there are fewer distinct offices, each seen with other places.
    offices = sorted(set(ROLE_PHRASES.values()), key=len, reverse=True)
    places = sorted(set(gazetteer().values()), key=len, reverse=True)
    for n in range(book.max_people):
        person = _longest_name(n, book.max_name_words, book.max_name_chars)
        assert book._a_name(person)
        book.counts[person] = Counter()
        for k in range(book.max_roles):
            book._add(person, (places[(n + k) % len(places)], offices[k % len(offices)]), 2)


def main() -> None:
    print(machine())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book = RoleBook()
    fill(book)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    saved = len(json.dumps(book.export()))
    people = len(book.counts)
    roles = sum(len(c) for c in book.counts.values())
    print(f"bounds: {book.max_people:,} people, {book.max_roles} offices each, names of "
          f"{book.max_name_words} words of {book.max_name_chars} characters")
    print(f"filled: {people:,} people, {roles:,} offices")
    print(f"in memory: {held / 2**20:.1f} MB (tracemalloc); saved: {saved / 2**20:.1f} MB "
          f"of JSON")


if __name__ == "__main__":
    main()
