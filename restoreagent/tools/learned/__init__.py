"""Learned restoration tools trained by the project and shipped with it.

- :mod:`.nets`      the architectures (a residual U-Net sized for CPUs)
- :mod:`.runner`    running any torch image network as a tool: device, float16, padding, tiling
- :mod:`.export`    safetensors weight files that carry their architecture and provenance
- :mod:`.training`  pairs from the project's generator and the training loop (train/train_tool.py)

Each tool is declared once in ``restoreagent/catalog/learned/NAME.yaml`` (catalogue entry, training,
severity range); the registry builds it with :func:`build_learned_tool` from ``restoreagent/assets/tools/NAME.safetensors``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..registry import import_ref, spec
from .export import load_tool_network
from .runner import TorchRunner


def resolve_guide(guide: dict) -> dict:
    """``{tool: NAME}`` (a catalogued function tool) -> ``{function, params}``; other forms unchanged.

    Weight files store the resolved form, so a later change of the catalogue entry cannot silently
    change what a trained network reads.
    """
    if "tool" not in guide:
        return dict(guide)
    s = spec(guide["tool"])
    if not s.function:
        raise ValueError(f"guide tool {s.name!r} is not a function tool (only classical tools can guide)")
    return {"function": s.function, "params": dict(s.params), "tool": s.name}


def guide_functions(guides: list[dict] | None) -> list[Callable[[np.ndarray], np.ndarray]]:
    """Classical tools whose outputs a guided network reads: ``[{function: "mod:fn", params: {}}]``."""
    out = []
    for g in guides or []:
        fn, params = import_ref(g["function"]), dict(g.get("params") or {})
        out.append(lambda img, fn=fn, params=params: fn(img, **params))
    return out


def stack_guides(image: np.ndarray, fns) -> np.ndarray:
    """The image followed by each guide's output on it, as channels: (H, W, 3 * (1 + len(fns)))."""
    if not fns:
        return image
    return np.concatenate([image] + [np.asarray(f(image), np.float32) for f in fns], axis=2)


def build_learned_tool(
    weights: str, device: str = "auto", half: bool = False, tile: int = 1024, overlap: int = 64
) -> Callable[[np.ndarray], np.ndarray]:
    """``image -> image`` for a weight file written by :func:`.export.save_tool_weights`."""
    model, meta = load_tool_network(weights)
    if getattr(model, "global_op", False):
        tile = 0  # a global operator must see the whole image (cheap: it is pointwise after a small estimate)
    runner = TorchRunner(
        model, multiple=getattr(model, "multiple", 1), device=device, half=half, tile=tile, overlap=overlap
    )
    fns = guide_functions(meta.get("guides"))
    if not fns:
        return runner
    return GuidedRunner(runner, fns)


class GuidedRunner:
    """A guided network as a tool: the image and its guides' outputs, stacked, through the runner."""

    def __init__(self, runner: TorchRunner, fns):
        self.runner, self.fns = runner, fns

    @property
    def max_batch(self) -> int:
        return self.runner.max_batch

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.runner(stack_guides(image, self.fns))

    def batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return self.runner.batch([stack_guides(im, self.fns) for im in images])


__all__ = ["GuidedRunner", "TorchRunner", "build_learned_tool", "guide_functions", "resolve_guide", "stack_guides"]
