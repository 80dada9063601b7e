"""The ``caption`` visual source: the caption of the tweet's image (a file of captions, one given with the tweet,
or one written by a Hugging Face image-to-text model), as word pieces the LM's embedding layer embeds, then
`components.CaptionEmbedding` (positions, modality, the no-caption token). Placed as segment B of a sentence pair
(``caption_positions="pair"``: the pieces open with the encoder's pair separator, `batching.Collator`, and
their positions continue after the text's real tokens, `CaptionSource.tokens`) or, for models saved before the
placement was a choice, on positions of their own from row 0 ("restart").

Caption files: lines ``<IMGID>.jpg :<caption>`` (the PGIM release's BLIP-2 files) or JSON lines
``{"imgid": ..., "caption": ...}``. Errors name the file and line. An empty caption counts as none (the
shared Twitter-2015 file has two).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from catmner_model.data import DataError, read_text_lines, resolve_data_dir, visible
from catmner_model.hf_safety import refuse_remote_code
from catmner_model.visual_base import VisualSourceKind


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
    lines = read_text_lines(p, CaptionError, "a caption file")
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):  # on \n only: a caption may hold U+2028
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CaptionError(f"{p}:{n}: not JSON ({exc.msg})") from None
            except RecursionError:
                raise CaptionError(f"{p}:{n}: not JSON (nested too deeply)") from None
            if not isinstance(obj, dict):
                raise CaptionError(f'{p}:{n}: expected {{"imgid": "...", "caption": "..."}}')
            imgid, caption = obj.get("imgid"), obj.get("caption")
            if not isinstance(imgid, str | int) or not isinstance(caption, str):
                raise CaptionError(f'{p}:{n}: expected {{"imgid": "...", "caption": "..."}}')
            imgid = _imgid_of(str(imgid))
        else:
            name, sep, caption = line.partition(" :")
            if not sep or not name.strip():
                raise CaptionError(f"{p}:{n}: expected '<IMGID>.jpg :<caption>' or a JSON line")
            imgid = _imgid_of(name)
        caption = " ".join(visible(caption).split())
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
        refuse_remote_code(self.name)  # a local directory's configs, before transformers reads them
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


class CaptionSource(VisualSourceKind):
    name = "caption"
    attr = "caption"  # CatMner.caption: the weights are saved as caption.*
    lm_pieces = True

    @property
    def reads_image(self) -> bool:  # type: ignore[override]
        return True  # a captioner (when the run has one) captions the tweet's image

    # ------------------------------------------------------------------------------------- example lookup
    def setup(self, src: Any, cfg: Any, options: dict[str, Any]) -> None:
        captions = options.get("captions")
        if captions == "none":  # the caption path without content: every tweet gets the no-caption token
            src.caption_file, src.captions = None, {}
            return  # and no captioner
        if isinstance(captions, dict):
            src.captions = dict(captions)
        else:
            path = resolve_captions(options.get("dataset"), captions, options.get("data_dir"))
            src.caption_file = path
            src.captions = read_captions(path) if path is not None else {}
        captioner = options.get("captioner")
        if captioner is not None:
            src.captioner = HFCaptioner(captioner) if isinstance(captioner, str | os.PathLike) else captioner
            if src.image_dir is None:
                from catmner_model.data import resolve_image_dir

                src.image_dir = resolve_image_dir(options.get("image_dir"), options.get("data_dir"))

    def lookup(self, src: Any, ex: Any, image: Path | None, given: dict[str, Any]) -> None:
        ex.caption = self._caption(src, ex.tweet, image if image is not None and image.is_file() else None,
                                   given.get("caption"))  # fmt: skip

    @staticmethod
    def _caption(src: Any, tweet: Any, image: Path | None, caption: str | None) -> str | None:
        if caption is not None:
            caption = " ".join(str(caption).split())
            return caption or None
        found = (src.captions or {}).get(tweet.imgid)
        if found is None and src.captioner is not None and image is not None:
            from catmner_model.images import load_image_safely

            loaded = load_image_safely(image)
            if loaded.ok:
                found = src.captioner(loaded.image) or None
                if found is not None:
                    src.stats.captioned_by_model += 1
                    if src.captions is not None:
                        src.captions[tweet.imgid] = found
        return found

    def present(self, ex: Any) -> bool:
        return ex.caption is not None

    # ------------------------------------------------------------------------------------- collate pieces
    def collate(self, collator: Any, examples: Sequence[Any]) -> dict[str, Any]:
        """Caption word pieces (B, Lc) and their mask, padded to the batch's longest caption; None when no
        example of the batch has one. The batch's caption count goes into its stats."""
        stats = {"captions": sum(1 for ex in examples if ex.caption)}
        if not any(ex.caption for ex in examples):
            return {"caption_ids": None, "caption_mask": None, "stats": stats}
        caps = [collator.caption_pieces(ex.caption) if ex.caption else [] for ex in examples]
        B, Lc = len(examples), max(len(c) for c in caps)
        caption_ids = torch.full((B, Lc), collator.pieces.pad_id, dtype=torch.long)
        caption_mask = torch.zeros((B, Lc), dtype=torch.bool)
        for b, c in enumerate(caps):
            caption_ids[b, : len(c)] = torch.tensor(c, dtype=torch.long)
            caption_mask[b, : len(c)] = True
        return {"caption_ids": caption_ids, "caption_mask": caption_mask, "stats": stats}

    # ------------------------------------------------------------------------------------- embedding module
    def embedding(self, model: Any, cfg: Any, width: int, eps: float, dropout: float) -> torch.nn.Module:
        from catmner_model.components import CaptionEmbedding

        return CaptionEmbedding(
            model.encoder.embeddings, cfg.max_caption_pieces, width, eps, dropout, cfg.caption_positions
        )

    def piece_ids(self, batch: Any) -> torch.Tensor | None:
        return batch.caption_ids

    def tokens(
        self, model: Any, batch: Any, batch_size: int, lm_vecs: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.caption_mask is not None:
            has = batch.caption_mask[:, 0]
        else:
            has = torch.zeros(batch_size, dtype=torch.bool, device=batch.input_ids.device)
        start = batch.attention_mask.sum(1)  # (B,) "pair": the caption's positions follow the text's
        return model.caption(
            lm_vecs, batch.caption_mask, has, batch_size, model.encoder.embeddings, start, model._embed_types
        )  # (B, Lc, D), (B, Lc)
