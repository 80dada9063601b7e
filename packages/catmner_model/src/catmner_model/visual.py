"""The visual layer: what a tweet's image becomes before it reaches the model, for every code path.

CAT-MNER's R-Transformer reads a sequence of visual tokens beside the tweet. Where those tokens come from is the
model's *visual source* (``CatMnerConfig.visual``), and this module is the one place that turns tweets into
model inputs (`batching.Example`) for it; training, evaluation, prediction and the benchmarks all go through
`VisualSource`:

- ``grid``: the image's 4x4 grid through a frozen image encoder, read from the content-keyed `FeatureCache`
  (or, for a model that fine-tunes its image encoder, the image file, read at collation);
- ``caption``: the caption of the tweet's image (a file of captions, one given with the tweet, or one written
  by a Hugging Face image-to-text model); the model embeds its word pieces with the LM embedding layer;
- ``grid+caption``: both; ``none``: text only (the ``text`` variant).

A tweet without an image / caption is a normal input: the model gives it its learned no-image token, and the
source counts it. This module also reads PGIM's auxiliary knowledge (a second text segment, not a visual
source, but looked up per tweet the same way).

Caption files: lines ``<IMGID>.jpg :<caption>`` (the PGIM release's BLIP-2 files) or JSON lines
``{"imgid": ..., "caption": ...}``. Errors name the file and line. An empty caption counts as none (the
shared Twitter-2015 file has two).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from catmner_model.data import DataError, Tweet, image_path, resolve_data_dir
from catmner_model.visual_sources import uses_caption, uses_grid


class CaptionError(DataError):
    """A caption file that cannot be read: one line naming the file and line."""


# --------------------------------------------------------------------------------------------- captions
def _imgid_of(name: str) -> str:
    name = name.strip()
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext.lower() in ("jpg", "jpeg", "png", "gif", "webp") else name


def read_captions(path: str | os.PathLike[str]) -> dict[str, str]:
    """IMGID -> caption from a caption file (``<IMGID>.jpg :<caption>`` lines or JSON lines)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CaptionError(f"{p}: caption file not found") from None
    except IsADirectoryError:
        raise CaptionError(f"{p}: is a directory, expected a caption file") from None
    except UnicodeDecodeError as exc:
        raise CaptionError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CaptionError(f"{p}:{n}: not JSON ({exc.msg})") from None
            imgid, caption = obj.get("imgid"), obj.get("caption")
            if not isinstance(imgid, str | int) or not isinstance(caption, str):
                raise CaptionError(f'{p}:{n}: expected {{"imgid": "...", "caption": "..."}}')
            imgid = _imgid_of(str(imgid))
        else:
            name, sep, caption = line.partition(" :")
            if not sep or not name.strip():
                raise CaptionError(f"{p}:{n}: expected '<IMGID>.jpg :<caption>' or a JSON line")
            imgid = _imgid_of(name)
        caption = " ".join(caption.split())
        if not caption:  # an empty caption is no caption (the tweet gets the no-caption token, counted)
            continue
        if imgid in out and out[imgid] != caption:
            raise CaptionError(f"{p}:{n}: second, different caption for IMGID {imgid!r}")
        out[imgid] = caption
    if not out:
        raise CaptionError(f"{p}: no captions in the file")
    return out


