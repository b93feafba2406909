"""DehazeFormer with the MCT head (Song et al., "Vision Transformers for Single Image Dehazing",
IEEE TIP 2023; MIT licence), written for this project from the paper and the published model
layout so that the authors' checkpoint loads with ``strict=True``.

The MCT variant is what the authors run in their Hugging Face demo: a DehazeFormer-B-sized
U-shaped transformer looks at the image shrunk to 256x256 and predicts, per pixel, a
3 (outputs) x 3 (inputs) x 8 (levels) set of curve values; the curves are then applied to the
full-resolution image with a trilinear lookup (``grid_sample``), so any image size works and the
cost does not grow with it (except for the lookup). Input and output are in [-1, 1].

Parameter and buffer names (``basenet.layer1.blocks.0.attn.QK.weight``, ...) follow the
checkpoint, which is why the module tree mirrors the original one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class RescaleNorm(nn.Module):
    """Revised LayerNorm: normalise over (C, H, W) and also return the statistics mapped to
    per-channel scale and bias, which the block applies after attention ("RLN" in the paper)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.meta1 = nn.Conv2d(1, dim, 1)  # std -> rescale
        self.meta2 = nn.Conv2d(1, dim, 1)  # mean -> rebias

    def forward(self, x: torch.Tensor):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        centred = x - mean
        std = torch.sqrt(centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + self.eps)
        out = centred / std * self.weight + self.bias
        return out, self.meta1(std), self.meta2(mean)


class PointwiseMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.ReLU(True), nn.Conv2d(hidden, dim, 1))

    def forward(self, x):
        return self.mlp(x)


def _log_relative_positions(window: int) -> torch.Tensor:
    """(N, N, 2) signed log distances between the N = window^2 positions of a window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()])  # 2, N
    rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0).float()
    return torch.sign(rel) * torch.log1p(rel.abs())


class WindowAttention(nn.Module):
    """Multi-head attention inside one window; the relative-position bias comes from a small MLP."""

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.scale = (dim // heads) ** -0.5
        self.register_buffer("relative_positions", _log_relative_positions(window))
        self.meta = nn.Sequential(nn.Linear(2, 256), nn.ReLU(True), nn.Linear(256, heads))

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, n, _ = qkv.shape
        q, k, v = qkv.reshape(b, n, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.meta(self.relative_positions).permute(2, 0, 1).unsqueeze(0)
        return (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, self.dim)


class MixedAttention(nn.Module):
    """Window attention (shifted every other block) plus a parallel depth-wise conv on V."""

    def __init__(self, dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.dim, self.window, self.shift = dim, window, shift
        self.conv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, padding_mode="reflect")
        self.V = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.QK = nn.Conv2d(dim, dim * 2, 1)
        self.attn = WindowAttention(dim, window, heads)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ws, s = self.window, self.shift
        if s:
            return F.pad(x, (s, (ws - s - w % ws) % ws, s, (ws - s - h % ws) % ws), mode="reflect")
        return F.pad(x, (0, (-w) % ws, 0, (-h) % ws), mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        v = self.V(x)
        qkv = self._pad(torch.cat([self.QK(x), v], dim=1))
        hp, wp = qkv.shape[2:]
        ws = self.window
        windows = (
            qkv.permute(0, 2, 3, 1)
            .reshape(b, hp // ws, ws, wp // ws, ws, -1)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(-1, ws * ws, 3 * self.dim)
        )
        out = self.attn(windows)
        out = out.reshape(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
        out = out[:, self.shift : self.shift + h, self.shift : self.shift + w, :].permute(0, 3, 1, 2)
        return self.proj(self.conv(v) + out)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int, shift: int):
        super().__init__()
        self.norm1 = RescaleNorm(dim)
        self.attn = MixedAttention(dim, heads, window, shift)
        self.mlp = PointwiseMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, rescale, rebias = self.norm1(x)
        x = x + self.attn(y) * rescale + rebias
        return x + self.mlp(x)


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, window: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio, window, 0 if i % 2 == 0 else window // 2)
            for i in range(depth)
        )

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class Downsample(nn.Module):
    """Strided conv (``patch_embed`` / ``patch_merge``)."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int | None = None):
        super().__init__()
        kernel = kernel or stride
        self.proj = nn.Conv2d(
            cin, cout, kernel, stride=stride, padding=(kernel - stride + 1) // 2, padding_mode="reflect"
        )

    def forward(self, x):
        return self.proj(x)


class Upsample(nn.Module):
    """Conv then pixel shuffle (``patch_split`` / ``patch_unembed``)."""

    def __init__(self, cin: int, cout: int, factor: int, kernel: int = 1):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(cin, cout * factor**2, kernel, padding=kernel // 2, padding_mode="reflect"),
            nn.PixelShuffle(factor),
        )

    def forward(self, x):
        return self.proj(x)


