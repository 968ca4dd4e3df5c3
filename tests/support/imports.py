"""Make an installed package look missing, for the "extra not installed" paths."""

from __future__ import annotations

import builtins

import pytest


def hide_package(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Every later ``import package`` (or a submodule) raises ImportError naming it,
    as it would where the package is not installed."""
    real_import = builtins.__import__

    def guarded(name: str, *args: object, **kwargs: object) -> object:
        if name == package or name.startswith(package + "."):
            raise ImportError(f"No module named '{package}'", name=package)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", guarded)
