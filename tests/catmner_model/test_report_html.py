"""`catmner evaluate --html`: the error groups of hand-made cases, their counts reconciled with evaluate's
JSON on a real split, and the page opened in a real headless Chromium showing the same numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.data import Entity, Tweet, load_split
from catmner_model.metrics import read_predictions
from catmner_model.model import create_model
from catmner_model.report_html import GROUPS, classify_tweet, error_analysis

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")


def test_groups_of_hand_made_cases():
    E = Entity
    gold = [E(0, 2, "PER"), E(3, 4, "LOC"), E(5, 7, "ORG"), E(8, 9, "MISC"), E(10, 11, "PER")]
    pred = [E(0, 2, "PER"), E(3, 4, "ORG"), E(5, 6, "ORG"), E(12, 13, "LOC"), E(8, 10, "LOC")]
    c = classify_tweet(gold, pred)
    assert c["correct"] == [{"start": 0, "end": 2, "type": "PER"}]
    got = [(e["group"], (e["pred"] or {}).get("start"), [g["start"] for g in e["gold"]]) for e in c["errors"]]
    assert got == [
        ("wrong_type", 3, [3]),  # the gold LOC's word predicted ORG
        ("wrong_boundary", 5, [5]),  # ORG 5:6 inside the gold ORG 5:7
        ("wrong_boundary", 8, [8]),  # LOC 8:10 over the gold MISC 8:9: boundary and type
        ("missed", None, [10]),
        ("spurious", 12, []),
    ]
    assert [e.get("type_differs") for e in c["errors"] if e["group"] == "wrong_boundary"] == [False, True]
    assert c["gold_touched"] == 3


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A random tiny caption model (its span head biased so that it makes every kind of error) evaluated on
    80 real test tweets, with --html."""
    from catmner_model.evaluate import evaluate_model

    root = tmp_path_factory.mktemp("report")
    torch.manual_seed(1)
    model = create_model("tiny", ["person", "city", "team"], variant="cat", visual="caption")
    with torch.no_grad():
        model.span_head.out.bias.copy_(torch.tensor([0.0, -1.0, -1.0, -1.0, -1.0]))
    model.save_pretrained(root / "model")
    result = evaluate_model(
        root / "model", "twitter2015", "test", data_dir=DATA, max_tweets=80,
        predictions=root / "test.conll", html=root / "report.html",
    )  # fmt: skip
    _, preds = read_predictions(root / "test.conll")  # what the model predicted, tweet by tweet
    tweets = load_split("twitter2015", "test", DATA)[:80]  # the gold entities evaluate scored against
    assert len(preds) == len(tweets)
    return root / "report.html", result, error_analysis(tweets, preds)


def test_counts_agree_with_evaluate_json(evaluated):
    _, result, analysis = evaluated
    c, m = analysis["counts"], result["lenient"]
    assert c["correct"] == m["tp"] and c["n_pred"] == m["n_pred"] and c["n_gold"] == m["n_gold"]
    assert c["correct"] + c["wrong_type"] + c["wrong_boundary"] + c["spurious"] == m["n_pred"]
    assert c["correct"] + c["missed"] + c["gold_touched"] == m["n_gold"]
    for t, counts in analysis["per_type"].items():
        assert counts["correct"] == m["per_type"][t]["tp"]
    assert all(c[g] > 0 for g in GROUPS), c  # the test model makes every kind of error


def test_report_page_in_chromium(evaluated, chromium, screenshot, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page, result, analysis = evaluated
    text = page.read_text(encoding="utf-8")
    head = text.split('<script type="application/json"')[0]
    assert "://" not in head and "<link" not in text and "<script src" not in text  # nothing fetched
    driver = chromium
    driver.get(page.as_uri())
    assert driver.find_element(By.ID, "check").get_attribute("data-ok") == "true"
    for cell in driver.find_elements(By.CSS_SELECTOR, "[data-mode][data-field]"):
        mode, kind, field = (cell.get_attribute(a) for a in ("data-mode", "data-type", "data-field"))
        want = result[mode][field] if kind == "all" else result[mode]["per_type"][kind][field]
        assert json.loads(cell.get_attribute("data-value")) == want, (mode, kind, field)
        assert cell.text == (str(want) if isinstance(want, int) else f"{want:.2f}")

    def counts() -> dict[str, int]:
        return {
            b.get_attribute("data-group"): int(b.find_element(By.CSS_SELECTOR, ".n").text)
            for b in driver.find_elements(By.CSS_SELECTOR, ".group-btn")
        }

    got = counts()
    assert {g: got[g] for g in (*GROUPS, "correct")} == {
        g: analysis["counts"][g] for g in (*GROUPS, "correct")
    }
    assert got["all"] == result["n_tweets"]
    assert got["errors"] == int(driver.find_element(By.ID, "shown").get_attribute("data-n"))
    Select(driver.find_element(By.ID, "type-filter")).select_by_value("PER")
    got = counts()
    assert {g: got[g] for g in (*GROUPS, "correct")} == analysis["per_type"]["PER"]
    driver.find_element(By.CSS_SELECTOR, '.group-btn[data-group="missed"]').click()
    want = sum(
        any(e["group"] == "missed" and e["gold"][0]["type"] == "PER" for e in tw["errors"])
        for tw in analysis["tweets"]
    )
    assert int(driver.find_element(By.ID, "shown").get_attribute("data-n")) == want
    badges = driver.find_elements(By.CSS_SELECTOR, "#tweets .errors li")
    assert badges and {b.get_attribute("data-group") for b in badges} <= {"missed"} | set(GROUPS)
    Select(driver.find_element(By.ID, "type-filter")).select_by_value("")
    driver.find_element(By.CSS_SELECTOR, '.group-btn[data-group="errors"]').click()
    screenshot(driver, tmp_path / "evaluate-html.png")


def test_evaluate_cli_writes_the_page(evaluated, tmp_path):
    from catmner_model.cli import app
    from typer.testing import CliRunner

    page, _, _ = evaluated
    model = page.parent / "model"
    out = tmp_path / "sub" / "errors.html"
    args = ["evaluate", str(model), "--dataset", "twitter2015", "--data-dir", str(DATA), "--max-tweets", "10"]
    res = CliRunner().invoke(app, [*args, "--html", str(out), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["html"] == str(out)
    assert f'"n_tweets": {result["n_tweets"]}' in out.read_text(encoding="utf-8")
    res = CliRunner().invoke(app, [*args, "--html", "/proc/no/such.html", "--quiet"])
    assert res.exit_code == 1 and res.output.startswith("error: ") and "Traceback" not in res.output


def test_tweet_text_cannot_break_out_of_the_page():
    import re

    from catmner_model.report_html import render_html

    tokens = ["</script><script>alert(1)</script>", "<!--", "Paris"]
    tweet = Tweet(imgid="1", tokens=tokens, tags=["O", "O", "B-LOC"], entities=[Entity(2, 3, "LOC")])
    result = {"model_dir": "m", "dataset": "twitter2015", "split": "test", "n_tweets": 1}
    page = render_html(result, error_analysis([tweet], [[Entity(0, 1, "PER")]]))
    assert "<script>alert" not in page and "<!--" not in page
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["analysis"]["tweets"][0]["tokens"] == tokens
