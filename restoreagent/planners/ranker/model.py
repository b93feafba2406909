"""The plan scorer: (image features, pipeline features) -> how good that pipeline is on that image.

Two small towers (image, plan) meet in an MLP that also sees their elementwise product, so the
score of an order or a tool can depend on what the image looks like (the severity of its noise,
how dark it is). The output is a relative score: only its order among one image's candidates is
trained (a listwise loss), which is all a planner needs to pick one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ScorerConfig:
    image_dim: int
    plan_dim: int
    hidden: int = 128
    dropout: float = 0.0  # on both towers' outputs, in training only

    def to_dict(self) -> dict:
        return asdict(self)


class PlanScorerNet(nn.Module):
    def __init__(self, cfg: ScorerConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.image = nn.Sequential(nn.LayerNorm(cfg.image_dim), nn.Linear(cfg.image_dim, h), nn.GELU(), nn.Linear(h, h),
                                   nn.Dropout(cfg.dropout))
        self.plan = nn.Sequential(nn.Linear(cfg.plan_dim, h), nn.GELU(), nn.Linear(h, h), nn.Dropout(cfg.dropout))
        self.head = nn.Sequential(nn.Linear(3 * h, h), nn.GELU(), nn.Linear(h, 1))

    def forward(self, image: torch.Tensor, plans: torch.Tensor) -> torch.Tensor:
        """``image`` (B, image_dim) and ``plans`` (B, plan_dim), row i scored on image i -> (B,)."""
        return self.score(self.image(image), self.plan(plans))

    def score(self, image_emb: torch.Tensor, plan_emb: torch.Tensor) -> torch.Tensor:
        """The head on tower outputs; ``image_emb`` (1, h) broadcasts over ``plan_emb`` (N, h)."""
        a = image_emb.expand_as(plan_emb)
        return self.head(torch.cat([a, plan_emb, a * plan_emb], dim=1)).squeeze(1)
