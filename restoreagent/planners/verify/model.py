"""The verifier: one small MLP scores every candidate of an image from its features and their
offset from the candidates' mean (so it compares them), an ensemble of a few such MLPs averaged.
Trained listwise: the softmax of its scores over an image's candidates is fitted to the softmax of
their balanced scores against the clean photo.

With ``pixels``, a small CNN also looks at each output's pixels, beside the input's and the
candidates' mean (what is left, what the step changed, where it departs from the others), and its
pooled description joins the features the MLPs read."""

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
    consistency: bool = False  # ... and each output checked against the input (features.consistency_stats)
    prefixes: bool = False  # the proposed plans' shorter prefixes are candidates too (candidates.with_prefixes)
    pixels: bool = False  # a CNN reads the outputs' pixels (PixelTrunk)
    pixel_width: int = 32
    pixel_dim: int = 24

    def to_dict(self) -> dict:
        return asdict(self)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 (candidates) of the real ones; ``mask`` (B, K)."""
    m = mask.reshape(*mask.shape, *([1] * (x.dim() - 2))).to(x.dtype)
    return (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)


class PixelTrunk(nn.Module):
    """(B, K, 3, H, W) outputs + (B, 3, H, W) input -> (B, K, pixel_dim): a strided CNN over each
    output, its change from the input and its departure from the candidates' mean (9 channels),
    pooled by mean and standard deviation so it reads views of any size."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(9, w, 3, 2, 1), nn.GELU(),
            nn.Conv2d(w, w * 3 // 2, 3, 2, 1), nn.GELU(),
            nn.Conv2d(w * 3 // 2, 2 * w, 3, 2, 1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.GELU(),
        )
        self.head = nn.Linear(4 * w, dim)

    def forward(self, outs: torch.Tensor, inp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, k = outs.shape[:2]
        consensus = _masked_mean(outs, mask)
        z = torch.cat([outs, outs - inp.unsqueeze(1), outs - consensus], dim=2).flatten(0, 1)
        f = self.body(z.contiguous(memory_format=torch.channels_last))
        pooled = torch.cat([f.mean((2, 3)), f.std((2, 3))], dim=1)
        return self.head(pooled).view(b, k, -1)


class VerifierNet(nn.Module):
    def __init__(self, cfg: VerifierConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.in_dim))
        self.register_buffer("std", torch.ones(cfg.in_dim))
        h = cfg.hidden
        d = cfg.in_dim + (cfg.pixel_dim if cfg.pixels else 0)
        self.trunk = PixelTrunk(cfg.pixel_width, cfg.pixel_dim) if cfg.pixels else None
        self.members = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * d, h), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
            for _ in range(cfg.members)
        )

    def member_scores(self, x: torch.Tensor, mask: torch.Tensor, outs: torch.Tensor | None = None,
                      inp: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, K, D) candidates, ``mask`` (B, K) real ones -> (members, B, K) scores; with
        ``pixels``, ``outs`` (B, K, 3, H, W) and ``inp`` (B, 3, H, W) in [0, 1] too."""
        x = (x - self.mean) / self.std
        if self.trunk is not None:
            if outs is None or inp is None:
                raise ValueError("this verifier reads pixels: pass the outputs and the input")
            x = torch.cat([x, self.trunk(outs, inp, mask)], dim=-1)
        z = torch.cat([x, x - _masked_mean(x, mask)], dim=-1)
        return torch.stack([f(z).squeeze(-1) for f in self.members])

    def forward(self, x: torch.Tensor, mask: torch.Tensor, outs: torch.Tensor | None = None,
                inp: torch.Tensor | None = None) -> torch.Tensor:
        s = self.member_scores(x, mask, outs, inp).mean(0)
        return s.masked_fill(~mask, float("-inf"))
