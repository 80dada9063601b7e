"""`catmner serve` and `Predictor.explain`: the attention shown is the model's own (checked against an
independent computation), the real server answers bad input with a message (never a 500), the page in a real
headless Chromium shows exactly what a Python call returns for the same tweet, image and caption, and the
server stops cleanly on Ctrl-C."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from catmner_model.model import create_model
from catmner_model.predict import Predictor

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
IMAGES = DATA / "tweet_images" / "twitter2015_images"
WORDS = ["person", "singer", "city", "country", "team", "company", "festival"]
TWEET = "RT @nba : LeBron James and the Cavs beat Boston in Cleveland tonight"
CAPTION = "a basketball player dunks the ball in front of a crowd"


def tiny_model(
    path: Path, variant: str = "cat", seed: int = 0, r_transformer: str = "auto", softmax: str = "joint"
) -> Path:
    """A random tiny model over grid + caption tokens whose gates are open (refined != unrefined) and whose
    span head leans towards entities (so that a random model predicts some)."""
    torch.manual_seed(seed)
    model = create_model(
        "tiny", WORDS if variant != "mm" else [], variant=variant, visual="grid+caption",
        image_encoder="tiny:24", gate_init_std=0.5, r_transformer=r_transformer, softmax=softmax,
    )  # fmt: skip
    with torch.no_grad():
        model.span_head.out.bias.copy_(torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("serve") / "model")


def image() -> Path:
    return sorted(IMAGES.glob("*.jpg"))[0]


def fig4_map(att: torch.Tensor, pos: torch.Tensor, cols: slice) -> list[float]:
    """Figure 4's map as catmner_bench.experiments computes it: rows of the span, mean, renormalised."""
    w = att[:, cols][pos].mean(0)
    return [round(float(x), 6) for x in w / w.sum().clamp_min(1e-12)]


@pytest.mark.parametrize("path", ["loop", "intercept"])
def test_explain_is_the_models_attention(path, model_dir, tmp_path):
    """Entities equal predict's; 'refined' equals Figure 4's computation from the model's own attention output;
    'unrefined' equals the refined map of the same model with its last-layer gate shut (g = 0). Both ways the
    R-Transformer runs (our layer loop, the encoder's own forward intercepted)."""
    if path == "intercept":
        model_dir = tiny_model(tmp_path / "intercepted", r_transformer="intercept")
    predictor = Predictor(model_dir, device="cpu")
    assert predictor.model._intercept == (path == "intercept")
    out = predictor.explain(TWEET, image=str(image()), caption=CAPTION)
    assert out["entities"] == predictor.predict_text(TWEET, image=str(image()), caption=CAPTION)
    assert out["entities"], "the test model should predict some entities"
    assert out["visual"]["grid"] == {"cells": 16, "shape": [4, 4]}
    pieces = out["visual"]["caption"]["pieces"]
    assert pieces[:3] == ["a", "basketball", "player"]
    # independent: the model's output_attentions, sliced as the benchmark's Figure 4 code does
    from catmner_model.data import Tweet

    model, collate = predictor.model, predictor.collate
    tweet = Tweet(imgid="x", tokens=out["tokens"], tags=["O"] * len(out["tokens"]), entities=[])
    batch = collate([predictor.example(tweet, str(image()), CAPTION)])
    with torch.inference_mode():
        att = model(batch, output_attentions=True).attentions[0, -1].mean(0)  # (T, 16 + caption)
    # shut the last layer's gates: its attention is then exactly the unrefined one
    shut = Predictor(model_dir, device="cpu")
    with torch.no_grad():
        for p in shut.model.gates_i2t[-1].parameters():
            p.zero_()
    with torch.inference_mode():
        att_shut = shut.model(batch, output_attentions=True).attentions[0, -1].mean(0)
    n_cap = len(pieces)
    for ent, row in zip(out["entities"], out["attention"]["entities"], strict=True):
        assert (row["start"], row["end"]) == (ent["start"], ent["end"])
        pos = batch.word_index[0, ent["start"] : ent["end"]]
        assert row["grid"]["refined"]["weights"] == fig4_map(att, pos, slice(0, 16))
        assert row["caption"]["refined"]["weights"] == fig4_map(att, pos, slice(16, 16 + n_cap))
        assert row["grid"]["unrefined"]["weights"] == pytest.approx(
            fig4_map(att_shut, pos, slice(0, 16)), abs=2e-6
        )
        assert row["grid"]["unrefined"]["weights"] != row["grid"]["refined"]["weights"]
        assert sum(row["grid"]["refined"]["weights"]) == pytest.approx(1.0, abs=1e-4)
        assert len(row["label_words"]) == len(WORDS) and {w["word"] for w in row["label_words"]} == set(WORDS)
        weights = [w["weight"] for w in row["label_words"]]
        assert weights == sorted(weights, reverse=True) and all(0 < w <= 1 for w in weights)
    assert len(out["attention"]["words"]) == len(out["tokens"])
    # without an image: no grid view (the span could only look at the no-image token)
    bare = predictor.explain(TWEET, caption=CAPTION)
    assert bare["visual"]["grid"] is None and "grid" not in bare["attention"]["words"][0]


