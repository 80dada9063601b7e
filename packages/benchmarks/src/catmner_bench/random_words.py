"""Random label words for the decisive experiment's control arm (docs/decisive-experiment.md): as many random
English words as a label-word set has, each drawn at the Zipf frequency (wordfreq) of one real word, a new
draw per training seed. `catmner_bench.runner` writes them beside a run of a system with ``random_words``."""

from __future__ import annotations

import bisect
import json
import random
from pathlib import Path
from typing import Any

from catmner_bench.errors import BenchError

VOCABULARY_SIZE = 50_000  # wordfreq's most frequent English words the random words are drawn from
MIN_CANDIDATES = 20  # widen the frequency window until at least this many unused words are in it


def random_label_words(real: Any, seed: int) -> Any:
    """`kb_expand.LabelWords` with the structure of ``real`` (the same labels, as many words per label, the
    same entity types) whose every distinct word is replaced by a random English word of about the same Zipf
    frequency (wordfreq), none of them a real label word and no two alike; reproducible from ``seed``.

    A real word is matched within +-0.05 Zipf (about 12% in frequency), the window doubling until it holds
    ``MIN_CANDIDATES`` unused words; words wordfreq does not know (Zipf 0) get the rarest words."""
    from kb_expand import LabelWords
    from wordfreq import top_n_list, zipf_frequency

    real_words = real.words()
    taken = {w.lower() for w in real_words}
    vocab = [w for w in top_n_list("en", VOCABULARY_SIZE) if w.isascii() and w.isalpha() and len(w) >= 3]
    pool = sorted((zipf_frequency(w, "en"), w) for w in vocab if w not in taken)  # by frequency, then word
    zipfs = [z for z, _ in pool]
    rng = random.Random(f"random-label-words:{seed}")
    used: set[str] = set()
    mapping: dict[str, str] = {}
    for word in real_words:
        z = zipf_frequency(word, "en")
        width = 0.05
        while True:
            lo, hi = bisect.bisect_left(zipfs, z - width), bisect.bisect_right(zipfs, z + width)
            cands = [w for _, w in pool[lo:hi] if w not in used]
            if len(cands) >= MIN_CANDIDATES or (lo == 0 and hi == len(pool)):
                break
            width *= 2
        if not cands:
            raise BenchError(f"no unused random word left for {word!r} (vocabulary of {len(pool)} words)")
        pick = rng.choice(cands)
        used.add(pick)
        mapping[word] = pick
    labels = {label: [mapping[w] for w in words] for label, words in real.labels.items()}
    return LabelWords(labels, dict(real.entity_types), source=f"random-zipf-seed{seed}")


def write_random_label_words(spec: str, db: str | None, seed: int, path: Path, match: str) -> Path:
    """Resolve the label words ``spec`` (kb source, build id or JSON file), draw their random twin for ``seed``
    and write it (with the real words' provenance) to ``path``; the path."""
    if match != "zipf":
        raise BenchError(f"random words matched by {match!r}: only 'zipf' (word frequency) is known")
    from kb_expand import load_label_words

    real = load_label_words(spec, db=db)
    fake = random_label_words(real, seed)
    out = {
        **fake.to_json(),
        "_comment": "random English words at the Zipf frequencies of the real label words (catmner_bench.random_words)",
        "matched_to": {
            "spec": spec,
            "source": real.source,
            "build_id": real.build_id,
            "checksum": real.checksum,
        },
        "seed": seed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path
