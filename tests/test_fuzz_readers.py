"""Property-based fuzzing of every reader of a user file (issue 25): Twitter CoNLL, captions (both formats),
PGIM knowledge zips, JSONL predict input, label-word JSON, the kbx label scheme, Visual Genome JSON, model
configs and --model-config, benchmark run records.

Hypothesis generates malformed, truncated, deeply nested, binary and odd-Unicode inputs (U+2028, U+0085, zero-width
characters, BOMs, controls, lone CR); each reader must return a valid result or raise its package's one-line
error (`CatmnerError`, `KbxError`, `BenchError`), never any other exception. The budget is small by default
(the whole file runs in well under a minute); `pytest -m fuzz` (CI) runs these tests alone with a larger budget,
and CATMNER_FUZZ_EXAMPLES=N sets it explicitly (tests/conftest.py registers the profiles).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from catmner_bench.errors import BenchError
from catmner_bench.records import BenchRecord, read_record
from catmner_model.config import config_from_dict, load_config, parse_config_json
from catmner_model.data import read_conll, visible
from catmner_model.errors import CatmnerError
from catmner_model.predict import read_jsonl
from catmner_model.visual import read_pgim
from catmner_model.visual_caption import read_captions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kb_expand import load_label_words
from kb_expand.errors import KbxError
from kb_expand.scheme import load_scheme
from kb_expand.sources.visualgenome import build_graph

pytestmark = pytest.mark.fuzz
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], deadline=None)

# characters that broke readers before: line separators str.splitlines splits at, invisible ones, controls
ODD = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e\r\t\x00\x07\u200b\u200c\u200d\u200e\ufeff\u00ad\u2060\ufffe\U0001f600é"
odd_text = st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(ODD)), max_size=40)
short_text = st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(ODD)), max_size=12)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), odd_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=12,
)


def _tmp_file(data: bytes, suffix: str = ".txt") -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=_tmp_dir())
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


_TMP: list[str] = []


def _tmp_dir() -> str:
    """The session's scratch folder, made on first use (not at import: collecting this file for a run that
    deselects it made one and left it behind) and removed when the session ends."""
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="catmner-fuzz-"))
        atexit.register(shutil.rmtree, _TMP[0], ignore_errors=True)
    return _TMP[0]


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def mutated(draw, base: st.SearchStrategy[bytes]) -> bytes:
    """Bytes from ``base`` (valid-looking input), then cut, spliced with binary or odd text, or nested deep."""
    data = draw(base)
    how = draw(st.sampled_from(["keep", "cut", "binary", "odd", "deep", "bom", "latin1"]))
    if how == "cut" and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "binary":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=16)) + data[at:]
    elif how == "odd":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(odd_text).encode("utf-8") + data[at:]
    elif how == "deep":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + deep(draw(st.sampled_from([50, 5000, 100_000]))).encode() + data[at:]
    elif how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "latin1":
        data = data + "é".encode("latin-1")
    return data


def json_bytes(values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    return values.map(
        lambda v: json.dumps(v, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")
    )


# --------------------------------------------------------------------------------------------- CoNLL
TAGS = st.sampled_from(
    ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-MISC", "X", ""]
)
SEPS = st.sampled_from(["\n", "\r\n", "\n\n", "\r", "\u2028", "\x85"])


@st.composite
def conll_files(draw) -> bytes:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            parts.append("IMGID:" + draw(st.one_of(st.from_regex(r"[0-9]{1,6}", fullmatch=True), short_text)))
        for _ in range(draw(st.integers(0, 4))):
            cols = [draw(short_text), draw(TAGS)] + draw(st.lists(TAGS, max_size=1))
            parts.append("\t".join(cols))
        parts.append("")
    text = "".join(p + draw(SEPS) for p in parts)
    return text.encode("utf-8")


@FUZZ
@given(mutated(conll_files()))
def test_conll_reader(data):
    try:
        tweets = read_conll(_tmp_file(data))
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    for t in tweets:
        assert t.tokens and len(t.tokens) == len(t.tags)
        for tok in t.tokens:  # what a reader sees: no invisible character, no line break inside
            assert tok and tok == visible(tok) and not any(c.isspace() for c in tok)


# ------------------------------------------------------------------------------------------ captions
@st.composite
def caption_files(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            lines.append(f"{draw(short_text)}.jpg :{draw(odd_text)}")
        else:
            obj = draw(st.one_of(
                st.fixed_dictionaries({"imgid": st.one_of(short_text, st.integers()), "caption": odd_text}),
                json_values,
            ))  # fmt: skip
            lines.append(json.dumps(obj, ensure_ascii=draw(st.booleans())))
    return draw(SEPS).join(lines).encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated(caption_files()))
def test_caption_reader(data):
    try:
        captions = read_captions(_tmp_file(data))
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert captions and all(isinstance(k, str) and v and v == visible(v) for k, v in captions.items())


# ---------------------------------------------------------------------------------------------- PGIM
@st.composite
def pgim_zips(draw) -> bytes:
    body = draw(mutated(conll_files()))
    buf = io.BytesIO()
    with zipfile.ZipFile(
        buf, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    ) as zf:
        zf.writestr(
            draw(st.sampled_from(["train.txt", "x/train.txt", "valid.txt"])), body + b"\n<EOS>\tX\nw\tX\n"
        )
    raw = buf.getvalue()
    if draw(st.booleans()):  # damage the archive itself
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at + draw(st.integers(0, 8)) :]
    return raw


@FUZZ
@given(st.one_of(pgim_zips(), st.binary(max_size=64)))
def test_pgim_reader(data):
    try:
        records = read_pgim(_tmp_file(data, ".zip"), "train")
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    for tokens, words in records:
        assert all(t and t == visible(t) for t in tokens) and all(isinstance(w, str) for w in words)


# ------------------------------------------------------------------------------------ predict JSONL
@st.composite
def jsonl_files(draw) -> bytes:
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        obj = draw(st.one_of(
            st.fixed_dictionaries({"text": odd_text}, optional={"image": st.one_of(short_text, json_values),
                                                                 "caption": st.one_of(odd_text, json_values)}),
            st.fixed_dictionaries({"tokens": st.lists(st.one_of(short_text, json_scalars), max_size=5)}),
            json_values,
        ))  # fmt: skip
        rows.append(json.dumps(obj, ensure_ascii=draw(st.booleans())))
    return draw(SEPS).join(rows).encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated(jsonl_files()))
def test_predict_jsonl_reader(data):
    warnings: list[str] = []
    try:
        items = read_jsonl(_tmp_file(data, ".jsonl"), warnings=warnings)
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    for item in items:
        assert item.tokens and all(
            t and t == visible(t) and not any(c.isspace() for c in t) for t in item.tokens
        )


# -------------------------------------------------------------------------------------- label words
@st.composite
def label_word_files(draw) -> bytes:
    labels = st.dictionaries(
        short_text, st.lists(st.one_of(short_text, json_scalars), max_size=3), max_size=3
    )
    obj = draw(st.one_of(
        labels,
        st.fixed_dictionaries({"labels": labels}, optional={"entity_types": json_values, "build_id": json_values,
                                                            "source": json_values, "checksum": json_values}),
        json_values,
    ))  # fmt: skip
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated(label_word_files()))
def test_label_words_reader(data):
    try:
        words = load_label_words(str(_tmp_file(data, ".json")))
    except KbxError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert isinstance(words.words(), list) and all(isinstance(w, str) for w in words.words())


# ----------------------------------------------------------------------------------------- kbx scheme
@st.composite
def scheme_files(draw) -> bytes:
    label = st.fixed_dictionaries(
        {"label": st.one_of(short_text, json_scalars)},
        optional={"type": st.one_of(st.sampled_from(["PER", "LOC", "ORG", "MISC", "per"]), json_values),
                  "seeds": st.one_of(st.lists(short_text, max_size=3), json_values)},
    )  # fmt: skip
    obj = draw(st.one_of(
        st.fixed_dictionaries({"labels": st.lists(st.one_of(label, json_values), max_size=3)},
                              optional={"name": json_values, "description": json_values}),
        json_values,
    ))  # fmt: skip
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated(scheme_files()))
def test_scheme_reader(data):
    try:
        scheme = load_scheme(_tmp_file(data, ".json"))
    except KbxError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert scheme.labels and all(s.label and s.entity_type for s in scheme.labels)


# ------------------------------------------------------------------------------------- Visual Genome
@st.composite
def vg_files(draw) -> bytes:
    name = st.one_of(short_text, json_scalars)
    obj_ = st.fixed_dictionaries({}, optional={"name": name, "names": st.lists(name, max_size=2),
                                               "object_id": json_scalars})  # fmt: skip
    rel = st.one_of(
        st.fixed_dictionaries({"subject": obj_, "object": obj_}),
        st.fixed_dictionaries({"subject_id": json_values, "object_id": json_values}),
        json_values,
    )
    image = st.one_of(
        st.fixed_dictionaries({"relationships": st.lists(rel, max_size=3)},
                              optional={"objects": st.lists(st.one_of(obj_, json_values), max_size=3),
                                        "image_id": json_scalars}),
        json_values,
    )  # fmt: skip
    return json.dumps(draw(st.lists(image, max_size=3)), ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated(vg_files()), st.sampled_from([".json", ".json.gz", ".zip"]))
def test_visual_genome_reader(data, suffix):
    if suffix == ".json.gz" and data[:1] == b"[":  # also a real gzip of the data, not only a fake one
        import gzip

        data = gzip.compress(data)
    try:
        graph, n = build_graph(_tmp_file(data, suffix))
    except KbxError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert n >= 0 and all(isinstance(node, str) for node in graph.nodes)


# -------------------------------------------------------------------------------------- model config
@st.composite
def config_objects(draw) -> dict:
    from catmner_model.config import CatMnerConfig

    names = [f.name for f in __import__("dataclasses").fields(CatMnerConfig)]
    return draw(st.dictionaries(st.one_of(st.sampled_from(names), short_text), json_values, max_size=4))


@FUZZ
@given(mutated(json_bytes(st.one_of(config_objects(), json_values))))
def test_model_config_file_reader(data):
    try:
        cfg = load_config(str(_tmp_file(data, ".json")))
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert isinstance(cfg.max_span_len, int) and cfg.max_span_len >= 1


@FUZZ
@given(st.one_of(json_bytes(config_objects()).map(lambda b: b.decode("utf-8", "replace")), odd_text))
def test_model_config_option(text):
    """--model-config '...' on top of the tiny config (the CLI's path: parse, then override)."""
    try:
        overrides = parse_config_json(text, "--model-config")
        cfg = load_config("tiny", **overrides)
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert isinstance(config_from_dict(__import__("dataclasses").asdict(cfg)).variant, str)


# ------------------------------------------------------------------------------------------ run records
@st.composite
def record_objects(draw) -> dict:
    from catmner_bench.records import SCHEMA_VERSION

    base = {k: draw(json_values) for k in BenchRecord.FIELDS}
    base["schema_version"] = draw(st.sampled_from([SCHEMA_VERSION, SCHEMA_VERSION, 1, 0, "1"]))
    base["run_key"] = draw(st.one_of(st.just("0123456789abcdef"), json_scalars))
    base["spec"] = draw(st.one_of(st.dictionaries(short_text, json_values, max_size=3), json_values))
    base["metrics"] = draw(st.one_of(st.dictionaries(short_text, json_values, max_size=3), json_values))
    setting = st.fixed_dictionaries({"round": short_text, "setting": short_text, "index": json_scalars})
    recipe = st.fixed_dictionaries(
        {
            "status": st.sampled_from(["current", "placement", "older", "new"]),
            "in_verdicts": st.one_of(st.booleans(), json_scalars),
            "saliency": st.one_of(st.none(), short_text, json_scalars),
            "search": st.one_of(st.lists(setting, max_size=2), json_values),
        }
    )
    base["recipe"] = draw(st.one_of(recipe, json_values))
    for k in draw(st.lists(st.sampled_from(list(BenchRecord.FIELDS)), max_size=2)):
        base.pop(k, None)
    return base


@FUZZ
@given(mutated(json_bytes(st.one_of(record_objects(), json_values))))
def test_run_record_reader(data):
    path = _tmp_file(data, ".json")
    try:
        rec = read_record(path)
    except BenchError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert isinstance(rec, BenchRecord) and isinstance(rec.metrics, dict) and isinstance(rec.extra, dict)
    assert rec.recipe.rank in (0, 1, 2) and rec.to_json()["recipe"] == json.loads(data)["recipe"]


# ------------------------------------------------------------------------ a model directory's config.json
_MODEL_DIR: list[Path] = []


def _model_dir() -> Path:
    """A tiny saved model (made once per session): its config.json is what the fuzzing replaces."""
    if not _MODEL_DIR:
        import torch
        from catmner_model.model import create_model

        torch.manual_seed(0)
        _MODEL_DIR.append(
            create_model("tiny", ["person"], variant="text").save_pretrained(Path(_tmp_dir()) / "model")
        )
    return _MODEL_DIR[0]


@st.composite
def model_configs(draw) -> bytes:
    meta = json.loads((_model_dir() / "config.json.orig").read_text())
    section = draw(st.sampled_from(["config", "encoder_config", None]))
    for _ in range(draw(st.integers(1, 3))):
        target = meta if section is None or not isinstance(meta.get(section), dict) else meta[section]
        key = draw(st.one_of(st.sampled_from(sorted(target)), short_text))
        if draw(st.booleans()):
            target[key] = draw(json_values)
        else:
            target.pop(key, None)
    return json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(st.data())
def test_model_directory_config_reader(data):
    from catmner_model.model_io import read_model_dir

    d = _model_dir()
    if not (d / "config.json.orig").exists():
        (d / "config.json.orig").write_bytes((d / "config.json").read_bytes())
    (d / "config.json").write_bytes(data.draw(mutated(model_configs())))
    try:
        saved = read_model_dir(d)
    except CatmnerError as exc:
        assert "\n" not in str(exc), exc  # one line
        return
    assert saved.config.max_span_len >= 1 and isinstance(saved.words["words"], list)
