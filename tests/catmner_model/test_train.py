"""Training loop: overfitting real tweets, exact resume, refusal of foreign checkpoints, batching, optimizer set-up.

Tiny random-init models (hidden 32, 2 layers) and the deterministic tiny image encoder; real tweets and real
tweet images from the shared data; CATMNER_HOME points at tmp_path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.data import Tweet, load_split
from catmner_model.training.config import TrainConfig, TrainError
from catmner_model.training.distributed import DistInfo
from catmner_model.training.inputs import epoch_batches
from catmner_model.training.loop import train
from catmner_model.training.optim import linear_schedule, param_groups
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
LABEL_WORDS = {
    "labels": {
        "person": ["person", "singer", "player", "president"],
        "location": ["city", "country", "street"],
        "organization": ["team", "company", "party"],
        "event": ["festival", "game"],
    }
}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CATMNER_DATA", str(DATA))
    monkeypatch.delenv("CATMNER_IMAGES", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tweets() -> list[Tweet]:
    """Real Twitter-2015 training tweets with entities: the first 4 whose image is in the shared data, then others."""
    images = {p.stem for p in (DATA / "tweet_images" / "twitter2015_images").glob("*.jpg")}
    train = load_split("twitter2015", "train", DATA)
    with_image = [t for t in train if t.imgid in images and t.entities][:4]
    without = [t for t in train if t.imgid not in images and t.entities and len(t.tokens) <= 25][:8]
    assert len(with_image) == 4 and len(without) == 8
    return with_image + without


@pytest.fixture()
def labels_file(tmp_path) -> str:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(LABEL_WORDS), encoding="utf-8")
    return str(path)


def tiny_config(output: Path, labels: str, **kw) -> TrainConfig:
    base = dict(
        dataset="twitter2015",
        labels=labels,
        text_encoder="tiny",
        image_encoder="tiny",
        variant="cat",
        epochs=2,
        lr=5e-3,
        encoder_lr=5e-3,
        warmup_ratio=0.0,
        batch_size=3,
        seed=7,
        output=str(output),
        quiet=True,
        num_threads=1,
        deterministic=torch.cuda.is_available(),  # CPU runs are deterministic without it
    )
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_model_overfits_real_tweets_and_reloads(tmp_path, tweets, labels_file):
    from catmner_model.predict import Predictor

    few = tweets[:2] + tweets[4:8]  # 2 with images, 4 without
    out = tmp_path / "run"
    config = tiny_config(out, labels_file, epochs=60, lr=1e-2, encoder_lr=3e-3, batch_size=2)
    record = train(config, data={"train": few, "valid": few, "test": few})
    assert record["metrics"]["valid"]["lenient"]["f1"] == 100.0
    assert record["metrics"]["test"]["lenient"]["f1"] == 100.0
    assert record["image_stats"]["images_found"] == 2 and record["image_stats"]["tweets_without_image"] == 4
    assert record["label_words"]["n_words"] == 12 and len(record["label_words"]["checksum"]) == 64
    assert len(record["seconds_per_epoch"]) == 60
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(record["metrics"]))
    log = json.loads((out / "log.json").read_text())["epochs"]
    assert [e["epoch"] for e in log] == list(range(1, 61))
    # the saved best model, loaded with nothing else, predicts the gold entities (images through the cache)
    predictor = Predictor(out / "model")
    image_dir = DATA / "tweet_images" / "twitter2015_images"
    for t in few:
        img = image_dir / f"{t.imgid}.jpg"
        got = predictor.predict_tokens(t.tokens, str(img) if img.exists() else None)
        assert {(e["start"], e["end"], e["type"]) for e in got} == {e.key for e in t.entities}


class Killed(Exception):
    pass


def test_killed_run_resumes_to_identical_result(tmp_path, tweets, labels_file):
    data = {"train": tweets[:8], "valid": tweets[8:], "test": tweets[8:]}
    a = tmp_path / "a"
    rec_a = train(tiny_config(a, labels_file), data=data)

    b = tmp_path / "b"

    def kill_after_first(epoch, entry):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(tiny_config(b, labels_file), data=data, on_epoch_end=kill_after_first)
    pointer = json.loads((b / "checkpoint.json").read_text())
    assert pointer["dir"] == "ckpt-epoch-0001" and not (b / "run.json").exists()
    rec_b = train(tiny_config(b, labels_file), data=data)  # the same command again

    for sub in ("ckpt-epoch-0002/model.safetensors", "model/model.safetensors"):
        wa, wb = load_file(str(a / sub)), load_file(str(b / sub))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), sub

    def strip(log):
        return [{k: v for k, v in e.items() if "seconds" not in k and k != "peak_rss_mib"} for e in log]

    assert strip(rec_a["epochs"]) == strip(rec_b["epochs"])
    assert rec_a["metrics"] == rec_b["metrics"]
    assert rec_a["epochs"][0]["loss"] != rec_a["epochs"][1]["loss"]  # it did train

    # a finished run rerun: nothing retrained, the same record
    again = train(tiny_config(a, labels_file), data=data)
    assert again["metrics"] == rec_a["metrics"] and strip(again["epochs"]) == strip(rec_a["epochs"])

    # another config on the same output: refused with one clear line
    with pytest.raises(TrainError, match=r"different config \(lr: 0\.005 -> 0\.001"):
        train(tiny_config(b, labels_file, lr=1e-3), data=data)


def test_valid_every_validates_every_kth_epoch_and_the_last(tmp_path, tweets, labels_file):
    """valid_every=2 over 5 epochs validates after epochs 2, 4 and 5 only; the kept model is the best of those,
    and the same run validated after each epoch trains identically (validation touches no training state)."""
    data = {"train": tweets[:8], "valid": tweets[8:], "test": tweets[8:]}
    every = train(tiny_config(tmp_path / "every2", labels_file, epochs=5, valid_every=2), data=data)
    each = train(tiny_config(tmp_path / "each", labels_file, epochs=5), data=data)
    validated = [e["epoch"] for e in every["epochs"] if e["valid_lenient"] is not None]
    assert validated == [2, 4, 5]
    assert all(e["valid_strict"] is None for e in every["epochs"] if e["epoch"] not in validated)
    assert [e["loss"] for e in every["epochs"]] == [e["loss"] for e in each["epochs"]]
    f1 = {e["epoch"]: e["valid_lenient"]["f1"] for e in each["epochs"]}
    assert [every["epochs"][i - 1]["valid_lenient"]["f1"] for i in validated] == [f1[i] for i in validated]
    best = max(validated, key=lambda i: (f1[i], -i))  # the first epoch reaching the best F1 is kept
    assert every["best_epoch"] == best
    # a checkpoint of the default run resumes under valid_every=1 spelled out (a new field at its default)
    again = train(tiny_config(tmp_path / "each", labels_file, epochs=5, valid_every=1), data=data)
    assert again["metrics"] == each["metrics"]


def test_resume_with_other_label_words_is_refused(tmp_path, tweets, labels_file):
    from kb_expand import LabelWords

    data = {"train": tweets[4:7], "valid": tweets[4:7], "test": tweets[4:7]}
    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(tiny_config(run, labels_file), data=data,
              on_epoch_end=lambda e, _: (_ for _ in ()).throw(Killed()))  # fmt: skip
    started = LabelWords.from_json(json.loads(Path(labels_file).read_text()))
    saved = LabelWords.from_json(json.loads((run / "label_words.json").read_text()))  # the run's own copy
    assert saved.labels == started.labels and saved.checksum == started.checksum
    state = json.loads((run / "ckpt-epoch-0001" / "state.json").read_text())
    assert state["label_words_checksum"] == started.checksum

    # the words behind --labels changed meanwhile (e.g. a rebuilt store): refused with one line naming both
    changed = {"labels": {**LABEL_WORDS["labels"], "event": ["festival", "concert"]}}
    Path(labels_file).write_text(json.dumps(changed))
    now = LabelWords.from_json(changed).checksum
    with pytest.raises(TrainError) as err:
        train(tiny_config(run, labels_file), data=data)
    msg = str(err.value)
    assert "\n" not in msg and started.checksum[:12] in msg and now[:12] in msg
    assert f"--labels {run / 'label_words.json'}" in msg and "another --output" in msg
    assert not (run / "run.json").exists()

    # resuming with the recorded words (another --labels spec, the same words) finishes the run on them
    record = train(tiny_config(run, str(run / "label_words.json")), data=data)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert record["label_words"]["checksum"] == started.checksum
    # other words under the recorded spec on a fresh output are simply another run
    fresh = train(tiny_config(tmp_path / "fresh", labels_file), data=data)
    assert fresh["label_words"]["checksum"] == now


def test_readme_rerun_resumes_on_the_reused_build(tmp_path, tweets):
    """`kbx build ... && catmner train --labels SOURCE`, killed and rerun: the build is reused, the run resumes;
    had another build of the source become the newest meanwhile, the resume is refused."""
    from dataclasses import replace

    from kb_expand.build import BuildConfig, run_build

    db = tmp_path / "kb.sqlite"
    cfg = BuildConfig(source="visualgenome", vg=str(DATA / "visualgenome" / "relationships_sample5.json"),
                      progress=False)  # fmt: skip
    first = run_build(cfg, db)
    data = {"train": tweets[4:7], "valid": tweets[4:7], "test": tweets[4:7]}
    config = tiny_config(tmp_path / "run", "visualgenome", db=str(db))
    with pytest.raises(Killed):
        train(config, data=data, on_epoch_end=lambda e, _: (_ for _ in ()).throw(Killed()))
    again = run_build(cfg, db)
    assert again.reused and again.build_id == first.build_id
    run_build(replace(cfg, top_k=5), db)  # other words are now the source's newest build
    with pytest.raises(TrainError, match=r"started with label words \w{12} but --labels visualgenome now"):
        train(config, data=data)
    assert run_build(cfg, db).reused  # the README's command again: the first build is current again
    record = train(config, data=data)
    assert record["label_words"]["build_id"] == first.build_id and len(record["epochs"]) == 2


def test_foreign_or_damaged_checkpoints_are_refused(tmp_path, tweets, labels_file):
    data = {"train": tweets[4:7], "valid": tweets[4:7], "test": tweets[4:7]}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="holds no catmner checkpoint"):
        train(tiny_config(busy, labels_file), data=data)

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "checkpoint.json").write_text("{not json")
    with pytest.raises(TrainError, match="not a readable catmner checkpoint"):
        train(tiny_config(garbage, labels_file), data=data)

    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(
            tiny_config(run, labels_file),
            data=data,
            on_epoch_end=lambda e, _: (_ for _ in ()).throw(Killed()),
        )

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"optimizer": Evil()}, run / "ckpt-epoch-0001" / "trainer.pt")
    with pytest.raises(TrainError, match="checkpoint does not match this model or is damaged"):
        train(tiny_config(run, labels_file), data=data)

    state = json.loads((run / "ckpt-epoch-0001" / "state.json").read_text())
    state["format"] = "someone-elses"
    (run / "ckpt-epoch-0001" / "state.json").write_text(json.dumps(state))
    with pytest.raises(TrainError, match="not a catmner training checkpoint"):
        train(tiny_config(run, labels_file), data=data)


def test_bad_inputs_fail_clearly(tmp_path, tweets, labels_file):
    data = {"train": tweets[4:6], "valid": tweets[4:6], "test": tweets[4:6]}
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"labels": {"person": []}}))
    with pytest.raises(TrainError, match="label-word set .* is empty"):
        train(tiny_config(tmp_path / "r1", str(empty)), data=data)
    with pytest.raises(TrainError, match="refines attention with label words"):
        train(tiny_config(tmp_path / "r2", None), data=data)
    from kb_expand.errors import KbxError

    with pytest.raises(KbxError, match="missing.json"):
        train(tiny_config(tmp_path / "r3", str(tmp_path / "missing.json")), data=data)
    blank = Tweet(imgid="1", tokens=[], tags=[], entities=[], path="x.txt", line=3)
    with pytest.raises(TrainError, match=r"x.txt:3: empty tweet"):
        train(tiny_config(tmp_path / "r4", labels_file), data={**data, "valid": [blank]})
    with pytest.raises(TrainError, match="unknown variant"):
        train(tiny_config(tmp_path / "r5", labels_file, variant="nope"), data=data)


def test_text_variant_needs_no_label_words_or_images(tmp_path, tweets):
    data = {"train": tweets[:3], "valid": tweets[:3], "test": tweets[:3]}
    rec = train(tiny_config(tmp_path / "t", None, variant="text", epochs=1), data=data)
    assert rec["label_words"] is None and rec["image_stats"]["encoder"] is None
    assert rec["model_config"]["variant"] == "text"


def test_an_empty_test_split_is_not_scored(tmp_path, tweets, capsys):
    """The benchmark's recipe search never scores test: given an empty test split, the record has no test
    metrics and the closing line says so (it printed the F1 of a stand-in tweet before)."""
    data = {"train": tweets[:3], "valid": tweets[:3], "test": []}
    rec = train(tiny_config(tmp_path / "t", None, variant="text", epochs=1, quiet=False), data=data)
    assert set(rec["metrics"]) == {"valid"}
    shown = "".join(capsys.readouterr())  # tqdm.write: stdout
    assert "valid F1" in shown and "test not scored" in shown and "test F1" not in shown


def test_finetuning_the_image_encoder(tmp_path, tweets, labels_file):
    """--finetune-image-encoder: the encoder runs inside the model on real pixels, gets gradients at the
    encoder learning rate, is saved with the model, and a corrupt image falls back to the no-image token."""
    import shutil

    from catmner_model.encoders import build_backend
    from catmner_model.evaluate import evaluate_model
    from catmner_model.model import CatMner
    from catmner_model.predict import Predictor

    few = tweets[:4] + tweets[4:6]  # 4 with images, 2 without
    images = tmp_path / "images" / "twitter2015_images"
    images.mkdir(parents=True)
    for t in few[:3]:
        shutil.copy(DATA / "tweet_images" / "twitter2015_images" / f"{t.imgid}.jpg", images)
    (images / f"{few[3].imgid}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "run"
    config = tiny_config(
        out, labels_file, finetune_image_encoder=True, image_dir=str(tmp_path / "images"), epochs=3
    )
    record = train(config, data={"train": few, "valid": few, "test": few})
    stats = record["image_stats"]
    assert stats["finetune"] and stats["images_found"] == 4 and stats["unreadable_images"] == 1
    assert record["model_config"]["trainable_image_encoder"] == "tiny"
    assert not (tmp_path / "home" / "features").exists()  # no frozen-feature cache involved

    model = CatMner.from_pretrained(out / "model")
    assert model.vision is not None
    before = build_backend("tiny").state_dict()
    after = model.vision.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the encoder was trained
    groups = param_groups(model, config)
    vision = {id(p) for p in model.vision.parameters()}
    in_encoder_groups = {id(p) for g in groups if g["name"].startswith("encoder") for p in g["params"]}
    assert vision and vision <= in_encoder_groups  # trained at --encoder-lr
    assert all(g["lr"] == config.encoder_lr for g in groups if g["name"].startswith("encoder"))

    # the image matters, and the saved model predicts from image files with nothing else
    collate = model.collator()
    from catmner_model.batching import Example

    path = str(images / f"{few[0].imgid}.jpg")
    with torch.inference_mode():
        with_image = model(collate([Example(few[0], image_file=path)])).logits
        without = model(collate([Example(few[0])])).logits
        corrupt = collate([Example(few[3], image_file=str(images / f"{few[3].imgid}.jpg"))])
    assert not torch.allclose(with_image, without)
    assert corrupt.image_pixels is None and not corrupt.image_mask.any()
    predictor = Predictor(out / "model")
    assert predictor.uses_images
    got = predictor.predict_tokens(few[0].tokens, path)
    with torch.inference_mode():
        batch = collate([Example(few[0], image_file=path)])
        direct = model.decode(model(batch), batch)[0]
    assert [(e["start"], e["end"], e["type"]) for e in got] == [(e.start, e.end, e.type) for e in direct]
    result = evaluate_model(
        out / "model", "twitter2015", "train", data_dir=DATA, image_dir=tmp_path / "images", max_tweets=560
    )
    first = load_split("twitter2015", "train", DATA)[:560]  # holds few[0] and few[1]
    on_disk = {p.stem for p in images.iterdir()}
    assert result["images"]["with_features"] == sum(t.imgid in on_disk for t in first) == 2


def test_epoch_batches_shard_cover_and_bucket():
    lengths = [(i * 7919) % 37 + 1 for i in range(103)]
    one = epoch_batches(lengths, 4, seed=3, epoch=0, info=DistInfo(), bucket_size=5)
    flat = sorted(i for b in one for i in b)
    assert flat == list(range(103))
    assert one == epoch_batches(lengths, 4, seed=3, epoch=0, info=DistInfo(), bucket_size=5)
    assert one != epoch_batches(lengths, 4, seed=3, epoch=1, info=DistInfo(), bucket_size=5)
    for b in one:  # batches come from length-sorted buckets
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
    shards = [epoch_batches(lengths, 4, 3, 0, DistInfo(rank=r, world_size=2), 5) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])  # equal step counts: DDP never waits on a missing batch
    covered = {i for s in shards for b in s for i in b}
    assert covered == set(range(103))


def test_linear_schedule_and_param_groups():
    from catmner_model.model import create_model

    model = create_model("tiny", ["person", "city"])
    cfg = TrainConfig(lr=1e-3, encoder_lr=1e-4, weight_decay=0.1)
    groups = param_groups(model, cfg)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"encoder", "encoder-nodecay", "new", "new-nodecay"}
    assert by_name["encoder"]["lr"] == 1e-4 and by_name["new"]["lr"] == 1e-3
    assert by_name["new-nodecay"]["weight_decay"] == 0.0 and by_name["encoder"]["weight_decay"] == 0.1
    enc_ids = {id(p) for p in model.encoder.parameters()}
    assert all(id(p) in enc_ids for p in by_name["encoder"]["params"] + by_name["encoder-nodecay"]["params"])
    assert all(p.ndim == 1 for p in by_name["encoder-nodecay"]["params"])  # biases and LayerNorm weights
    n_all = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups) == n_all

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, warmup=2, total=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25])


def _stop_epoch(f1: dict[int, float], patience: int) -> int | None:
    """Early stopping's rule written out on a curve {validated epoch: F1}: the epoch after which ``patience``
    validations in a row brought no gain over the best so far."""
    best, since = -1.0, 0
    for epoch, f in sorted(f1.items()):
        best, since = (f, 0) if f > best else (best, since + 1)
        if since == patience:
            return epoch
    return None


def test_early_stopping_stops_and_resumes_at_the_same_epoch(tmp_path, tweets, labels_file):
    """patience=3 ends the run after 3 validations in a row without a gain over the best validation F1 (read off
    the same run trained to the end: early stopping changes nothing before it stops, the lr schedule included);
    a run killed mid-count, or right after its stopping epoch's checkpoint, resumes to the identical record;
    with valid_every the count is of validations, not epochs."""
    few = tweets[:8]  # validated on its training tweets: F1 climbs, then turns over
    data = {"train": few, "valid": few, "test": tweets[8:]}
    kw = dict(epochs=16, lr=2e-2, encoder_lr=5e-3, batch_size=2)
    full = train(tiny_config(tmp_path / "full", labels_file, **kw), data=data)
    assert full["stopped_epoch"] is None and full["stop_reason"] is None
    f1 = {e["epoch"]: e["valid_lenient"]["f1"] for e in full["epochs"]}
    stop = _stop_epoch(f1, 3)
    assert stop is not None and stop < 16, f1  # this curve turns over before the end (otherwise: no test)
    assert max(f1[e] for e in range(1, stop + 1)) > f1[1]  # and rose first: the count was reset on a gain

    a = train(tiny_config(tmp_path / "a", labels_file, patience=3, **kw), data=data)
    assert a["stopped_epoch"] == stop and len(a["epochs"]) == stop
    assert a["stop_reason"] == "stopped early: no validation gain in 3 validations"
    assert a["epochs"][-1]["stopped_early"] == a["stop_reason"]
    assert not any("stopped_early" in e for e in a["epochs"][:-1])
    assert [e["loss"] for e in a["epochs"]] == [e["loss"] for e in full["epochs"][:stop]]
    assert a["best_epoch"] == full["epochs"][stop - 1]["best_epoch"] == stop - 3
    assert a["metrics"]["valid"]["lenient"]["f1"] == pytest.approx(
        max(f1[e] for e in range(1, stop + 1)), abs=1e-3
    )

    def strip(log):
        return [{k: v for k, v in e.items() if "seconds" not in k and k != "peak_rss_mib"} for e in log]

    wa = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    for kill_at in (stop - 1, stop):  # two validations without gain counted; the stopping epoch written
        b = tmp_path / f"b{kill_at}"

        def kill(epoch, entry, at=kill_at):
            if epoch == at:
                raise Killed

        with pytest.raises(Killed):
            train(tiny_config(b, labels_file, patience=3, **kw), data=data, on_epoch_end=kill)
        rec = train(tiny_config(b, labels_file, patience=3, **kw), data=data)  # the same command again
        assert strip(rec["epochs"]) == strip(a["epochs"]), kill_at
        assert (rec["stopped_epoch"], rec["stop_reason"], rec["best_epoch"]) == (
            a["stopped_epoch"],
            a["stop_reason"],
            a["best_epoch"],
        )
        assert rec["metrics"] == a["metrics"]
        wb = load_file(str(b / "model" / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # validating every 2nd epoch: patience counts validations (epochs 2, 4, 6, ...)
    every = train(tiny_config(tmp_path / "every2", labels_file, patience=2, valid_every=2, **kw), data=data)
    stop2 = _stop_epoch({e: f for e, f in f1.items() if e % 2 == 0}, 2)
    assert stop2 is not None and every["stopped_epoch"] == stop2 and len(every["epochs"]) == stop2

    with pytest.raises(TrainError, match="--patience must be at least 1"):
        train(tiny_config(tmp_path / "bad", labels_file, patience=0), data=data)
