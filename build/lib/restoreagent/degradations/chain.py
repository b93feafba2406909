"""Chains of degradations: apply one, pick a random combination, degrade with a record, replay.

Randomness is split into independent child generators of the seed, keyed by the degradation's
index ``i`` in :data:`restoreagent.tasks.DEGRADATIONS` (not its position in the chain, nor in the
physical order; new degradations are appended there, so existing indices never move):

- ``default_rng([seed, 0])``    which degradations (``k`` random ones, from ``CORE_DEGRADATIONS``),
- ``default_rng([seed, 1, i])`` the parameters of degradation ``i`` that the caller left out,
- ``default_rng([seed, 2, i])`` the random content of degradation ``i`` (noise, rain streaks, snowflakes).
- ``default_rng([seed, 3, i])`` whether degradation ``i`` gets camera-realism parameters and which
  (only when ``degrade(..., camera=p)`` with ``p > 0``; see ``CAMERA_PARAMS``).

So the same seed gives the same bytes, and fixing a parameter, or adding or removing another
degradation, changes nothing else about a step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import RestoreAgentError
from ..tasks import CORE_DEGRADATIONS, DEGRADATIONS, physical_order
from .ops import OPERATORS
from .params import (
    CAMERA_PARAMS,
    check_params,
    complete_params,
    normalise_name,
    parse_chain,
    sample_camera_params,
)

_STREAM_COMBINATION, _STREAM_PARAMS, _STREAM_CONTENT, _STREAM_CAMERA = 0, 1, 2, 3
# Random combinations draw from the core degradations only (extensions such as snow must be named).
MAX_K = len(CORE_DEGRADATIONS)


def as_image(image) -> np.ndarray:
    """The image as contiguous float32 (H, W, 3) in [0, 1]; uint8 is scaled by 1/255."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise RestoreAgentError(f"expected an RGB image of shape (H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1.0 / 255.0)
    if not np.issubdtype(a.dtype, np.floating):
        raise RestoreAgentError(f"expected a float image in [0, 1] (or uint8), got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise RestoreAgentError("the image contains NaN or infinite values")
    return np.clip(a, 0.0, 1.0)


def _run(image: np.ndarray, name: str, params: dict, rng: np.random.Generator) -> np.ndarray:
    out = OPERATORS[name](image, rng, **params)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def apply_degradation(
    image: np.ndarray, name: str, params: dict, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Apply one degradation with complete ``params``; ``rng`` drives its random content.

    ``rng`` matters only for ``noise``, ``rain`` and ``snow``; ``None`` means ``default_rng(0)``.
    Returns float32 (H, W, 3) in [0, 1], the input's shape.
    """
    name = normalise_name(name)
    params = check_params(name, params, complete=True)
    if rng is None:
        rng = np.random.default_rng(0)
    return _run(as_image(image), name, params, rng)


def sample_combination(rng: np.random.Generator, k: int) -> list[str]:
    """``k`` distinct names drawn uniformly from :data:`~restoreagent.tasks.CORE_DEGRADATIONS`,
    returned in physical order (extensions such as ``snow`` are never drawn)."""
    k = _check_k(k)
    idx = rng.choice(len(CORE_DEGRADATIONS), size=k, replace=False)
    return physical_order(CORE_DEGRADATIONS[int(i)] for i in idx)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= MAX_K:
        raise RestoreAgentError(
            f"k must be an integer from 1 to {MAX_K} (the number of randomly drawn degradations), got {k!r}"
        )
    return int(k)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise RestoreAgentError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def normalise_chain(chain) -> list[tuple[str, dict]]:
    """Any accepted chain form -> ``[(name, params), ...]`` with canonical names, no duplicates.

    Accepted: parse_chain text; a list whose items are names, ``(name, params)`` pairs or
    ``{"name": ..., "params": ...}`` dicts. ``params`` may be partial, empty or ``None``.
    """
    if isinstance(chain, str):
        steps = parse_chain(chain)
    elif isinstance(chain, list | tuple):
        steps = []
        for item in chain:
            if isinstance(item, str):
                name, params = item, {}
            elif isinstance(item, Mapping):
                extra = set(item) - {"name", "params"}
                if "name" not in item or extra:
                    raise RestoreAgentError(
                        f"a chain step must be {{'name': ..., 'params': {{...}}}}, got {item!r}"
                    )
                name, params = item["name"], item.get("params")
            elif isinstance(item, list | tuple) and len(item) == 2:
                name, params = item
            else:
                raise RestoreAgentError(
                    f"a chain step must be a name, (name, params) or a dict, got {item!r}"
                )
            name = normalise_name(name)
            steps.append((name, check_params(name, params, complete=False)))
    else:
        raise RestoreAgentError(f"a degradation chain must be text or a list, got {type(chain).__name__}")
    seen = set()
    for name, _ in steps:
        if name in seen:
            raise RestoreAgentError(f"degradation {name!r} appears twice in the chain")
        seen.add(name)
    return steps


def degrade(image, chain=None, k=None, seed=0, camera: float = 0.0) -> tuple[np.ndarray, dict]:
    """Degrade ``image`` by a chain (missing parameters sampled from ``seed``) or by ``k`` random ones.

    Give exactly one of ``chain`` and ``k``. ``camera`` is the probability that a degradation with
    camera-realism parameters (``CAMERA_PARAMS``: Poisson-Gaussian, channel- and spatially
    correlated noise; noisy low light with bright light sources; sharpening before JPEG) gets
    them, drawn from their ranges where the chain does not set them. At 0 (the default) nothing is
    drawn, so every seed gives the bytes it always gave. Degradations are applied in physical order
    (:func:`restoreagent.tasks.physical_order`) whatever order the chain lists them in.
    Returns ``(degraded, record)``; the record is JSON-serialisable::

        {"seed": S, "chain": [{"name": ..., "params": {...complete...}}, ...],
         "degradations": [names in applied order], "shape": [H, W]}

    and :func:`replay` turns it back into the same bytes. An empty chain returns the image.
    """
    seed = _check_seed(seed)
    if isinstance(camera, bool) or not isinstance(camera, int | float) or not 0.0 <= camera <= 1.0:
        raise RestoreAgentError(f"camera must be a probability in [0, 1], got {camera!r}")
    if (chain is None) == (k is None):
        raise RestoreAgentError(
            "degrade needs exactly one of chain (the degradations) or k (how many random ones)"
        )
    img = as_image(image)
    if k is not None:
        names = sample_combination(np.random.default_rng([seed, _STREAM_COMBINATION]), k)
        given = {n: {} for n in names}
    else:
        given = dict(normalise_chain(chain))
    out = img
    steps = []
    for name in physical_order(given):
        i = DEGRADATIONS.index(name)
        params = complete_params(name, given[name], np.random.default_rng([seed, _STREAM_PARAMS, i]))
        if camera > 0 and name in CAMERA_PARAMS:
            rng = np.random.default_rng([seed, _STREAM_CAMERA, i])
            if rng.random() < camera:
                params.update({k: v for k, v in sample_camera_params(name, rng).items() if k not in params})
        out = _run(out, name, params, np.random.default_rng([seed, _STREAM_CONTENT, i]))
        steps.append({"name": name, "params": params})
    if out is img:
        out = img.copy()
    record = {
        "seed": seed,
        "chain": steps,
        "degradations": [s["name"] for s in steps],
        "shape": [int(img.shape[0]), int(img.shape[1])],
    }
    return out, record


def replay(image, record) -> np.ndarray:
    """Rebuild the degraded image of a :func:`degrade` record, byte for byte, from the clean image."""
    if not isinstance(record, Mapping) or "chain" not in record or "seed" not in record:
        raise RestoreAgentError("a degradation record needs 'seed' and 'chain' (as degrade returns it)")
    img = as_image(image)
    shape = record.get("shape")
    if shape is not None and list(shape) != [img.shape[0], img.shape[1]]:
        raise RestoreAgentError(
            f"the record was made on a {shape[0]}x{shape[1]} image, this one is {img.shape[0]}x{img.shape[1]}"
        )
    out, _ = degrade(img, record["chain"], seed=record["seed"])
    return out
