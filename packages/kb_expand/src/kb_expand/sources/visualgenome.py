"""Visual Genome (the paper's multimodal KB): streaming reader, object co-occurrence graph, `visualgenome` source.

Input: VG `relationships.json` ([{image_id, relationships: [{predicate, subject: {name|names}, object: ...}]}])
or `scene_graphs.json` ([{image_id, objects: [{object_id, names}], relationships: [{subject_id, object_id}]}]),
plain, .gz or .zip. The top-level array is decoded one image at a time (json.JSONDecoder.raw_decode over
1 MiB chunks), so memory is bounded by the graph (distinct names and pairs), not by the file (~2.3M relations).

Graph (networkx): nodes = object names (attribute `count`), undirected edges weighted by the number of
relationships connecting the two names. Per label (see VisualGenomeSource): seeds = the 5 object names most
related to the label by word vectors, then neighbours = the 5 other names most associated with the seeds in
the scene graphs (normalised PMI, so objects that are in every picture - window, tree, shirt - do not fill
every label), weighted by their own relatedness to the label.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, KbxError, SourceUnavailable
from ..text import STOP_WORDS, acceptable, dedup_key, excluded_keys, normalize
from .base import Candidate, Source, SourceContext
from .embeddings import load_vectors, phrase_vector, vectors_id

CHUNK = 1 << 20


class _Progress:
    """Byte progress of the underlying (compressed) file."""

    def __init__(self, raw, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self.raw = raw
        self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled)

    def tick(self) -> None:
        try:
            pos = self.raw.tell()
        except (OSError, ValueError):
            return
        self.bar.update(max(0, pos - self.bar.n))

    def close(self) -> None:
        self.tick()
        self.bar.close()


def _open(path: Path) -> tuple[io.TextIOBase, object, int]:
    """(text stream, raw file for progress, total bytes of raw)."""
    if path.name.endswith(".zip"):
        zf = zipfile.ZipFile(path)
        members = [m for m in zf.infolist() if m.filename.endswith(".json")]
        if not members:
            raise InputError(path, "zip archive holds no .json member")
        member = zf.open(members[0])
        return io.TextIOWrapper(member, encoding="utf-8"), member._fileobj, os.path.getsize(path)  # type: ignore[attr-defined]
    raw = open(path, "rb")
    stream = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
    return io.TextIOWrapper(stream, encoding="utf-8"), raw, os.path.getsize(path)


def iter_json_array(path: str | Path, progress: bool = False, chunk: int = CHUNK) -> Iterator[object]:
    """Yield the elements of a top-level JSON array one at a time, reading `chunk` characters at a time.

    Errors name the file and the line of the element that failed to parse.
    """
    p = Path(path)
    try:
        text, raw, total = _open(p)
    except (OSError, zipfile.BadZipFile) as e:
        raise InputError(p, f"cannot read Visual Genome file: {e}") from e
    bar = _Progress(raw, total, f"visualgenome {p.name}", progress)
    decoder = json.JSONDecoder()
    buf, pos, line, eof = "", 0, 1, False

    def more() -> bool:
        nonlocal buf, pos, line, eof
        if eof:
            return False
        try:
            data = text.read(chunk)
        except (UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(p, f"unreadable Visual Genome file ({e})", line=line) from e
        bar.tick()
        if not data:
            eof = True
            return False
        line += buf.count("\n", 0, pos)
        buf, pos = buf[pos:] + data, 0
        return True

    def skip_ws() -> bool:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return True
            if not more():
                return False

    try:
        if not skip_ws() or buf[pos] != "[":
            raise InputError(p, "expected a JSON array of images ('[' ...)", line=line)
        pos += 1
        first = True
        while True:
            if not skip_ws():
                raise InputError(p, "truncated JSON: the top-level array is not closed", line=line + buf.count("\n", 0, pos))  # fmt: skip
            if buf[pos] == "]":
                return
            if not first:
                if buf[pos] != ",":
                    raise InputError(p, f"expected ',' between array elements, got {buf[pos]!r}", line=line + buf.count("\n", 0, pos))  # fmt: skip
                pos += 1
                if not skip_ws():
                    raise InputError(p, "truncated JSON after ','", line=line + buf.count("\n", 0, pos))
            first = False
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    if not more():
                        raise InputError(
                            p, f"invalid JSON: {e.msg}", line=line + buf.count("\n", 0, e.pos)
                        ) from e
            pos = end
            yield obj
    finally:
        bar.close()
        text.close()


def _name(obj: object) -> str | None:
    if not isinstance(obj, dict):
        return None
    name = obj.get("name")
    if name is None and isinstance(obj.get("names"), list) and obj["names"]:
        name = obj["names"][0]
    return normalize(name) if isinstance(name, str) and name.strip() else None


def iter_relation_pairs(path: str | Path, progress: bool = False) -> Iterator[tuple[str, str]]:
    """(subject name, object name) of every relationship, from relationships.json or scene_graphs.json."""
    for i, image in enumerate(iter_json_array(path, progress)):
        if not isinstance(image, dict) or not isinstance(image.get("relationships"), list):
            raise InputError(path, f"array element {i} is not an image with a 'relationships' list")
        objects = None
        if isinstance(image.get("objects"), list):  # scene_graphs.json: relationships refer to object ids
            objects = {o.get("object_id"): _name(o) for o in image["objects"] if isinstance(o, dict)}
        for rel in image["relationships"]:
            if not isinstance(rel, dict):
                continue
            if "subject" in rel or "object" in rel:
                s, o = _name(rel.get("subject")), _name(rel.get("object"))
            elif objects is not None:
                s, o = objects.get(rel.get("subject_id")), objects.get(rel.get("object_id"))
            else:
                raise InputError(
                    path, f"image {image.get('image_id', i)}: relationship without subject/object"
                )
            if s and o:
                yield s, o


def build_graph(path: str | Path, progress: bool = False):
    """networkx Graph of object names: node attr `count` (objects seen in relationships), edge attr `weight`.

    Returns (graph, number of relationships read)."""
    import networkx as nx

    names: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    n = 0
    intern: dict[str, str] = {}
    for s, o in iter_relation_pairs(path, progress):
        s = intern.setdefault(s, s)
        o = intern.setdefault(o, o)
        n += 1
        names[s] += 1
        names[o] += 1
        if s != o:
            pairs[(s, o) if s < o else (o, s)] += 1
    g = nx.Graph()
    g.add_nodes_from((name, {"count": c}) for name, c in names.items())
    g.add_weighted_edges_from((a, b, w) for (a, b), w in pairs.items())
    return g, n


class VisualGenomeSource(Source):
    """Seeds, then neighbours, as in the paper, with two corrections for a 150-object vocabulary:

    relatedness of an object to the label = mean of two cosines to the label's query vector (label + mean of
    its seed terms): the object name's word vector, and the mean vector of the gloss and hypernym words of the
    object's first WordNet sense that is not abstract (what the object is in a picture: "board" is a plank,
    not a committee). Objects mostly used in abstract senses (WordNet lexicographer files, see
    wordnet.ABSTRACT_LEXNAMES: "part", "number", "background") are never label words.
    seeds: the `n_seeds` most related objects.
    neighbours: objects connected to the seeds by at least `min_cooccurrences` relationships, by
      npmi(o; seeds) x relatedness(o), where npmi = ln(P(o, S) / (P(o) P(S))) / -ln P(o, S) with P(o, S) the
      share of relationships between o and the seeds and P(o), P(S) the shares of relationship ends at o and
      at the seeds: association normalised by how common each object is.
    Without WordNet data the abstract filter and the sense vectors are skipped (the build records it).
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
    ):
        self.trust_pickle = trust_pickle  # allow a gensim .kv vectors file (a pickle)
        self.vg = Path(vg)  # relationships.json / scene_graphs.json (.gz/.zip)
        self.vectors = vectors  # word vectors for label -> object similarity (None: GloVe 6B-50d)
        self.n_seeds = n_seeds  # objects most related to the label
        self.n_neighbours = n_neighbours  # objects most associated with those seeds
        self.progress = progress
        self.min_cooccurrences = min_cooccurrences  # relationships with the seeds a neighbour needs
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
                "min_cooccurrences": self.min_cooccurrences, "association": "npmi x relatedness",
                "wordnet_senses": self.wordnet is not None}  # fmt: skip

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
        empty = np.zeros((0, kv.vector_size), dtype=np.float32)
        self._names = names  # objects that can be label words, sorted
        self._index = {n: i for i, n in enumerate(names)}
        self._matrix = np.stack(vecs) if vecs else empty  # (N, D) unit word vectors
        self._sense_matrix = np.stack(sense_vecs) if vecs else empty  # (N, D) unit sense vectors
        self._senses = senses  # synset name of each object's visible sense (None: none found)
        self._degree = {n: sum(d["weight"] for d in self.graph[n].values()) for n in self.graph.nodes}
        self._edges = sum(self._degree.values()) / 2  # relationships between two different names

    def _visible_sense(self, name: str) -> tuple[str | None, np.ndarray | None]:
        """("abstract", None) for a mostly abstract name; else (synset name, unit vector of its gloss and
        hypernym words) of its first sense outside the abstract lexicographer files, or (None, None)."""
        import re

        from .wordnet import ABSTRACT_LEXNAMES, abstractness, noun_senses

        if abstractness(name) >= 0.5:
            return "abstract", None
        for synset, _ in noun_senses(name):
            if synset.lexname() in ABSTRACT_LEXNAMES:
                continue
            words = [t for t in re.findall(r"[a-z]+", synset.definition().lower()) if t not in STOP_WORDS]
            words += [w for h in synset.hypernyms() for w in h.lemma_names() if "_" not in w]
            vs = [
                self._kv.get_vector(w, norm=True) for w in words if w != name and w in self._kv.key_to_index
            ]
            if not vs:
                return synset.name(), None
            v = np.mean(vs, axis=0)
            return synset.name(), v / float(np.linalg.norm(v))
        return None, None

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
        return (self._matrix @ query + self._sense_matrix @ query) / 2

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        if self.graph is None:
            self.prepare([])
        query = self.query_vector(label, seeds)
        if query is None:
            return []
        cos, rel = self._matrix @ query, self.relatedness(query)
        banned = excluded_keys(label)
        chosen: list[str] = []
        for i in sorted(range(len(self._names)), key=lambda i: (-float(rel[i]), self._names[i])):
            name = self._names[i]
            key = dedup_key(name)
            if key in banned or any(dedup_key(c) == key for c in chosen):
                continue
            chosen.append(name)
            if len(chosen) >= self.n_seeds:
                break
        out = []
        for n in chosen:
            i = self._index[n]
            out.append(Candidate(n, round(float(rel[i]), 4), {
                "role": "seed", "relatedness": round(float(rel[i]), 4), "cosine": round(float(cos[i]), 4),
                "sense": self._senses[i], "count": self.graph.nodes[n]["count"]}))  # fmt: skip
        taken = {dedup_key(n) for n in chosen} | banned
        seed_degree = sum(self._degree[s] for s in chosen)
        scored = []
        for nb in self._names:
            if dedup_key(nb) in taken:
                continue
            via = {s: self.graph[nb][s]["weight"] for s in chosen if self.graph.has_edge(nb, s)}
            n = sum(via.values())
            if n < max(self.min_cooccurrences, 1):
                continue
            p_joint = n / self._edges
            pmi = math.log(
                p_joint / ((self._degree[nb] / (2 * self._edges)) * (seed_degree / (2 * self._edges)))
            )
            npmi = pmi / -math.log(p_joint) if p_joint < 1 else 1.0
            r = float(rel[self._index[nb]])
            scored.append((npmi * max(r, 0.0), nb, n, npmi, r, via))
        neighbours = []
        for score, nb, n, npmi, r, via in sorted(scored, key=lambda t: (-t[0], t[1])):
            key = dedup_key(nb)
            if key in taken:
                continue
            taken.add(key)
            neighbours.append(Candidate(nb, round(score, 4), {
                "role": "neighbour", "cooccurrences": n, "npmi": round(npmi, 4), "relatedness": round(r, 4),
                "via": via}))  # fmt: skip
            if len(neighbours) >= self.n_neighbours:
                break
        return (out + neighbours)[: max(k, 0)] if k else out + neighbours
