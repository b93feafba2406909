"""What the perception model predicts: which degradations are present, and how severe each is.

Presence covers every degradation the generator knows (:data:`restoreagent.tasks.DEGRADATIONS`,
the ``snow`` extension included). Severity is the chain's own parameters, each normalised to
[0, 1] over its sampling range (``PARAM_RANGES``) and oriented so that 1 is the worst end (a JPEG
quality of 10 is severity 1). Only present degradations have a severity; the loss ignores the rest.
"""

from __future__ import annotations

import numpy as np

from ..degradations import PARAM_RANGES
from ..tasks import DEGRADATIONS

# Label order of the presence head.
LABELS: tuple[str, ...] = DEGRADATIONS

# (degradation, parameter, worse_when_higher): the severity head's outputs, in order.
SEVERITY_PARAMS: tuple[tuple[str, str, bool], ...] = (
    ("haze", "beta", True),
    ("rain", "density", True),
    ("low_light", "gamma", True),
    ("low_light", "scale", False),
    ("motion_blur", "length", True),
    ("defocus_blur", "radius", True),
    ("low_resolution", "scale", True),
    ("noise", "sigma", True),
    ("jpeg", "quality", False),
    ("snow", "density", True),
)


def normalise_param(name: str, key: str, value: float) -> float:
    """A parameter value as a severity in [0, 1] (1 = the worst end of its sampling range)."""
    lo, hi = PARAM_RANGES[name][key]
    worse_high = next(w for n, k, w in SEVERITY_PARAMS if n == name and k == key)
    s = (float(value) - lo) / (hi - lo)
    s = min(1.0, max(0.0, s))
    return s if worse_high else 1.0 - s


def denormalise_param(name: str, key: str, severity: float) -> float:
    """Inverse of :func:`normalise_param` (a value inside the sampling range)."""
    lo, hi = PARAM_RANGES[name][key]
    worse_high = next(w for n, k, w in SEVERITY_PARAMS if n == name and k == key)
    s = min(1.0, max(0.0, float(severity)))
    s = s if worse_high else 1.0 - s
    return lo + s * (hi - lo)


def targets_from_record(record: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(presence[len(LABELS)], severity[len(SEVERITY_PARAMS)], severity_mask) of a degradation record."""
    presence = np.zeros(len(LABELS), np.float32)
    severity = np.zeros(len(SEVERITY_PARAMS), np.float32)
    mask = np.zeros(len(SEVERITY_PARAMS), np.float32)
    params = {step["name"]: step["params"] for step in record.get("chain", [])}
    for name in params:
        presence[LABELS.index(name)] = 1.0
    for j, (name, key, _) in enumerate(SEVERITY_PARAMS):
        if name in params:
            severity[j] = normalise_param(name, key, params[name][key])
            mask[j] = 1.0
    return presence, severity, mask


def degradation_severity(severity_vector) -> dict[str, float]:
    """One severity in [0, 1] per degradation: the mean of its parameters' normalised severities."""
    out: dict[str, list[float]] = {}
    for (name, _, _), s in zip(SEVERITY_PARAMS, severity_vector):
        out.setdefault(name, []).append(float(s))
    return {name: float(np.mean(v)) for name, v in out.items()}
