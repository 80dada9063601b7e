"""Every file a user passes that cannot be used is one line naming it (issue 25): deeply nested JSON, non-UTF-8
text, a .gz that is not gzip, a directory given as a file, wrong types in --model-config, damaged checkpoint
files. Each case ran into a traceback (or an unclear message) before."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit in json.loads
KBX = [sys.executable, "-m", "kb_expand.cli"]
CATMNER = [sys.executable, "-c", "from catmner_model.cli import main; main()"]


def _env(**extra) -> dict:
    env = {**os.environ, **extra}
    for name in ("KBX_DEBUG", "CATMNER_DEBUG", "CATMNER_BENCH_DEBUG"):
        env.pop(name, None)
    return env


def one_line(cmd: list[str], **env) -> str:
    r = subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------ kbx
def test_kbx_scheme_deep_and_non_utf8(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    line = one_line(
        [*KBX, "build", "-s", "visualgenome", "--scheme", str(deep), "-q"], KBX_DB=str(tmp_path / "k.db")
    )
    assert line == f"kbx: error: {deep}: invalid JSON: nested too deeply"
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"labels": [{"label": "caf\u00e9", "type": "LOC"}]}'.encode("latin-1"))
    line = one_line(
        [*KBX, "build", "-s", "visualgenome", "--scheme", str(latin), "-q"], KBX_DB=str(tmp_path / "k.db")
    )
    assert line.startswith(f"kbx: error: {latin}:1: not UTF-8 text (byte 0xe9)")


def test_kbx_vg_deep_json(tmp_path):
    vg = tmp_path / "vg.json"
    vg.write_text("[" + DEEP + "]")
    line = one_line(
        [*KBX, "build", "-s", "visualgenome", "--vg", str(vg), "-q"], KBX_DB=str(tmp_path / "k.db")
    )
    assert line.startswith(f"kbx: error: {vg}:1: invalid JSON: nested too deeply")


def test_kbx_vectors_gz_that_is_not_gzip(tmp_path):
    plain = tmp_path / "plain.gz"
    plain.write_text("2 3\nperson 1 0 0\ncity 0 1 0\n")
    line = one_line(
        [*KBX, "build", "-s", "embeddings", "--vectors", str(plain), "-q"], KBX_DB=str(tmp_path / "k.db")
    )
    assert line.startswith(f"kbx: error: {plain}: not a word2vec/GloVe vectors file (")


def test_label_words_file_deep_non_utf8_and_bad_types(tmp_path):
    from kb_expand import load_label_words
    from kb_expand.errors import InputError

    cases = {
        "deep.json": (DEEP.encode(), "invalid JSON: nested too deeply"),
        "latin.json": ('{"person": ["caf\u00e9"]}'.encode("latin-1"), "not UTF-8 text"),
        "types.json": (b'{"labels": {"person": ["a"]}, "entity_types": [1]}', "entity_types"),
        "dir.json": (None, "is a directory"),
    }
    for name, (content, message) in cases.items():
        f = tmp_path / name
        if content is None:
            f.mkdir()
        else:
            f.write_bytes(content)
        with pytest.raises(InputError, match=message) as exc:
            load_label_words(str(f))
        assert str(exc.value).startswith(str(f)) and "\n" not in str(exc.value)


# -------------------------------------------------------------------------------------------- catmner
def test_model_config_wrong_type_and_deep(tmp_path, shared_data):
    for given, message in [
        ('{"max_span_len": "abc"}', "config field 'max_span_len' must be int, got 'abc'"),
        ('{"max_span_len": true}', "config field 'max_span_len' must be int, got True"),
        ("[1]", "--model-config: expected a JSON object of config fields"),
        ("[" * 5000 + "]" * 5000, "--model-config: invalid JSON (nested too deeply)"),
    ]:
        line = one_line([*CATMNER, "train", "--variant", "text", "--text-encoder", "tiny", "--image-encoder",
                         "none", "--output", str(tmp_path / "run"), "--model-config", given, "-q",
                         "--data-dir", str(shared_data), "--max-train", "3", "--max-eval", "3"])  # fmt: skip
        assert line.startswith("catmner: error: ") and message in line, line
        assert not (tmp_path / "run").exists()


def test_model_config_file_deep_and_non_utf8(tmp_path):
    from catmner_model.config import ConfigError, load_config

    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(ConfigError, match=r"deep\.json: invalid JSON \(nested too deeply\)"):
        load_config(str(deep))
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"text_encoder": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.json: not UTF-8 text"):
        load_config(str(latin))


def test_captions_and_predict_input_deep_json(tmp_path):
    from catmner_model.predict import PredictError, read_jsonl
    from catmner_model.visual_caption import CaptionError, read_captions

    f = tmp_path / "deep.jsonl"
    f.write_text('{"imgid": "1", "caption": "x"}\n{"a": ' + DEEP + "}\n")
    with pytest.raises(CaptionError, match=r"deep\.jsonl:2: not JSON \(nested too deeply\)"):
        read_captions(f)
    f.write_text('{"text": "x"}\n{"a": ' + DEEP + "}\n")
    with pytest.raises(PredictError, match=r"deep\.jsonl:2: not JSON \(nested too deeply\)"):
        read_jsonl(f)
    with pytest.raises(PredictError, match=r"is a directory"):
        read_jsonl(tmp_path)


def test_predict_input_and_evaluate_predictions_directory(tmp_path, shared_data):
    from catmner_model.model import create_model

    torch.manual_seed(0)
    model = create_model("tiny", ["person"], variant="text").save_pretrained(tmp_path / "model")
    line = one_line([*CATMNER, "predict", str(model), "--input", str(tmp_path)])
    assert line == f"catmner: error: {tmp_path}: is a directory, expected a JSONL file"
    line = one_line(
        [
            *CATMNER,
            "evaluate",
            str(model),
            "--predictions",
            str(tmp_path),
            "--max-tweets",
            "2",
            "--data-dir",
            str(shared_data),
        ]
    )
    assert (
        line == f"catmner: error: --predictions {tmp_path}: is a directory; give the path of a file to write"
    )


def test_damaged_state_json_is_named(tmp_path):
    from catmner_model.training.checkpoint import read_checkpoint_state
    from catmner_model.training.config import TrainError

    run = tmp_path / "run"
    (run / "ckpt-epoch-0001").mkdir(parents=True)
    (run / "checkpoint.json").write_text(
        json.dumps({"format": "catmner-checkpoint", "dir": "ckpt-epoch-0001"})
    )
    state = run / "ckpt-epoch-0001" / "state.json"
    for content in (b"{not json", DEEP.encode(), b"[1, 2]", b"\xff\xfe"):
        state.write_bytes(content)
        with pytest.raises(TrainError) as exc:
            read_checkpoint_state(run)
        assert str(exc.value).startswith(f"{state}: not a readable catmner checkpoint file"), exc.value
    state.unlink()
    with pytest.raises(TrainError, match=r"state\.json: missing"):
        read_checkpoint_state(run)
    (run / "checkpoint.json").write_text(json.dumps({"dir": ["x"]}))
    with pytest.raises(TrainError, match=r"checkpoint\.json: bad checkpoint directory name"):
        read_checkpoint_state(run)


def _torch_load_error(path: Path) -> BaseException:
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError(f"{path} loaded")


def test_damaged_torch_files_are_described_without_torch_advice(tmp_path):
    from catmner_model.errors import load_failure

    good = tmp_path / "good.pt"
    torch.save({"a": torch.zeros(3)}, good)
    data = good.read_bytes()
    for n in (0, 10, len(data) // 2):
        f = tmp_path / f"cut{n}.pt"
        f.write_bytes(data[:n])
        assert load_failure(_torch_load_error(f)) == "truncated or not a torch file", n
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(os.system, protocol=4))
    reason = load_failure(_torch_load_error(evil))
    assert reason.startswith("it holds more than tensors") and "weights_only" not in reason
    assert load_failure(OSError(22, "Invalid argument")) == "truncated or not a torch file"


def test_damaged_open_clip_checkpoint_is_one_clean_line(tmp_path):
    pytest.importorskip("open_clip")
    from catmner_model.encoders import _OpenClip as OpenClipGrid
    from catmner_model.images import VisionError

    evil = tmp_path / "clip.pt"
    evil.write_bytes(pickle.dumps(os.system, protocol=4))
    with pytest.raises(VisionError) as exc:
        OpenClipGrid("RN50", str(evil), None)
    msg = str(exc.value)
    assert msg.startswith(
        f"{evil}: cannot load it as an open_clip 'RN50' checkpoint (it holds more than tensors"
    )
    assert "\n" not in msg and "weights_only" not in msg
    cut = tmp_path / "cut.pt"
    cut.write_bytes(b"PK\x03\x04trunc")
    with pytest.raises(
        VisionError, match=r"cut\.pt: cannot load it as an open_clip 'RN50' checkpoint \(truncated"
    ):
        OpenClipGrid("RN50", str(cut), None)


# --------------------------------------------------------------------------------------- catmner-bench
def test_bench_record_deep_and_wrong_types(tmp_path):
    from catmner_bench.records import RecordError, read_record

    f = tmp_path / "r.json"
    repo = Path(__file__).resolve().parents[1]
    good = json.loads(next((repo / "docs" / "records" / "caption" / "table1").glob("*.json")).read_text())
    for content, message in [
        (DEEP, "JSON nested too deeply"),
        (json.dumps({**good, "run_key": 1}), "'run_key' is not a JSON string"),
        (json.dumps({**good, "metrics": []}), "'metrics' is not a JSON object"),
        (json.dumps({**good, "spec": []}), "spec is not a RunSpec"),
    ]:
        f.write_text(content)
        with pytest.raises(RecordError, match=message):
            read_record(f)
    gz = tmp_path / "x.json"
    gz.write_bytes(gzip.compress(b"{}"))
    with pytest.raises(RecordError, match="not a readable run record"):
        read_record(gz)


def test_model_dir_whose_encoder_config_transformers_cannot_print(tmp_path):
    """Found by the fuzz pass at 1,000 examples: an encoder_config with ``"dtype": []`` made transformers' own
    config reader (inside AutoTokenizer) raise IndexError; it is one ModelFormatError line naming the directory."""
    from catmner_model.model import create_model
    from catmner_model.model_io import ModelFormatError, read_model_dir

    torch.manual_seed(0)
    d = create_model("tiny", ["person"], variant="text").save_pretrained(tmp_path / "model")
    meta = json.loads((d / "config.json").read_text())
    meta["encoder_config"]["dtype"] = []
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError) as exc:
        read_model_dir(d)
    assert str(d) in str(exc.value) and "\n" not in str(exc.value)


def test_label_words_file_whose_stored_checksum_holds_a_newline(tmp_path):
    """Found by a random 1,000-example fuzz pass: the stored checksum was echoed raw, so a newline in it split the
    message; it is quoted now."""
    from kb_expand.errors import KbxError
    from kb_expand.labelwords import load_label_words

    f = tmp_path / "words.json"
    f.write_text(json.dumps({"labels": {"person": ["actor"]}, "checksum": "\n"}))
    with pytest.raises(KbxError) as exc:
        load_label_words(str(f))
    assert "checksum mismatch" in str(exc.value) and "\n" not in str(exc.value)
