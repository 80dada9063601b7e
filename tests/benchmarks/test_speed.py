"""`catmner-bench run speed` at smoke size: the record holds every figure, the report renders it, the docs'
generated table is the committed record's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catmner_bench import speed
from catmner_bench.records import RecordError, iter_records
from catmner_bench.report import speed as speed_md

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_speed(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    import torch
    from catmner_bench.cli import run
    from catmner_bench.report import write_report

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("speed_home")
    old = os.environ.get("CATMNER_HOME")
    os.environ["CATMNER_HOME"] = str(home)  # feature cache of the tiny image encoder stays in tmp
    try:
        out = tmp_path_factory.mktemp("speed") / "out"
        result = run("speed", profile="smoke", output=out, data_dir=shared_data, quiet=True)
        report = write_report(out)
    finally:
        if old is None:
            os.environ.pop("CATMNER_HOME", None)
        else:
            os.environ["CATMNER_HOME"] = old
    return {"out": out, "result": result, "report": report}


def test_speed_record_has_every_figure(run_speed: dict) -> None:
    assert run_speed["result"]["ran"] == 1
    [(path, rec)] = list(iter_records(run_speed["out"]))
    assert path.parent.name == "speed" and rec.spec.experiment == "speed"
    s = rec.extra["speed"]
    size = speed.SIZES["smoke"]
    assert s["schema"] == speed.SPEED_SCHEMA and s["epoch"]["train_tweets"] == 4000
    assert s["epoch"]["steps"] == 4000 // 8  # smoke batches hold 8 tweets
    systems = {"lm-span", "cat-caption", "cat-grid", "hf"}
    rows = s["train"]
    assert {r["system"] for r in rows} == systems
    assert len(rows) == 4 * len(s["precisions"]) + 3  # + CAT-MNER (caption) with each change undone
    for r in rows:
        assert r["step_s"] > 0 and r["step_cpu_s"] > 0 and r["gflop_per_step"] > 0
        assert r["epoch_s"] == pytest.approx(r["step_s"] * 500)
        assert len(r["step_s_rounds"]) == size.rounds and r["peak_fraction"] > 0
        if r["system"] == "hf":
            assert r["ratio_to_hf"] == 1.0
    # visual tokens cost positions: caption and grid systems pad more than TEXT
    by = {(r["system"], r["precision"]): r for r in rows if not r["change"]}
    text, cap = by[("lm-span", "fp32")], by[("cat-caption", "fp32")]
    assert cap["padded_tokens_per_step"] > text["padded_tokens_per_step"]
    assert all(0 < r["real_tokens_per_step"] <= r["padded_tokens_per_step"] for r in rows)
    assert cap["gflop_per_step"] > text["gflop_per_step"]
    assert set(s["gemm"]) == set(s["precisions"]) and s["gemm"]["fp32"]["gflops_best"] > 0
    # the matmul rate at the encoder's own shapes: the step's real positions as rows, the encoder's sizes
    ms = s["gemm"]["fp32"]["model_shapes"]
    assert ms["m"] == round(cap["real_tokens_per_step"]) and ms["gflops"] > 0
    assert [(r["k"], r["n"]) for r in ms["shapes"]] == [
        (ms["hidden"], ms["hidden"]),
        (ms["hidden"], ms["inner"]),
        (ms["inner"], ms["hidden"]),
    ]
    assert "Matmul rate at the encoder's own shapes" in speed_md.speed_tables(rec)
    g = s["growth"]
    assert [x["words"] for x in g["tweet_words"]] == list(size.tweet_words)
    assert g["tweet_words"][0]["text_tokens"] < g["tweet_words"][-1]["text_tokens"]
    assert [x["caption_pieces"] for x in g["caption_pieces"]] == list(size.caption_pieces)
    assert [x["label_words"] for x in g["label_words"]] == list(size.label_words)
    assert all(x["step_s"] > 0 for fam in g.values() for x in fam)
    assert {(r["system"], r["precision"]) for r in s["predict"]} == {
        (k, p) for k in systems for p in s["precisions"]
    }
    for r in s["predict"]:
        assert r["batched_tweets_per_s"] > 0 and r["one_tweet_ms_median"] > 0
        assert r["one_tweet_count"] == size.single_tweets * size.predict_rounds
    st = s["startup"]
    assert "error" not in st and st["output_is_json"] and st["first_output_s_median"] > 0
    assert set(s["checks"]) == {
        "cat_caption_epoch",
        "cat_caption_over_hf",
        "batched_throughput",
        "one_tweet_latency",
        "peak_fraction",
    }
    assert s["conditions"]["torch_threads"] == 1 and s["conditions"]["load_average_1m_start"] >= 0


def test_speed_report_section(run_speed: dict) -> None:
    md = Path(run_speed["report"]["markdown"]).read_text(encoding="utf-8")
    assert "## Speed: catmner beside the Hugging Face recipe" in md
    for text in (
        "HF token classification",
        "CAT-MNER (caption)",
        "before: for-loop AdamW",
        "before: batches bucketed by word count",
        "Matmul peak",
    ):
        assert text in md
    assert "| label words | 10 | 40 |" in md
    assert "catmner predict MODEL --text" in md
    targets = md.split("Targets (issue 12")[1].split("\n## ")[0]  # up to the next section
    assert targets.count("\n| ") == 1 + 5  # header + five targets


def test_update_doc_rewrites_only_the_generated_block(run_speed: dict, tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        f"# Title\n\nbefore\n{speed_md.DOC_BEGIN}\nold\n{speed_md.DOC_END}\nafter\n", encoding="utf-8"
    )
    speed_md.update_doc(run_speed["out"], doc)
    text = doc.read_text(encoding="utf-8")
    [(_, rec)] = list(iter_records(run_speed["out"]))
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{speed_md.DOC_END}\nafter\n")
    assert speed_md.speed_tables(rec) in text and speed_md.doc_block([rec]) in text and "old" not in text
    (tmp_path / "plain.md").write_text("no block\n", encoding="utf-8")
    with pytest.raises(RecordError, match="no generated speed block"):
        speed_md.update_doc(run_speed["out"], tmp_path / "plain.md")


def test_quantile_batches_and_label_word_sets() -> None:
    batches = [[0, 1], [2, 3], [4, 5], [6, 7]]
    lengths = [9, 9, 1, 1, 5, 5, 3, 3]
    assert speed.quantile_batches(batches, lengths, 2) == [[6, 7], [0, 1]]
    assert len(speed.quantile_batches(batches, lengths, 9)) == 4
    from catmner_model.data import Tweet

    tweets = [Tweet("1", ["the", "Game", "game", "at", "Paris", "3"], ["O"] * 6, [])]
    assert speed.label_word_set(["person", "city"], tweets, 1) == ["person"]
    assert speed.label_word_set(["person"], tweets, 3) == ["person", "game", "paris"]
    assert [len(t.tokens) for t in speed.synthetic_tweets(tweets, 4, 3)] == [4, 4, 4]


def test_docs_speed_table_is_the_committed_record() -> None:
    records = REPO / "docs" / "records" / "speed"
    recs = [r for _, r in iter_records(records)] if records.is_dir() else []
    if not recs:
        pytest.skip("no committed speed record")
    latest = max(recs, key=lambda r: r.created)
    assert latest.spec.config["profile"] == "quick"
    doc = (REPO / "docs" / "model.md").read_text(encoding="utf-8")
    block = doc.split(speed_md.DOC_BEGIN, 1)[1].split(speed_md.DOC_END, 1)[0]
    assert block.strip() == speed_md.doc_block(recs).strip()
