"""ConceptNet: a local assertions dump (official 5-column CSV, plain or .gz, streamed, English edges only)
or the REST API (GET {base}/query?node=/c/en/<term>&other=/c/en), and the `conceptnet` source."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import InputError, SourceUnavailable
from ..scheme import LabelSpec
from ..text import normalize
from ..web import HttpClient
from .base import Candidate, Source, SourceContext, finalize

DEFAULT_CONCEPTNET_URL = "https://api.conceptnet.io"

# Relations whose other end is a noun-like concept on either side, with their weight.
NOUN_RELATIONS = {
    "/r/Synonym": 1.0, "/r/IsA": 1.0, "/r/RelatedTo": 0.8, "/r/SimilarTo": 0.8, "/r/PartOf": 0.6, "/r/HasA": 0.6,
    "/r/AtLocation": 0.6, "/r/LocatedNear": 0.5, "/r/MadeOf": 0.5, "/r/InstanceOf": 0.5, "/r/CreatedBy": 0.4,
    "/r/SymbolOf": 0.4, "/r/DefinedAs": 0.6, "/r/FormOf": 0.3, "/r/DerivedFrom": 0.3,
}  # fmt: skip
# Relations X->Y whose START is a noun concept (Y is an action/property): usable only when the seed is Y.
START_NOUN_RELATIONS = {
    "/r/UsedFor": 0.5,
    "/r/CapableOf": 0.3,
    "/r/HasProperty": 0.3,
    "/r/ReceivesAction": 0.3,
}


def concept_term(uri: str) -> str | None:
    """'/c/en/park_lot/n/wn/...' -> 'park_lot'; None for non-English concepts."""
    if not uri.startswith("/c/en/"):
        return None
    return uri[6:].split("/", 1)[0]


def edge_score(rel: str, seed_is_start: bool) -> float:
    """Relation weight for an edge seen from the seed's side (0 = unusable)."""
    if rel in NOUN_RELATIONS:
        weight = NOUN_RELATIONS[rel]
        if rel == "/r/IsA" and seed_is_start:  # seed IsA X: X is a hypernym, less specific than a hyponym
            weight = 0.6
        return weight
    if rel in START_NOUN_RELATIONS and not seed_is_start:
        return START_NOUN_RELATIONS[rel]
    return 0.0


def _open_text(path: Path) -> tuple[io.BufferedReader, io.TextIOBase]:
    raw = open(path, "rb")
    stream = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
    return raw, io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")


def iter_dump_edges(
    path: str | Path, terms: set[str], progress: bool = False
) -> Iterator[tuple[str, str, str, float, int]]:
    """Stream (rel, start_term, end_term, weight, line) of English edges touching one of `terms`."""
    from tqdm import tqdm

    p = Path(path)
    try:
        raw, text = _open_text(p)
    except OSError as e:
        raise InputError(p, f"cannot read ConceptNet dump: {e.strerror or e}") from e
    bar = tqdm(
        total=os.path.getsize(p), unit="B", unit_scale=True, desc=f"conceptnet {p.name}", disable=not progress
    )
    try:
        lineno = 0
        while True:
            try:
                line = text.readline()
            except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile) as e:
                raise InputError(p, f"unreadable ConceptNet dump ({e})", line=lineno + 1) from e
            if not line:
                break
            lineno += 1
            if lineno % 20000 == 0:
                bar.update(raw.tell() - bar.n)
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 5:
                if not line.strip():
                    continue
                raise InputError(p, f"expected 5 tab-separated columns (edge, relation, start, end, info), got {len(parts)}", line=lineno)  # fmt: skip
            _, rel, start, end, info = parts
            s, e = concept_term(start), concept_term(end)
            if s is None or e is None or (s not in terms and e not in terms):
                continue
            try:
                weight = float(json.loads(info).get("weight", 1.0))
            except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as err:
                raise InputError(
                    p, f"column 5 is not a JSON object with a weight ({err})", line=lineno
                ) from err
            yield rel, s, e, weight, lineno
        bar.update(raw.tell() - bar.n)
    finally:
        bar.close()
        text.close()


