"""Entity-level scoring against hand-counted cases and against seqeval on the real files."""

from __future__ import annotations

import random

import pytest
from catmner_model.data import Entity, entities_to_tags, load_split, tags_to_entities
from catmner_model.metrics import read_predictions, score, score_both, score_tags, write_predictions
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2


def test_hand_counted():
    gold = [[Entity(0, 2, "PER"), Entity(3, 4, "LOC")], [Entity(1, 2, "ORG")]]
    pred = [[Entity(0, 2, "PER"), Entity(3, 4, "ORG")], [Entity(1, 2, "ORG"), Entity(0, 1, "MISC")]]
    s = score(gold, pred)
    assert (s["tp"], s["n_pred"], s["n_gold"]) == (2, 4, 3)
    assert s["precision"] == pytest.approx(50.0)
    assert s["recall"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))
    assert s["per_type"]["PER"]["f1"] == 100.0
    assert s["per_type"]["LOC"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
        "tp": 0,
        "n_pred": 0,
    }
    assert s["per_type"]["MISC"]["precision"] == 0.0 and s["per_type"]["MISC"]["support"] == 0
    assert s["mode"] == "conlleval"


def test_boundary_errors_count_twice():
    s = score([[Entity(0, 2, "PER")]], [[Entity(0, 1, "PER")]])
    assert (s["tp"], s["n_pred"], s["n_gold"], s["f1"]) == (0, 1, 1, 0.0)


def _corrupt(tags: list[str], rng: random.Random) -> list[str]:
    """Perturb gold tags the way a tagger errs: drop, retype, shift and invent entities, stray I- tags."""
    out = list(tags)
    types = ["PER", "LOC", "ORG", "MISC"]
    for i in range(len(out)):
        r = rng.random()
        if r < 0.05:
            out[i] = "O"
        elif r < 0.10 and out[i] != "O":
            out[i] = out[i][:2] + rng.choice(types)
        elif r < 0.13:
            out[i] = rng.choice(["B-", "I-"]) + rng.choice(types)
    return out


@pytest.mark.parametrize("dataset", ["twitter2015", "twitter2017"])
def test_matches_seqeval_on_real_files(shared_data, dataset):
    rng = random.Random(13)
    tweets = load_split(dataset, "test", shared_data)
    gold = [t.tags for t in tweets]
    pred = [_corrupt(t, rng) for t in gold]
    # conlleval-style: seqeval's default mode
    ours = score_tags(gold, pred, "conlleval")
    assert ours["precision"] / 100 == pytest.approx(precision_score(gold, pred))
    assert ours["recall"] / 100 == pytest.approx(recall_score(gold, pred))
    assert ours["f1"] / 100 == pytest.approx(f1_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True)
    for t in ("PER", "LOC", "ORG", "MISC"):
        assert ours["per_type"][t]["f1"] / 100 == pytest.approx(report[t]["f1-score"])
        assert ours["per_type"][t]["support"] == report[t]["support"]
    # strict IOB2
    strict = score_tags(gold, pred, "strict")
    assert strict["f1"] / 100 == pytest.approx(f1_score(gold, pred, mode="strict", scheme=IOB2))
    assert strict["n_gold"] < ours["n_gold"] or dataset == "twitter2017"


def test_gold_against_itself(shared_data):
    tweets = load_split("twitter2015", "valid", shared_data)
    both = score_both(tweets, [t.entities for t in tweets])
    assert both["conlleval"]["f1"] == 100.0 and both["conlleval"]["n_gold"] == 1594
    # lenient gold predicted perfectly still loses the 53 stray-I entities under strict gold
    assert both["strict"]["n_gold"] == 1541 and both["strict"]["recall"] == 100.0


def test_prediction_file_roundtrip_and_seqeval(shared_data, tmp_path):
    tweets = load_split("twitter2017", "valid", shared_data)
    rng = random.Random(3)
    pred = [tags_to_entities(_corrupt(t.tags, rng)) for t in tweets]
    path = tmp_path / "pred.conll"
    write_predictions(path, tweets, pred)
    back_tweets, back_pred = read_predictions(path)
    assert [t.tokens for t in back_tweets] == [t.tokens for t in tweets]
    assert [t.imgid for t in back_tweets] == [t.imgid for t in tweets]
    assert back_pred == pred
    # an external scorer reading the file agrees with ours
    lines = [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines() if "\t" in ln]
    rows, y_true, y_pred = [], [], []
    for t in tweets:
        rows = lines[: len(t.tokens)]
        lines = lines[len(t.tokens) :]
        y_true.append([r[1] for r in rows])
        y_pred.append([r[2] for r in rows])
    assert score([t.entities for t in back_tweets], back_pred)["f1"] / 100 == pytest.approx(
        f1_score(y_true, y_pred)
    )
    assert [entities_to_tags(p, len(t.tokens)) for p, t in zip(pred, tweets, strict=True)] == y_pred
