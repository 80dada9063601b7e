"""The real `kbx` commands against a tmp_path store (typer CliRunner, and one subprocess for error output)."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest
from kb_expand import load_label_words
from kb_expand.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def _ok(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res.stdout


def test_build_list_show_diff_export(db, data_dir, ckbc):
    vg = data_dir / "visualgenome" / "relationships_vg150_test5k.json"
    out = _ok(["build", "--source", "textual", "--conceptnet-dump", str(ckbc), "--db", str(db), "--quiet"])
    assert out.startswith("build 1: textual, 10 labels, 100 words")
    _ok(["build", "-s", "visualgenome", "--vg", str(vg), "--db", str(db), "-q"])
    _ok(["build", "-s", "wordnet", "--top-k", "5", "--db", str(db), "-q"])
    listing = _ok(["list", "--db", str(db)]).splitlines()
    assert [line.split()[1] for line in listing[1:]] == ["textual", "visualgenome", "wordnet"]
    show = _ok(["show", "textual", "--label", "animal", "--db", str(db)])
    assert "animal (MISC)" in show and " 1. " in show and "person" not in show
    lines = [line for line in show.splitlines() if line.split(".")[0].strip().isdigit()]
    assert len(lines) == 10 and all(len(line) < 160 and "{" not in line for line in lines)  # one phrase each
    assert "wordnet: " in show and "glove cos 0." in show and "sources agree" in show
    shown = json.loads(_ok(["show", "2", "--json", "--db", str(db)]))
    n_vg = len(shown["words"])
    assert shown["build"]["source"] == "visualgenome" and 30 <= n_vg <= 100  # fewer where nothing qualifies
    assert all(w["evidence"]["role"] in ("seed", "neighbour") and w["summary"] for w in shown["words"])
    vg_show = _ok(["show", "visualgenome", "-l", "animal", "--db", str(db)])
    assert "seed: related to the label 0." in vg_show and "relationships with seeds (" in vg_show
    assert "npmi 0." in vg_show
    vg_event = _ok(["show", "visualgenome", "-l", "event", "--db", str(db)])  # a label with too few words
    assert (
        "event (MISC, " in vg_event
        and "of 10 words: no other word passed the source's thresholds" in vg_event
    )
    d = json.loads(_ok(["diff", "1", "3", "--json", "--db", str(db)]))
    lw1, lw3 = load_label_words("1", db), load_label_words("3", db)
    for label in lw1.labels:
        assert set(d["labels"][label]["only_a"]) == set(lw1.labels[label]) - set(lw3.labels[label])
    assert "diff build 1 -> build 3" in _ok(["diff", "textual", "wordnet", "--db", str(db)])
    exported = json.loads(_ok(["export", "textual", "--format", "json", "--db", str(db)]))
    assert exported["labels"] == lw1.labels and exported["checksum"] == lw1.checksum
    rows = list(csv.DictReader(io.StringIO(_ok(["export", "1", "2", "--format", "csv", "--db", str(db)]))))
    assert len(rows) == 100 + n_vg and {r["source"] for r in rows} == {"textual", "visualgenome"}
    md = _ok(["export", "--format", "markdown", "--db", str(db)])  # latest of every source
    assert md.count("\n## `") == 3 and "| animal | MISC |" in md


def test_export_to_file_is_atomic(db, tmp_path, vg_sample):
    _ok(["build", "-s", "visualgenome", "--vg", str(vg_sample), "-q"])  # store from $KBX_DB
    target = tmp_path / "out.md"
    runner.invoke(app, ["export", "visualgenome", "-f", "markdown", "-o", str(target)])
    text = target.read_text()
    assert "kbx export visualgenome --format markdown -o" in text
    assert not list(tmp_path.glob(".out.md.tmp"))


def test_known_failures_are_one_line(db, tmp_path, kbx):
    missing = tmp_path / "nope.json"
    r = kbx("build", "-s", "visualgenome", "--vg", str(missing), "-q", timeout=120, KBX_DB=str(db))
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"kbx: error: {missing}: Visual Genome file not found"
    ]
    r = kbx("show", "textual", timeout=120, KBX_DB=str(db))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no 'textual' build" in r.stderr
    r = kbx("--debug", "show", "textual", timeout=120, KBX_DB=str(db))
    assert r.returncode == 1 and "Traceback" in r.stderr
    for var in ("KBX_DEBUG", "CATMNER_DEBUG"):
        r = kbx("show", "textual", timeout=120, KBX_DB=str(db), **{var: "1"})
        assert r.returncode == 1 and "Traceback" in r.stderr, var


def test_debug_flag_is_read_by_the_handler(db, monkeypatch, capsys):
    """`kbx --debug` reaches the one handler through the app's callback (in-process, argv as typed)."""
    from kb_expand import cli
    from kb_expand.errors import KbxError

    monkeypatch.delenv("KBX_DEBUG", raising=False)
    monkeypatch.delenv("CATMNER_DEBUG", raising=False)
    monkeypatch.setattr(cli, "_state", {"debug": False})
    monkeypatch.setattr(sys, "argv", ["kbx", "show", "textual"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1 and "kbx: error: " in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["kbx", "--debug", "show", "textual"])
    with pytest.raises(KbxError):  # the one-line error above, now raised with its traceback
        cli.main()
    assert cli.debug_enabled()


def test_identical_build_is_reused_and_force_builds_anew(db, ckbc):
    args = ["build", "-s", "textual", "--conceptnet-dump", str(ckbc), "--db", str(db), "-q"]
    first = _ok(args)
    assert first.startswith("build 1: textual, 10 labels, 100 words")
    again = _ok(args)
    assert again.startswith("build 1: reused: the identical textual build of ") and "--force" in again
    listing = _ok(["list", "--db", str(db)]).splitlines()
    assert len(listing) == 2  # header + one build: the rerun added none
    forced = _ok([*args, "--force"])
    assert forced.startswith("build 2: textual")
    lw1, lw2 = load_label_words("1", db), load_label_words("2", db)
    assert lw1.checksum == lw2.checksum  # a rebuild gives the same words
    # other parameters are another build; rerunning the first parameters makes that build current again
    assert _ok([*args, "--top-k", "5"]).startswith("build 3: textual, 10 labels, 50 words")
    assert load_label_words("textual", db).build_id == 3
    assert _ok(args).startswith("build 2: reused")
    assert load_label_words("textual", db).build_id == 2
    assert [line.split()[0] for line in _ok(["list", "--db", str(db)]).splitlines()[1:]] == ["1", "2", "3"]
    md = _ok(["export", "--format", "markdown", "--db", str(db)])  # latest = the current build
    assert "(build 2, scheme" in md


def test_build_key_changes_with_inputs_and_code(db, vg_sample, tmp_path, monkeypatch):
    from kb_expand import build as kbuild

    vg = tmp_path / "vg.json"
    vg.write_bytes(vg_sample.read_bytes())
    args = ["build", "-s", "visualgenome", "--vg", str(vg), "--db", str(db), "-q"]
    assert _ok(args).startswith("build 1:")
    assert _ok(args).startswith("build 1: reused")
    vg.write_text(vg_sample.read_text().replace('"shirt"', '"sweater"'))  # same path, other content
    assert _ok(args).startswith("build 2: visualgenome")
    monkeypatch.setattr(kbuild, "code_fingerprint", lambda: "0" * 64)  # as if the ranking code changed
    assert _ok(args).startswith("build 3: visualgenome")


def test_evidence_summaries_are_one_phrase():
    from kb_expand.report import summarize_evidence

    textual = {"sources": ["conceptnet", "wordnet"], "support": ["wordnet", "conceptnet", "embeddings"],
               "cosine": 0.712, "wordnet": {"relation": "hyponym", "path": "organization.n.01 > company.n.01"},
               "conceptnet": {"edges": ["company IsA organization (line 7)"]}}  # fmt: skip
    assert summarize_evidence("textual", textual) == (
        "wordnet: hyponym of organization.n.01; conceptnet: company IsA organization; glove cos 0.71; "
        "3 of 3 sources agree"
    )
    kind = {"support": ["wordnet", "embeddings"], "cosine": 0.8,
            "sense": {"synset": "cow.n.01", "kind_of": "animal.n.01", "abstract": 0.0}}  # fmt: skip
    assert summarize_evidence("textual", kind, "my.kv").startswith(
        "wordnet: cow.n.01 is a kind of animal.n.01; vec"
    )
    two = {"relation": "hyponym2", "path": "person.n.01 > worker.n.01 > miner.n.01", "count": 3}
    assert summarize_evidence("wordnet", two) == "hyponym of person.n.01 (via worker.n.01); 3 tagged uses"
    nb = {
        "role": "neighbour",
        "cooccurrences": 12,
        "npmi": 0.4,
        "relatedness": 0.5,
        "via": {"dog": 9, "cat": 3},
    }
    assert summarize_evidence("visualgenome", nb) == (
        "12 relationships with seeds (dog 9, cat 3); npmi 0.40, related to the label 0.50"
    )
    old = {"role": "neighbour", "cooccurrences": 12, "via": {"dog": 12}}  # a build from before npmi
    assert summarize_evidence("visualgenome", old) == "12 relationships with seeds (dog 12)"