def _term(word: str) -> str:
    return normalize(word).replace(" ", "_")


class ConceptNetSource(Source):
    """Concepts linked to the seeds by noun-like relations; score = sum over edges of relation x edge weight,
    times 1.0 for the label itself and 0.8 for other seeds."""

    name = "conceptnet"

    uses_http = True

    @classmethod
    def from_context(cls, ctx: SourceContext) -> ConceptNetSource:
        keep, _ = ctx.noun_filter()
        dump = ctx.conceptnet_dump
        return cls(dump, None if dump else ctx.http, ctx.cfg.conceptnet_url, keep, ctx.cfg.progress)

    def __init__(
        self,
        dump: str | Path | None = None,
        http: HttpClient | None = None,
        base_url: str = DEFAULT_CONCEPTNET_URL,
        keep: Callable[[str], bool] | None = None,
        progress: bool = False,
        limit: int = 200,
    ):
        if dump is None and http is None:
            raise ValueError("ConceptNetSource needs a dump path or an HttpClient")
        self.dump = (
            Path(dump) if dump is not None else None
        )  # local assertions dump, or None for the REST API
        self.http = http
        self.base_url = base_url.rstrip("/")  # REST API root
        self.keep = keep
        self.progress = progress
        self.limit = limit  # edges per REST query
        self.edges: dict[str, list[tuple[str, str, str, float, str]]] = defaultdict(list)  # term -> edges
        if self.dump is not None and not self.dump.is_file():
            raise InputError(self.dump, "ConceptNet dump not found")

    def params(self) -> dict:
        return {"dump": str(self.dump)} if self.dump else {"url": self.base_url, "limit": self.limit}

    def inputs(self) -> dict:
        return {"conceptnet": str(self.dump) if self.dump else f"{self.base_url}/query"}

    def prepare(self, labels: Sequence[LabelSpec]) -> None:
        """With a dump: ONE streaming pass collects the edges of every seed of every label."""
        if self.dump is None:
            return
        terms = {_term(s) for spec in labels for s in spec.seeds}
        for rel, s, e, w, line in iter_dump_edges(self.dump, terms, self.progress):
            edge = (rel, s, e, w, f"line {line}")
            for t in {s, e} & terms:
                self.edges[t].append(edge)

    def _edges(self, term: str) -> list[tuple[str, str, str, float, str]]:
        if self.dump is not None:
            return self.edges.get(term, [])
        url = f"{self.base_url}/query"
        data = self.http.get_json(
            url, {"node": f"/c/en/{term}", "other": "/c/en", "limit": self.limit}, self.name
        )
        if not isinstance(data, dict) or not isinstance(data.get("edges"), list):
            raise SourceUnavailable(
                f"{self.name}: unexpected response from {url} for {term}: no 'edges' list"
            )
        out = []
        for edge in data["edges"]:
            try:
                rel = edge["rel"]["@id"]
                s, e = concept_term(edge["start"]["@id"]), concept_term(edge["end"]["@id"])
                w = float(edge.get("weight", 1.0))
            except (KeyError, TypeError, ValueError):
                continue
            if s is not None and e is not None:
                out.append((rel, s, e, w, edge.get("@id", "")))
        return out

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        scores: dict[str, float] = defaultdict(float)
        evidence: dict[str, list] = defaultdict(list)
        for j, seed in enumerate(seeds):
            term = _term(seed)
            seed_weight = 1.0 if j == 0 else 0.8
            for rel, s, e, w, where in self._edges(term):
                seed_is_start = s == term
                other = e if seed_is_start else s
                if other == term:
                    continue
                weight = edge_score(rel, seed_is_start)
                if weight <= 0:
                    continue
                scores[other] += weight * w * seed_weight
                if len(evidence[other]) < 3:
                    evidence[other].append(f"{s} {rel[3:]} {e} ({where})")
        cands = [Candidate(t, sc, {"edges": evidence[t]}) for t, sc in scores.items()]
        return finalize(cands, label, k, max_tokens=2, keep=self.keep)
