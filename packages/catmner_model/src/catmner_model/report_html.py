"""`catmner evaluate ... --html OUT.html`: one self-contained page of a split's errors.

`error_analysis` sorts every predicted and gold entity of each tweet into one group, against the lenient
(conlleval) gold entities that `evaluate`'s headline numbers use:

- ``correct``: a prediction equal to a gold entity (start, end, type): evaluate's ``tp``;
- ``wrong_type``: a prediction on exactly a gold entity's words with another type (one gold, one prediction);
- ``wrong_boundary``: a prediction overlapping one or more gold entities without equal boundaries (its type
  may differ too: ``type_differs``);
- ``spurious``: a prediction overlapping no gold entity;
- ``missed``: a gold entity that no prediction touches.

So ``n_pred = correct + wrong_type + wrong_boundary + spurious`` and ``n_gold = correct + missed + the gold
entities under a wrong-type or wrong-boundary prediction``, which the page checks against evaluate's JSON.
`write_html_report` writes the page: inline CSS, JS and data (nothing fetched), filters by type and error
group, counts per group, evaluate's per-type table (lenient and strict).
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from catmner_model.atomic import atomic_write_text
from catmner_model.data import ENTITY_TYPES, Entity, Tweet

GROUPS = ("missed", "spurious", "wrong_type", "wrong_boundary")


def _ent(e: Entity) -> dict[str, Any]:
    d: dict[str, Any] = {"start": e.start, "end": e.end, "type": e.type}
    if e.score is not None:
        d["score"] = round(float(e.score), 4)
    return d


def _overlaps(a: Entity, b: Entity) -> bool:
    return a.start < b.end and b.start < a.end


def classify_tweet(gold: Sequence[Entity], pred: Sequence[Entity]) -> dict[str, Any]:
    """The groups of one tweet's entities (see the module docstring)."""
    gold_keys = {e.key for e in gold}
    pred_keys = {e.key for e in pred}
    correct = [e for e in pred if e.key in gold_keys]
    open_gold = [g for g in gold if g.key not in pred_keys]
    errors: list[dict[str, Any]] = []
    touched: set[tuple] = set()
    for p in pred:
        if p.key in gold_keys:
            continue
        over = [g for g in open_gold if _overlaps(p, g)]
        same = [g for g in over if (g.start, g.end) == (p.start, p.end)]
        if same:
            errors.append({"group": "wrong_type", "pred": _ent(p), "gold": [_ent(same[0])]})
            touched.add(same[0].key)
        elif over:
            differs = any(g.type != p.type for g in over)
            errors.append(
                {
                    "group": "wrong_boundary",
                    "pred": _ent(p),
                    "gold": [_ent(g) for g in over],
                    "type_differs": differs,
                }
            )
            touched.update(g.key for g in over)
        else:
            errors.append({"group": "spurious", "pred": _ent(p), "gold": []})
    for g in open_gold:
        if g.key not in touched:
            errors.append({"group": "missed", "pred": None, "gold": [_ent(g)]})
    errors.sort(key=lambda e: (e["pred"] or e["gold"][0])["start"])
    return {"correct": [_ent(e) for e in correct], "errors": errors, "gold_touched": len(touched)}


def error_analysis(tweets: Sequence[Tweet], preds: Sequence[Sequence[Entity]]) -> dict[str, Any]:
    """Per tweet gold, predicted and grouped errors, and the counts of each group (overall and per type:
    a missed entity counts under its gold type, the others under the predicted type)."""
    rows, counts = [], Counter()
    per_type: dict[str, Counter] = {t: Counter() for t in ENTITY_TYPES}
    n_gold = n_pred = 0
    for t, p in zip(tweets, preds, strict=True):
        c = classify_tweet(t.entities, p)
        n_gold += len({e.key for e in t.entities})
        n_pred += len({e.key for e in p})
        counts["correct"] += len(c["correct"])
        for e in c["correct"]:
            per_type.setdefault(e["type"], Counter())["correct"] += 1
        for err in c["errors"]:
            counts[err["group"]] += 1
            kind = (err["pred"] or err["gold"][0])["type"]
            per_type.setdefault(kind, Counter())[err["group"]] += 1
        counts["gold_touched"] += c["gold_touched"]
        rows.append(
            {
                "imgid": t.imgid,
                "tokens": t.tokens,
                "gold": [_ent(e) for e in t.entities],
                "pred": [_ent(e) for e in p],
                **c,
            }
        )
    groups = {g: counts[g] for g in ("correct", *GROUPS)}
    return {
        "tweets": rows,
        "counts": {**groups, "n_gold": n_gold, "n_pred": n_pred, "gold_touched": counts["gold_touched"]},
        "per_type": {t: {g: c[g] for g in ("correct", *GROUPS)} for t, c in per_type.items()},
    }


def render_html(result: dict[str, Any], analysis: dict[str, Any]) -> str:
    """The page: the template with the evaluate JSON and the analysis inlined (``<`` escaped in the data)."""
    web = files("catmner_model").joinpath("web")
    data = json.dumps({"evaluate": result, "analysis": analysis}, ensure_ascii=False)
    data = data.replace("<", "\\u003c")  # no "</script>" or "<!--" can end or confuse the data block
    title = f"catmner evaluate: {result.get('dataset')} {result.get('split')} ({'/'.join(Path(str(result.get('model_dir'))).parts[-2:])})"
    page = web.joinpath("report.html").read_text(encoding="utf-8")
    return (
        page.replace("{{TITLE}}", html.escape(title))
        .replace("/*{{CSS}}*/", web.joinpath("report.css").read_text(encoding="utf-8"))
        .replace("/*{{JS}}*/", web.joinpath("report.js").read_text(encoding="utf-8"))
        .replace("{{DATA}}", data)
    )


def write_html_report(
    path: str | os.PathLike[str],
    result: dict[str, Any],
    tweets: Sequence[Tweet],
    preds: Sequence[Sequence[Entity]],
) -> Path:
    """Write the error-analysis page of an `evaluate_model` result (atomically); returns its path."""
    out = Path(path)
    atomic_write_text(out, render_html(result, error_analysis(tweets, preds)))
    return out
