"""Every source on real data: WordNet (assembled from Debian's files), GloVe, ConceptNet dumps, Visual Genome."""

from __future__ import annotations

import gzip
import json
import math
import zipfile
from pathlib import Path

import pytest
from kb_expand.errors import InputError
from kb_expand.scheme import load_scheme, parse_scheme
from kb_expand.sources.base import Candidate, finalize
from kb_expand.sources.conceptnet import ConceptNetSource, iter_dump_edges
from kb_expand.sources.embeddings import EmbeddingSource, load_vectors
from kb_expand.sources.vg_graph import build_graph, iter_json_array, iter_relation_pairs
from kb_expand.sources.visualgenome import VisualGenomeSource
from kb_expand.sources.wordnet import LEXNAMES, WordNetSource, assemble_wordnet, is_mainly_noun, lexnames_text
from kb_expand.text import dedup_key


def test_scheme_default_and_errors(tmp_path):
    s = load_scheme()
    assert {spec.entity_type for spec in s.labels} == {"PER", "LOC", "ORG", "MISC"}
    assert "transportation" in [spec.label for spec in s.labels] and "animal" in [
        spec.label for spec in s.labels
    ]
    assert all(spec.seeds[0] == spec.label for spec in s.labels)
    with pytest.raises(InputError, match="type must be one of"):
        parse_scheme({"labels": [{"label": "x", "type": "FOO"}]}, "my.json")
    bad = tmp_path / "s.json"
    bad.write_text('{"labels": [\n{"label": }]}')
    with pytest.raises(InputError, match=r"s\.json:2"):
        load_scheme(bad)


def test_finalize_filters_and_dedups():
    cands = [Candidate(w, 10 - i) for i, w in enumerate(
        ["Person", "persons", "the", "cars", "car", "police_officer", "x1", "a b c d", "people", "Car"])]  # fmt: skip
    words = [c.word for c in finalize(cands, "person", k=10)]
    assert words == ["cars", "police officer"]  # label, its plural, stop word, duplicates, junk all dropped


