"""WordNet 3.0 through NLTK: locating (or assembling) the data, and the `wordnet` source.

Data: NLTK's normal data path (corpora/wordnet); else a copy assembled from Debian's /usr/share/wordnet
(or $KBX_WORDNET_DIR) into $CATMNER_HOME/nltk_data/corpora/wordnet with the `lexnames` file Debian lacks.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from ..errors import SourceUnavailable
from ..paths import catmner_home
from .base import Candidate, Source, finalize

# The 45 lexicographer files, numbered 0-44, as listed in lexnames(5WN); third column = syntactic category.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception "
    "verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
WORDNET_FILES = (
    "cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb", "data.adj", "data.adv",
    "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)  # fmt: skip
DEBIAN_DIRS = ("/usr/share/wordnet",)


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def assemble_wordnet(src: str | Path, nltk_home: str | Path) -> Path:
    """Copy a WordNet 3.0 dict dir (Debian layout) into <nltk_home>/corpora/wordnet with a lexnames file.

    Real copies (NLTK refuses symlinks out of its root); built in a temp dir and renamed into place.
    """
    src = Path(src)
    target = Path(nltk_home) / "corpora" / "wordnet"
    missing = [f for f in WORDNET_FILES if not (src / f).is_file()]
    if missing:
        raise SourceUnavailable(f"{src}: not a WordNet 3.0 directory (missing {', '.join(missing)})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for f in WORDNET_FILES:
            shutil.copyfile(src / f, tmp / f)
        (tmp / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        (tmp / "LICENSE").write_text(
            f"WordNet 3.0 Copyright 2006 by Princeton University (copied from {src})\n"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _debian_dir() -> Path | None:
    for d in [os.environ.get("KBX_WORDNET_DIR"), *DEBIAN_DIRS]:
        if d and (Path(d) / "data.noun").is_file():
            return Path(d)
    return None


def _index_cache(root, name: str, compute, result, decode=lambda value: value):
    """JSON of a parsed WordNet index under $CATMNER_HOME/cache, keyed by the data files' sizes and mtimes
    (NLTK's line-by-line parse of index.* is most of a warm build's start-up). JSON, not pickle: a cache
    file is data, never code. `decode` turns the JSON value back into what NLTK expects (e.g. a set)."""
    import hashlib
    import json

    root = Path(str(root))
    stamp = "|".join(
        f"{f}:{(root / f).stat().st_size}:{(root / f).stat().st_mtime_ns}"
        for f in WORDNET_FILES
        if (root / f).exists()
    )
    key = hashlib.sha256(f"{root}|{stamp}".encode()).hexdigest()[:16]
    path = catmner_home() / "cache" / f"wordnet-{name}-{key}.json"
    if path.is_file():
        try:
            return decode(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            pass  # a damaged cache is recomputed
    compute()
    value = result()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(value, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs the next start-up a re-parse
    return decode(value)


def _reader_class():
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):
        """NLTK's reader minus two slow paths we do not need (about 2/3 of a warm build's time):
        the OMW version map built at start-up (it re-reads index.sense twice; OMW is not used), and a binary
        search in cntlist.rev for every Lemma.count() (the file is read into a dict once instead)."""

        def map_wn(self, version="wordnet"):
            return None

        def _scan_satellites(self):
            cached = _index_cache(
                self.root, "satellites", super()._scan_satellites, lambda: sorted(self.satellite_offsets), set
            )
            self.satellite_offsets = cached

        def _load_lemma_pos_offset_map(self):
            def parse():
                super(EnglishWordNet, self)._load_lemma_pos_offset_map()

            cached = _index_cache(
                self.root, "lemma_pos_offset_map", parse, lambda: dict(self._lemma_pos_offset_map)
            )
            self._lemma_pos_offset_map.update(cached)

        def lemma_count(self, lemma):
            if lemma._lang != "eng":
                return 0
            if getattr(self, "_counts", None) is None:
                counts: dict[str, int] = {}
                with self.open("cntlist.rev") as fp:
                    for line in fp:
                        parts = line.split()
                        if len(parts) == 3:
                            counts[parts[0]] = int(parts[2])
                self._counts = counts
            return self._counts.get(lemma._key, 0)

    return EnglishWordNet


@lru_cache(maxsize=1)
def load_wordnet():
    """A WordNetCorpusReader (cached). Raises SourceUnavailable when no WordNet data can be found."""
    import nltk

    nltk_home = catmner_home() / "nltk_data"
    if str(nltk_home) not in nltk.data.path:
        nltk.data.path.append(str(nltk_home))
    root = None
    try:
        root = nltk.data.find("corpora/wordnet")
    except LookupError:
        src = _debian_dir()
        if src is None:
            raise SourceUnavailable(
                "WordNet data not found: run `python -m nltk.downloader wordnet`, or install the Debian packages "
                "wordnet-base wordnet-sense-index (or set KBX_WORDNET_DIR to a WordNet dict directory)"
            ) from None
        root = str(assemble_wordnet(src, nltk_home))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _reader_class()(root, None)
        except (OSError, AssertionError, ValueError) as e:
            raise SourceUnavailable(f"{root}: unreadable WordNet data ({e})") from e


def wordnet_root() -> str:
    wn = load_wordnet()
    return str(wn.root)


def is_noun(word: str) -> bool:
    """True when WordNet knows `word` (or its base form) as a noun; multiword as 'police_officer'."""
    wn = load_wordnet()
    return bool(wn.synsets(word.replace(" ", "_"), pos="n"))


def noun_filter() -> tuple[Callable[[str], bool] | None, str | None]:
    """(`is_mainly_noun`, None) when WordNet is available, else (None, why not)."""
    try:
        load_wordnet()
    except SourceUnavailable as e:
        return None, str(e)
    return is_mainly_noun, None


class WordNetSource(Source):
    """Synonyms, hyponyms (2 levels), hypernyms and derivations of each seed's first noun sense.

    score = relation weight x seed weight x (1 + ln(1 + lemma count)): tagged-corpus lemma counts
    (cntlist) make common words ("worker", "child") outrank rare ones ("abecedarian"). A lemma reached
    through a sense that is not what the word usually means is dropped: its share of the word's tagged noun
    uses (`sense_share`) must be at least `min_sense_share` ("defense" is not mainly a sports team, "unit" not
    mainly an organization).
    """

    name = "wordnet"
    RELATION_WEIGHTS = {"synonym": 1.0, "hyponym": 0.9, "hyponym2": 0.6, "hypernym": 0.5, "derivation": 0.3}

    def __init__(
        self, senses_per_seed: int = 1, multiword_penalty: float = 0.6, min_sense_share: float = 0.25
    ):
        self.senses_per_seed = senses_per_seed  # noun senses (most frequent first) taken per seed
        self.multiword_penalty = multiword_penalty  # score factor for 'police officer'-style compounds
        self.min_sense_share = (
            min_sense_share  # least share of the word's noun uses the reached sense must have
        )
        self.wn = load_wordnet()

    def params(self) -> dict:
        return {"senses_per_seed": self.senses_per_seed, "multiword_penalty": self.multiword_penalty,
                "min_sense_share": self.min_sense_share}  # fmt: skip

    def inputs(self) -> dict:
        return {"wordnet": str(Path(str(self.wn.root)) / "data.noun")}  # checksummed by the build

    def _lemmas(self, synset, relation: str, path: str, seed_weight: float, out: list[Candidate]) -> None:
        for lemma in synset.lemmas():
            name = lemma.name()
            if name[:1].isupper():  # proper nouns (instances) are not label words
                continue
            share = sense_share(name, synset)
            if share < self.min_sense_share:  # the word mostly means something else
                continue
            count = lemma.count()
            score = self.RELATION_WEIGHTS[relation] * seed_weight * (1.0 + math.log1p(count))
            if "_" in name:
                score *= self.multiword_penalty
            out.append(
                Candidate(
                    name,
                    score,
                    {
                        "relation": relation,
                        "path": path,
                        "synset": synset.name(),
                        "count": count,
                        "sense_share": round(share, 3),
                    },
                )  # fmt: skip
            )

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        out: list[Candidate] = []
        for j, seed in enumerate(seeds):
            seed_weight = 1.0 if j == 0 else 0.8
            for s in self.wn.synsets(seed.replace(" ", "_"), pos="n")[: self.senses_per_seed]:
                self._lemmas(s, "synonym", s.name(), seed_weight, out)
                # NLTK keeps a synset's pointers in a set: its hyponyms()/hypernyms() order follows
                # PYTHONHASHSEED, so every relation is walked in name order
                for h in _by_name(s.hyponyms()):
                    self._lemmas(h, "hyponym", f"{s.name()} > {h.name()}", seed_weight, out)
                    for h2 in _by_name(h.hyponyms()):
                        self._lemmas(
                            h2, "hyponym2", f"{s.name()} > {h.name()} > {h2.name()}", seed_weight, out
                        )
                for h in _by_name(s.hypernyms()):
                    self._lemmas(h, "hypernym", f"{s.name()} < {h.name()}", seed_weight, out)
                for lemma in s.lemmas():
                    for d in sorted(
                        lemma.derivationally_related_forms(), key=lambda d: (d.synset().name(), d.name())
                    ):
                        if d.synset().pos() == "n":
                            self._lemmas(
                                d.synset(), "derivation", f"{lemma.name()} ~ {d.name()}", seed_weight, out
                            )
        return finalize(out, label, k, max_tokens=2)


def _by_name(synsets) -> list:
    """Synsets in name order (NLTK returns related synsets in set order, which varies with the hash seed)."""
    return sorted(synsets, key=lambda s: s.name())


@lru_cache(maxsize=65536)
def is_mainly_noun(word: str) -> bool:
    """True when WordNet's most frequent use of `word` is a noun (tagged lemma counts per part of speech).

    Filters adjectives and verbs that embeddings and ConceptNet return ("young", "using", "know"); a word
    unknown to WordNet, or a multiword, only needs to be a WordNet noun at all.
    """
    wn = load_wordnet()
    key = word.replace(" ", "_").lower()
    counts = {}
    for pos in ("n", "v", "a", "r"):
        forms = {key, *wn._morphy(key, pos)}  # "using" -> "use" (v); "cars" -> "car" (n)
        counts[pos] = sum(
            lemma.count()
            for syn in wn.synsets(key, pos=pos)
            for lemma in syn.lemmas()
            if lemma.name().lower() in forms
        )
    if not wn.synsets(key, pos="n"):
        return False
    return counts["n"] >= max(counts["v"], counts["a"], counts["r"])


# -- word senses, for ranking (every source that judges words by WordNet uses these) ----------------------

# Lexicographer files of senses nobody can point at or photograph: a word whose noun uses mostly fall in them
# is abstract ("part", "status", "management"). noun.Tops, noun.phenomenon and noun.process are not listed:
# their senses are concrete as often as not (food, animal; light, snow).
ABSTRACT_LEXNAMES = frozenset(
    "noun.act noun.attribute noun.cognition noun.event noun.feeling noun.motive noun.possession noun.quantity "
    "noun.relation noun.shape noun.state noun.time".split()
)


@lru_cache(maxsize=65536)
def noun_senses(word: str) -> tuple[tuple[object, float], ...]:
    """(synset, share) of every noun sense of `word`, in WordNet's order (most frequent first); share is the
    sense's part of the word's tagged uses (cntlist counts, plus 1/(rank + 2) so untagged senses keep their
    order), summing to 1. Empty when WordNet has no noun `word`."""
    wn = load_wordnet()
    key = word.replace(" ", "_").lower()
    synsets = wn.synsets(key, pos="n")
    counts = [
        sum(lemma.count() for lemma in s.lemmas() if lemma.name().lower() == key) + 1.0 / (rank + 2)
        for rank, s in enumerate(synsets)
    ]
    total = sum(counts)
    return tuple((s, c / total) for s, c in zip(synsets, counts, strict=True))


def sense_share(word: str, synset) -> float:
    """Share of `word`'s noun uses that mean `synset` (1.0 when WordNet does not know the word as a noun)."""
    senses = noun_senses(word)
    return next((p for s, p in senses if s == synset), 0.0) if senses else 1.0


