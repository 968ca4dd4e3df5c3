"""How the values a parse worker sends to the bot are pickled: as their fields, in order.

A frozen, slotted dataclass pickles through ``dataclasses``' own ``__getstate__`` and
``__setstate__``: Python functions that look up the class's fields again for every
object, on both sides of the pipe. A first pass of 1,000 feeds sends 50,000 items and
their facts from the parse worker to the bot (issue 18); :func:`by_fields` makes each
object travel as its class and a tuple of its fields, read in C by one
``attrgetter``, and rebuilt by the class's own ``__init__``.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any, TypeVar

T = TypeVar("T")


def by_fields(cls: type[T]) -> type[T]:
    """Class decorator (outside ``@dataclass``): pickle ``cls`` as ``cls(*fields)``.

    Only for dataclasses whose ``__init__`` takes every field and does nothing
    else (no ``__post_init__``, no ``init=False`` field): unpickling calls it.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if len(names) < 2 or hasattr(cls, "__post_init__") or not all(
        f.init for f in fields(cls)  # type: ignore[arg-type]
    ):
        raise TypeError(f"{cls.__name__} cannot be rebuilt from its fields alone")
    get = attrgetter(*names)

    def __reduce__(self: Any) -> tuple[type[T], tuple[Any, ...]]:
        return cls, get(self)

    setattr(cls, "__reduce__", __reduce__)  # noqa: B010 (mypy: no assigning to a method)
    return cls
