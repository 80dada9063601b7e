"""Reading builds back for people: list, show, diff and export (JSON, CSV, Markdown). Plain functions
returning data or text; the CLI only prints what they return."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .store import Store
from .version import __version__


def list_builds(db: str | Path | None = None, source: str | None = None) -> list[dict]:
    with Store.open(db, create=False) as store:
        return store.builds(source)


def show_build(spec: str, db: str | Path | None = None, label: str | None = None) -> dict:
    """{"build": build row, "labels": [label rows], "words": [word rows]} for a build id or source name."""
    with Store.open(db, create=False) as store:
        build = store.resolve_build(spec)
        labels = store.labels_of(build["id"])
        if label is not None and label not in {row["label"] for row in labels}:
            from .errors import KbxError

            raise KbxError(f"build {build['id']} has no label {label!r} (labels: {', '.join(r['label'] for r in labels)})")  # fmt: skip
        words = store.word_rows(build["id"], label)
    vectors = _vectors_of(build["params"])
    for w in words:
        w["summary"] = summarize_evidence(build["source"], w["evidence"], vectors)
    return {"build": build, "labels": labels, "words": words}


def _vectors_of(params: dict) -> str | None:
    """The word vectors a build used (its own parameter, or that of its fused embeddings source)."""
    if "vectors" in params:
        return params["vectors"]
    return (params.get("sources") or {}).get("embeddings", {}).get("vectors")


def diff_builds(a: str, b: str, db: str | Path | None = None) -> dict:
    """Per label: words only in A, only in B, and common words with (rank in A, rank in B)."""
    with Store.open(db, create=False) as store:
        ba, bb = store.resolve_build(a), store.resolve_build(b)
        la, _ = store.label_words(ba["id"])
        lb, _ = store.label_words(bb["id"])
    out = {"a": ba["id"], "b": bb["id"], "labels": {}}
    for label in list(dict.fromkeys([*la, *lb])):
        wa, wb = la.get(label, []), lb.get(label, [])
        out["labels"][label] = {
            "only_a": [w for w in wa if w not in wb],
            "only_b": [w for w in wb if w not in wa],
            "common": {w: [wa.index(w) + 1, wb.index(w) + 1] for w in wa if w in wb},
        }
    return out


def format_diff(d: dict) -> str:
    lines = [f"diff build {d['a']} -> build {d['b']}"]
    for label, x in d["labels"].items():
        moved = [f"{w} {ra}->{rb}" for w, (ra, rb) in x["common"].items() if ra != rb]
        lines.append(
            f"{label}: -[{', '.join(x['only_a'])}] +[{', '.join(x['only_b'])}] "
            f"common {len(x['common'])}" + (f" moved: {', '.join(moved)}" if moved else "")
        )
    return "\n".join(lines)


def _collect(specs: list[str], db) -> list[dict]:
    with Store.open(db, create=False) as store:
        if not specs:
            sources = dict.fromkeys(b["source"] for b in store.builds())
            builds = [store.resolve_build(source) for source in sources]
        else:
            builds = [store.resolve_build(s) for s in specs]
        return [
            {"build": b, "labels": store.labels_of(b["id"]), "words": store.word_rows(b["id"])}
            for b in builds
        ]


def export_builds(
    specs: list[str], fmt: str = "json", db: str | Path | None = None, command: str = ""
) -> str:
    """Text of the builds named by `specs` (ids or source names; empty = latest build of every source)."""
    data = _collect(specs, db)
    if fmt == "json":
        out = []
        for d in data:
            b = d["build"]
            words: dict[str, list] = {r["label"]: [] for r in d["labels"]}
            for w in d["words"]:
                words[w["label"]].append({k: w[k] for k in ("rank", "word", "score", "source", "evidence")})
            out.append({
                "build_id": b["id"], "source": b["source"], "scheme": b["scheme"], "created_at": b["created_at"],
                "tool_version": b["tool_version"], "checksum": b["checksum"], "params": b["params"],
                "inputs": b["inputs"], "missing": b["missing"],
                "labels": {r["label"]: [w["word"] for w in words[r["label"]]] for r in d["labels"]},
                "entity_types": {r["label"]: r["entity_type"] for r in d["labels"]},
                "words": words,
            })  # fmt: skip
        return json.dumps(out[0] if len(out) == 1 else out, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["build_id", "source", "label", "entity_type", "rank", "word", "score", "evidence"])
        for d in data:
            for r in d["words"]:
                w.writerow([d["build"]["id"], d["build"]["source"], r["label"], r["entity_type"], r["rank"], r["word"],
                            f"{r['score']:.6g}", json.dumps(r["evidence"], sort_keys=True, ensure_ascii=False)])  # fmt: skip
        return buf.getvalue()
    if fmt == "markdown":
        return _markdown(data, command)
    from .errors import KbxError

    raise KbxError(f"unknown export format {fmt!r}: choose json, csv or markdown")


def _short(value: object) -> str:
    text = str(value)
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return f"`{text[:12]}`"
    return text


def _short_evidence(source: str, ev: dict) -> str:
    if source == "visualgenome":
        if ev.get("role") == "seed":
            return f"seed, rel. {ev.get('relatedness', ev.get('cosine', 0.0)):.2f}"
        if "npmi" in ev:
            return f"npmi {ev['npmi']:.2f}, {ev['cooccurrences']} rel. to seeds"
        return f"{ev['cooccurrences']} rel. to seeds"
    if source == "textual":
        return "+".join(ev.get("support", ev.get("sources", [])))
    return ""


def _wordnet_phrase(ev: dict) -> str:
    """'hyponym of organization.n.01' from a wordnet candidate's evidence (relation, path)."""
    path = str(ev.get("path", ""))
    relation = ev.get("relation", "")
    if relation == "derivation":
        return f"derived from {path.split(' ~ ')[0]}"
    steps = [p.strip() for p in path.replace("<", ">").split(">")]
    if relation == "synonym":
        return f"synonym in {steps[0]}"
    if relation == "hypernym":
        return f"hypernym of {steps[0]}"
    if relation == "hyponym2" and len(steps) == 3:
        return f"hyponym of {steps[0]} (via {steps[1]})"
    return f"{relation} of {steps[0]}"


