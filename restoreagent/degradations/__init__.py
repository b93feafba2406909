"""Synthetic multi-degradation generator (docstring written after tuning)."""

from .chain import apply_degradation, degrade, normalise_chain, replay, sample_combination
from .depth import depth_proxy
from .params import PARAM_LIMITS, PARAM_RANGES, format_chain, parse_chain, sample_params

__all__ = [
    "PARAM_LIMITS",
    "PARAM_RANGES",
    "apply_degradation",
    "degrade",
    "depth_proxy",
    "format_chain",
    "normalise_chain",
    "parse_chain",
    "replay",
    "sample_combination",
    "sample_params",
]
