"""The whole-photo mix head: one weight per candidate for the whole photo, from plain statistics.

The fusion U-Net judges the photo as a whole poorly (docs/fusion.md: a flat mix chosen from seven
numbers beat its per-pixel blend). This head makes that whole-photo decision on its own:

- per candidate, its **role** (the strength its name says for each task of the plan, and whether its
  steps are reordered), how far it moved from the degraded input and from the other candidates
  (mean absolute differences, logs), and its brightness (percentiles of the HSV value);
- for the set, the degraded input's brightness, the candidates' mean of the above and, for heads
  trained with it, what the degradation detector reads in the input (its presence logits and
  severities: how noisy, how compressed; retrain the head when the detector changes);
- a small MLP scores each candidate from these (the same MLP for every candidate, so any K in any
  order), a softmax over the candidates gives the whole-photo weights. An ensemble of a few MLPs
  (different seeds) averages its logits: the decision is steadier.

``run --fuse`` adds the U-Net's per-pixel logits, centred per candidate over the photo, times the
head's ``pixel_scale`` (fitted on held-out sets): the head sets how much of each candidate the photo
gets, the U-Net where it goes. The result is still a convex combination at every pixel.

Trained exactly and fast: a mix's MSE for weights w is w A w - 2 w b + c, with A the candidates'
Gram matrix, so a set is a handful of numbers and 4,000 sets train in seconds (the ``train-fusion-mix``
job, :func:`train_mix_head`). One head per task set: ``mix_<tasks>.safetensors`` beside the fusion
weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..errors import RestoreAgentError
from ..plan import Plan
from ..weights_file import read_meta, save_weights
from .candidates import strength

FEATURES_VERSION = 1
PERCENTILES = (1, 5, 25, 50, 75, 95, 99.9)
N_BRIGHT = len(PERCENTILES) + 3  # percentiles of V, its mean, the std and mean of log V
N_CAND = 2 + N_BRIGHT  # distance to the input, mean distance to the others, brightness
STATS_PIXELS = 256 * 256  # statistics of larger images are taken on a regular subsample of about this many pixels


def mix_name(tasks) -> str:
    return f"mix_{'+'.join(sorted(set(tasks)))}.safetensors"


def brightness(image: np.ndarray) -> np.ndarray:
    """(N_BRIGHT,) percentiles of the HSV value V = max(R, G, B), its mean, the std and mean of log V."""
    v = image.max(axis=-1).astype(np.float32)
    lv = np.log(np.clip(v, 1 / 255, 1.0))
    return np.array([*np.percentile(v, PERCENTILES), v.mean(), lv.std(), lv.mean()], np.float32)


def roles(plans: Sequence[Plan], tasks: Sequence[str]) -> np.ndarray:
    """(K, 4 * len(tasks) + 1): per task, one-hot of the tool's strength (weak, middle, strong, unnamed),
    and 1 when the plan's steps are not in the order of ``tasks`` (the head's reference order)."""
    out = np.zeros((len(plans), 4 * len(tasks) + 1), np.float32)
    for k, plan in enumerate(plans):
        for step in plan:
            if step.task in tasks:
                s = strength(step.tool)
                out[k, 4 * list(tasks).index(step.task) + (3 if s is None else s)] = 1.0
        order = [t for t in plan.tasks if t in tasks]
        out[k, -1] = float(order != [t for t in tasks if t in order])
    return out


@dataclass
class SetStats:
    """What the head sees of one candidate set (numpy, K candidates)."""

    roles: np.ndarray  # (K, R)
    pair: np.ndarray  # (K, K) log mean |c_i - c_j|
    to_input: np.ndarray  # (K,) log mean |c_i - degraded|
    bright: np.ndarray  # (K, N_BRIGHT)
    bright_input: np.ndarray  # (N_BRIGHT,)
    detector: np.ndarray  # (D,) the detector's presence logits and severities of the input (D = 0: not used)


@functools.cache
def _detector():
    from ..perception import Detector

    return Detector()


def detector_stats(degraded: np.ndarray) -> np.ndarray:
    """The shipped detector's presence logits and severities of ``degraded`` (what a head trained with them reads)."""
    logits, severities, _ = _detector().raw(degraded)
    return np.concatenate([logits, severities]).astype(np.float32)


def set_stats(candidates: Sequence[np.ndarray], degraded: np.ndarray, plans: Sequence[Plan], tasks,
              detector: bool = False) -> SetStats:
    h, w = degraded.shape[:2]
    s = max(1, round(math.sqrt(h * w / STATS_PIXELS)))
    cs = [np.asarray(c[::s, ::s], np.float32) for c in candidates]
    d = np.asarray(degraded[::s, ::s], np.float32)
    k = len(cs)
    pair = np.zeros((k, k), np.float32)
    for i in range(k):
        for j in range(i + 1, k):
            pair[i, j] = pair[j, i] = np.log(np.abs(cs[i] - cs[j]).mean() + 1e-4)
    return SetStats(roles(plans, tasks), pair, np.log(np.array([np.abs(c - d).mean() for c in cs]) + 1e-4).astype(np.float32),
                    np.stack([brightness(c) for c in cs]), brightness(d),
                    detector_stats(degraded) if detector else np.zeros(0, np.float32))


