"""The fusion network: K candidate restorations + the degraded input -> per-pixel softmax weights.

Every candidate goes through the same small U-Net (so the network takes any K >= 1 and does not
care about the candidates' order). Its input is the candidate, the degraded image and what the
candidates agree on (their per-pixel mean and spread); at the bottleneck each candidate's features
are joined by the mean of all candidates' features (a DeepSets exchange), so one candidate's weight
can depend on what the others look like. The U-Net runs at half resolution (the weights vary more
slowly than the pixels, and this quarters the cost on a CPU); its logits are upsampled bilinearly.

**Image-level context** (:meth:`FusionNet.context`): a small encoder at full resolution, pooled
over the *whole* image (mean and standard deviation of its features), gives each candidate a
vector that says how the photo looks as a whole: its exposure, its noise level. The vector (and
its mean over the candidates) is broadcast into the U-Net's bottleneck and gives each candidate a
global logit, so the network can pick, say, an exposure between two tone curves for the whole
photo. Large images are blended in tiles (:mod:`.fuse`); the context is computed once on the whole
image (on an even grid of windows when it is large) and handed to every tile, so tiles agree.

**A default to start from**: an optional ``prior`` (B, K) marks a candidate to prefer when in
doubt (e.g. the plan); it adds ``prior_gain`` (learned, initially 3) to that candidate's logit.
The head and the global logit start at zero, so the untrained network returns (almost) the marked
candidate, or the plain average when nothing is marked. (Measured: trained with the plan marked,
the weights stayed at 0.86-0.93 on the plan for 500 steps and the blends gained little, so
``run --fuse`` marks nothing and the shipped weights were trained on unmarked draws after that;
docs/fusion.md.)

The decoder gives one logit per candidate and pixel; a softmax over the candidates makes the
weights, and the output is the weighted sum: a convex combination of the candidates at every
pixel (it can never leave their range).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

INPUT_CHANNELS = 12  # candidate, degraded input, candidates' mean, candidates' spread (3 each)
CONTEXT_WIDTH = 32  # channels of the context encoder (its pooled vector has twice as many: mean and std)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


def _inputs(candidates: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
    """(B * K, 12, H, W): each candidate with the degraded image and the candidates' mean and spread."""
    b, k, c, h, w = candidates.shape
    mean = candidates.mean(1, keepdim=True)
    spread = candidates.std(1, keepdim=True, unbiased=False) if k > 1 else torch.zeros_like(mean)
    x = torch.cat([candidates, degraded[:, None].expand(b, k, c, h, w),
                   mean.expand(b, k, c, h, w), spread.expand(b, k, c, h, w)], dim=2)
    return x.reshape(b * k, INPUT_CHANNELS, h, w)


class FusionNet(nn.Module):
    """``forward(candidates (B, K, 3, H, W), degraded (B, 3, H, W), prior=None, context=None)
    -> (fused (B, 3, H, W), weights (B, K, H, W))``."""

    def __init__(self, widths: tuple[int, int, int] = (24, 48, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.enc1 = _block(INPUT_CHANNELS, w1)
        self.enc2 = _block(w1, w2)
        self.mid = _block(w2, w3)
        cw = CONTEXT_WIDTH
        self.ctx = nn.Sequential(  # strided, from full resolution (noise shows at the pixel scale)
            nn.Conv2d(INPUT_CHANNELS, cw // 2, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(cw // 2, cw, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(cw, cw, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True),
        )
        self.ctx_mlp = nn.Sequential(nn.Linear(4 * cw, w3), nn.LeakyReLU(0.1, inplace=True), nn.Linear(w3, w3))
        self.mix = nn.Conv2d(4 * w3, w3, 1)  # own features, their mean over candidates, own context, mean context
        self.dec2 = _block(w3 + w2, w2)
        self.dec1 = _block(w2 + w1, w1)
        self.head = nn.Conv2d(w1, 1, 1)
        self.global_logit = nn.Linear(2 * w3, 1)
        self.prior_gain = nn.Parameter(torch.tensor(3.0))
        for layer in (self.head, self.global_logit):  # start from the prior (or the plain average)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # --- image-level context -------------------------------------------------------------------

    def context_moments(self, candidates: torch.Tensor, degraded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Sums to pool over one view of the image: (mean (B, K, C), mean of squares (B, K, C), pixels)."""
        b, k = candidates.shape[:2]
        f = self.ctx(_inputs(candidates, degraded))
        n = f.shape[-1] * f.shape[-2]
        return f.mean((2, 3)).reshape(b, k, -1), (f * f).mean((2, 3)).reshape(b, k, -1), n

    def context_from_moments(self, moments) -> torch.Tensor:
        """(B, K, C) context vectors from the moments of one or more views (weighted by their pixels)."""
        total = sum(n for _, _, n in moments)
        mean = sum(m * n for m, _, n in moments) / total
        sq = sum(s * n for _, s, n in moments) / total
        std = (sq - mean * mean).clamp_min(0).add(1e-6).sqrt()
        pooled = torch.cat([mean, std], -1)
        pooled = torch.cat([pooled, pooled.mean(1, keepdim=True).expand_as(pooled)], -1)  # DeepSets: what all share
        return self.ctx_mlp(pooled)

    def context(self, candidates: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
        """(B, K, C): each candidate's image-level context, pooled over the whole of the given image."""
        return self.context_from_moments([self.context_moments(candidates, degraded)])

    # --- weights -------------------------------------------------------------------------------

    def logits(self, candidates: torch.Tensor, degraded: torch.Tensor, prior: torch.Tensor | None = None,
               context: torch.Tensor | None = None) -> torch.Tensor:
        b, k, c, h, w = candidates.shape
        if context is None:
            context = self.context(candidates, degraded)
        x = _inputs(candidates, degraded)
        # pad to a multiple of 8 (half resolution, then two poolings); replicate so the border looks like the image
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e1 = self.enc1(F.avg_pool2d(x, 2))
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        m = self.mid(F.avg_pool2d(e2, 2))
        shape = m.shape
        shared = m.reshape(b, k, *shape[1:]).mean(1, keepdim=True).expand(b, k, *shape[1:]).reshape(shape)
        ctx_all = torch.cat([context, context.mean(1, keepdim=True).expand_as(context)], -1)  # (B, K, 2 C)
        g = ctx_all.reshape(b * k, -1, 1, 1).expand(-1, -1, *shape[2:])
        m = F.leaky_relu(self.mix(torch.cat([m, shared, g], 1)), 0.1)
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False), e1], 1))
        out = F.interpolate(self.head(d1), scale_factor=2, mode="bilinear", align_corners=False)
        out = out[:, :, :h, :w].reshape(b, k, h, w) + self.global_logit(ctx_all).reshape(b, k, 1, 1)
        if prior is not None:
            out = out + self.prior_gain * prior.to(out.dtype).reshape(b, k, 1, 1)
        return out

    def forward(self, candidates: torch.Tensor, degraded: torch.Tensor, prior: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.logits(candidates, degraded, prior, context).float(), dim=1)
        fused = (weights[:, :, None] * candidates.float()).sum(1)
        return fused, weights


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
