"""The comparison system: the standard Hugging Face token-classification recipe on the same encoder
(`HFSystem`: AutoModelForTokenClassification, BIO labels on each word's first subword, dynamic padding with
DataCollatorForTokenClassification, fused AdamW, linear schedule, gradient clipping, as `transformers.Trainer`
does by default), trained and predicted over the same tweets as the catmner systems."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from catmner_bench.speed.systems import Setting

HF_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC")


class HFSystem:
    """The standard Hugging Face token-classification recipe on the same encoder."""

    def __init__(self, ctx: Any, train_tweets: list[Any], device: torch.device):
        from catmner_model.text_encoder import TINY_ENCODER, load_tokenizer, minilm_path
        from transformers import (
            AutoModelForTokenClassification,
            BertConfig,
            BertForTokenClassification,
            DataCollatorForTokenClassification,
            get_linear_schedule_with_warmup,
        )
        from transformers.utils import logging as hf_logging

        p = ctx.profile
        name = p.text_encoder
        self.device = device
        self.tokenizer = load_tokenizer(name)
        label2id = {label: i for i, label in enumerate(HF_LABELS)}
        if name == "tiny":
            torch.manual_seed(p.seeds[0])
            cfg = BertConfig(vocab_size=len(self.tokenizer), num_labels=len(HF_LABELS), **TINY_ENCODER)
            self.model = BertForTokenClassification(cfg)
        else:
            path = str(minilm_path()) if name == "minilm" else name
            verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
            hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected
            hf_logging.disable_progress_bar()
            try:
                self.model = AutoModelForTokenClassification.from_pretrained(
                    path,
                    num_labels=len(HF_LABELS),
                    id2label=dict(enumerate(HF_LABELS)),
                    label2id=label2id,
                    trust_remote_code=False,
                )
            finally:
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
        self.model.to(device)
        self.label2id = label2id
        self.features = [self.encode(t) for t in train_tweets]  # tokenised once, as dataset.map would
        self.collator = DataCollatorForTokenClassification(self.tokenizer)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=p.encoder_lr, weight_decay=0.0, fused=device.type in ("cpu", "cuda")
        )
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, 0, 250 * 10)

    def encode(self, tweet: Any) -> dict[str, list[int]]:
        enc = self.tokenizer(tweet.tokens, is_split_into_words=True, truncation=True)
        labels, previous = [], None
        for w in enc.word_ids():
            labels.append(-100 if w is None or w == previous else self.label2id[tweet.tags[w]])
            previous = w
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

    def train_steps(self, batches: Sequence[Sequence[int]], setting: Setting, features: Any = None) -> float:
        from catmner_model.precision import autocast

        feats = features if features is not None else self.features
        self.model.train()
        total = 0.0
        for idx in batches:
            batch = {k: v.to(self.device) for k, v in self.collator([feats[i] for i in idx]).items()}
            with autocast(self.device, setting.precision):
                loss = self.model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            total += loss.item()
        return total / max(1, len(batches))

    def padded_tokens(self, batches: Sequence[Sequence[int]]) -> tuple[float, float]:
        padded = real = 0
        for idx in batches:
            b = self.collator([self.features[i] for i in idx])
            padded += b["input_ids"].numel()
            real += int(b["attention_mask"].sum())
        n = max(1, len(batches))
        return padded / n, real / n

    @torch.inference_mode()
    def predict(self, tweets: Sequence[Any], batch_size: int, precision: str) -> list[list[Any]]:
        """Entities of each tweet: tokenise, pad, forward, argmax, first-subword tags -> entities."""
        from catmner_model.data import tags_to_entities
        from catmner_model.precision import autocast

        self.model.eval()
        order = sorted(range(len(tweets)), key=lambda i: len(tweets[i].tokens))
        out: list[list[Any]] = [[] for _ in tweets]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [tweets[i].tokens for i in idx],
                is_split_into_words=True,
                truncation=True,
                padding=True,
                return_tensors="pt",
            )
            with autocast(self.device, precision):
                logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
            best = logits.argmax(-1).cpu().tolist()
            for row, i in enumerate(idx):
                tags, previous = ["O"] * len(tweets[i].tokens), None
                for pos, w in enumerate(enc.word_ids(row)):
                    if w is not None and w != previous:
                        tags[w] = HF_LABELS[best[row][pos]]
                    previous = w
                out[i] = tags_to_entities(tags)
        return out