class SelectiveFusion(nn.Module):
    """Softmax-weighted sum of two feature maps, the weights from their pooled sum ("SK fusion")."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, dim * 2, 1, bias=False)
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n, c = a.shape[:2]
        weights = self.mlp((a + b).mean(dim=(2, 3), keepdim=True)).view(n, 2, c, 1, 1).softmax(dim=1)
        return a * weights[:, 0] + b * weights[:, 1]


class DehazeFormer(nn.Module):
    """The five-stage U-shaped backbone (defaults: the "B" size used by the MCT demo model)."""

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 3,
        window: int = 8,
        dims=(24, 48, 96, 48, 24),
        mlp_ratios=(2.0, 2.0, 4.0, 2.0, 2.0),
        depths=(4, 4, 8, 4, 4),
        heads=(2, 4, 6, 4, 2),
    ):
        super().__init__()
        if dims[1] != dims[3] or dims[0] != dims[4]:
            raise ValueError(
                "DehazeFormer needs symmetric stage widths (dims[0] == dims[4], dims[1] == dims[3])"
            )
        self.patch_embed = Downsample(in_chans, dims[0], 1, kernel=3)
        self.layer1 = Stage(dims[0], depths[0], heads[0], mlp_ratios[0], window)
        self.patch_merge1 = Downsample(dims[0], dims[1], 2)
        self.skip1 = nn.Conv2d(dims[0], dims[0], 1)
        self.layer2 = Stage(dims[1], depths[1], heads[1], mlp_ratios[1], window)
        self.patch_merge2 = Downsample(dims[1], dims[2], 2)
        self.skip2 = nn.Conv2d(dims[1], dims[1], 1)
        self.layer3 = Stage(dims[2], depths[2], heads[2], mlp_ratios[2], window)
        self.patch_split1 = Upsample(dims[2], dims[3], 2)
        self.fusion1 = SelectiveFusion(dims[3])
        self.layer4 = Stage(dims[3], depths[3], heads[3], mlp_ratios[3], window)
        self.patch_split2 = Upsample(dims[3], dims[4], 2)
        self.fusion2 = SelectiveFusion(dims[4])
        self.layer5 = Stage(dims[4], depths[4], heads[4], mlp_ratios[4], window)
        self.patch_unembed = Upsample(dims[4], out_chans, 1, kernel=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.layer1(self.patch_embed(x))
        x2 = self.layer2(self.patch_merge1(x1))
        x = self.patch_split1(self.layer3(self.patch_merge2(x2)))
        x = self.fusion1(x, self.skip2(x2)) + x
        x = self.patch_split2(self.layer4(x))
        x = self.fusion2(x, self.skip1(x1)) + x
        return self.patch_unembed(self.layer5(x))


class DehazeFormerMCT(nn.Module):
    """DehazeFormer predicting per-pixel colour curves (the authors' "MCT" head).

    ``forward`` takes and returns images in [-1, 1] of any size.
    """

    def __init__(self, size: int = 256, levels: int = 8, **backbone):
        super().__init__()
        self.size, self.levels = size, levels
        self.basenet = DehazeFormer(3, 3 * 3 * levels, **backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        params = self.basenet(F.interpolate(x, (self.size, self.size), mode="area"))
        # params: (n, 3 outputs x [3 inputs x levels], s, s) -> one (n, 3, levels, s, s) volume per input channel
        curves = params.view(n, 3, 3, self.levels, self.size, self.size)
        gy, gx = torch.meshgrid(
            torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype),
            torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype),
            indexing="ij",
        )
        gx, gy = gx.expand(n, 1, h, w), gy.expand(n, 1, h, w)
        out = 0
        for c in range(3):
            grid = torch.stack([gx, gy, x[:, c : c + 1]], dim=-1)  # (n, 1, h, w, 3): x, y, level
            out = out + F.grid_sample(
                curves[:, :, c], grid, mode="bilinear", padding_mode="border", align_corners=True
            )
        return out.squeeze(2)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def config_from_state_dict(state: dict) -> dict:
    """Constructor arguments of :class:`DehazeFormerMCT` for a state dict (keys ``basenet.*``)."""
    s = {k.removeprefix("basenet."): v for k, v in state.items()}
    dims = (
        s["patch_embed.proj.weight"].shape[0],
        s["patch_merge1.proj.weight"].shape[0],
        s["patch_merge2.proj.weight"].shape[0],
        s["patch_split1.proj.0.weight"].shape[0] // 4,
        s["patch_split2.proj.0.weight"].shape[0] // 4,
    )
    depths, heads, ratios = [], [], []
    for k in range(1, 6):
        blocks = {key.split(".")[2] for key in s if key.startswith(f"layer{k}.blocks.")}
        depths.append(len(blocks))
        heads.append(s[f"layer{k}.blocks.0.attn.attn.meta.2.weight"].shape[0])
        ratios.append(s[f"layer{k}.blocks.0.mlp.mlp.0.weight"].shape[0] / dims[k - 1])
    window = round(s["layer1.blocks.0.attn.attn.relative_positions"].shape[0] ** 0.5)
    out_chans = s["patch_unembed.proj.0.weight"].shape[0]
    if out_chans % 9:
        raise ValueError(
            f"not a DehazeFormer-MCT state dict: {out_chans} output channels is not 3 x 3 x levels"
        )
    return {
        "levels": out_chans // 9,
        "window": window,
        "dims": dims,
        "mlp_ratios": tuple(ratios),
        "depths": tuple(depths),
        "heads": tuple(heads),
    }


__all__ = ["DehazeFormer", "DehazeFormerMCT", "config_from_state_dict", "parameter_count"]
