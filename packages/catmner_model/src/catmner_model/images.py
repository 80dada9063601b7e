"""Safe image reading and grid cropping: what happens to an untrusted image file before any encoder sees it.

- ``load_image_safely`` / ``decode_image``: untrusted files (corrupt, truncated, decompression bombs, odd modes
  such as L, P, RGBA, CMYK, 16-bit) become an RGB image or a one-line reason, never an exception.
- ``grid_boxes`` / ``grid_crops`` / ``resized_grid_tensor``: the ``grid x grid`` cells, row-major from the
  top-left cell (index = row * grid + col).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

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