@pytest.mark.skipif(
    not Path("/usr/share/wordnet/data.noun").is_file(), reason="Debian wordnet-base not installed"
)
def test_wordnet_assembled_from_debian(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(
        nltk.data, "path", [*nltk.data.path, str(tmp_path / "nltk_data")]
    )  # NLTK reads only its path
    target = assemble_wordnet("/usr/share/wordnet", tmp_path / "nltk_data")
    lex = (target / "lexnames").read_text().splitlines()
    assert len(lex) == 45 == len(LEXNAMES) and lex[18].split("\t")[1] == "noun.person"
    assert not any(p.is_symlink() for p in target.iterdir())
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    wn = WordNetCorpusReader(str(target), None)
    assert (
        wn.synset("worker.n.01").lexname() == "noun.person"
        and wn.synset("dog.n.01").lexname() == "noun.animal"
    )
    assert lexnames_text().count("\n") == 45


def test_wordnet_source_prefers_common_related_words():
    src = WordNetSource()
    words = src.expand("person", ["person"], 10)
    names = [c.word for c in words]
    assert {"worker", "child", "woman"} & set(names) and "person" not in names
    assert all(c.evidence["path"].startswith("person.n.01") for c in words)
    assert words == sorted(words, key=lambda c: -c.score)
    assert is_mainly_noun("dog") and not is_mainly_noun("using") and not is_mainly_noun("young")


def test_wordnet_senses_and_the_sense_check():
    from kb_expand.sources.wordnet import abstractness, label_senses, load_wordnet, noun_senses, sense_under

    wn = load_wordnet()
    shares = dict(noun_senses("boy"))
    assert abs(sum(shares.values()) - 1) < 1e-9 and shares[wn.synset("male_child.n.01")] > 0.5
    assert abstractness("management") > 0.5 and abstractness("dog") < 0.1 and abstractness("part") > 0.5
    senses = label_senses(["event", "festival", "holiday", "tournament"])
    assert wn.synset("holiday.n.02") in senses  # a day, like festival.n.01, not only vacation.n.01
    assert sense_under(wn.synset("concert.n.01"), senses) == wn.synset("event.n.01")
    # the wordnet source drops words reached through a sense they rarely have
    team = {c.word for c in WordNetSource().expand("team", ["team", "club", "league"], 40)}
    organization = {c.word for c in WordNetSource().expand("organization", ["organization"], 40)}
    assert "defense" not in team and "unit" not in organization and "squad" in team


def test_textual_fusion_needs_agreement(ckbc):
    from kb_expand.sources.textual import TextualSource

    scheme = load_scheme()
    fused = TextualSource([WordNetSource(), ConceptNetSource(ckbc, keep=is_mainly_noun),
                           EmbeddingSource(keep=is_mainly_noun)])  # fmt: skip
    fused.prepare(scheme.labels)
    got = {spec.label: fused.expand(spec.label, spec.seeds, 10) for spec in scheme.labels}
    for label, cands in got.items():
        assert len(cands) == 10, label
        assert [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
        for c in cands:  # the integer part of the score is the number of sources vouching for the word
            assert int(c.score) == len(c.evidence["support"]) and c.evidence["sources"]
            assert len(c.evidence["support"]) >= 2 or "embeddings" in c.evidence["support"]
            assert (
                c.evidence.get("sense", {}).get("abstract", 0) < 0.5
                or "kind_of" in c.evidence["sense"]
                or ("gloss_names" in c.evidence["sense"])
            )
    words = {label: {c.word for c in cands} for label, cands in got.items()}
    # abstract words, words whose main sense is another, words only one source proposes: all gone
    assert not {"management", "unit", "personnel", "organisation"} & words["organization"]
    assert not {"act", "action", "occurrence", "summer"} & words["event"]
    assert not {"status", "origin", "music", "word"} & words["nationality"]
    assert not {"key", "release", "combination"} & words["product"]
    assert not {"defense", "conference", "unit"} & words["team"]
    assert {"company", "institution"} <= words["organization"] and {"football", "club"} <= words["team"]
    assert {"dog", "cat", "bird"} <= words["animal"] and "female" not in words["animal"]


def test_embeddings_glove_neighbours():
    kv = load_vectors()
    assert kv.vector_size == 50 and len(kv.key_to_index) == 400000
    assert load_vectors() is kv  # cached in memory; the .kv file is cached on disk
    src = EmbeddingSource(keep=is_mainly_noun)
    words = [c.word for c in src.expand("animal", ["animal", "dog", "bird"], 10)]
    assert {"cat", "pet"} <= set(words) and "animal" not in words and "dogs" not in words


def test_conceptnet_ckbc_dump(ckbc, tmp_path):
    scheme = load_scheme()
    src = ConceptNetSource(ckbc)
    src.prepare(scheme.labels)
    animal = src.expand("animal", ["animal", "dog", "bird"], 10)
    assert {"pet", "cat"} <= {c.word for c in animal}
    assert all(e.split(" (line ")[1].rstrip(")").isdigit() for c in animal for e in c.evidence["edges"])
    # the same dump gzipped gives the same words
    gz = tmp_path / "dump.csv.gz"
    gz.write_bytes(gzip.compress(ckbc.read_bytes()))
    src_gz = ConceptNetSource(gz)
    src_gz.prepare(scheme.labels)
    assert [c.word for c in src_gz.expand("animal", ["animal", "dog", "bird"], 10)] == [
        c.word for c in animal
    ]


def test_conceptnet_official_head_is_english_only(data_dir):
    head = data_dir / "conceptnet" / "conceptnet-assertions-5.7.0.head.csv"
    terms = {line.split("\t")[2].split("/")[3] for line in head.read_text().splitlines()}
    assert list(iter_dump_edges(head, terms)) == []  # every edge there is non-English: all skipped


def test_conceptnet_bad_line_names_file_and_line(ckbc, tmp_path):
    bad = tmp_path / "bad.csv"
    lines = ckbc.read_text().splitlines()[:3] + ["only\ttwo"]
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bad\.csv:4: expected 5 tab-separated columns"):
        list(iter_dump_edges(bad, {"day"}))


def test_vg_sample_and_vg150_files(data_dir):
    sample = data_dir / "visualgenome" / "relationships_sample5.json"
    g, n = build_graph(sample)
    assert n == 158 == sum(len(img["relationships"]) for img in json.loads(sample.read_text()))
    big = data_dir / "visualgenome" / "relationships_vg150_test5k.json"
    g2, n2 = build_graph(big)
    assert n2 == 41324 and g2.number_of_nodes() == 150
    assert sum(d["weight"] for _, _, d in g2.edges(data=True)) <= n2  # self-pairs are not edges


def test_vg_streaming_matches_json_load_with_tiny_chunks(data_dir):
    sample = data_dir / "visualgenome" / "relationships_sample5.json"
    assert list(iter_json_array(sample, chunk=97)) == json.loads(sample.read_text())


def test_vg_gz_zip_and_scene_graphs_agree(data_dir, tmp_path):
    sample = data_dir / "visualgenome" / "relationships_sample5.json"
    pairs = list(iter_relation_pairs(sample))
    gz = tmp_path / "rel.json.gz"
    gz.write_bytes(gzip.compress(sample.read_bytes()))
    zp = tmp_path / "rel.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.write(sample, "relationships.json")
    # scene_graphs.json layout: objects with ids, relationships by subject_id/object_id
    graphs = []
    for img in json.loads(sample.read_text()):
        objects, rels = [], []
        for r in img["relationships"]:
            ids = []
            for role in ("subject", "object"):  # fresh ids: real VG reuses an object_id under different names
                o = r[role]
                objects.append({"object_id": len(objects) + 1, "names": [o.get("name") or o["names"][0]]})
                ids.append(len(objects))
            rels.append({"predicate": r["predicate"], "subject_id": ids[0], "object_id": ids[1]})
        graphs.append({"image_id": img["image_id"], "objects": objects, "relationships": rels})
    sg = tmp_path / "scene_graphs.json"
    sg.write_text(json.dumps(graphs))
    for other in (gz, zp, sg):
        assert list(iter_relation_pairs(other)) == pairs


def test_vg_truncated_file_error(data_dir, tmp_path):
    text = (data_dir / "visualgenome" / "relationships_sample5.json").read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match=r"cut\.json:\d+: invalid JSON"):
        list(iter_json_array(cut))
    notarray = tmp_path / "obj.json"
    notarray.write_text('{"a": 1}')
    with pytest.raises(InputError, match="expected a JSON array"):
        list(iter_json_array(notarray))


def test_vg_source_seeds_then_associated_neighbours(data_dir):
    src = VisualGenomeSource(data_dir / "visualgenome" / "relationships_vg150_test5k.json")
    labels = load_scheme().labels
    src.prepare(labels)
    words = src.expand("person", ["person", "people", "man", "woman"], 10)
    roles = [c.evidence["role"] for c in words]
    assert roles == ["seed"] * 5 + ["neighbour"] * 5
    seeds = [c.word for c in words[:5]]
    # seeds: objects whose visible sense is a kind of person (WordNet), most related first
    assert {"man", "woman", "boy", "girl"} <= set(seeds) and "person" not in seeds
    assert all(c.evidence["kind_of"] for c in words[:5])
    # neighbours: normalised PMI with the seeds (share of relationships vs. how common each object is),
    # recomputed here from the graph, gated by relatedness and the least npmi
    g = src.graph
    deg = {n: sum(d["weight"] for d in g[n].values()) for n in g.nodes}
    edges = sum(d["weight"] for _, _, d in g.edges(data=True))
    rel = dict(zip(src._names, src.relatedness(src.query_vector("person", ["person", "people", "man", "woman"])), strict=True))  # fmt: skip
    expected = []
    for n in src._names:
        joint = sum(g[s][n]["weight"] for s in seeds if g.has_edge(s, n))
        if n in seeds or dedup_key(n) == "person" or joint < 3:
            continue
        p = joint / edges
        npmi = math.log(
            p / ((deg[n] / (2 * edges)) * (sum(deg[s] for s in seeds) / (2 * edges)))
        ) / -math.log(p)
        if npmi >= src.min_npmi and rel[n] >= src.min_neighbour_relatedness:
            expected.append((round(npmi, 4), n))
    expected = sorted(expected, key=lambda t: (-t[0], t[1]))[:5]
    assert [(c.score, c.word) for c in words[5:]] == expected
    assert {"shirt", "hair", "hat"} <= {c.word for c in words[5:]}
    every = {spec.label: src.expand(spec.label, spec.seeds, 10) for spec in labels}
    found = {label: [c.word for c in cands] for label, cands in every.items()}
    # the objects in most pictures no longer fill the labels
    common = sorted(deg, key=lambda n: (-deg[n], n))[:10]  # window, man, shirt, tree, ... by relationships
    assert sum(w in common for label, ws in found.items() if label != "person" for w in ws) <= 3
    assert not {"part", "number", "background"} & {w for ws in found.values() for w in ws}  # abstract
    # polysemous names are judged in the sense the pictures use them in
    sense = {n: src._sense_name(i) for i, n in enumerate(src._names)}
    assert (
        sense["board"] == "board.n.02" and sense["branch"] == "branch.n.02" and sense["post"] == "post.n.04"
    )
    assert "spot" not in sense  # mostly a mark in the pictures (an abstract sense): never a label word
    for label in ("location", "team", "event", "organization"):
        assert not {"spot", "top", "track", "board", "branch", "post"} & set(found[label]), label
    # a label gets fewer words when nothing else in the vocabulary passes the thresholds
    assert len(found["event"]) < 10 and len(found["organization"]) < 10
    assert all(len(ws) <= 10 for ws in found.values())
    assert {"dog", "cat", "ear", "tail"} <= set(found["animal"])
    assert {"truck", "car", "wheel", "tire"} <= set(found["transportation"])


def test_the_source_registry_is_what_build_and_the_cli_offer(db, monkeypatch):
    """A source is its class plus its line in `sources.SOURCES`: build and `kbx build --source` read it."""
    from kb_expand import sources
    from kb_expand.build import BuildConfig, run_build
    from kb_expand.cli import SourceName
    from kb_expand.errors import KbxError
    from kb_expand.sources.base import Source

    assert [s.value for s in SourceName] == list(sources.SOURCE_NAMES) == list(sources.SOURCES)
    for name in sources.SOURCE_NAMES:
        cls = sources.source_class(name)
        assert issubclass(cls, Source) and cls.name == name
    with pytest.raises(KbxError, match="unknown source 'nope': choose one of textual, wordnet"):
        run_build(BuildConfig(source="nope", progress=False), db)

    class Echo(Source):
        name = "echo"

        def expand(self, label, seeds, k):
            return finalize([Candidate(s, 1.0 / (i + 1)) for i, s in enumerate(seeds)], label, k)

    monkeypatch.setitem(sources.SOURCES, "echo", Echo)
    res = run_build(BuildConfig(source="echo", progress=False), db)
    assert res.source == "echo" and any(res.labels.values())
