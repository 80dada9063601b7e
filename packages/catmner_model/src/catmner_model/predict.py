"""Prediction with a saved model (any registered family, `families.py`): raw-text tokenisation, batched decoding, the `Predictor`.

`predict_examples` is the one decoding loop (used by training-time validation, `evaluate` and `Predictor`);
`Predictor` loads a model directory (nothing else needed: no store, no network) plus, when the model uses
images, the frozen grid-feature extractor named in its config, and turns text / tokens / JSONL lines into
entities ``{"text", "type", "start", "end", "score"}`` (token offsets, ``end`` exclusive).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from catmner_model.data import Entity, Tweet, read_text_lines, visible
from catmner_model.errors import CatmnerError

# Tweet tokenisation close to the benchmark files: URLs, @mentions, #hashtags, HTML entities (split as
# "&amp" ";" like Twitter-2015), numbers with separators, words with inner apostrophes/hyphens, ellipses,
# other punctuation one character at a time. Re-tokenising the space-joined tokens of the real validation
# splits gives back the same tokens for > 90% of tweets (see tests).
_TOKEN_RE = re.compile(
    r"""
    https?://\S+                     # URL
  | www\.\S+
  | [@#$][\w_]+                      # mention, hashtag, cashtag
  | &[a-zA-Z]{2,8}(?=;|\s|$)         # HTML entity name (its ';' becomes its own token)
  | \d+(?:[.,:/]\d+)+                # numbers with separators, times, dates
  | \w+(?:['’\-]\w+)*               # words, 8th, don't, X-Men, 6-3
  | \.\.+ | -{2,} | …                # ellipses and dashes
  | [^\w\s]                          # any other single symbol
    """,
    re.VERBOSE | re.UNICODE,
)


class PredictError(CatmnerError):
    """Bad prediction input (empty tweet, bad JSONL line, unusable model directory): one line for the user."""


def tokenize(text: str) -> list[str]:
    """Split raw tweet text into tokens: whitespace, then URLs/mentions/hashtags/words/single punctuation.
    Invisible characters (zero-width, BOM, controls: `data.visible`) are dropped first: never a token."""
    return _TOKEN_RE.findall(visible(text))


# Tweets per forward pass at inference: on a 2-core CPU 32 beats 16 and 64 (cache-resident attention and
# saliency tensors; measured with MiniLM: 108 vs 100 and 90 tweets/s for CAT-MNER)
PREDICT_BATCH_SIZE = 32


def predict_examples(
    model: torch.nn.Module,
    examples: Sequence[Any],
    collate: Callable[[list[Any]], Any],
    batch_size: int = PREDICT_BATCH_SIZE,
    device: torch.device | str = "cpu",
    desc: str = "predict",
    progress: bool = False,
    precision: str = "fp32",
) -> list[list[Entity]]:
    """Decode entities for each example (batching.Example), in input order.

    Examples are sorted by length so that each batch pads little; ``model.decode`` returns, per tweet, the
    greedy non-overlapping spans with scores. ``precision``: fp32 | bf16 | auto (see precision.py).
    """
    from catmner_model.batching import to_device
    from catmner_model.precision import autocast

    device = torch.device(device)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].tweet.tokens))
    out: list[list[Entity]] = [[] for _ in examples]
    was_training = model.training
    if was_training:  # toggling walks every module: skip it when already in eval mode (one-tweet latency)
        model.eval()
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode(), autocast(device, precision):
        for idx in tqdm(chunks, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            batch = to_device(collate([examples[i] for i in idx]), device)
            result = model(batch)
            for i, ents in zip(idx, model.decode(result, batch), strict=True):
                out[i] = list(ents)
    if was_training:
        model.train()
    return out


@dataclass
class PredictInput:
    """One tweet to predict: tokens (or raw text, tokenised) and an optional image file."""

    tokens: list[str]  # words of the tweet
    image: str | None = None  # image path, or None
    text: str | None = None  # the raw text, when given
    caption: str | None = None  # the image's caption, when given
    where: str = ""  # file:line it came from (JSONL), for warnings


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")


def image_problem(
    image: str, image_dir: str | os.PathLike[str] | None = None, exists: bool = True
) -> str | None:
    """Why an input's image file will not be read (None: it will): not an image file name, outside the
    allowed ``image_dir`` (when one is given), or not a file."""
    path = Path(image)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"image {image!r} is not an image file name ({', '.join(IMAGE_SUFFIXES)})"
    if image_dir is not None and not path.resolve().is_relative_to(Path(image_dir).resolve()):
        return f"image {image!r} is outside the image directory {image_dir}"
    if exists and not path.is_file():
        return f"image {image!r} not found"
    return None


def count_truncated(collate: Any, token_lists: Iterable[Sequence[str]]) -> dict[str, int]:
    """Tweets longer than the model's max_length pieces and their words past it (never predicted)."""
    tweets = words = 0
    for tokens in token_lists:
        cut = len(tokens) - len(collate.encode_words(tokens)[1])
        tweets += cut > 0
        words += cut
    return {"tweets": tweets, "words": words}


def entity_json(tokens: Sequence[str], ent: Entity) -> dict[str, Any]:
    """JSON form of a predicted entity: its words joined by spaces, type, token offsets, score."""
    return {
        "text": " ".join(tokens[ent.start : ent.end]),
        "type": ent.type,
        "start": ent.start,
        "end": ent.end,
        "score": None if ent.score is None else round(float(ent.score), 6),
    }


def read_jsonl(
    path: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None = None,
    warnings: list[str] | None = None,
) -> list[PredictInput]:
    """Read prediction inputs: one JSON object per line, ``{"text": ..., "image": ...}`` or ``{"tokens": [...]}``.

    Relative image paths are taken relative to the JSONL file. Errors name the file and line. An image that
    will not be read (`image_problem`) is dropped from its line with a warning appended to ``warnings``
    (naming file and line); without a ``warnings`` list it is an error. A UTF-8 BOM is accepted.
    """
    p = Path(path)
    lines = read_text_lines(p, PredictError, "a JSONL file")  # never split inside a string at U+2028
    items: list[PredictInput] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictError(f"{p}:{n}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise PredictError(f"{p}:{n}: not JSON (nested too deeply)") from None
        if not isinstance(obj, dict):
            raise PredictError(f'{p}:{n}: expected an object like {{"text": "..."}}')
        image = obj.get("image")
        if image is not None and not isinstance(image, str):
            raise PredictError(f"{p}:{n}: 'image' must be a path string")
        if image and not os.path.isabs(image):
            image = str(p.parent / image)
        if image and (problem := image_problem(image, image_dir, exists=False)):
            if warnings is None:
                raise PredictError(f"{p}:{n}: {problem}")
            warnings.append(f"{p}:{n}: {problem}: predicted without an image")
            image = None
        caption = obj.get("caption")
        if caption is not None and not isinstance(caption, str):
            raise PredictError(f"{p}:{n}: 'caption' must be a string")
        item = make_input(obj.get("text"), obj.get("tokens"), image, where=f"{p}:{n}", caption=caption)
        item.where = f"{p}:{n}"
        items.append(item)
    return items


def make_input(
    text: str | None,
    tokens: Sequence[str] | None = None,
    image: str | None = None,
    where: str = "input",
    caption: str | None = None,
) -> PredictInput:
    """Validate one input: tokens win over text; an empty tweet is an error."""
    if tokens is not None:
        if not isinstance(tokens, list | tuple) or not all(isinstance(t, str) for t in tokens):
            raise PredictError(f"{where}: 'tokens' must be a list of strings")
        # invisible characters never become or join tokens: a token of only such characters is dropped
        toks = [visible(t) for t in tokens if not (t and visible(t) == "")]
        if any(not t.strip() or any(c.isspace() for c in t) for t in toks):
            raise PredictError(f"{where}: tokens must be non-empty and contain no whitespace")
    elif isinstance(text, str):
        toks = tokenize(text)
    else:
        raise PredictError(f"{where}: give 'text' (a string) or 'tokens' (a list of strings)")
    if not toks:
        raise PredictError(f"{where}: empty tweet (no tokens)")
    return PredictInput(tokens=list(toks), image=image, text=text, caption=caption, where=where)


class Predictor:
    """A loaded model directory ready to predict tweets.

    >>> p = Predictor("runs/x/model")
    >>> p.predict_text("Obama visits Paris")  # [{"text": "Obama", "type": "PER", "start": 0, "end": 1, ...}]

    Visual tokens come from the model's visual source (`visual.VisualSource`): the grid features of a given
    image (the frozen encoder recorded in the model), the given caption (or one written by ``captioner`` from
    the given image), or nothing.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        device: str | torch.device | None = None,
        feature_cache: str | os.PathLike[str] | None = None,
        image_encoder: str | None = None,
        captioner: str | Any | None = None,
        precision: str = "fp32",
    ):
        from catmner_model.families import load_pretrained
        from catmner_model.precision import PRECISIONS, cast_linear_weights, resolve_precision

        if precision not in PRECISIONS:
            raise PredictError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.precision = precision  # fp32 | bf16 | auto (precision.py)
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise PredictError(f"{self.model_dir}: model directory not found")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_pretrained(self.model_dir, map_location=self.device)  # any registered family
        if resolve_precision(precision, self.device) == "bf16":  # inference only: cast the weights once
            cast_linear_weights(self.model)
        self.config = self.model.cfg
        self.collate = self.model.collator()
        self._feature_cache_root = feature_cache
        if image_encoder is None:
            image_encoder = getattr(self.config, "image_encoder", None) or self._sidecar_image_encoder()
        self._image_encoder = image_encoder
        self._captioner = captioner
        self._source: Any | None = None

    def _sidecar_image_encoder(self) -> str | None:
        """The image encoder named by ``training.json`` (models saved before the config recorded it)."""
        sidecar = self.model_dir / "training.json"
        if not sidecar.is_file():
            return None
        try:
            return json.loads(sidecar.read_text(encoding="utf-8")).get("image_encoder")
        except (OSError, ValueError, AttributeError) as exc:
            raise PredictError(f"{sidecar}: unreadable ({exc})") from None

    def source(
        self,
        dataset: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        image_dir: str | os.PathLike[str] | None = None,
        captions: str | os.PathLike[str] | dict[str, str] | None = None,
    ) -> Any:
        """The model's VisualSource; with ``dataset``, one that finds the dataset's images and captions."""
        from catmner_model.visual import VisualSource

        if dataset is None and self._source is not None:
            return self._source
        try:
            src = VisualSource.for_model(
                self.config,
                dataset=dataset,
                data_dir=data_dir,
                image_dir=image_dir,
                captions=captions if dataset is not None else (captions or {}),
                captioner=self._captioner,
                feature_cache=self._feature_cache_root,
                image_encoder=self._image_encoder,
            )
        except ValueError as exc:
            raise PredictError(f"{self.model_dir}: {exc}") from None
        if dataset is None:
            self._source = src
        return src

    @property
    def uses_images(self) -> bool:
        """Whether the model reads image files: it runs its own (fine-tuned) image encoder, or we know the
        frozen encoder its grid features came from (or a captioner writes captions of them)."""
        if getattr(self.model, "vision", None) is not None:
            return True
        if self.config.uses_caption and self._captioner is not None:
            return True
        return self.config.uses_grid and self._image_encoder not in (None, "", "none")

    @property
    def uses_captions(self) -> bool:
        return bool(self.config.uses_caption)

    def example(
        self,
        tweet: Tweet,
        image: str | os.PathLike[str] | None,
        caption: str | None = None,
        source: Any = None,
    ) -> Any:
        """The model input of a tweet with its optional image file and caption (through the visual source:
        cached frozen features, the file itself for a fine-tuned encoder, or the caption)."""
        if image is not None and not Path(image).is_file():
            raise PredictError(f"{image}: image not found")
        return (source or self.source()).example(tweet, image=image, caption=caption)

    def image_features(self, image: str | os.PathLike[str] | None) -> torch.Tensor | None:
        """Grid features (16, F) of an image file through the on-disk cache; None when absent or unusable."""
        if image is None or not self.uses_images:
            return None
        if not Path(image).is_file():
            raise PredictError(f"{image}: image not found")
        cache = self.source().grid_cache()
        return None if cache is None else cache.get(Path(image))

    def predict(
        self,
        inputs: Iterable[PredictInput | str | Sequence[str]],
        images: Sequence[str | os.PathLike[str] | None] | None = None,
        captions: Sequence[str | None] | None = None,
        batch_size: int = PREDICT_BATCH_SIZE,
        progress: bool = False,
    ) -> list[list[dict]]:
        """Entities (JSON dicts) for each input, in order. An input is raw text, a list of tokens or a
        `PredictInput`; ``images`` / ``captions`` (one per input, None where absent) go with text or tokens."""
        raw = list(inputs)
        for name, extra in (("images", images), ("captions", captions)):
            if extra is not None and len(extra) != len(raw):
                raise PredictError(f"{name}: {len(extra)} given for {len(raw)} inputs")
        items = []
        for i, x in enumerate(raw):
            if isinstance(x, PredictInput):
                items.append(x)
                continue
            image = None if images is None or images[i] is None else str(images[i])
            caption = None if captions is None else captions[i]
            text, tokens = (x, None) if isinstance(x, str) else (None, list(x))
            items.append(make_input(text, tokens, image, where=f"input {i}", caption=caption))
        examples = []
        for i, item in enumerate(items):
            tweet = Tweet(imgid=f"input{i}", tokens=item.tokens, tags=["O"] * len(item.tokens), entities=[])
            examples.append(self.example(tweet, item.image, item.caption))
        preds = self._decode(examples, batch_size, progress)
        return [[entity_json(it.tokens, e) for e in p] for it, p in zip(items, preds, strict=True)]

    def predict_text(
        self,
        text: str,
        image: str | None = None,
        caption: str | None = None,
        warnings: list[str] | None = None,
    ) -> list[dict]:
        """Entities of one raw tweet (with its optional image file and caption).

        With a ``warnings`` list (the CLI's ``--text``), an unusable image is a warning there and the tweet is
        predicted without it, as for ``--input``, and words past the model's max_length pieces are noted."""
        item = make_input(text, None, image, where="--text", caption=caption)
        if warnings is None:
            return self.predict([item])[0]
        example = self.checked_example(item, 0, warnings)
        cut = count_truncated(self.collate, [item.tokens])["words"]
        if cut:
            warnings.append(
                f"--text: {cut} of its {len(item.tokens)} words lie past the model's max_length pieces: "
                "never predicted (split the text)"
            )
        preds = self._decode([example], 1)
        return [entity_json(item.tokens, e) for e in preds[0]]

    def _decode(self, examples: list[Any], batch_size: int, progress: bool = False) -> list[list[Entity]]:
        """Entity spans of model inputs, batched, at the predictor's device and precision."""
        return predict_examples(
            self.model,
            examples,
            self.collate,
            batch_size,
            self.device,
            progress=progress,
            precision=self.precision,
        )

    def checked_example(self, item: PredictInput, index: int, notes: list[str]) -> Any:
        """The model input of one tweet; an image that will not be used (not an image file, missing,
        unreadable: a bomb, truncated, empty, HTML) or a missing caption is noted in ``notes`` (naming where
        the tweet came from) and the tweet is predicted without it."""
        if item.image and (problem := image_problem(item.image)):
            notes.append(f"{item.where}: {problem}: predicted without an image")
            item.image = None
        tweet = Tweet(imgid=f"input{index}", tokens=item.tokens, tags=["O"] * len(item.tokens), entities=[])
        ex = self.example(tweet, item.image, item.caption)
        if item.image and self.uses_images and ex.image_features is None and ex.image_file is None:
            notes.append(f"{item.where}: image {item.image!r} is not a readable image: predicted without it")
        if self.uses_captions and ex.caption is None:
            hint = "" if item.image is None else " (an image alone needs --captioner for this model)"
            notes.append(f"{item.where}: no caption{hint}: predicted with the no-caption token")
        return ex

    def explain(
        self,
        text: str | None = None,
        image: str | None = None,
        caption: str | None = None,
        tokens: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """`predict_text`'s entities of one tweet plus what the model looked at: each entity's (and word's)
        last-layer attention over the visual tokens, refined and unrefined, and its most salient label words
        (`explain.explain_input`; `catmner serve` shows this dict)."""
        from catmner_model.explain import explain_input

        where = "--text" if tokens is None else "tokens"
        item = make_input(text, None if tokens is None else list(tokens), image, where=where, caption=caption)
        out = explain_input(self, item)
        out["entities"] = [entity_json(item.tokens, e) for e in out["entities"]]
        return out

    def predict_tokens(
        self, tokens: Sequence[str], image: str | None = None, caption: str | None = None
    ) -> list[dict]:
        """Entities of one pre-tokenised tweet."""
        return self.predict([make_input(None, list(tokens), image, where="tokens", caption=caption)])[0]

    def predict_jsonl(
        self,
        path: str | os.PathLike[str],
        batch_size: int = PREDICT_BATCH_SIZE,
        progress: bool = False,
        *,
        image_dir: str | os.PathLike[str] | None = None,
        strict: bool = False,
        warnings: list[str] | None = None,
    ) -> list[dict]:
        """One result per JSONL line: ``{"tokens", "entities", "truncated_words"}`` (plus ``text`` when given).

        Each line stands alone: an image that is missing, not an image file name, outside ``image_dir`` (when
        given) or unreadable is a warning (appended to ``warnings``) and that tweet is predicted without it;
        ``strict`` makes the first such line an error instead. ``truncated_words``: words past the model's
        max_length pieces, never predicted."""
        notes: list[str] = []
        items = read_jsonl(path, image_dir, notes)
        examples = [self.checked_example(item, i, notes) for i, item in enumerate(items)]
        prefix = f"{Path(path)}:"
        notes.sort(key=lambda m: int(m[len(prefix) :].split(":", 1)[0]))  # in line order
        if strict and notes:
            raise PredictError(
                f"{notes[0].split(': predicted without')[0]} (--strict; {len(notes)} such line(s))"
            )
        if warnings is not None:
            warnings.extend(notes)
        preds = self._decode(examples, batch_size, progress)
        results = [[entity_json(it.tokens, e) for e in p] for it, p in zip(items, preds, strict=True)]
        out = []
        for item, ents in zip(items, results, strict=True):
            cut = count_truncated(self.collate, [item.tokens])["words"]
            row: dict[str, Any] = {"tokens": item.tokens, "entities": ents, "truncated_words": cut}
            if item.text is not None:
                row = {"text": item.text, **row}
            out.append(row)
        return out


def load_model(
    model_dir: str | os.PathLike[str], device: str | torch.device | None = None, **kw: Any
) -> Predictor:
    """A saved model directory, ready to predict: ``load_model(path).predict(texts, images=, captions=)``."""
    return Predictor(model_dir, device=device, **kw)
