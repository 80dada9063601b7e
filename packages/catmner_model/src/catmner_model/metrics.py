"""Entity-level evaluation as the literature scores MNER, and CoNLL-style prediction files.

Scores are micro precision / recall / F1 over exact (start, end, type) matches, overall and per type
(PER, LOC, ORG, MISC), in percent. Two chunking modes are always labelled: ``conlleval`` (the literature's,
seqeval's default: a stray ``I-X`` opens an entity) and ``strict`` (IOB2). Span predictions are entity sets
already; the mode only matters when entities are derived from tags (`score_tags`, `read_predictions`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from catmner_model.atomic import atomic_write_text
from catmner_model.data import (
    ENTITY_TYPES,
    DataError,
    Entity,
    Tweet,
    entities_to_tags,
    read_conll,
    split_lines,
    tags_to_entities,
    visible,
)

METRIC_DEFINITION = (
    "entity-level micro precision/recall/F1 (percent) over exact (start, end, type) matches; "
    "per-type F1 over PER/LOC/ORG/MISC"
)


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = 100.0 * tp / n_pred if n_pred else 0.0
    r = 100.0 * tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def score(
    gold: Sequence[Iterable[Entity]], pred: Sequence[Iterable[Entity]], mode: str = "conlleval"
) -> dict:
    """Micro P/R/F1 (percent) of predicted against gold entities, one entity collection per tweet.

    ``mode`` labels how the entities were chunked; it is recorded in the result, not applied here.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} tweets but predictions have {len(pred)}")
    counts = {t: [0, 0, 0] for t in ENTITY_TYPES}  # tp, n_pred, n_gold
    for g, p in zip(gold, pred, strict=True):
        gk = {e.key for e in g}
        pk = {e.key for e in p}
        for key in gk:
            counts.setdefault(key[2], [0, 0, 0])[2] += 1
        for key in pk:
            c = counts.setdefault(key[2], [0, 0, 0])
            c[1] += 1
            c[0] += key in gk
    tp = sum(c[0] for c in counts.values())
    n_pred = sum(c[1] for c in counts.values())
    n_gold = sum(c[2] for c in counts.values())
    p, r, f = _prf(tp, n_pred, n_gold)
    per_type = {}
    for t, (ttp, tpred, tgold) in counts.items():
        tp_, tr_, tf_ = _prf(ttp, tpred, tgold)
        per_type[t] = {
            "precision": tp_,
            "recall": tr_,
            "f1": tf_,
            "support": tgold,
            "tp": ttp,
            "n_pred": tpred,
        }
    return {
        "mode": mode,
        "definition": METRIC_DEFINITION,
        "precision": p,
        "recall": r,
        "f1": f,
        "tp": tp,
        "n_gold": n_gold,
        "n_pred": n_pred,
        "per_type": per_type,
    }


def score_tags(
    gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]], mode: str = "conlleval"
) -> dict:
    """Score BIO tag sequences, chunking both sides with ``mode`` ("conlleval" or "strict")."""
    gold = [tags_to_entities(t, mode) for t in gold_tags]
    pred = [tags_to_entities(t, mode) for t in pred_tags]
    return score(gold, pred, mode)


def score_both(tweets: Sequence[Tweet], pred: Sequence[Iterable[Entity]]) -> dict[str, dict]:
    """Lenient (conlleval) and strict scores of span predictions against the tweets' gold tags."""
    pred = [list(p) for p in pred]
    return {
        "conlleval": score([t.entities for t in tweets], pred, "conlleval"),
        "strict": score([tags_to_entities(t.tags, "strict") for t in tweets], pred, "strict"),
    }


def write_predictions(
    path: str | os.PathLike[str], tweets: Sequence[Tweet], predicted: Sequence[Iterable[Entity]]
) -> None:
    """Write ``token<TAB>gold<TAB>pred`` lines with IMGID lines and blank lines between tweets (atomically).

    The file is what conlleval (after replacing TABs by spaces) and seqeval read.
    """
    if len(tweets) != len(predicted):
        raise ValueError(f"{len(tweets)} tweets but {len(predicted)} predictions")
    out = Path(path)
    lines: list[str] = []
    for tweet, pred in zip(tweets, predicted, strict=True):
        pred_tags = entities_to_tags(pred, len(tweet.tokens))
        lines.append(f"IMGID:{tweet.imgid}")
        lines.extend(
            f"{tok}\t{g}\t{p}" for tok, g, p in zip(tweet.tokens, tweet.tags, pred_tags, strict=True)
        )
        lines.append("")
    atomic_write_text(out, "\n".join(lines))


def read_predictions(
    path: str | os.PathLike[str], mode: str = "conlleval"
) -> tuple[list[Tweet], list[list[Entity]]]:
    """Read a file written by `write_predictions`: tweets (with gold) and predicted entities per tweet."""
    p = Path(path)
    tweets = read_conll(p, extra_columns=True)  # checks the file: UTF-8, columns, tags
    raw = split_lines(p.read_bytes().decode("utf-8-sig"))
    preds: list[list[Entity]] = []
    for tweet in tweets:
        i = tweet.line if raw[tweet.line - 1].startswith("IMGID:") else tweet.line - 1
        tags: list[str] = []
        while len(tags) < len(tweet.tokens):
            cols = raw[i].split("\t")
            i += 1
            if not visible(cols[0]).strip():  # a token of invisible characters only: read_conll drops it
                continue
            if len(cols) < 3:
                raise DataError(f"{p}:{i}: expected 'token<TAB>gold<TAB>pred'")
            tags.append(cols[2].strip())
        preds.append(tags_to_entities(tags, mode))
    return tweets, preds
