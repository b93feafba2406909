"""Degradation parameters: sampling ranges, hard limits, validation, and the chain text syntax.

The ranges themselves are documented (with reasons) in :mod:`restoreagent.degradations`.
A range ``(lo, hi)`` whose two ends are ``int`` is an integer range, both ends included; any
other range is a float range sampled uniformly from ``[lo, hi)`` and rounded to 4 decimals.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import RestoreAgentError, UnknownNameError
from ..tasks import DEGRADATIONS

# Ranges the generator samples from (severities a restoration tool is expected to handle).
PARAM_RANGES: dict[str, dict[str, tuple]] = {
    "haze": {"beta": (0.6, 1.8), "A": (0.7, 1.0)},
    "rain": {"density": (0.001, 0.004), "length": (15, 40), "angle": (60.0, 120.0), "intensity": (0.5, 0.9)},
    "low_light": {"gamma": (1.5, 2.5), "scale": (0.25, 0.6)},
    "motion_blur": {"length": (5, 25), "angle": (0.0, 180.0)},
    "defocus_blur": {"radius": (1.0, 5.0)},
    "low_resolution": {"scale": (2, 4)},
    "noise": {"sigma": (5.0, 50.0)},
    "jpeg": {"quality": (10, 50)},
    "snow": {"density": (0.002, 0.008), "size": (1.0, 2.5), "angle": (60.0, 120.0), "intensity": (0.5, 0.9)},
}

# What a caller may set by hand: wider than the sampling ranges, narrow enough to stay meaningful.
PARAM_LIMITS: dict[str, dict[str, tuple]] = {
    "haze": {"beta": (0.0, 10.0), "A": (0.0, 1.0)},
    "rain": {"density": (0.0, 0.05), "length": (1, 201), "angle": (-360.0, 360.0), "intensity": (0.0, 1.0)},
    "low_light": {"gamma": (1.0, 5.0), "scale": (0.01, 1.0)},
    "motion_blur": {"length": (1, 201), "angle": (-360.0, 360.0)},
    "defocus_blur": {"radius": (0.0, 50.0)},
    "low_resolution": {"scale": (1, 16)},
    "noise": {"sigma": (0.0, 255.0)},
    "jpeg": {"quality": (1, 100)},
    "snow": {"density": (0.0, 0.05), "size": (0.5, 8.0), "angle": (-360.0, 360.0), "intensity": (0.0, 1.0)},
}


# Camera-realism parameters: optional, absent from every record made before them. Each one's
# neutral value reproduces the original model exactly (old chains keep their bytes); the random
# sampler draws them only when asked (``degrade(..., camera=p)``). Per parameter:
# (neutral value, range the camera sampler draws from, hard limits for a caller).
CAMERA_PARAMS: dict[str, dict[str, tuple]] = {
    "noise": {
        # share of the variance that grows with the signal (Poisson-Gaussian: var = a x + b,
        # sigma is the std at mid-grey), 0 = homoscedastic Gaussian
        "shot": (0.0, (0.2, 1.0), (0.0, 1.0)),
        # correlation between the R, G and B noise (luma-like grain), 0 = independent channels
        "chroma_corr": (0.0, (0.0, 0.9), (0.0, 1.0)),
        # spatial correlation: the noise field is Gaussian-filtered with this std in px (then
        # rescaled to keep its std), as after demosaicing / in-camera denoising; 0 = white
        "grain": (0.0, (0.3, 1.2), (0.0, 5.0)),
    },
    "low_light": {
        # sensor noise (std on the 0-255 scale, Poisson-Gaussian, half signal-dependent) added to
        # the dark exposure: what brightening later amplifies
        "sensor": (0.0, (1.0, 8.0), (0.0, 50.0)),
        # how much light sources and clipped highlights (V > 0.8) stay bright, as in real night shots
        "highlights": (0.0, (0.3, 1.0), (0.0, 1.0)),
    },
    "jpeg": {
        # in-camera unsharp masking (amount; radius 1 px) before compression
        "sharpen": (0.0, (0.3, 1.5), (0.0, 5.0)),
    },
}


def param_range(name: str, key: str) -> tuple:
    """The sampling range of one parameter, core or camera."""
    if key in PARAM_RANGES[name]:
        return PARAM_RANGES[name][key]
    return CAMERA_PARAMS[name][key][1]


def param_limits(name: str, key: str) -> tuple:
    if key in PARAM_LIMITS[name]:
        return PARAM_LIMITS[name][key]
    return CAMERA_PARAMS[name][key][2]


def is_int_range(rng: tuple) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in rng)


def normalise_name(name) -> str:
    """Canonical degradation name ('Motion-Blur' -> 'motion_blur'); UnknownNameError if not one."""
    if not isinstance(name, str):
        raise RestoreAgentError(f"a degradation name must be a string, got {name!r}")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in PARAM_RANGES:
        raise UnknownNameError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    return key


def _param_key(name: str, key) -> str:
    ranges = {**PARAM_RANGES[name], **CAMERA_PARAMS.get(name, {})}
    if isinstance(key, str):
        k = key.strip()
        if k in ranges:
            return k
        for known in ranges:
            if known.lower() == k.lower():
                return known
    raise UnknownNameError(f"unknown parameter {key!r} for {name}; known: {', '.join(ranges)}")


def coerce_value(name: str, key: str, value) -> int | float:
    """A parameter value as a plain int/float inside PARAM_LIMITS, or RestoreAgentError."""
    where = f"{name} {key}"
    if isinstance(value, bool | np.bool_):
        raise RestoreAgentError(f"{where} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RestoreAgentError(f"{where} must be a number, got {value!r}") from None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RestoreAgentError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise RestoreAgentError(f"{where} must be finite, got {value!r}")
    lo, hi = param_limits(name, key)
    if is_int_range(param_range(name, key)):
        if not v.is_integer():
            raise RestoreAgentError(f"{where} must be an integer, got {value!r}")
        v = int(v)
    if not lo <= v <= hi:
        slo, shi = param_range(name, key)
        raise RestoreAgentError(
            f"{where}={value!r} is outside the allowed range [{lo}, {hi}] (sampled range [{slo}, {shi}])"
        )
    return v


def check_params(name: str, params, complete: bool) -> dict:
    """Validated copy of ``params`` (keys canonical, values coerced), in PARAM_RANGES order
    followed by the camera parameters given (in CAMERA_PARAMS order)."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RestoreAgentError(f"parameters of {name} must be a dict, got {type(params).__name__}")
    out = {}
    for key, value in params.items():
        k = _param_key(name, key)
        if k in out:
            raise RestoreAgentError(f"parameter {k!r} of {name} given twice")
        out[k] = coerce_value(name, k, value)
    if complete:
        missing = [k for k in PARAM_RANGES[name] if k not in out]
        if missing:
            raise RestoreAgentError(f"{name} needs parameters {', '.join(missing)} (missing)")
    order = [*PARAM_RANGES[name], *CAMERA_PARAMS.get(name, {})]
    return {k: out[k] for k in order if k in out}