def _batch(stats: Sequence[SetStats]) -> tuple[torch.Tensor, ...]:
    """Pad sets to one K: (roles, pair, to_input, bright, bright_input, detector, mask)."""
    k = max(len(s.to_input) for s in stats)
    r = stats[0].roles.shape[1]
    out = [np.zeros((len(stats), k, r)), np.zeros((len(stats), k, k)), np.zeros((len(stats), k)),
           np.zeros((len(stats), k, N_BRIGHT)), np.zeros((len(stats), N_BRIGHT)),
           np.stack([s.detector for s in stats]), np.zeros((len(stats), k))]
    for n, s in enumerate(stats):
        m = len(s.to_input)
        out[0][n, :m], out[1][n, :m, :m], out[2][n, :m] = s.roles, s.pair, s.to_input
        out[3][n, :m], out[4][n], out[6][n, :m] = s.bright, s.bright_input, 1.0
    return tuple(torch.tensor(a, dtype=torch.float32) for a in out)


class MixHead(nn.Module):
    """Whole-photo logits (B, K) from a batch of set statistics; masked candidates get -inf."""

    def __init__(self, n_roles: int, members: int = 3, hidden: int = 64, n_detector: int = 0):
        super().__init__()
        self.n_roles, self.n_members, self.hidden, self.n_detector = n_roles, members, hidden, n_detector
        n_in = n_roles + 3 * N_CAND + N_BRIGHT + n_detector
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        self.register_buffer("pixel_scale", torch.tensor(0.0))  # how much of the U-Net's per-pixel logits run --fuse adds
        self.members = nn.ModuleList(
            nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            for _ in range(members))

    @staticmethod
    def features(roles, pair, to_input, bright, bright_input, detector, mask) -> torch.Tensor:
        k = mask.shape[1]
        others = mask[:, None, :] * (1 - torch.eye(k))[None]  # j present and j != i
        to_others = (pair * others).sum(-1) / others.sum(-1).clamp_min(1)
        cand = torch.cat([to_input[..., None], to_others[..., None], bright], -1)  # (B, K, N_CAND)
        set_mean = (cand * mask[..., None]).sum(1, keepdim=True) / mask.sum(1)[:, None, None]
        return torch.cat([roles, cand, cand - set_mean, set_mean.expand_as(cand),
                          bright_input[:, None].expand(-1, k, -1), detector[:, None].expand(-1, k, -1)], -1)

    def forward(self, roles, pair, to_input, bright, bright_input, detector, mask) -> torch.Tensor:
        x = (self.features(roles, pair, to_input, bright, bright_input, detector, mask) - self.mean) / self.std
        logits = torch.stack([m(x)[..., 0] for m in self.members]).mean(0)
        return logits.masked_fill(mask == 0, float("-inf"))

    tools: frozenset[str] | None = None  # the tools of the sets it was trained on (from its file; None: any)

    def unknown_tools(self, plans: Sequence[Plan]) -> list[str]:
        """Tools of ``plans`` the head never saw in training (its roles would be guesses for them)."""
        if self.tools is None:
            return []
        return sorted({s.tool for p in plans for s in p} - self.tools)

    def set_logits(self, stats: SetStats) -> np.ndarray:
        with torch.inference_mode():
            return self(*_batch([stats]))[0].numpy()


