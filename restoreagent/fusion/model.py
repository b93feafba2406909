"""The fusion network: K candidate restorations + the degraded input -> per-pixel softmax weights.

Every candidate goes through the same small U-Net (so the network takes any K >= 1 and does not
care about the candidates' order). Its input is the candidate, the degraded image and what the
candidates agree on (their per-pixel mean and spread); at the bottleneck each candidate's features
are joined by the mean of all candidates' features (a DeepSets exchange), so one candidate's weight
can depend on what the others look like. The U-Net runs at half resolution (the weights vary more
slowly than the pixels, and this quarters the cost on a CPU); its logits are upsampled
bilinearly. The decoder gives one logit per candidate and pixel; a
softmax over the candidates makes the weights, and the output is the weighted sum: a convex
combination of the candidates at every pixel (it can never leave their range).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

INPUT_CHANNELS = 12  # candidate, degraded input, candidates' mean, candidates' spread (3 each)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


class FusionNet(nn.Module):
    """``forward(candidates (B, K, 3, H, W), degraded (B, 3, H, W)) -> (fused (B, 3, H, W), weights (B, K, H, W))``."""

    def __init__(self, widths: tuple[int, int, int] = (24, 48, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.enc1 = _block(INPUT_CHANNELS, w1)
        self.enc2 = _block(w1, w2)
        self.mid = _block(w2, w3)
        self.mix = nn.Conv2d(2 * w3, w3, 1)  # own features + the mean over candidates
        self.dec2 = _block(w3 + w2, w2)
        self.dec1 = _block(w2 + w1, w1)
        self.head = nn.Conv2d(w1, 1, 1)

    def logits(self, candidates: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        b, k, c, h, w = candidates.shape
        mean = candidates.mean(1, keepdim=True)
        spread = candidates.std(1, keepdim=True, unbiased=False) if k > 1 else torch.zeros_like(mean)
        x = torch.cat([candidates, degraded[:, None].expand(b, k, c, h, w),
                       mean.expand(b, k, c, h, w), spread.expand(b, k, c, h, w)], dim=2)
        x = x.reshape(b * k, INPUT_CHANNELS, h, w)
        # pad to a multiple of 8 (half resolution, then two poolings); replicate so the border looks like the image
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(F.avg_pool2d(x, 2))
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        m = self.mid(F.avg_pool2d(e2, 2))
        shared = m.reshape(b, k, *m.shape[1:]).mean(1, keepdim=True).expand(b, k, *m.shape[1:])
        m = F.leaky_relu(self.mix(torch.cat([m, shared.reshape(m.shape)], 1)), 0.1)
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False), e1], 1))
        out = F.interpolate(self.head(d1), scale_factor=2, mode="bilinear", align_corners=False)
        return out[:, :, :h, :w].reshape(b, k, h, w)

    def forward(self, candidates: torch.Tensor, degraded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.logits(candidates, degraded).float(), dim=1)
        fused = (weights[:, :, None] * candidates.float()).sum(1)
        return fused, weights


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
