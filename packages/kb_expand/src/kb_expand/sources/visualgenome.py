"""Visual Genome (the paper's multimodal KB): the `visualgenome` source, over the object co-occurrence graph
that `vg_graph.py` reads from VG's relationships / scene graphs (nodes = object names, edges weighted by the
relationships connecting them). Per label (see VisualGenomeSource): seeds = up to 5 object names that
WordNet files as kinds of the label or that are related to it (in the sense the pictures use the name in),
then neighbours = the other names most associated with the seeds in the scene graphs (normalised PMI, so
objects that are in every picture - window, tree, shirt - do not fill every label); fewer words when no
other name passes the thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, KbxError, SourceUnavailable
from ..text import STOP_WORDS, acceptable, dedup_key, excluded_keys
from .base import Candidate, Source, SourceContext
from .embeddings import load_vectors, phrase_vector, vectors_id
from .vg_graph import build_graph

# Lexicographer files of things a picture shows as a whole: a label whose own first sense (or its first seed's)
# lies in one of them names a kind of object, and VG names whose visible sense is a kind of it are its members.
CONCRETE_LEXNAMES = frozenset(
    "noun.person noun.animal noun.artifact noun.food noun.plant noun.object".split()
)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n else v


def _unit_rows(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(n == 0, 1.0, n)


def _concrete(synset) -> bool:
    """A sense that names a kind of object: in CONCRETE_LEXNAMES, or a top-level sense (noun.Tops: animal,
    person, location, event) most of whose direct kinds are (animal and person are; location and event not)."""
    if synset.lexname() in CONCRETE_LEXNAMES:
        return True
    if synset.lexname() != "noun.Tops":
        return False
    kinds = synset.hyponyms()
    return bool(kinds) and 2 * sum(h.lexname() in CONCRETE_LEXNAMES for h in kinds) > len(kinds)


class VisualGenomeSource(Source):
    """Seeds, then neighbours, as in the paper, with corrections for a 150-object vocabulary.

    visible sense of an object name: the WordNet noun sense the scene graphs use it in. Each non-abstract sense
    (the first 10) is a unit vector of its gloss, lemma, hypernym and hyponym words; the name's scene-graph
    context is the mean word vector of the names it is related to (weighted by positive PMI x sqrt(count)); the
    visible sense maximises cos(sense, context) + `sense_prior` x ln(share of the sense's tagged uses), so a
    rare sense must fit the pictures much better than the usual one ("board" -> a length of timber, not a
    committee; "branch" -> of a tree; "post" -> an upright; "table" -> furniture). Names mostly used in
    abstract senses (wordnet.ABSTRACT_LEXNAMES: "part", "number", "background") are never label words.
    relatedness of an object to a label: min(cos(name vector, q), cos(visible sense vector, q)) with q the
    label's query vector (label + mean of its seed terms): an object must be related both as a word and in the
    sense it has in the pictures (the min keeps "spot", "top", "track" away from team and event).
    members of a label: objects whose visible sense is a kind of the first noun sense of the label or of one of
    its seed terms, when that sense is concrete (`_concrete`: person, animal, vehicle, device; not location,
    organization, event or nationality, which WordNet files under place, group or abstract senses).
    seeds: up to `n_seeds` members with relatedness >= `min_member_relatedness`, then other objects with
      relatedness >= `min_seed_relatedness`, most related first.
    neighbours: objects connected to the seeds by at least `min_cooccurrences` relationships, with
      npmi(o; seeds) >= `min_npmi` and relatedness >= `min_neighbour_relatedness`, by npmi x relatedness,
      where npmi = ln(P(o, S) / (P(o) P(S))) / -ln P(o, S) with P(o, S) the share of relationships between o
      and the seeds and P(o), P(S) the shares of relationship ends at o and at the seeds: association
      normalised by how common each object is. Neighbours fill the label up to k words.
    A label gets fewer than k words when fewer objects pass these thresholds (nothing in the vocabulary is
    related enough): the build records the shortfall rather than filling slots with unrelated objects.
    Without WordNet data the abstract filter, senses and members are skipped (the build records it).
    Ties are broken by the object name.
    """

    name = "visualgenome"

    @classmethod
    def from_context(cls, ctx: SourceContext) -> VisualGenomeSource:
        if not ctx.cfg.vg:
            raise KbxError("--source visualgenome needs --vg PATH (relationships.json or scene_graphs.json)")
        return cls(ctx.cfg.vg, ctx.cfg.vectors, progress=ctx.cfg.progress, trust_pickle=ctx.cfg.trust_pickle)

    def __init__(
        self,
        vg: str | Path,
        vectors: str | Path | None = None,
        n_seeds: int = 5,
        n_neighbours: int = 5,
        progress: bool = False,
        trust_pickle: bool = False,
        min_cooccurrences: int = 3,
        min_seed_relatedness: float = 0.45,
        min_member_relatedness: float = 0.2,
        min_neighbour_relatedness: float = -0.2,
        min_npmi: float = 0.4,
        sense_prior: float = 0.06,
        abstract_margin: float = 0.08,
        min_via_relatedness: float = 0.6,
    ):
        self.trust_pickle = trust_pickle  # allow a gensim .kv vectors file (a pickle)
        self.vg = Path(vg)  # relationships.json / scene_graphs.json (.gz/.zip)
        self.vectors = vectors  # word vectors for label -> object similarity (None: GloVe 6B-50d)
        self.n_seeds = n_seeds  # objects most related to the label
        self.n_neighbours = n_neighbours  # objects most associated with those seeds
        self.progress = progress
        self.min_cooccurrences = min_cooccurrences  # relationships with the seeds a neighbour needs
        self.min_seed_relatedness = min_seed_relatedness  # a non-member seed's least relatedness
        self.min_member_relatedness = min_member_relatedness  # a member seed's least relatedness
        self.min_neighbour_relatedness = min_neighbour_relatedness  # a neighbour's least relatedness
        self.min_npmi = min_npmi  # a neighbour's least association with the seeds
        self.sense_prior = sense_prior  # weight of ln(sense share) when choosing the visible sense
        self.abstract_margin = abstract_margin  # how much better an abstract sense must fit to drop a name
        self.min_via_relatedness = min_via_relatedness  # a non-member seed neighbours are found through
        if not self.vg.is_file():
            raise InputError(self.vg, "Visual Genome file not found")
        self.graph = None
        self.n_relationships = 0
        self.wordnet = self._wordnet_root()  # WordNet data.noun used for senses, or None

    @staticmethod
    def _wordnet_root() -> str | None:
        from .wordnet import load_wordnet

        try:
            return str(Path(str(load_wordnet().root)) / "data.noun")
        except SourceUnavailable:
            return None

    def params(self) -> dict:
        return {"vg": str(self.vg), "vectors": vectors_id(self.vectors), "n_seeds": self.n_seeds,
                "n_neighbours": self.n_neighbours, "relationships": self.n_relationships,
                "objects": self.graph.number_of_nodes() if self.graph is not None else None,
                "min_cooccurrences": self.min_cooccurrences, "association": "npmi, relatedness >= min_neighbour_relatedness",
                "relatedness": "min(name cos, visible-sense cos)", "min_seed_relatedness": self.min_seed_relatedness,
                "min_member_relatedness": self.min_member_relatedness,
                "min_neighbour_relatedness": self.min_neighbour_relatedness, "min_npmi": self.min_npmi,
                "sense_prior": self.sense_prior, "abstract_margin": self.abstract_margin,
                "min_via_relatedness": self.min_via_relatedness, "wordnet_senses": self.wordnet is not None}  # fmt: skip

    def inputs(self) -> dict:
        out = {"visualgenome": str(self.vg), "vectors": vectors_id(self.vectors)}
        if self.wordnet is not None:
            out["wordnet"] = self.wordnet
        return out

    def prepare(self, labels) -> None:
        self.graph, self.n_relationships = build_graph(self.vg, self.progress)
        if self.n_relationships == 0:
            raise InputError(self.vg, "no usable relationship (each needs a subject and an object with a name): "
                             "empty or not Visual Genome relationships; nothing stored")  # fmt: skip
        kv = load_vectors(self.vectors, self.trust_pickle)
        self._kv = kv
        self._degree = {n: sum(d["weight"] for d in self.graph[n].values()) for n in sorted(self.graph.nodes)}
        self._edges = sum(self._degree.values()) / 2  # relationships between two different names
        names, vecs, senses, sense_vecs = [], [], [], []
        for name in sorted(self.graph.nodes):
            if not acceptable(name, 3):
                continue
            v = phrase_vector(kv, name)
            if v is None:
                continue
            sense, sv = self._visible_sense(name) if self.wordnet is not None else (None, None)
            if sense == "abstract":
                continue
            names.append(name)
            vecs.append(v)
            senses.append(sense)
            sense_vecs.append(sv if sv is not None else v)
        if not vecs:
            raise InputError(
                self.vg, "no object name has a word vector: nothing to expand from; nothing stored"
            )
        self._names = names  # objects that can be label words, sorted
        self._index = {n: i for i, n in enumerate(names)}
        self._matrix = np.stack(vecs)  # (N, D) unit word vectors
        self._sense_matrix = np.stack(sense_vecs)  # (N, D) unit vectors of the visible senses
        self._senses = senses  # each object's visible sense (a synset; None: none found)
        # relatedness is measured from the vocabulary's centre: averaged gloss vectors all lean the same way
        self._centres = (self._matrix.mean(axis=0), self._sense_matrix.mean(axis=0))
        self._centred = (
            _unit_rows(self._matrix - self._centres[0]),
            _unit_rows(self._sense_matrix - self._centres[1]),
        )

    def _context(self, name: str) -> np.ndarray | None:
        """Unit mean word vector of the names `name` is related to, weighted by positive PMI x sqrt(count)."""
        acc, d, e = None, self._degree, self._edges
        for other in sorted(self.graph[name]):
            w = self.graph[name][other]["weight"]
            if w < 2 or d[name] == 0 or d[other] == 0:
                continue
            pmi = math.log((w / e) / ((d[name] / (2 * e)) * (d[other] / (2 * e))))
            v = phrase_vector(self._kv, other)
            if pmi <= 0 or v is None:
                continue
            acc = pmi * math.sqrt(w) * v if acc is None else acc + pmi * math.sqrt(w) * v
        if acc is None or not np.linalg.norm(acc):
            return None
        return acc / float(np.linalg.norm(acc))

    def _sense_vector(self, synset, name: str) -> np.ndarray | None:
        import re

        words = [t for t in re.findall(r"[a-z]+", synset.definition().lower()) if t not in STOP_WORDS]
        related = [synset, *sorted(synset.hypernyms(), key=lambda s: s.name())]
        words += [t for s in related for w in s.lemma_names() for t in w.lower().split("_")]
        words += [t for h in sorted(synset.hyponyms(), key=lambda s: s.name()) for t in h.lemma_names()[0].lower().split("_")]  # fmt: skip
        vs = [self._kv.get_vector(w, norm=True) for w in words
              if w != name and w not in STOP_WORDS and w in self._kv.key_to_index]  # fmt: skip
        if not vs:
            return None
        v = np.mean(vs, axis=0)
        return v / float(np.linalg.norm(v))

    def _visible_sense(self, name: str) -> tuple[object | str | None, np.ndarray | None]:
        """("abstract", None) for a mostly abstract name; else (synset, unit sense vector) of the sense the
        scene graphs use it in (see the class doc), or (None, None) when WordNet has no concrete sense."""
        from .wordnet import ABSTRACT_LEXNAMES, abstractness, noun_senses

        if abstractness(name) >= 0.5:
            return "abstract", None
        context = self._context(name)
        best = abstract = None
        for rank, (synset, share) in enumerate(noun_senses(name)[:10]):
            v = self._sense_vector(synset, name)
            if v is None:
                continue
            fit = float(v @ context) if context is not None else (1.0 if rank == 0 else 0.0)
            score = fit + self.sense_prior * math.log(share)
            if synset.lexname() in ABSTRACT_LEXNAMES:
                abstract = score if abstract is None else max(abstract, score)
            elif best is None or score > best[0]:
                best = (score, synset, v)
        if abstract is not None and (best is None or abstract - best[0] >= self.abstract_margin):
            return "abstract", None  # the pictures use it in an abstract sense ("spot": a mark, not a place)
        return (best[1], best[2]) if best else (None, None)

    def query_vector(self, label: str, seeds: Sequence[str]) -> np.ndarray | None:
        """Unit vector of (label + mean of the other seed terms): the label's meaning as the scheme states it."""
        lab = phrase_vector(self._kv, label)
        others = [v for v in (phrase_vector(self._kv, s) for s in seeds if s != label) if v is not None]
        parts = ([lab] if lab is not None else []) + ([np.mean(others, axis=0)] if others else [])
        if not parts:
            return None
        q = np.sum(parts, axis=0)
        return q / float(np.linalg.norm(q))

    def relatedness(self, query: np.ndarray) -> np.ndarray:
        """(N,) relatedness of every candidate object to a label's query vector (see the class doc)."""
        (name_c, sense_c), (name_mu, sense_mu) = self._centred, self._centres
        return np.minimum(name_c @ _unit(query - name_mu), sense_c @ _unit(query - sense_mu))

    def label_kinds(self, label: str, seeds: Sequence[str]) -> list:
        """The concrete senses whose kinds are a label's members: the first noun sense of the label and of each
        seed term, when concrete (see `_concrete`); empty without WordNet."""
        if self.wordnet is None:
            return []
        from .wordnet import load_wordnet

        wn = load_wordnet()
        out = []
        for term in dict.fromkeys([label, *seeds]):
            senses = wn.synsets(term.replace(" ", "_"), pos="n")
            if senses and _concrete(senses[0]) and senses[0] not in out:
                out.append(senses[0])
        return out

    def member_of(self, i: int, kinds: Sequence) -> str | None:
        from .wordnet import sense_under

        sense = self._senses[i]
        if sense is None or not kinds:
            return None
        under = sense_under(sense, kinds)
        return under.name() if under is not None else None

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        if self.graph is None:
            self.prepare([])
        query = self.query_vector(label, seeds)
        if query is None:
            return []
        k = k or self.n_seeds + self.n_neighbours
        cos, rel = self._matrix @ query, self.relatedness(query)
        kinds = self.label_kinds(label, seeds)
        member = {i: self.member_of(i, kinds) for i in range(len(self._names))}
        banned = excluded_keys(label)
        order = sorted(
            range(len(self._names)), key=lambda i: (member[i] is None, -float(rel[i]), self._names[i])
        )
        chosen: list[str] = []
        for i in order:
            name = self._names[i]
            key = dedup_key(name)
            least = self.min_member_relatedness if member[i] else self.min_seed_relatedness
            if key in banned or any(dedup_key(c) == key for c in chosen) or float(rel[i]) < least:
                continue
            chosen.append(name)
            if len(chosen) >= min(self.n_seeds, k):
                break
        out = []
        for n in chosen:
            i = self._index[n]
            ev = {"role": "seed", "relatedness": round(float(rel[i]), 4), "cosine": round(float(cos[i]), 4),
                  "sense": self._sense_name(i), "count": self.graph.nodes[n]["count"]}  # fmt: skip
            if member[i]:
                ev["kind_of"] = member[i]
            out.append(Candidate(n, round(float(rel[i]), 4), ev))
        taken = {dedup_key(n) for n in chosen} | banned
        # neighbours are found through the seeds that are kinds of the label or very close to it
        kinds_seen = [
            n
            for n in chosen
            if member[self._index[n]] or float(rel[self._index[n]]) >= self.min_via_relatedness
        ]
        seed_degree = sum(self._degree[s] for s in kinds_seen)
        scored = []
        for nb in self._names if kinds_seen else ():
            if dedup_key(nb) in taken:
                continue
            via = {s: self.graph[nb][s]["weight"] for s in kinds_seen if self.graph.has_edge(nb, s)}
            n = sum(via.values())
            if n < max(self.min_cooccurrences, 1):
                continue
            p_joint = n / self._edges
            pmi = math.log(
                p_joint / ((self._degree[nb] / (2 * self._edges)) * (seed_degree / (2 * self._edges)))
            )
            npmi = pmi / -math.log(p_joint) if p_joint < 1 else 1.0
            r = float(rel[self._index[nb]])
            if npmi < self.min_npmi or r < self.min_neighbour_relatedness:
                continue
            scored.append((npmi, nb, n, npmi, r, via))
        neighbours = []
        room = min(self.n_neighbours, k - len(out)) if len(out) >= self.n_seeds else k - len(out)
        for _score, nb, n, npmi, r, via in sorted(scored, key=lambda t: (-t[0], t[1])):
            if len(neighbours) >= room:
                break
            key = dedup_key(nb)
            if key in taken:
                continue
            taken.add(key)
            ev = {"role": "neighbour", "cooccurrences": n, "npmi": round(npmi, 4), "relatedness": round(r, 4),
                  "sense": self._sense_name(self._index[nb]), "via": via}  # fmt: skip
            if member[self._index[nb]]:
                ev["kind_of"] = member[self._index[nb]]
            neighbours.append(Candidate(nb, round(npmi, 4), ev))
        return (out + neighbours)[:k]

    def _sense_name(self, i: int) -> str | None:
        sense = self._senses[i]
        return sense.name() if sense is not None else None
