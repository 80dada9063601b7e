"""The data layer against the real Twitter files and against hand-made bad input."""

from __future__ import annotations

import json

import pytest
from catmner_model.cli import app
from catmner_model.data import (
    DataError,
    Entity,
    dataset_stats,
    entities_to_tags,
    image_path,
    load_split,
    read_conll,
    resolve_image_dir,
    tags_to_entities,
)
from typer.testing import CliRunner

# Reference counts from shared/data/README.md (conlleval-style, strict IOB2 in brackets).
REFERENCE = {
    ("twitter2015", "train"): (4000, 6352, 6166),
    ("twitter2015", "valid"): (1000, 1594, 1541),
    ("twitter2015", "test"): (3257, 5207, 5072),
    ("twitter2017", "train"): (3373, 6049, 6049),
    ("twitter2017", "valid"): (723, 1324, 1324),
    ("twitter2017", "test"): (723, 1351, 1351),
}


@pytest.mark.parametrize("dataset,split", sorted(REFERENCE))
def test_real_counts(shared_data, dataset, split):
    tweets = load_split(dataset, split, shared_data)
    n_tweets, n_ent, n_strict = REFERENCE[(dataset, split)]
    assert len(tweets) == n_tweets
    assert sum(len(t.entities) for t in tweets) == n_ent
    assert sum(len(tags_to_entities(t.tags, "strict")) for t in tweets) == n_strict


def test_per_type_test_counts(shared_data):
    stats = dataset_stats("twitter2015", shared_data, splits=["test"])
    assert stats["splits"]["test"]["per_type"] == {"PER": 1873, "LOC": 1720, "ORG": 860, "MISC": 754}
    stats = dataset_stats("twitter2017", shared_data, splits=["test"])
    assert stats["splits"]["test"]["per_type"] == {"PER": 621, "LOC": 178, "ORG": 395, "MISC": 157}


def test_last_tweet_without_blank_line_is_kept(shared_data):
    raw = (shared_data / "twitter2015" / "test.txt").read_text(encoding="utf-8")
    assert not raw.endswith("\n\n")
    last_tokens = [line.split("\t")[0] for line in raw.rstrip("\n").split("\n\n")[-1].splitlines()[1:]]
    assert load_split("twitter2015", "test", shared_data)[-1].tokens == last_tokens


