"""Words of news in Chinese and in Cyrillic-script languages: what language a text is
in, Chinese segmentation (jieba) and Snowball stems (Russian, Serbian).

English text never comes here: the readers of text (``text.tokens``, ``facets``) send
a text here only when it holds Han or Cyrillic letters (:func:`needs`), so English
matching keeps its behaviour and its speed. Latin-script languages other than English
stay on the English path: without stop lists of their own, their function words
("de", "la") would count as a title's words.

The heavy parts load on first use and are then kept: jieba's dictionary (73 MB of
memory, ``bench/bench_languages.py``) when the first Chinese text arrives, lingua's
Cyrillic-script models (19 MB) when the first Cyrillic one does. A bot that reads only
English pays for neither.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_HAN_LETTERS = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CYRILLIC_LETTERS = r"\u0400-\u04ff"
_HAN = re.compile(f"[{_HAN_LETTERS}]")
_CYRILLIC = re.compile(f"[{_CYRILLIC_LETTERS}]")
# One scan for either: every item read is checked (issue 18), most of them in neither.
_HAN_OR_CYRILLIC = re.compile(f"[{_HAN_LETTERS}{_CYRILLIC_LETTERS}]")
_WORDISH = re.compile(r"[^\W_]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def _split(text: str) -> list[str]:
    return text.split()


# Function words carrying no topic. Chinese: single characters and particles that
# jieba leaves standing alone; Russian: the commonest prepositions, conjunctions,
# pronouns and reporting verbs (in the forms written, before stemming).
ZH_STOPWORDS = frozenset(_split("""
    的 了 在 和 与 及 并 是 将 对 把 被 为 也 就 都 而 等 这 那 其 之
    于 以 从 向 到 由 或 但 又 还 已 已经 再 更 很 会 要 能 有 没有 不
    没 个 些 次 着 过 地 得 所 该 此 我们 他们 她们 它们 你们 我 你 他 她
    它 称 表示 说 据 日 月 年 今天 昨天 明天 举行 进行 一个
"""))
RU_STOPWORDS = frozenset(_split("""
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по
    только ее её мне было вот от меня еще ещё нет о об из ему теперь когда даже ну ли
    если уже или ни быть был была были него до вас нибудь опять уж вам ведь там потом
    себя ничего ей может они тут где есть надо ней для мы тебя их чем сам чтобы без
    будто чего раз тоже себе под будет ж тогда кто этот того потому этого какой совсем
    ним здесь этом один почти мой тем нее сейчас куда зачем всех никогда можно при
    наконец два другой хоть после над больше тот через эти нас про всего них какая много
    разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя такой
    им более всегда конечно всю между это также заявил заявила сообщил сообщила сообщает
    сообщили году года день дня время