def sample_params(name: str, rng: np.random.Generator) -> dict:
    """All parameters of one degradation, drawn from PARAM_RANGES in their listed order.

    Every parameter is always drawn (in the same order), so a caller who fixes one parameter
    and overrides it afterwards gets the same values for the others.
    """
    name = normalise_name(name)
    out = {}
    for key, r in PARAM_RANGES[name].items():
        lo, hi = r
        if is_int_range(r):
            out[key] = int(rng.integers(lo, hi + 1))
        else:
            out[key] = round(float(rng.uniform(lo, hi)), 4)
    return out


def sample_camera_params(name: str, rng: np.random.Generator) -> dict:
    """Camera-realism parameters of one degradation (empty for those that have none), each drawn
    from its CAMERA_PARAMS range; every parameter is drawn, in order, as in :func:`sample_params`."""
    out = {}
    for key, (_, (lo, hi), _) in CAMERA_PARAMS.get(name, {}).items():
        out[key] = round(float(rng.uniform(lo, hi)), 4)
    return out


def complete_params(name: str, given, rng: np.random.Generator) -> dict:
    """``given`` (possibly partial) completed with values sampled from ``rng``."""
    given = check_params(name, given, complete=False)
    sampled = sample_params(name, rng)
    sampled.update(given)
    return sampled


def parse_chain(text: str) -> list[tuple[str, dict]]:
    """Parse ``"noise:sigma=25,jpeg:quality=20"`` or ``"noise, jpeg"`` into ``[(name, params), ...]``.

    Entries are separated by ``,`` or ``;``. An entry is a degradation name, optionally followed
    by ``:key=value``; further ``key=value`` items after a comma belong to the latest name
    (``"motion_blur:length=15,angle=30,jpeg"``). Parameters may be partial or absent. Names are
    matched ignoring case, ``-`` and spaces; the order is kept as written (``degrade`` sorts it).
    """
    if not isinstance(text, str):
        raise RestoreAgentError(f"a degradation chain must be text, got {type(text).__name__}")
    tokens = [t.strip() for t in text.replace(";", ",").split(",")]
    if not any(tokens):
        raise RestoreAgentError("empty degradation chain; known degradations: " + ", ".join(DEGRADATIONS))
    chain: list[tuple[str, dict]] = []
    for tok in tokens:
        if not tok:
            raise RestoreAgentError(f"empty item in degradation chain {text!r}")
        if ":" in tok:
            head, _, rest = tok.partition(":")
            name = normalise_name(head)
            _check_new(chain, name)
            chain.append((name, {}))
            if not rest.strip():
                raise RestoreAgentError(f"missing key=value after '{head.strip()}:' in {text!r}")
            _add_param(chain[-1], rest, text)
        elif "=" in tok:
            if not chain:
                raise RestoreAgentError(f"parameter {tok!r} comes before any degradation name in {text!r}")
            _add_param(chain[-1], tok, text)
        else:
            name = normalise_name(tok)
            _check_new(chain, name)
            chain.append((name, {}))
    return chain


def _check_new(chain, name):
    if any(n == name for n, _ in chain):
        raise RestoreAgentError(f"degradation {name!r} appears twice in the chain")


def _add_param(entry, item: str, text: str):
    name, params = entry
    key, eq, value = item.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise RestoreAgentError(f"expected key=value for {name}, got {item.strip()!r} in {text!r}")
    k = _param_key(name, key)
    if k in params:
        raise RestoreAgentError(f"parameter {k!r} of {name} given twice in {text!r}")
    params[k] = coerce_value(name, k, value)


def format_chain(chain) -> str:
    """Inverse of :func:`parse_chain`: ``[("noise", {"sigma": 25.0})]`` -> ``"noise:sigma=25.0"``."""
    parts = []
    for name, params in chain:
        items = [f"{k}={_fmt(v)}" for k, v in (params or {}).items()]
        parts.append(name + (":" + ",".join(items) if items else ""))
    return ",".join(parts)


def _fmt(v) -> str:
    if isinstance(v, int | np.integer) and not isinstance(v, bool):
        return str(int(v))
    return repr(float(v))