def abstractness(word: str) -> float:
    """Share of `word`'s noun uses whose sense is abstract (ABSTRACT_LEXNAMES); 0.0 for unknown words."""
    return sum(p for s, p in noun_senses(word) if s.lexname() in ABSTRACT_LEXNAMES)


def label_senses(seeds: Sequence[str]) -> tuple:
    """The senses a label means: each seed's first noun sense, plus its 2nd/3rd senses that lie in the
    lexicographer file most of the seeds' first senses share ("holiday": vacation.n.01 and holiday.n.02, a
    day; "country": state.n.04 and country.n.02, a territory)."""
    wn = load_wordnet()
    per_seed = [wn.synsets(seed.replace(" ", "_"), pos="n")[:3] for seed in seeds]
    files: dict[str, int] = {}
    for senses in per_seed:
        if senses and senses[0].lexname() != "noun.Tops":
            files[senses[0].lexname()] = files.get(senses[0].lexname(), 0) + 1
    main = max(sorted(files), key=lambda f: files[f]) if files else None
    out: dict = {}
    for senses in per_seed:
        for rank, s in enumerate(senses):
            if rank == 0 or s.lexname() == main:
                out.setdefault(s, None)
    return tuple(out)


@lru_cache(maxsize=65536)
def _ancestors(synset) -> frozenset:
    return frozenset({synset, *synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())})


def sense_under(synset, senses: Sequence) -> object | None:
    """The first of `senses` that `synset` is, or is a kind or instance of (any depth); None if none."""
    ancestors = _ancestors(synset)
    return next((s for s in senses if s in ancestors), None)
