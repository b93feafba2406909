"""The verifier: one small MLP scores every candidate of an image from its features and their
offset from the candidates' mean (so it compares them), an ensemble of a few such MLPs averaged.
Trained listwise: the softmax of its scores over an image's candidates is fitted to the softmax of
their balanced scores against the clean photo."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class VerifierConfig:
    in_dim: int
    hidden: int = 96
    members: int = 5
    dropout: float = 0.1
    embedding: bool = False  # the features include the detector's tile embeddings of the outputs
    no_reference: bool = False  # ... and no-reference measures (noise level, haze floor, saturation)

    def to_dict(self) -> dict:
        return asdict(self)


class VerifierNet(nn.Module):
    def __init__(self, cfg: VerifierConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.in_dim))
        self.register_buffer("std", torch.ones(cfg.in_dim))
        h = cfg.hidden
        self.members = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * cfg.in_dim, h), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
            for _ in range(cfg.members)
        )

    def member_scores(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, K, D) candidates, ``mask`` (B, K) real ones -> (members, B, K) scores."""
        x = (x - self.mean) / self.std
        m = mask.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        z = torch.cat([x, x - mean], dim=-1)
        return torch.stack([f(z).squeeze(-1) for f in self.members])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.member_scores(x, mask).mean(0)
        return s.masked_fill(~mask, float("-inf"))