def resolve_captions(
    dataset: str | None,
    captions: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The caption file of ``dataset``: ``captions`` (a file, or a folder holding ``<dataset>_blip2.txt``), else
    ``$CATMNER_CAPTIONS`` (same), else ``<data_dir>/captions/<dataset>_blip2.txt`` if it exists; else None."""
    given = captions or os.environ.get("CATMNER_CAPTIONS")
    if given:
        p = Path(given).expanduser()
        if p.is_dir():
            for name in (f"{dataset}_blip2.txt", f"{dataset}.txt", f"{dataset}.jsonl"):
                if (p / name).is_file():
                    return p / name
            raise CaptionError(f"{p}: no caption file for {dataset} ({dataset}_blip2.txt, {dataset}.jsonl)")
        if not p.is_file():
            raise CaptionError(f"{p}: caption file not found")
        return p
    if dataset is None:
        return None
    candidate = resolve_data_dir(data_dir) / "captions" / f"{dataset}_blip2.txt"
    return candidate if candidate.is_file() else None


class HFCaptioner:
    """Captions for images that have none: a Hugging Face image-to-text model (e.g. BLIP) by name or path.

    Loaded with ``trust_remote_code=False``; greedy decoding of at most ``max_new_tokens`` tokens.
    """

    def __init__(self, name_or_path: str, device: str | torch.device = "cpu", max_new_tokens: int = 30):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.name = str(name_or_path)
        try:
            self.processor = AutoProcessor.from_pretrained(self.name, trust_remote_code=False)
            self.model = AutoModelForImageTextToText.from_pretrained(self.name, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CaptionError(f"{self.name}: cannot load the captioning model ({first})") from None
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.max_new_tokens = max_new_tokens

    @torch.inference_mode()
    def __call__(self, image: Any) -> str:
        """The caption of a PIL image (lower-cased, whitespace collapsed)."""
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        text = self.processor.batch_decode(ids, skip_special_tokens=True)[0]
        return " ".join(text.lower().split())


# ----------------------------------------------------------------------------------------- PGIM knowledge
def read_pgim(path: str | os.PathLike[str], split: str) -> list[tuple[tuple[str, ...], list[str]]]:
    """(tweet tokens, knowledge words) of every tweet of ``split`` in a PGIM release zip (``train.txt`` ...).

    Layout per tweet: ``token<TAB>tag`` lines, a line ``<EOS><TAB>X``, the knowledge as ``word<TAB>X`` lines,
    a blank line."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == f"{split}.txt"]
            if not names:
                raise CaptionError(f"{p}: no {split}.txt in the zip")
            raw = zf.read(names[0])
    except FileNotFoundError:
        raise CaptionError(f"{p}: PGIM knowledge zip not found") from None
    except zipfile.BadZipFile as exc:
        raise CaptionError(f"{p}: not a zip file ({exc})") from None
    where = f"{p}!{names[0]}"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaptionError(f"{where}: not UTF-8 ({exc.reason})") from None
    out: list[tuple[tuple[str, ...], list[str]]] = []
    tokens: list[str] = []
    knowledge: list[str] = []
    in_knowledge = False
    for n, line in enumerate(io.StringIO(text), 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if tokens:
                out.append((tuple(tokens), knowledge))
            tokens, knowledge, in_knowledge = [], [], False
            continue
        word = line.split("\t", 1)[0]
        if word == "<EOS>":
            in_knowledge = True
        elif in_knowledge:
            knowledge.append(word)
        elif "\t" not in line:
            raise CaptionError(f"{where}:{n}: expected 'token<TAB>tag'")
        else:
            tokens.append(word)
    if tokens:
        out.append((tuple(tokens), knowledge))
    return out


def resolve_pgim(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    p = resolve_data_dir(data_dir) / "pgim" / f"{dataset}_pgim.zip"
    if not p.is_file():
        raise CaptionError(f"{p}: PGIM knowledge not found (expected <data_dir>/pgim/{dataset}_pgim.zip)")
    return p


def align_knowledge(
    tweets: Sequence[Tweet], records: Sequence[tuple[tuple[str, ...], list[str]]]
) -> list[list[str] | None]:
    """The knowledge of each tweet, aligned by token sequence (in order: a tweet takes the first unused record
    with its tokens); None for tweets the records lack (e.g. the dropped last tweet of Twitter-2015 files)."""
    queues: dict[tuple[str, ...], list[list[str]]] = {}
    for toks, words in records:
        queues.setdefault(toks, []).append(words)
    used: dict[tuple[str, ...], int] = {}
    out: list[list[str] | None] = []
    for t in tweets:
        key = tuple(t.tokens)
        q = queues.get(key)
        if not q:
            out.append(None)
            continue
        i = used.get(key, 0)
        out.append(q[min(i, len(q) - 1)])  # identical tweets beyond the records' copies reuse the last one
        used[key] = i + 1
    return out


# ------------------------------------------------------------------------------------------ visual source
@dataclass
class VisualStats:
    """What a source found, for run logs and evaluate output."""

    tweets: int = 0
    with_grid: int = 0
    with_caption: int = 0
    captioned_by_model: int = 0
    with_context: int = 0
    unreadable_images: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def build_extractor(image_encoder: str | None) -> Any | None:
    """The frozen grid-feature extractor for ``image_encoder`` (None for "none")."""
    if image_encoder in ("none", "", None):
        return None
    from catmner_model.encoders import GridFeatureExtractor, VisionConfig

    return GridFeatureExtractor(VisionConfig(encoder=image_encoder))


@dataclass
class VisualSource:
    """Tweets -> `batching.Example` for one model's visual source (see the module docstring).

    Build it with `VisualSource.for_model`; ``example(tweet, image=..., caption=...)`` takes an explicit image
    file / caption (prediction), else looks the tweet's IMGID up in the dataset's image folder / caption file.
    """

    visual: str = "none"
    dataset: str | None = None
    image_dir: Path | None = None
    cache: Any | None = None  # FeatureCache (grid with a frozen encoder)
    files: bool = False  # grid read as files at collation (a model that fine-tunes its image encoder)
    captions: dict[str, str] | None = None  # IMGID -> caption
    captioner: Any | None = None  # callable PIL image -> caption, for images without one
    knowledge: dict[int, list[str] | None] = field(default_factory=dict)  # id(tweet) -> second segment
    stats: VisualStats = field(default_factory=VisualStats)
    image_encoder: str | None = None  # frozen grid encoder, built on first use when ``cache`` is None
    feature_cache_dir: Path | None = None  # root of the FeatureCache built on first use
    feature_dim: int | None = None  # the grid feature width the model expects

    def grid_cache(self) -> Any | None:
        """The FeatureCache of the grid source, built on first use (loading an image encoder takes seconds)."""
        if self.cache is None and self.image_encoder not in (None, "", "none"):
            from catmner_model.feature_cache import FeatureCache, feature_cache_root

            extractor = build_extractor(self.image_encoder)
            fdim = int(extractor.feature_dim)
            if self.feature_dim is not None and fdim != self.feature_dim:
                raise ValueError(
                    f"image encoder {self.image_encoder!r} gives {fdim}-d features, the model expects "
                    f"{self.feature_dim}"
                )
            self.cache = FeatureCache(
                feature_cache_root(self.feature_cache_dir), extractor, memory_items=2048
            )
        return self.cache

    @classmethod
    def for_model(
        cls,
        cfg: Any,
        *,
        dataset: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        image_dir: str | os.PathLike[str] | Path | None = None,
        captions: str | os.PathLike[str] | dict[str, str] | None = None,
        captioner: str | Any | None = None,
        feature_cache: str | os.PathLike[str] | None = None,
        image_encoder: str | None = None,
        finetune: bool = False,
    ) -> VisualSource:
        """The source a model with config ``cfg`` (a CatMnerConfig) reads. ``image_encoder``: the frozen
        encoder of grid features (default: the one recorded in ``cfg``)."""
        from catmner_model.data import resolve_image_dir

        visual = getattr(cfg, "visual_source", "none")
        src = cls(visual=visual, dataset=dataset)
        if uses_grid(visual):
            src.image_dir = resolve_image_dir(image_dir, data_dir)
            if finetune or getattr(cfg, "trainable_image_encoder", None):
                src.files = True
            else:
                src.image_encoder = image_encoder or getattr(cfg, "image_encoder", None)
                src.feature_cache_dir = Path(feature_cache) if feature_cache else None
                src.feature_dim = int(cfg.image_feature_dim)
        if uses_caption(visual):
            if isinstance(captions, dict):
                src.captions = dict(captions)
            else:
                path = resolve_captions(dataset, captions, data_dir)
                src.captions = read_captions(path) if path is not None else {}
            if captioner is not None:
                src.captioner = (
                    HFCaptioner(captioner) if isinstance(captioner, str | os.PathLike) else captioner
                )
                src.image_dir = src.image_dir or resolve_image_dir(image_dir, data_dir)
        return src

    def add_knowledge(
        self, tweets: Sequence[Tweet], records: Sequence[tuple[tuple[str, ...], list[str]]]
    ) -> int:
        """Attach a second text segment (PGIM knowledge) to ``tweets``; returns how many have none."""
        missing = 0
        for t, words in zip(tweets, align_knowledge(tweets, records), strict=True):
            self.knowledge[id(t)] = words
            missing += words is None
        return missing

    def _image_file(self, tweet: Tweet, image: str | os.PathLike[str] | None) -> Path | None:
        if image is not None:
            return Path(image)
        if self.dataset is None or self.image_dir is None:
            return None
        return image_path(self.dataset, tweet.imgid, self.image_dir, tweet.where)

    def _caption(self, tweet: Tweet, image: Path | None, caption: str | None) -> str | None:
        if caption is not None:
            caption = " ".join(str(caption).split())
            return caption or None
        found = (self.captions or {}).get(tweet.imgid)
        if found is None and self.captioner is not None and image is not None:
            from catmner_model.images import load_image_safely

            loaded = load_image_safely(image)
            if loaded.ok:
                found = self.captioner(loaded.image) or None
                if found is not None:
                    self.stats.captioned_by_model += 1
                    if self.captions is not None:
                        self.captions[tweet.imgid] = found
        return found

    def example(
        self,
        tweet: Tweet,
        image: str | os.PathLike[str] | None = None,
        caption: str | None = None,
        context: list[str] | None = None,
    ) -> Any:
        """The model input of one tweet (image features / image file / caption / second segment)."""
        from catmner_model.batching import Example

        ex = Example(tweet=tweet)
        grid, cap = uses_grid(self.visual), uses_caption(self.visual)
        path = self._image_file(tweet, image) if (grid or (cap and self.captioner is not None)) else None
        if grid and path is not None:
            if self.files:
                ex.image_file = str(path) if path.is_file() else None
            elif path.is_file() and self.grid_cache() is not None:
                ex.image_features = self.cache.get(path)
                if ex.image_features is None:
                    self.stats.unreadable_images += 1
        if cap:
            ex.caption = self._caption(tweet, path if path is not None and path.is_file() else None, caption)
        ex.context = context if context is not None else self.knowledge.get(id(tweet))
        self.stats.tweets += 1
        self.stats.with_grid += ex.image_features is not None or ex.image_file is not None
        self.stats.with_caption += ex.caption is not None
        self.stats.with_context += ex.context is not None
        return ex

    def examples(self, tweets: Iterable[Tweet]) -> list[Any]:
        return [self.example(t) for t in tweets]

    def image_paths(self, tweets: Iterable[Tweet]) -> list[Path]:
        """The existing image files of ``tweets`` (for precomputing grid features), sorted."""
        if not uses_grid(self.visual) or self.dataset is None or self.image_dir is None:
            return []
        return sorted(
            {p for t in tweets if (p := image_path(self.dataset, t.imgid, self.image_dir)) is not None}
        )
