"""Web sources against a real HTTP server on 127.0.0.1: retries on 5xx, timeouts, malformed JSON, cache."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from kb_expand import load_label_words
from kb_expand.build import BuildConfig, run_build
from kb_expand.errors import SourceUnavailable
from kb_expand.store import Store
from kb_expand.web import HttpClient, HttpConfig

FAST = HttpConfig(timeout=2.0, retries=2, backoff=0.01, min_interval=0.0)


def _related(query):
    term = query["term"][0]
    words = {"person": ["human", "individual", "people", "child", "worker", "Person"],
             "animal": ["beast", "creature", "dog", "pet"]}.get(term, [term + "ish"])  # fmt: skip
    return (200, [{"word": w, "score": 10.0 - i, "from": "wn,cn5"} for i, w in enumerate(words)])


def test_relatedwords_build_then_cache(db, server, tmp_path):
    scheme = tmp_path / "scheme.json"
    scheme.write_text(
        json.dumps({"labels": [{"label": "person", "type": "PER"}, {"label": "animal", "type": "MISC"}]})
    )
    server.set("/api/related", _related)
    cfg = BuildConfig(
        source="relatedwords", scheme=str(scheme), relatedwords_url=server.url, http=FAST, progress=False
    )
    first = run_build(cfg, db)
    assert first.http_requests == 2 and len(server.requests) == 2
    lw = load_label_words("relatedwords", db)
    assert lw.labels["person"] == ["human", "individual", "child", "worker"]  # label + plural dup dropped
    second = run_build(replace(cfg, force=True), db)  # from the store's http_cache: no request is made
    assert second.http_requests == 0 and len(server.requests) == 2
    assert load_label_words(str(second.build_id), db).labels == lw.labels


def test_retry_after_5xx_then_success(db, server):
    server.set(
        "/api/related", (503, "busy"), (500, "oops"), (200, [{"word": "dog", "score": 1, "from": "wn"}])
    )
    with Store.open(db) as store:
        http = HttpClient(store, FAST)
        assert http.get_json(f"{server.url}/api/related", {"term": "animal"}) == [
            {"word": "dog", "score": 1, "from": "wn"}
        ]
        assert http.requests_made == 3 and store.http_cache_size() == 1


def test_persistent_5xx_is_one_clear_error(db, server):
    server.set("/api/related", (502, "bad gateway"))
    with Store.open(db) as store:
        with pytest.raises(SourceUnavailable, match=r"cannot reach .*HTTP 502 \(3 attempts\)"):
            HttpClient(store, FAST).get_json(
                f"{server.url}/api/related", {"term": "x"}, source="relatedwords"
            )
        assert store.http_cache_size() == 0  # failures are not cached


def test_timeout(db, server):
    server.set("/api/related", ("sleep", 1.5, 200, "[]"))
    cfg = HttpConfig(timeout=0.3, retries=1, backoff=0.01, min_interval=0.0)
    with Store.open(db) as store:
        with pytest.raises(SourceUnavailable, match=r"timed out after 0.3 s \(2 attempts\)"):
            HttpClient(store, cfg).get_json(f"{server.url}/api/related", {"term": "x"})


def test_malformed_json(db, server):
    server.set("/api/related", (200, '[{"word": "dog", '))
    with (
        Store.open(db) as store,
        pytest.raises(SourceUnavailable, match="malformed JSON from http://127.0.0.1"),
    ):
        HttpClient(store, FAST).get_json(f"{server.url}/api/related", {"term": "x"})
    server.set("/api/related", (200, '{"not": "a list"}'))
    cfg = BuildConfig(source="relatedwords", relatedwords_url=server.url, http=FAST, progress=False)
    with pytest.raises(SourceUnavailable, match=r"unexpected response .*expected \[\{word, score, from\}\]"):
        run_build(cfg, db)
    with Store.open(db) as store:
        assert store.builds() == []


def test_unreachable_and_offline(db, server):
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    cfg = BuildConfig(source="relatedwords", relatedwords_url=dead, http=FAST, progress=False)
    with pytest.raises(SourceUnavailable, match="relatedwords: cannot reach http://127.0.0.1:9/api/related"):
        run_build(cfg, db)
    off = BuildConfig(source="relatedwords", relatedwords_url=server.url, progress=False,
                      http=HttpConfig(offline=True, min_interval=0.0))  # fmt: skip
    with pytest.raises(SourceUnavailable, match="offline and .* not in the cache"):
        run_build(off, db)
    assert server.requests == []


def _conceptnet(query):
    node = query["node"][0]
    term = node.split("/")[3]
    edges = [
        {"@id": f"/a/{i}", "rel": {"@id": rel}, "start": {"@id": s}, "end": {"@id": e}, "weight": 2.0}
        for i, (rel, s, e) in enumerate([
            ("/r/IsA", "/c/en/dog", node), ("/r/IsA", "/c/en/cat", node), ("/r/AtLocation", node, "/c/en/zoo"),
            ("/r/CapableOf", node, "/c/en/bark"), ("/r/Synonym", node, "/c/fr/animal"),
        ])
    ] if term == "animal" else []  # fmt: skip
    return (200, {"edges": edges})


def test_conceptnet_rest_and_textual_fusion(db, server, tmp_path):
    scheme = tmp_path / "scheme.json"
    scheme.write_text(json.dumps({"labels": [{"label": "animal", "type": "MISC", "seeds": ["dog"]}]}))
    server.set("/query", _conceptnet)
    cfg = BuildConfig(
        source="conceptnet", scheme=str(scheme), conceptnet_url=server.url, http=FAST, progress=False
    )
    res = run_build(cfg, db)
    # non-English and verb-phrase edges skipped; dog and cat tie (IsA, weight 2): the word breaks the tie
    assert res.labels["animal"] == ["cat", "dog", "zoo"]
    # textual: conceptnet REST unreachable -> proceeds with wordnet + embeddings and records the gap
    tcfg = BuildConfig(source="textual", scheme=str(scheme), conceptnet_url="http://127.0.0.1:9", http=FAST,
                       progress=False)  # fmt: skip
    tres = run_build(tcfg, db)
    assert set(tres.missing) == {"conceptnet"} and "cannot reach" in tres.missing["conceptnet"]
    assert len(tres.labels["animal"]) == 10
    with Store.open(db) as store:
        assert store.resolve_build("textual")["missing"] == tres.missing