def mix_mse(w: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """MSE of the mixes sum_k w_k c_k against the clean photos: w A w - 2 w b + c (per pixel and channel)."""
    return torch.einsum("nk,nkl,nl->n", w, gram, w) - 2 * (w * cross).sum(1) + norm


def combine(global_logits: np.ndarray, pixel_weights: np.ndarray | None, pixel_scale: float) -> np.ndarray:
    """Per-pixel weights (K, H, W): softmax over candidates of the head's logit plus ``pixel_scale`` times the
    U-Net's log-weights centred per candidate over the photo (so the U-Net moves weight between places,
    the head sets each candidate's share). Convex at every pixel."""
    g = np.asarray(global_logits, np.float64)[:, None, None]
    if pixel_weights is not None and pixel_scale != 0:
        lw = np.log(np.clip(pixel_weights.astype(np.float64), 1e-8, 1.0))
        g = g + pixel_scale * (lw - lw.mean(axis=(1, 2), keepdims=True))
    e = np.exp(g - g.max(0, keepdims=True))
    w = e / e.sum(0, keepdims=True)  # (K, 1, 1) when the head alone decides
    if pixel_weights is not None:
        w = np.broadcast_to(w, pixel_weights.shape)
    return np.ascontiguousarray(w, dtype=np.float32)


# --- files ------------------------------------------------------------------------------------------


def save_mix_head(head: MixHead, path, meta: dict) -> Path:
    info = {"n_roles": head.n_roles, "members": head.n_members, "hidden": head.hidden, "n_detector": head.n_detector,
            "features_version": FEATURES_VERSION, **meta}
    return save_weights(head.state_dict(), path, info, torch.float32)


def read_mix_meta(path) -> dict:
    return read_meta(path)


@functools.cache
def _load(path: str) -> tuple[MixHead, tuple[str, ...]]:
    p = Path(path)
    try:
        meta = read_mix_meta(p)
        if meta.get("features_version") != FEATURES_VERSION:
            raise ValueError(f"features version {meta.get('features_version')}, this code reads {FEATURES_VERSION}")
        head = MixHead(int(meta["n_roles"]), int(meta["members"]), int(meta["hidden"]), int(meta.get("n_detector", 0)))
        head.load_state_dict(load_file(str(p)))
        head.tools = frozenset(meta["tools"]) if "tools" in meta else None
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
        raise RestoreAgentError(f"{p}: not a fusion mix-head file ({e})") from None
    return head.eval(), tuple(meta["tasks"])


def load_mix_head(path) -> tuple[MixHead, tuple[str, ...]]:
    """(head, its reference task order) from a ``mix_<tasks>.safetensors`` file; loaded once per path."""
    return _load(str(Path(path)))


def mix_for_tasks(tasks) -> Path | None:
    """The shipped mix head of this task set, or None."""
    from .weights import shipped_weights

    p = shipped_weights().with_name(mix_name(tasks))
    return p if p.is_file() else None


# --- training ---------------------------------------------------------------------------------------


def exact_targets(candidates: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(Gram matrix (K, K), candidates . clean (K,), clean . clean), per pixel and channel: a mix's MSE for any weights."""
    m = candidates.reshape(len(candidates), -1).astype(np.float64)
    y = clean.ravel().astype(np.float64)
    return m @ m.T / y.size, m @ y / y.size, float(y @ y / y.size)


def train_mix_head(stats: Sequence[SetStats], targets: Sequence[tuple], members: int = 3, hidden: int = 64,
                   steps: int = 3000, lr: float = 1e-3, batch: int = 128, seed: int = 0, k_min: int = 2,
                   prefix_rate: float = 0.5) -> MixHead:
    """Fit the head to maximise the mean PSNR of its mixes over random candidate subsets of the sets
    (the plan, candidate 0, always kept; in ``prefix_rate`` of the draws the rule's first k, as
    ``run --fuse k`` blends, else a random subset, for other plans of the task set)."""
    roles_t, pair, to_input, bright, bright_in, det, full = _batch(stats)
    n, k = full.shape
    gram, cross = torch.zeros(n, k, k, dtype=torch.float64), torch.zeros(n, k, dtype=torch.float64)
    for i, (a, b, _) in enumerate(targets):  # sets with fewer candidates: zero-padded (masked out below)
        gram[i, : len(b), : len(b)], cross[i, : len(b)] = torch.from_numpy(a), torch.from_numpy(b)
    norm = torch.tensor([t[2] for t in targets], dtype=torch.float64)
    head = MixHead(roles_t.shape[2], members, hidden, det.shape[1])
    x = head.features(roles_t, pair, to_input, bright, bright_in, det, full)
    head.mean.copy_(x.reshape(-1, x.shape[-1]).mean(0))
    head.std.copy_(x.reshape(-1, x.shape[-1]).std(0) + 1e-3)
    g = torch.Generator().manual_seed(seed)
    for i, member in enumerate(head.members):
        torch.manual_seed(seed * 1000 + i)
        for layer in member:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        opt = torch.optim.Adam(member.parameters(), lr, weight_decay=1e-4)
        for _ in range(steps):
            idx = torch.randint(0, n, (batch,), generator=g)
            mask = _random_masks(full[idx], k_min, g, prefix_rate)
            xb = (head.features(roles_t[idx], pair[idx], to_input[idx], bright[idx], bright_in[idx], det[idx], mask)
                  - head.mean) / head.std
            w = torch.softmax(member(xb)[..., 0].masked_fill(mask == 0, float("-inf")), 1).double()
            loss = torch.log10(mix_mse(w, gram[idx], cross[idx], norm[idx]).clamp_min(1e-10)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def _random_masks(full: torch.Tensor, k_min: int, g: torch.Generator, prefix_rate: float) -> torch.Tensor:
    b, k = full.shape
    avail = full.sum(1).long()
    mask = torch.zeros_like(full)
    for r in range(b):
        m = int(avail[r])
        size = int(torch.randint(min(k_min, m), m + 1, (1,), generator=g))
        if float(torch.rand(1, generator=g)) < prefix_rate:
            pick = torch.arange(size)
        else:
            pick = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(m - 1, generator=g)[: size - 1]])
        mask[r, pick] = 1.0
    return mask
