"""Text processing shared by profiles, the matcher, seeding and near-duplicate collapse.

Everything here is pure and deterministic: text in, tokens out. The resources
are deliberately generic (English function words, job titles, country
demonyms) so that nothing depends on any particular data set.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache


def word_list(text: str) -> list[str]:
    """Whitespace-separated words of a resource string (keeps word lists readable)."""
    return text.split()


# English function words and reporting verbs that carry no topical signal.
STOPWORDS: frozenset[str] = frozenset(
    word_list(
    """
    a about above after again against all almost also although always am among an and another
    any are aren around as at back be became because become been before being below between
    both but by can cannot could did didn do does doesn doing don down during each either else
    ever every few for from further get gets got had has hasn have having he her here hers
    herself him himself his how however i if in into is isn it its itself just least less like
    made make many may me might more most much must my myself near nearly neither never new
    no nor not now of off often on once one only onto or other others our ours ourselves out
    over own per rather said same say says see seen she should since so some still such than
    that the their theirs them themselves then there these they this those though through thus
    to too toward towards under until up upon us very via was wasn we were weren what when
    where whether which while who whom whose why will with within without would yet you your
    yours yourself yourselves s t ll ve re d m amid according week weeks today yesterday
    tomorrow day days year years month months time times first last two three four five six
    seven eight nine ten several including include includes included announce announced
    announces report reports reported reportedly claim claims claimed take takes
    taken told tell tells amp
    monday tuesday wednesday thursday friday saturday sunday
    """)
)

# Generic titles and roles: they name the *kind* of person, not the person, so
# they are weak evidence alone but make role aliases ("Russian president").
TITLE_WORDS: frozenset[str] = frozenset(
    word_list(
    """
    president vice prime minister foreign defence defense interior finance secretary general
    chancellor king queen prince princess sheikh emir pope cardinal archbishop bishop
    chairman chairwoman chair ceo chief executive director head leader spokesman spokeswoman
    spokesperson ambassador envoy governor mayor senator congressman congresswoman
    representative judge justice commander minister's premier deputy assistant adviser advisor
    officer official general colonel lieutenant major captain admiral sergeant dr mr mrs ms
    miss sir lord lady founder owner coach manager state security council foreign ministry
    """)
)

# Country and region names with their demonyms/adjectives. Mapping both to one
# canonical token makes "Russian" match "Russia" and "Chinese" match "China".
_DEMONYMS: dict[str, tuple[str, ...]] = {
    "afghanistan": ("afghan", "afghans", "afghani"),
    "albania": ("albanian", "albanians"),
    "algeria": ("algerian", "algerians"),
    "america": ("american", "americans"),
    "argentina": ("argentine", "argentinian", "argentinians", "argentines"),
    "armenia": ("armenian", "armenians"),
    "australia": ("australian", "australians", "aussie"),
    "austria": ("austrian", "austrians"),
    "azerbaijan": ("azerbaijani", "azeri", "azeris", "azerbaijanis"),
    "bahrain": ("bahraini", "bahrainis"),
    "bangladesh": ("bangladeshi", "bangladeshis"),
    "belarus": ("belarusian", "belarussian", "belarusians"),
    "belgium": ("belgian", "belgians"),
    "bolivia": ("bolivian", "bolivians"),
    "bosnia": ("bosnian", "bosnians"),
    "brazil": ("brazilian", "brazilians"),
    "britain": ("british", "briton", "britons", "uk"),
    "bulgaria": ("bulgarian", "bulgarians"),
    "burkina": ("burkinabe", "burkinabes"),
    "burma": ("burmese",),
    "cambodia": ("cambodian", "cambodians"),
    "cameroon": ("cameroonian", "cameroonians"),
    "canada": ("canadian", "canadians"),
    "chile": ("chilean", "chileans"),
    "china": ("chinese", "prc"),
    "colombia": ("colombian", "colombians"),
    "congo": ("congolese",),
    "croatia": ("croatian", "croatians", "croat", "croats"),
    "cuba": ("cuban", "cubans"),
    "cyprus": ("cypriot", "cypriots"),
    "czech": ("czechs", "czechia"),
    "denmark": ("danish", "dane", "danes"),
    "ecuador": ("ecuadorian", "ecuadorians"),
    "egypt": ("egyptian", "egyptians"),
    "emirates": ("emirati", "emiratis", "uae"),
    "england": ("english",),
    "eritrea": ("eritrean", "eritreans"),
    "estonia": ("estonian", "estonians"),
    "ethiopia": ("ethiopian", "ethiopians"),
    "europe": ("european", "europeans"),
    "finland": ("finnish", "finn", "finns"),
    "france": ("french",),
    "georgia": ("georgian", "georgians"),
    "germany": ("german", "germans"),
    "ghana": ("ghanaian", "ghanaians"),
    "greece": ("greek", "greeks"),
    "guatemala": ("guatemalan", "guatemalans"),
    "haiti": ("haitian", "haitians"),
    "hungary": ("hungarian", "hungarians"),
    "iceland": ("icelandic", "icelander", "icelanders"),
    "india": ("indian", "indians"),
    "indonesia": ("indonesian", "indonesians"),
    "iran": ("iranian", "iranians"),
    "iraq": ("iraqi", "iraqis"),
    "ireland": ("irish",),
    "israel": ("israeli", "israelis"),
    "italy": ("italian", "italians"),
    "japan": ("japanese",),
    "jordan": ("jordanian", "jordanians"),
    "kazakhstan": ("kazakh", "kazakhs"),
    "kenya": ("kenyan", "kenyans"),
    "korea": ("korean", "koreans"),
    "kosovo": ("kosovar", "kosovars"),
    "kurdistan": ("kurdish", "kurd", "kurds"),
    "kuwait": ("kuwaiti", "kuwaitis"),
    "latvia": ("latvian", "latvians"),
    "lebanon": ("lebanese",),
    "libya": ("libyan", "libyans"),
    "lithuania": ("lithuanian", "lithuanians"),
    "macedonia": ("macedonian", "macedonians"),
    "malaysia": ("malaysian", "malaysians"),
    "mali": ("malian", "malians"),
    "mexico": ("mexican", "mexicans"),
    "moldova": ("moldovan", "moldovans"),
    "mongolia": ("mongolian", "mongolians"),
    "morocco": ("moroccan", "moroccans"),
    "myanmar": ("myanmarese",),
    "nepal": ("nepalese", "nepali"),
    "netherlands": ("dutch",),
    "nigeria": ("nigerian", "nigerians"),
    "norway": ("norwegian", "norwegians"),
    "oman": ("omani", "omanis"),
    "pakistan": ("pakistani", "pakistanis"),
    "palestine": ("palestinian", "palestinians"),
    "peru": ("peruvian", "peruvians"),
    "philippines": ("filipino", "filipinos", "philippine"),
    "poland": ("polish", "pole", "poles"),
    "portugal": ("portuguese",),
    "qatar": ("qatari", "qataris"),
    "romania": ("romanian", "romanians"),
    "russia": ("russian", "russians"),
    "rwanda": ("rwandan", "rwandans"),
    "arabia": ("arabian",),
    "scotland": ("scottish", "scots"),
    "senegal": ("senegalese",),
    "serbia": ("serbian", "serbians", "serb", "serbs"),
    "singapore": ("singaporean", "singaporeans"),
    "slovakia": ("slovak", "slovaks"),
    "slovenia": ("slovenian", "slovenians", "slovene"),
    "somalia": ("somali", "somalis"),
    "spain": ("spanish", "spaniard", "spaniards"),
    "sudan": ("sudanese",),
    "sweden": ("swedish", "swede", "swedes"),
    "switzerland": ("swiss",),
    "syria": ("syrian", "syrians"),
    "taiwan": ("taiwanese",),
    "tajikistan": ("tajik", "tajiks"),
    "tanzania": ("tanzanian", "tanzanians"),
    "thailand": ("thai", "thais"),
    "tunisia": ("tunisian", "tunisians"),
    "turkey": ("turkish", "turk", "turks"),
    "uganda": ("ugandan", "ugandans"),
    "ukraine": ("ukrainian", "ukrainians"),
    "uzbekistan": ("uzbek", "uzbeks"),
    "venezuela": ("venezuelan", "venezuelans"),
    "vietnam": ("vietnamese",),
    "wales": ("welsh",),
    "yemen": ("yemeni", "yemenis"),
    "zimbabwe": ("zimbabwean", "zimbabweans"),
}

DEMONYM_TO_PLACE: dict[str, str] = {
    demonym: place for place, demonyms in _DEMONYMS.items() for demonym in demonyms
}
PLACE_TO_DEMONYM: dict[str, str] = {
    place: demonyms[0] for place, demonyms in _DEMONYMS.items() if demonyms
}

_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_YEAR_RE = re.compile(r"^(1[89]|20)\d\d$")


def fold(text: str) -> str:
    """Lower-case and strip accents: "Diendéré" and "Diendere" become one spelling."""
    if text.isascii():
        return text.casefold()  # nothing to strip: the common case, and much faster
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light, predictable stemmer: possessives and plurals only.

    Heavier stemmers merge unrelated words ("general"/"generate"); fuzzy
    matching in the matcher covers the remaining inflections.
    """
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    elif word.endswith(("'", "’")):
        word = word[:-1]
    word = word.replace("’", "'")
    if word in DEMONYM_TO_PLACE:
        return DEMONYM_TO_PLACE[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        word = word[:-1]
    return DEMONYM_TO_PLACE.get(word, word)


def is_year(tok: str) -> bool:
    """Whether a token is a year (1800-2099): kept as a token, but it dates, not topics."""
    return bool(_YEAR_RE.match(tok))


def words(text: str) -> list[str]:
    """The words of ``text`` in order, case kept (for entity detection)."""
    return _WORD_RE.findall(text)


def tokens(text: str) -> list[str]:
    """Content tokens of ``text`` in order: folded, stemmed, stopwords and numbers dropped.

    Years are kept: "2015 wildfires" and "2023 forum" are useful anchors.
    """
    out: list[str] = []
    for raw in _WORD_RE.findall(fold(text)):
        if raw in STOPWORDS:
            continue
        if raw.isdigit() and not _YEAR_RE.match(raw):
            continue
        tok = stem(raw)
        if len(tok) < 2 or tok in STOPWORDS:
            continue
        out.append(tok)
    return out


def sentences(text: str) -> list[str]:
    """Split text into sentences on terminal punctuation and blank lines."""
    return [s.strip() for s in _SENTENCE_RE.split(text) if s.strip()]


@dataclass(frozen=True, slots=True)
class Span:
    """A run of capitalised words: a candidate name ("Chinese Foreign Minister Wang Yi")."""

    text: str
    words: tuple[str, ...]
    sentence_start: bool


_CONNECTORS = frozenset({"of", "the", "and", "de", "del", "al", "bin", "von", "van", "la", "le"})


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() or (len(word) > 1 and word.isupper())


def capitalised_spans(text: str) -> list[Span]:
    """Runs of capitalised words, allowing inner connectors ("Bank of England").

    Punctuation other than spaces and hyphens ends a run ("Yuri Ushakov,
    Russia's ..." gives two). Possessives are dropped ("Putin's" -> "Putin").
    Sentence-initial function words ("The") are not part of a name; other
    sentence-initial spans are kept but flagged, since their first word may be
    capitalised only by position.
    """
    spans: list[Span] = []
    for sentence in sentences(text):
        matches = list(_WORD_RE.finditer(sentence))
        ws = [re.sub(r"['’]s?$", "", m.group(0)) or m.group(0) for m in matches]
        # breaks[j]: punctuation between word j-1 and word j ends a name.
        breaks = [True] + [
            bool(sentence[matches[j - 1].end() : matches[j].start()].strip(" -–"))
            or matches[j - 1].group(0).endswith(("'s", "’s"))
            for j in range(1, len(matches))
        ]
        i = 0
        while i < len(ws):
            if not _is_capitalised(ws[i]):
                i += 1
                continue
            j = i + 1
            while j < len(ws) and not breaks[j]:
                if _is_capitalised(ws[j]):
                    j += 1
                elif (
                    ws[j].lower() in _CONNECTORS
                    and j + 1 < len(ws)
                    and not breaks[j + 1]
                    and _is_capitalised(ws[j + 1])
                ):
                    j += 2
                else:
                    break
            run = ws[i:j]
            start = i == 0
            while run and fold(run[0]) in STOPWORDS:
                run = run[1:]
                start = False
            while run and fold(run[-1]) in _CONNECTORS:
                run = run[:-1]
            if run:
                spans.append(Span(" ".join(run), tuple(run), start))
            i = j
    return spans


def is_title_word(word: str) -> bool:
    """Whether ``word`` is a generic role word ("president", "minister")."""
    return fold(word) in TITLE_WORDS


def is_demonym_or_place(word: str) -> bool:
    """Whether ``word`` names a country/region or its people ("Russian", "China")."""
    w = fold(word)
    return w in DEMONYM_TO_PLACE or w in PLACE_TO_DEMONYM


def normalise_for_compare(text: str) -> str:
    """Text reduced to its content tokens joined by spaces, for rapidfuzz comparisons."""
    return " ".join(tokens(text))
