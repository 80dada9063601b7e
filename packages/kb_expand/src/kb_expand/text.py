"""Word normalisation and filtering shared by every source: what counts as an acceptable label word.

A label word is lower-case, made of 1-3 alphabetic tokens (hyphens and apostrophes allowed inside a token),
not a stop word, not the label itself, and not a plural/singular duplicate of a word already kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each etc few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just let me more most my myself no
    nor not now of off on once one only or other ought our ours ourselves out over own same she should so some
    such than that the their theirs them themselves then there these they this those through to too under until
    up upon us very via was we were what when where which while who whom why will with within without would you
    your yours yourself yourselves something someone anything thing things kind sort type lot lots way ways
    many much every another else eg ie etc also even""".split()
)

_TOKEN = re.compile(r"^[a-z]+(?:[-'][a-z]+)*$")

# Irregular plurals that suffix rules get wrong (WordNet's noun.exc has the full list; these cover label words).
_IRREGULAR = {
    "men": "man",
    "women": "woman",
    "people": "person",
    "children": "child",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
    "oxen": "ox",
    "policemen": "policeman",
    "data": "datum",
    "species": "species",
    "series": "series",
    "news": "news",
    "glasses": "glasses",
    "jeans": "jeans",
    "pants": "pants",
    "shorts": "shorts",
    "sheep": "sheep",
    "fish": "fish",
    "deer": "deer",
    "bus": "bus",
    "gas": "gas",
    "lens": "lens",
    "grass": "grass",
    "boss": "boss",
    "glass": "glass",
    "buses": "bus",
    "lenses": "lens",
    "leaves": "leaf",
    "wolves": "wolf",
    "knives": "knife",
    "wives": "wife",
    "lives": "life",
    "shelves": "shelf",
    "halves": "half",
    "calves": "calf",
    "thieves": "thief",
    "movies": "movie",
    "cookies": "cookie",
    "ties": "tie",
    "pies": "pie",
    "shoes": "shoe",
    "toes": "toe",
    "horses": "horse",
    "houses": "house",
    "vases": "vase",
    "cases": "case",
    "bases": "base",
    "phones": "phone",
    "planes": "plane",
}
_NO_STRIP = ("ss", "us", "is", "ous", "ics")


def normalize(word: str) -> str:
    """Lower-case, '_' -> ' ', collapse whitespace: 'Police_Officer ' -> 'police officer'."""
    return " ".join(word.replace("_", " ").lower().split())


def singular(word: str) -> str:
    """Singular form of the last token, by irregular table and suffix rules ('cars' -> 'car', 'men' -> 'man')."""
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        last = _IRREGULAR[last]
    elif len(last) > 3 and not last.endswith(_NO_STRIP):
        if last.endswith("ies") and len(last) > 4:
            last = last[:-3] + "y"
        elif last.endswith(("ches", "shes", "xes", "sses", "zes")):
            last = last[:-2]
        elif last.endswith("s"):
            last = last[:-1]
    return f"{head} {last}" if head else last


def dedup_key(word: str) -> str:
    """Key under which two spellings count as the same word ('Cars', 'car', 'car-s' stay distinct only by key)."""
    return singular(normalize(word)).replace("-", " ")


def acceptable(word: str, max_tokens: int = 3) -> bool:
    """True for a normalised word that can be a label word: 1..max_tokens alphabetic tokens, not stop words."""
    tokens = word.split(" ")
    if not word or len(tokens) > max_tokens:
        return False
    if not all(_TOKEN.match(t) for t in tokens):
        return False
    if tokens[0] in STOP_WORDS or tokens[-1] in STOP_WORDS:
        return False
    if len(tokens) == 1 and len(word) < 3:
        return False
    return True


def content_tokens(phrase: str) -> list[str]:
    """Tokens of a phrase without stop words: 'work of art' -> ['work', 'art']."""
    return [t for t in normalize(phrase).split(" ") if t and t not in STOP_WORDS]


def excluded_keys(label: str, extra: Iterable[str] = ()) -> set[str]:
    """Dedup keys a label's own words must avoid: the label and its content tokens ('work of art' -> work, art)."""
    keys = {dedup_key(label)}
    keys.update(dedup_key(t) for t in content_tokens(label) if len(content_tokens(label)) == 1)
    keys.update(dedup_key(w) for w in extra)
    return keys
