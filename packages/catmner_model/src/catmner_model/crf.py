"""A linear-chain CRF in plain torch, vectorised over the batch and the tag set.

This module owns the CRF of the UMT model family (its main and auxiliary CRFs, `umt.py`) and of the benchmark's
tagging baselines (BiLSTM-CRF, CNN-BiLSTM-CRF, LM-CRF): the negative log-likelihood (forward algorithm),
Viterbi decoding and the per-position tag marginals (forward-backward). Loops run over time steps only (T ≤ a tweet's length);
every step is a (B, K, K) tensor operation. K = number of tags.
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    """Linear-chain CRF with learned start, end and transition scores.

    Masks are left-aligned: ``mask[:, 0]`` must be True for every sequence (no empty sequences).
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))  # (K,) score of the first tag
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))  # (K,) score of the last tag
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))  # (K_from, K_to)

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> None:
        if emissions.dim() != 3 or emissions.size(-1) != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(
                f"mask {tuple(mask.shape)} does not match emissions {tuple(emissions.shape[:2])}"
            )
        if not bool(mask[:, 0].all()):
            raise ValueError("every sequence needs at least one unmasked first position")

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z per sequence: (B,). emissions (B, T, K), mask (B, T) bool."""
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.size(1)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)  # (B, K)
        return torch.logsumexp(alpha + self.end, dim=1)

    def gold_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of the given tag paths: (B,). tags (B, T) long (padding positions ignored)."""
        m = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        lengths = mask.sum(1)  # (B,)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return self.start[tags[:, 0]] + (emit * m).sum(1) + (trans * m[:, 1:]).sum(1) + self.end[last]

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the batch (scalar)."""
        self._check(emissions, mask)
        return (self.log_partition(emissions, mask) - self.gold_score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """p(tag at t = k | sequence) for every position: (B, T, K) (padding positions are meaningless)."""
        self._check(emissions, mask)
        B, T, K = emissions.shape
        alphas = [self.start + emissions[:, 0]]  # log alpha_t (B, K): paths ending in k at t
        for t in range(1, T):
            nxt = torch.logsumexp(
                alphas[-1].unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), 1
            )
            alphas.append(torch.where(mask[:, t].unsqueeze(1), nxt, alphas[-1]))
        beta = self.end.expand(B, K)  # log beta_t (B, K): continuations from k at t to the end
        betas = [beta]
        for t in range(T - 1, 0, -1):
            prev = torch.logsumexp(self.transitions + (emissions[:, t] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t].unsqueeze(1), prev, beta)  # padding passes beta through
            betas.append(beta)
        betas.reverse()
        log_z = torch.logsumexp(alphas[-1] + self.end, dim=1)  # (B,)
        joint = torch.stack(alphas, 1) + torch.stack(betas, 1)  # (B, T, K)
        return (joint - log_z[:, None, None]).exp()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag path of each sequence, as lists of length mask.sum(1)."""
        self._check(emissions, mask)
        B, T, K = emissions.shape
        score = self.start + emissions[:, 0]  # (B, K)
        backptr = torch.zeros(B, T, K, dtype=torch.long, device=emissions.device)
        for t in range(1, T):
            cand = score.unsqueeze(2) + self.transitions  # (B, K_from, K_to)
            best, idx = cand.max(dim=1)  # (B, K)
            nxt = best + emissions[:, t]
            on = mask[:, t].unsqueeze(1)
            score = torch.where(on, nxt, score)
            # where a position is padding keep the identity pointer so backtracking passes through it
            ident = torch.arange(K, device=emissions.device).expand(B, K)
            backptr[:, t] = torch.where(on, idx, ident)
        score = score + self.end
        lengths = mask.sum(1).tolist()
        last = score.argmax(1)  # (B,)
        paths: list[list[int]] = []
        bp = backptr.cpu()
        for b in range(B):
            tag = int(last[b])
            path = [tag]
            for t in range(T - 1, 0, -1):
                tag = int(bp[b, t, tag])
                path.append(tag)
            path.reverse()
            paths.append(path[: lengths[b]])
        return paths