def test_other_is_misc_and_i_opens_entity(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text(
        "IMGID:1\nSt\tO\n.\tO\nLouis\tI-LOC\nrocks\tB-OTHER\nhard\tI-OTHER\n\nIMGID:2\nhi\tO",
        encoding="utf-8",
    )
    tweets = read_conll(f)
    assert [t.imgid for t in tweets] == ["1", "2"]
    assert tweets[0].entities == [Entity(2, 3, "LOC"), Entity(3, 5, "MISC")]
    assert tags_to_entities(tweets[0].tags, "strict") == [Entity(3, 5, "MISC")]
    assert tweets[1].entities == []


def test_chunking_hand_counted():
    tags = ["B-PER", "I-PER", "I-LOC", "O", "I-ORG", "I-ORG", "B-ORG", "B-PER", "I-PER"]
    assert [e.key for e in tags_to_entities(tags)] == [
        (0, 2, "PER"),
        (2, 3, "LOC"),
        (4, 6, "ORG"),
        (6, 7, "ORG"),
        (7, 9, "PER"),
    ]
    assert [e.key for e in tags_to_entities(tags, "strict")] == [(0, 2, "PER"), (6, 7, "ORG"), (7, 9, "PER")]
    ents = tags_to_entities(tags)
    assert tags_to_entities(entities_to_tags(ents, len(tags))) == ents


def test_emoji_and_odd_tokens_2017(shared_data):
    tweets = load_split("twitter2017", "train", shared_data)
    tokens = {tok for t in tweets for tok in t.tokens}
    assert "\ufe0f" in tokens or any("\ufe0f" in tok for tok in tokens)
    assert all(tok and "\t" not in tok for tok in tokens)


@pytest.mark.parametrize(
    "content,message",
    [
        ("IMGID:1\nhello\n", "x.txt:2: expected 'token<TAB>tag', got 1 column"),
        ("IMGID:1\nhello\tB-FOO\n", "x.txt:2: unknown tag 'B-FOO'"),
        ("IMGID:1\nhello\tI-DATE\n", "x.txt:2: unknown tag 'I-DATE'"),
        ("IMGID:1\nhello\tX-PER\n", "x.txt:2: unknown tag 'X-PER'"),
        ("", "x.txt: no tweets found"),
        ("\n\n", "x.txt: no tweets found"),
        ("IMGID:1\n\nIMGID:2\na\tO\n", "x.txt:1: IMGID:1 has no tokens"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, content, message):
    f = tmp_path / "x.txt"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_conll(f)
    assert message in str(info.value)


def test_non_utf8_names_line(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(b"IMGID:1\nok\tO\ncaf\xe9\tO\n")
    with pytest.raises(DataError, match=r"x.txt:3: not valid UTF-8 \(byte 0xe9\)"):
        read_conll(f)


def test_images_found_and_missing(shared_data):
    image_dir = resolve_image_dir(None, shared_data)
    assert image_dir == shared_data / "tweet_images"
    stats = dataset_stats("twitter2015", shared_data)
    found = sum(s["images_found"] for s in stats["splits"].values())
    assert found == 15  # the 15 shared Twitter-2015 images all belong to tweets of the splits
    tweets = load_split("twitter2015", "train", shared_data)
    present = [t for t in tweets if image_path("twitter2015", t.imgid, image_dir)]
    assert present and all(image_path("twitter2015", t.imgid, image_dir).is_file() for t in present)
    assert image_path("twitter2015", "no_such_image", image_dir) is None


@pytest.mark.parametrize("imgid", ["../etc/passwd", "/etc/passwd", "a/b", "..", "", "x.jpg\x00"])
def test_unsafe_imgid_refused(tmp_path, imgid):
    with pytest.raises(DataError, match="unsafe or invalid IMGID"):
        image_path("twitter2015", imgid, tmp_path)


def test_unsafe_imgid_in_file_is_refused_at_lookup(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("IMGID:../../secret\nhi\tO\n", encoding="utf-8")
    (tweet,) = read_conll(f)
    with pytest.raises(DataError):
        image_path("twitter2015", tweet.imgid, tmp_path)


def test_cli_stats_prints_reference_counts(shared_data):
    result = CliRunner().invoke(app, ["data", "stats", "twitter2015", "--data-dir", str(shared_data)])
    assert result.exit_code == 0, result.output
    test_row = next(line for line in result.output.splitlines() if line.startswith("test"))
    assert test_row.split()[:4] == ["test", "3257", "52822", "5207"]
    result = CliRunner().invoke(
        app, ["data", "stats", "twitter2017", "--data-dir", str(shared_data), "--json"]
    )
    data = json.loads(result.output)
    assert data["splits"]["train"]["tweets"] == 3373 and data["splits"]["train"]["entities"] == 6049


def test_cli_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["data", "stats", "twitter2015", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert (
        result.output.count("\n") == 1
        and result.output.startswith("catmner: error: ")
        and "train.txt: not found" in result.output
    )
    result = CliRunner().invoke(app, ["data", "stats", "twitter1999", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "unknown dataset 'twitter1999'" in result.output


def test_download_offline_is_one_clear_line(tmp_path):
    # A port on 127.0.0.1 with nothing listening: the same failure a user without internet sees.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    result = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "twitter2017",
            "--data-dir",
            str(tmp_path),
            "--base-url",
            f"http://127.0.0.1:{port}",
        ],
    )
    assert result.exit_code == 1
    assert "download failed (ConnectionError); are you online?" in result.output
    assert not (tmp_path / "twitter2017" / "train.txt").exists()


def test_download_from_local_server(tmp_path, shared_data):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_data))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = CliRunner().invoke(
            app, ["data", "download", "twitter2017", "--data-dir", str(tmp_path), "--base-url", url]
        )
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert len(load_split("twitter2017", "test", tmp_path)) == 723


def test_missing_or_unsafe_imgid_names_file_and_line(tmp_path, shared_data):
    from catmner_model.data import dataset_stats

    root = tmp_path / "data" / "twitter2015"
    root.mkdir(parents=True)
    good = "IMGID:1\nhi\tO\n\n"
    for split, tail in [("train", "IMGID:2\nok\tO\n\nno\tO\nimgid\tO\n"), ("valid", "IMGID:/etc/passwd\nx\tO\n"),
                        ("test", "IMGID:../../secret\nx\tO\n")]:  # fmt: skip
        (root / f"{split}.txt").write_text(good + tail, encoding="utf-8")
    for split, message in [
        (
            "train",
            "train.txt:7: unsafe or invalid IMGID '': the tweet has no IMGID line (expected 'IMGID:<id>')",
        ),
        ("valid", "valid.txt:4: unsafe or invalid IMGID '/etc/passwd'"),
        ("test", "test.txt:4: unsafe or invalid IMGID '../../secret'"),
    ]:
        with pytest.raises(DataError) as info:
            dataset_stats("twitter2015", tmp_path / "data", shared_data / "tweet_images", splits=[split])
        assert str(info.value).startswith(f"{root}/{message}")


def test_failed_download_leaves_no_directory(tmp_path):
    from catmner_model.data import download_dataset

    with pytest.raises(DataError, match="download failed"):
        download_dataset("twitter2015", tmp_path / "data", base_url="http://127.0.0.1:9", timeout=5)
    assert not (tmp_path / "data").exists()