"""))
# Languages written in Cyrillic that lingua tells apart; those with a Snowball stemmer
# are stemmed, the others folded only.
_CYRILLIC_LANGUAGES = ("RUSSIAN", "UKRAINIAN", "BELARUSIAN", "BULGARIAN", "SERBIAN",
                       "MACEDONIAN", "KAZAKH", "MONGOLIAN")
_SNOWBALL = {"ru": "russian", "sr": "serbian"}
_SURE = 0.9
# jieba's tags for names: of people (nr), places (ns), organisations (nt).
_NAME_TAGS = ("nr", "ns", "nt")


def needs(text: str) -> bool:
    """Whether ``text`` holds Chinese or Cyrillic letters (and so is read here)."""
    return not text.isascii() and _HAN_OR_CYRILLIC.search(text) is not None


def has_han(text: str) -> bool:
    return bool(_HAN.search(text))


@lru_cache(maxsize=1)
def _detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    langs = [getattr(Language, name) for name in _CYRILLIC_LANGUAGES]
    # Low-accuracy mode: trigram models only, about 20 MB; the full models take
    # about 250 MB, too much for a small machine, for little gain on headlines.
    return LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build()


@lru_cache(maxsize=4096)
def cyrillic_language(text: str) -> str:
    """ISO 639-1 code of a Cyrillic-script text's language; Russian when unsure.

    Russian is by far the most written of them, and a headline is short: lingua's
    first guess for "Визит Путина в Китай" is Kazakh (0.52). Another language is
    taken only when lingua is sure of it, so that a title and the items it should
    match are not stemmed two ways."""
    ranked = _detector().compute_language_confidence_values(text)
    if not ranked or ranked[0].value < _SURE:
        return "ru"
    return str(ranked[0].language.iso_code_639_1.name).lower()


@lru_cache(maxsize=8)
def _stemmer(algorithm: str) -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer(algorithm)


@lru_cache(maxsize=65536)
def cyrillic_word(word: str, lang: str) -> str:
    """A Cyrillic word in its matching form: lower case, ё as е, stemmed where Snowball
    has the language. Accents are not stripped: й is not и to a Russian stemmer."""
    low = word.casefold().replace("ё", "е")
    algorithm = _SNOWBALL.get(lang)
    if algorithm is None:
        return low
    stem: str = _stemmer(algorithm).stemWord(low)
    return stem or low


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import jieba

    # jieba reports its dictionary loading at INFO on its own logger; that is not news.
    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment(run: str) -> list[tuple[str, int, int]]:
    """Chinese text as words: (word, start, end) within ``run``; punctuation dropped."""
    return [(w, s, e) for w, s, e in _jieba().tokenize(run) if _WORDISH.search(w)]


def han_names(text: str) -> frozenset[str]:
    """The words of a Chinese title that jieba's tagger reads as names of people, places
    or organisations: a Chinese title's anchors, as capitals are an English one's. The
    tagger often takes a person for a place (普京 as a place), so the kind is not kept."""
    import jieba.posseg

    _jieba()
    return frozenset(p.word for p in jieba.posseg.cut(text)
                     if p.flag.startswith(_NAME_TAGS) and _HAN.search(p.word))


def words(text: str, english: Callable[[str], str]) -> list[tuple[str, str, int, int]]:
    """The words of a Chinese or Cyrillic text: (as written, matching form, start, end).

    ``english(word)`` gives the matching form of a Latin-script word within such a
    text (the English reader's own). Chinese runs are segmented; Cyrillic words are
    stemmed for their text's language.
    """
    lang = cyrillic_language(text) if _CYRILLIC.search(text) else "en"
    out: list[tuple[str, str, int, int]] = []
    for m in _WORD.finditer(text):
        word, start = m.group(), m.start()
        if _HAN.search(word):
            for seg, s, e in segment(word):
                low = seg if _HAN.search(seg) else english(seg)
                out.append((seg, low, start + s, start + e))
        elif _CYRILLIC.search(word):
            out.append((word, cyrillic_word(word, lang), start, m.end()))
        else:
            out.append((word, english(word), start, m.end()))
    return out


# Stopwords are looked up as written and as stemmed (a title's words are stems). The
# stems are written out, not computed at import: Snowball's package imports all of its
# 30 languages, about 4 MB in every process that reads text (the bot and each parse
# worker), most of which never meet a Cyrillic word. test_languages checks that they
# are the Snowball stems of RU_STOPWORDS.
RU_STOPWORD_STEMS = frozenset(_split("""
    бол больш будт быт вед впроч врем всег всегд год даж ден друг е ег ем есл ест ещ
    зач заяв зде ил иногд когд конечн куд лучш межд мен мног мо можн нег нельз нибуд
    никогд нич опя посл пот почт разв сво себ совс сообщ сообща такж теб тепер тог тогд
    тож тольк хорош хот чег чтоб чут эт
"""))

STOPWORDS: frozenset[str] = ZH_STOPWORDS | RU_STOPWORDS | RU_STOPWORD_STEMS