@pytest.mark.parametrize("path", ["loop", "intercept"])
def test_explain_unrefined_keeps_the_per_block_softmax(path, tmp_path):
    """With softmax "block" the unrefined map is recomputed with the model's own per-block softmax: it equals
    the refined map of the same model with its last-layer gate shut."""
    model_dir = tiny_model(tmp_path / "block", softmax="block", r_transformer=path)
    predictor = Predictor(model_dir, device="cpu")
    out = predictor.explain(TWEET, image=str(image()), caption=CAPTION)
    assert out["entities"]
    from catmner_model.data import Tweet

    tweet = Tweet(imgid="x", tokens=out["tokens"], tags=["O"] * len(out["tokens"]), entities=[])
    shut = Predictor(model_dir, device="cpu")
    batch = shut.collate([shut.example(tweet, str(image()), CAPTION)])
    with torch.no_grad():
        for p in shut.model.gates_i2t[-1].parameters():
            p.zero_()
    with torch.inference_mode():
        att_shut = shut.model(batch, output_attentions=True).attentions[0, -1].mean(0)
    for row in out["attention"]["entities"]:
        pos = batch.word_index[0, row["start"] : row["end"]]
        assert row["grid"]["unrefined"]["weights"] == pytest.approx(
            fig4_map(att_shut, pos, slice(0, 16)), abs=2e-6
        )
        mass = float(att_shut[:, :16][pos].mean(0).sum())  # the grid's share of the span's attention
        assert row["grid"]["unrefined"]["mass"] == pytest.approx(mass, abs=2e-6)


def test_explain_without_refinement_has_one_map(tmp_path):
    predictor = Predictor(tiny_model(tmp_path / "mm", "mm"), device="cpu")
    out = predictor.explain(TWEET, image=str(image()), caption=CAPTION)
    row = out["attention"]["words"][0]
    assert set(row["grid"]) == {"unrefined"} and "label_words" not in row and not out["model"]["refined"]


@pytest.fixture(scope="module")
def server(model_dir):
    """The real server in a thread on 127.0.0.1 (a free port)."""
    from catmner_model.serve import ExplainService, make_server

    service = ExplainService(Predictor(model_dir, device="cpu"), max_upload_bytes=200_000)
    srv = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1], service
    srv.shutdown()
    srv.server_close()
    service.close()
    assert not service.upload_dir.exists()


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if resp.getheader("Content-Type", "").startswith(
        "application/json"
    ) else data


def test_server_answers_bad_input_with_a_message(server, tmp_path):
    port, service = server
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    bad = {
        "corrupt image": ({"text": TWEET, "image": b64(b"GIF89a not really")}, 400, "not a readable image"),
        "truncated image": ({"text": TWEET, "image": b64(image().read_bytes()[:2000])}, 400, "image"),
        "not base64": ({"text": TWEET, "image": "!!!"}, 400, "not base64"),
        "too large": ({"text": TWEET, "image": b64(b"\xff" * 300_000)}, 413, "accepts up to 200000"),
        "empty tweet": ({"text": "   "}, 400, "type a tweet"),
        "not an object": ([TWEET], 400, "expected a JSON object"),
        "caption not text": ({"text": TWEET, "caption": 3}, 400, "caption"),
        "a path instead of bytes": ({"text": TWEET, "image": "/etc/passwd"}, 400, "not base64"),
    }
    for name, (req, status, message) in bad.items():
        got, answer = call(port, "POST", "/api/explain", json.dumps(req).encode())
        assert got == status and message in answer["error"], (name, got, answer)
    assert call(port, "POST", "/api/explain", b"{broken")[1] == {"error": "the request is not JSON"}
    nested = b"[" * 50_000 + b"]" * 50_000  # past Python's recursion limit: bad input, not an internal error
    assert call(port, "POST", "/api/explain", nested) == (
        400,
        {"error": "the request is not JSON (nested too deeply)"},
    )
    assert (
        call(port, "POST", "/api/explain", b"text=x", {"Content-Type": "application/x-www-form-urlencoded"})[
            0
        ]
        == 415
    )
    assert call(port, "GET", "/", headers={"Host": "attacker.example:80"})[0] == 403  # DNS rebinding
    assert call(port, "GET", "/../../etc/passwd")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for route in ("/", "/app.js", "/style.css"):  # the page loads nothing from anywhere else
        conn.request("GET", route)
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200 and "default-src 'none'" in resp.getheader("Content-Security-Policy")
        assert "http://" not in body and "https://" not in body and "//" not in body.replace("// ", "")
    conn.close()
    got, answer = call(port, "POST", "/api/explain", b"x", {"Content-Length": str(10**9)})
    assert got == 413
    # still serving, and the uploads folder holds only decoded-OK uploads, named by their checksum
    got, answer = call(
        port, "POST", "/api/explain", json.dumps({"text": TWEET, "image": b64(image().read_bytes())}).encode()
    )
    assert got == 200 and answer["image"]["width"] > 0 and answer["result"]["visual"]["grid"]
    assert [p.name for p in service.upload_dir.iterdir()] == [f"{answer['image']['sha256']}.img"]


