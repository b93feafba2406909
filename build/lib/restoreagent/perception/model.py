"""The degradation detector: a small CNN that keeps native pixels, with a presence and a severity head.

Degradations live at two scales: noise, JPEG blocks and the loss of fine detail (blur, low
resolution) are a matter of single pixels; haze, low light, rain and snow are a matter of the
whole frame. The stem therefore reorganises pixels losslessly (pixel-unshuffle by 2: every pixel
reaches the first convolution, at a quarter of the cost of a full-resolution stem), and residual
stages halve the resolution down to 1/32 before global average and max pooling. One 128 px tile
costs about 0.16 GMAC; whole photos are scored as tiles (:mod:`.detector`).

Inputs are RGB in [0, 1] (absolute levels matter: low light and haze are about them), shape
(B, 3, H, W) with H and W multiples of 32 (tiles are 128 px).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """Architecture of :class:`DegradationNet` (saved with the weights)."""

    widths: tuple[int, ...] = (48, 96, 160, 256)
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    hidden: int = 256
    n_labels: int = 9
    n_severity: int = 10

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["blocks"] = list(self.widths), list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["widths"], d["blocks"] = tuple(d["widths"]), tuple(d["blocks"])
        return cls(**d)


class _Block(nn.Module):
    """Pre-activation-free residual block: conv-BN-ReLU-conv-BN + identity, then ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.body(x))


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DegradationNet(nn.Module):
    """Presence logits (B, n_labels) and severities in [0, 1] (B, n_severity) of an RGB batch."""

    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        self.cfg = cfg or NetConfig()
        w = self.cfg.widths
        self.stem = nn.Sequential(
            nn.PixelUnshuffle(2),  # (3, H, W) -> (12, H/2, W/2), no pixel lost
            nn.Conv2d(12, w[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(w[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        cin = w[0]
        for c, n in zip(w, self.cfg.blocks):
            layers = [_down(cin, c)]  # 1/4, 1/8, 1/16, 1/32 of the input
            layers += [_Block(c) for _ in range(n)]
            stages.append(nn.Sequential(*layers))
            cin = c
        self.stages = nn.Sequential(*stages)
        self.neck = nn.Sequential(nn.Linear(2 * cin, self.cfg.hidden), nn.ReLU(inplace=True))
        self.presence = nn.Linear(self.cfg.hidden, self.cfg.n_labels)
        self.severity = nn.Linear(self.cfg.hidden, self.cfg.n_severity)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled tile embedding (B, hidden) both heads read (and the planner's vision input)."""
        f = self.stages(self.stem(x))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.neck(pooled)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.presence(h), torch.sigmoid(self.severity(h))
