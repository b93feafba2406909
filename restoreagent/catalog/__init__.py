"""The catalogues (YAML): tools, learned tools, severity ranges, the fixed recipe."""

from __future__ import annotations


def load_yaml(text: str):
    """``yaml.safe_load`` through libyaml when present: the catalogues are read at every start,
    and the pure-Python parser takes ~0.1 s of CPU for them."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