def start_cli_server(model_dir: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """`catmner serve MODEL --port 0` as a user runs it; returns the process and its port."""
    exe = Path(sys.executable).parent / "catmner"
    proc = subprocess.Popen(
        [str(exe), "serve", str(model_dir), "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no URL from catmner serve: {line!r} {proc.stdout.read()}")
    return proc, int(match.group(1))


def read_page(driver) -> dict:
    """What the page shows: entity marks, the selected span's maps (per view and name), label words, JSON."""
    from selenium.webdriver.common.by import By

    marks = [
        {"start": int(m.get_attribute("data-start")), "end": int(m.get_attribute("data-end")),
         "type": m.get_attribute("data-type"), "score": float(m.get_attribute("data-score"))}
        for m in driver.find_elements(By.CSS_SELECTOR, "#tweet mark.ent")
    ]  # fmt: skip
    maps = {}
    for box in driver.find_elements(By.CSS_SELECTOR, "#attention .maps"):
        view = box.get_attribute("data-view")
        for m in box.find_elements(By.CSS_SELECTOR, ".map"):
            cells = m.find_elements(By.CSS_SELECTOR, "[data-weight]")
            mass = m.find_element(By.CSS_SELECTOR, "[data-mass]").get_attribute("data-mass")
            maps[(view, m.get_attribute("data-map"))] = {
                "weights": [float(c.get_attribute("data-weight")) for c in cells],
                "mass": float(mass),
            }
    words = [
        {"word": li.get_attribute("data-label-word"), "weight": float(li.get_attribute("data-weight"))}
        for li in driver.find_elements(By.CSS_SELECTOR, "#label-words li[data-label-word]")
    ]
    return {"marks": marks, "maps": maps, "label_words": words}


def expected_maps(row: dict) -> dict:
    return {(view, name): m for view in ("grid", "caption") if view in row for name, m in row[view].items()}


def test_page_in_chromium_shows_what_python_returns(model_dir, tmp_path, chromium, screenshot):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    proc, port = start_cli_server(model_dir, "--max-upload-mb", "1")
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "variant cat" in d.find_element(By.ID, "model-info").text)
        driver.find_element(By.ID, "text").send_keys(TWEET)
        driver.find_element(By.ID, "caption").send_keys(CAPTION)
        driver.find_element(By.ID, "image").send_keys(str(image()))  # the browser reads the file, sends bytes
        driver.find_element(By.ID, "run").click()
        wait.until(EC.visibility_of_element_located((By.ID, "output")))
        predictor = Predictor(model_dir, device="cpu")
        python = predictor.explain(TWEET, image=str(image()), caption=CAPTION)
        page = read_page(driver)
        assert page["marks"] == [
            {k: e[k] for k in ("start", "end", "type", "score")} for e in python["entities"]
        ]
        row = python["attention"]["entities"][0]  # the first entity is selected
        assert page["maps"] == expected_maps(row) and len(page["maps"]) == 4
        assert page["label_words"] == row["label_words"]
        shown = driver.find_element(By.ID, "predict-json").get_attribute("textContent")
        predicted = Predictor(model_dir, device="cpu").predict_text(
            TWEET, image=str(image()), caption=CAPTION
        )
        assert shown == json.dumps(predicted, indent=2, ensure_ascii=False)  # `catmner predict --text`'s JSON
        # another entity, then a plain word
        driver.find_elements(By.CSS_SELECTOR, "#tweet mark.ent")[-1].click()
        assert read_page(driver)["maps"] == expected_maps(python["attention"]["entities"][-1])
        screenshot(driver, tmp_path / "serve.png")
        # a bad upload: a message on the page, the server still answers
        bad = tmp_path / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
        driver.find_element(By.ID, "image").send_keys(str(bad))
        driver.find_element(By.ID, "run").click()
        wait.until(EC.visibility_of_element_located((By.ID, "error")))
        assert driver.find_element(By.ID, "error").text.startswith("uploaded image: ")  # decode_image
        big = tmp_path / "big.png"
        big.write_bytes(b"\x89PNG" + os.urandom(2 * 1024 * 1024))
        driver.find_element(By.ID, "image").clear()
        driver.find_element(By.ID, "image").send_keys(str(big))
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: "accepts up to" in d.find_element(By.ID, "error").text)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out
    assert "catmner serve: stopped" in out and "Traceback" not in out


def test_serve_refuses_a_port_in_use(model_dir):
    """A port already taken: one line, exit status 1 (through the CLI's error handler), no traceback."""
    import socket

    from catmner_model.cli import app
    from typer.testing import CliRunner

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = CliRunner().invoke(app, ["serve", str(model_dir), "--port", str(port)])
    assert res.exit_code == 1, res.output
    assert (
        f"catmner: error: cannot listen on 127.0.0.1:{port}" in res.output and "Traceback" not in res.output
    )