def _edge_phrase(edge: str) -> str:
    """'dog IsA animal' from a ConceptNet evidence edge 'dog IsA animal (line 12)'."""
    return edge.rsplit(" (", 1)[0].replace("_", " ")


def summarize_evidence(source: str, ev: dict, vectors: str | None = "glove-6b-50d") -> str:
    """One short phrase per word: why the source proposed it (the full record is in `kbx show --json`)."""
    cos_name = "glove cos" if vectors in (None, "glove-6b-50d") else "vector cos"
    parts: list[str] = []
    if source == "textual":
        sense = ev.get("sense") or {}
        if "wordnet" in ev:
            parts.append("wordnet: " + _wordnet_phrase(ev["wordnet"]))
        elif "kind_of" in sense:
            kind = sense["kind_of"]
            parts.append(f"wordnet: {sense['synset']} is {kind}" if kind == sense["synset"] else
                         f"wordnet: {sense['synset']} is a kind of {kind}")  # fmt: skip
        elif "gloss_names" in sense:
            parts.append(f'wordnet: gloss of {sense["synset"]} names "{sense["gloss_names"]}"')
        if ev.get("conceptnet", {}).get("edges"):
            parts.append("conceptnet: " + _edge_phrase(ev["conceptnet"]["edges"][0]))
        if "cosine" in ev:
            parts.append(f"{cos_name} {ev['cosine']:.2f}")
        elif "embeddings" in ev:
            parts.append(f"{cos_name} {ev['embeddings'].get('cosine', 0.0):.2f}")
        support = ev.get("support")
        if support is not None:
            parts.append(f"{len(support)} of 3 sources agree" if len(support) > 1 else "1 source")
    elif source == "wordnet":
        parts.append(_wordnet_phrase(ev))
        parts.append(f"{ev.get('count', 0)} tagged uses")
    elif source == "conceptnet":
        parts += [_edge_phrase(e) for e in ev.get("edges", [])[:2]]
    elif source == "embeddings":
        parts.append(f"{cos_name} {ev.get('cosine', 0.0):.2f}")
        if "nearest_seed" in ev:
            parts.append(f"nearest seed {ev['nearest_seed']} {ev.get('seed_cosine', 0.0):.2f}")
    elif source == "relatedwords":
        parts.append(f"related words rank {ev.get('api_rank')} ({ev.get('from', '')})")
    elif source == "visualgenome":
        if ev.get("role") == "seed":
            rel = ev.get("relatedness", ev.get("cosine", 0.0))
            parts.append(f"seed: related to the label {rel:.2f} ({cos_name} {ev.get('cosine', rel):.2f})")
        else:
            via = sorted((ev.get("via") or {}).items(), key=lambda t: (-t[1], t[0]))
            with_ = ", ".join(f"{s} {n}" for s, n in via[:3])
            parts.append(f"{ev.get('cooccurrences', 0)} relationships with seeds ({with_})")
            if "npmi" in ev:
                parts.append(f"npmi {ev['npmi']:.2f}, related to the label {ev.get('relatedness', 0.0):.2f}")
    return "; ".join(p for p in parts if p)


def _markdown(data: list[dict], command: str) -> str:
    lines = ["# Published label words", ""]
    lines.append(f"Generated by `{command}` (kb-expand {__version__}); do not edit by hand." if command else
                 f"Generated by `kbx export --format markdown` (kb-expand {__version__}).")  # fmt: skip
    lines.append("")
    for d in data:
        b = d["build"]
        lines += [
            f"## `{b['source']}` (build {b['id']}, scheme `{b['scheme']}`, checksum `{b['checksum'][:12]}`)",
            "",
        ]
        params = {k: v for k, v in b["params"].items() if k not in ("http", "sources")}
        lines.append("Parameters: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in params.items()))
        lines.append("")
        lines.append("Inputs (sha256): " + ", ".join(f"`{k}` {_short(v)}" for k, v in b["inputs"].items()))
        if b["missing"]:
            lines.append("")
            lines.append("Missing sources: " + "; ".join(f"`{k}`: {v}" for k, v in b["missing"].items()))
        lines += ["", "| label | type | words (rank order; evidence) |", "|---|---|---|"]
        by_label: dict[str, list[str]] = {r["label"]: [] for r in d["labels"]}
        for w in d["words"]:
            ev = _short_evidence(b["source"], w["evidence"])
            by_label[w["label"]].append(f"{w['word']} ({ev})" if ev else w["word"])
        top_k = b["params"].get("top_k")
        for r in d["labels"]:
            words = by_label[r["label"]]
            short = f" ({len(words)} of {top_k}: no other word passed the source's thresholds)" if top_k and len(words) < top_k else ""  # fmt: skip
            lines.append(f"| {r['label']} | {r['entity_type']} | {', '.join(words) or '-'}{short} |")
        lines.append("")
    return "\n".join(lines)
