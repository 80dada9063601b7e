"""The visual layer: what a tweet's image becomes before it reaches the model, for every code path.

CAT-MNER's R-Transformer reads a sequence of visual tokens beside the tweet. Where those tokens come from are
the model's *visual sources* (``CatMnerConfig.visual``, a tuple of names registered in
`visual_sources.VISUAL_SOURCES`: ``grid`` in `visual_grid.py`, ``caption`` in `visual_caption.py`; empty
for text only). `VisualSource` is the one object that turns tweets into model inputs (`batching.Example`)
for them; training, evaluation, prediction and the benchmarks all build it with `VisualSource.for_model`,
and each source does its own lookup in it.

A tweet without an image / caption is a normal input: the model gives it its learned no-image token, and the
source counts it. This module also reads PGIM's auxiliary knowledge (a second text segment, not a visual
source, but looked up per tweet the same way).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catmner_model.data import Tweet, image_path, resolve_data_dir
from catmner_model.visual_caption import CaptionError
from catmner_model.visual_grid import GridSource
from catmner_model.visual_sources import kinds, visual_name


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


@dataclass
class VisualSource:
    """Tweets -> `batching.Example` for one model's visual sources (see the module docstring).

    Build it with `VisualSource.for_model` (training, evaluation, prediction and the benchmarks all do);
    ``example(tweet, image=..., caption=...)`` takes an explicit image file / caption (prediction), else each
    source looks the tweet up (its IMGID in the dataset's image folder / caption file). The lookup is the
    sources' own (`visual_base.VisualSourceKind.lookup`); this object holds what they found for the run.
    """

    names: tuple[str, ...] = ()  # the model's visual sources (CatMnerConfig.visual)
    dataset: str | None = None
    image_dir: Path | None = None
    cache: Any | None = None  # FeatureCache (grid with a frozen encoder)
    files: bool = False  # grid read as files at collation (a model that fine-tunes its image encoder)
    captions: dict[str, str] | None = None  # IMGID -> caption
    caption_file: Path | None = None  # where ``captions`` came from (None: given, or no file found)
    captioner: Any | None = None  # callable PIL image -> caption, for images without one
    knowledge: dict[int, list[str] | None] = field(default_factory=dict)  # id(tweet) -> second segment
    stats: VisualStats = field(default_factory=VisualStats)
    image_encoder: str | None = None  # frozen grid encoder, built on first use when ``cache`` is None
    feature_cache_dir: Path | None = None  # root of the FeatureCache built on first use
    feature_dim: int | None = None  # the grid feature width the model expects
    state: dict[str, Any] = field(default_factory=dict)  # what other sources keep for the run, by name

    def __post_init__(self) -> None:
        self.kinds = kinds(self.names)
        self.names = tuple(k.name for k in self.kinds)

    @property
    def visual(self) -> str:
        """The sources as one string ("grid+caption", "none")."""
        return visual_name(self.names)

    def grid_cache(self) -> Any | None:
        """The FeatureCache of the grid source, built on first use (loading an image encoder takes seconds)."""
        return GridSource.cache(self)

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
        cache: Any | None = None,
    ) -> VisualSource:
        """The source a model with config ``cfg`` (a CatMnerConfig) reads: each of its visual sources sets
        itself up from these options. ``image_encoder``: the frozen encoder of grid features (default: the
        one recorded in ``cfg``); ``cache``: a FeatureCache already built for it (the trainer's)."""
        src = cls(names=tuple(getattr(cfg, "visual", ())), dataset=dataset)
        options = {
            "dataset": dataset,
            "data_dir": data_dir,
            "image_dir": image_dir,
            "captions": captions,
            "captioner": captioner,
            "feature_cache": feature_cache,
            "image_encoder": image_encoder,
            "finetune": finetune,
            "cache": cache,
        }
        for kind in src.kinds:
            kind.setup(src, cfg, options)
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

    def example(
        self,
        tweet: Tweet,
        image: str | os.PathLike[str] | None = None,
        caption: str | None = None,
        context: list[str] | None = None,
        visual: dict[str, Any] | None = None,
    ) -> Any:
        """The model input of one tweet: each visual source's lookup (image features / image file / caption
        / other sources' inputs, ``visual`` giving them by source name), and the second segment."""
        from catmner_model.batching import Example

        ex = Example(tweet=tweet)
        path = self._image_file(tweet, image) if any(k.reads_image for k in self.kinds) else None
        given = {**(visual or {}), "caption": caption}
        for kind in self.kinds:
            kind.lookup(self, ex, path, given)
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
        if "grid" not in self.names or self.dataset is None or self.image_dir is None:
            return []
        return sorted(
            {p for t in tweets if (p := image_path(self.dataset, t.imgid, self.image_dir)) is not None}
        )
