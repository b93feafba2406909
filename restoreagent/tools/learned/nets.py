"""Architectures of the project's own learned tools.

Two families. :class:`CurveNet` (brightening) predicts a global exposure curve. The others use
one family, picked for CPU cost: :class:`ResUNet`, a residual U-Net with three stride-2 levels
(receptive field large enough for 25-px motion blur and haze), one residual block per level,
and a global-context vector added at the bottleneck (brightening and dehazing need image-wide
statistics: exposure, airlight). The network predicts a correction that is added to its input,
so an untrained network is the identity and training starts from "do no harm".

A network may also read *guides*: the outputs of classical tools on the same input, stacked
after it as extra channels (``guides=1``: 6 input channels). The correction is then added to
the last guide, so the network learns to repair a classical deconvolution's ringing and noise
rather than to invert an unknown blur from scratch (the idea of deep Wiener deconvolution).

Architectures are described by plain dicts (``arch`` + keyword arguments) stored in the
safetensors metadata of every weight file, so a file is loadable on its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class ResUNet(nn.Module):
    """Residual U-Net: ``out = base + f(x)``, ``base`` the input (or its last guide); input H, W must be
    multiples of :attr:`multiple`."""

    channels_last = True  # the runner feeds NHWC tensors on CPU (faster convolutions)

    def __init__(
        self, widths: tuple[int, ...] = (16, 32, 64, 64), bottleneck_blocks: int = 2, guides: int = 0
    ):
        super().__init__()
        widths = tuple(widths)
        self.multiple = 2 ** (len(widths) - 1)
        self.guides = guides
        self.head = nn.Conv2d(3 * (1 + guides), widths[0], 3, padding=1)
        self.enc = nn.ModuleList(ResBlock(w) for w in widths[:-1])
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:]))
        self.mid = nn.Sequential(*(ResBlock(widths[-1]) for _ in range(bottleneck_blocks)))
        self.context = nn.Sequential(
            nn.Linear(widths[-1], widths[-1]), nn.LeakyReLU(0.1), nn.Linear(widths[-1], widths[-1])
        )
        # upsampling: 1x1 conv to 4x channels + pixel shuffle (no checkerboard from transposed convs)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Conv2d(b, a * 4, 1), nn.PixelShuffle(2)) for a, b in zip(widths, widths[1:])
        )
        self.dec = nn.ModuleList(ResBlock(w) for w in widths[:-1])
        self.tail = nn.Conv2d(widths[0], 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # identity at initialisation
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        skips = []
        for enc, down in zip(self.enc, self.down):
            h = enc(h)
            skips.append(h)
            h = F.leaky_relu(down(h), 0.1)
        h = self.mid(h)
        h = h + self.context(h.mean(dim=(2, 3)))[:, :, None, None]
        for up, dec, skip in zip(reversed(self.up), reversed(self.dec), reversed(skips)):
            h = dec(up(h) + skip)
        return x[:, -3:] + self.tail(h)  # the last three channels: the input, or the last guide


class CurveNet(nn.Module):
    """A learned global exposure curve (in the spirit of Zero-DCE, supervised): a small CNN reads a
    64x64 copy of the image plus quantiles of its HSV value, and predicts the gamma and gain that
    darkened it; the output undoes them on the value channel, keeping hue and saturation
    (``V = (V' / gain) ** (1 / gamma)``, every RGB channel scaled by ``V / V'``). Pointwise and
    global, so it is exact where the darkening is a global tone curve and costs little at any size;
    it is never tiled (each tile would estimate its own curve).
    """

    global_op = True
    multiple = 1
    # torch.quantile has no float16/bfloat16 kernels, and the network is too small for them to pay
    full_precision = True

    def __init__(self, width: int = 16, size: int = 64, quantiles: int = 16):
        super().__init__()
        self.size = size
        self.register_buffer("q", torch.linspace(0.02, 0.98, quantiles), persistent=False)
        layers, c = [], 3
        for w in (width, width * 2, width * 4, width * 4):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c + quantiles, 64), nn.LeakyReLU(0.1), nn.Linear(64, 2))

    def curve(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, gain) per image, gamma in (1, 4), gain in (0, 1)."""
        small = F.interpolate(x, size=(self.size, self.size), mode="area")
        v = small.amax(dim=1).flatten(1)
        stats = torch.quantile(v, self.q, dim=1).T
        p = self.head(torch.cat([self.features(small).mean(dim=(2, 3)), stats], dim=1))
        return 1.0 + 3.0 * torch.sigmoid(p[:, 0]), torch.sigmoid(p[:, 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma, gain = self.curve(x)
        v = x.amax(dim=1, keepdim=True).clamp_min(1e-4)
        restored = (v / gain[:, None, None, None]).clamp(1e-6, 1.0) ** (1.0 / gamma[:, None, None, None])
        return x * (restored / v)


ARCHITECTURES: dict[str, type[nn.Module]] = {"resunet": ResUNet, "curvenet": CurveNet}


def build_network(arch: str, **kwargs) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
