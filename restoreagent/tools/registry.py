"""The tool registry: catalogue entries (data) -> built, validated callables (lazily)."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from importlib import resources

import numpy as np

from ..catalog import load_yaml
from ..catalog.learned import learned_tools
from ..catalog.spec import KINDS, ToolSpec, weights_path
from ..errors import UnknownNameError, by_name
from ..tasks import PHYSICAL_TASK_ORDER, TASKS
from ..zoo.models import hub_tool_specs
from .tiling import WHOLE_IMAGE_ESTIMATES, classical_tile, needs_tiling, run_tiled


def import_ref(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class Tool:
    """A built tool: validates the image contract on the way in and out."""

    def __init__(self, spec: ToolSpec, fn: Callable[[np.ndarray], np.ndarray]):
        self.spec = spec
        self._fn = fn

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def task(self) -> str:
        return self.spec.task

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"tool {self.name}: expected an (H, W, 3) image, got shape {image.shape}")
        image = np.ascontiguousarray(image, dtype=np.float32)
        tile = classical_tile() if self.spec.kind == "classical" else 0
        if needs_tiling(image.shape, tile):  # bounded memory on large photos (restoreagent.tools.tiling)
            estimate = WHOLE_IMAGE_ESTIMATES.get(self.spec.function or "")
            fixed = estimate(image, **self.spec.params) if estimate else {}
            out = run_tiled(functools.partial(self._fn, **fixed), image, tile)
        else:
            out = self._fn(image)
        out = np.asarray(out, dtype=np.float32)
        if out.shape != image.shape:
            raise RuntimeError(f"tool {self.name} returned shape {out.shape} for input {image.shape}")
        return np.clip(out, 0.0, 1.0)

    def __repr__(self) -> str:
        return f"Tool({self.name!r}, task={self.task!r}, kind={self.spec.kind!r})"


_EXTRA_SPECS: dict[str, ToolSpec] = {}


@functools.cache
def _catalog_specs() -> tuple[ToolSpec, ...]:
    specs = []
    for entry in resources.files("restoreagent.catalog").iterdir():
        if entry.name.startswith("tools") and entry.name.endswith(".yaml"):
            for raw in load_yaml(entry.read_text()) or []:
                raw = dict(raw)
                raw["requires"] = tuple(raw.get("requires", ()))
                specs.append(ToolSpec(**raw))
    specs += [t.spec() for t in learned_tools().values()]  # the project's networks (catalog/learned/)
    specs += hub_tool_specs()  # published models (restoreagent/zoo/models.yaml), available once downloaded
    for s in specs:
        _validate(s)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tool names: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return tuple(sorted(specs, key=lambda s: (PHYSICAL_TASK_ORDER.index(s.task), s.name)))


def reload_models() -> None:
    """Re-read the catalogues (e.g. after ``RESTOREAGENT_CACHE`` or ``RESTOREAGENT_ZOO_MODELS`` changed)."""
    _catalog_specs.cache_clear()
    get_tool.cache_clear()


def _validate(spec: ToolSpec) -> None:
    if spec.task not in TASKS:
        raise ValueError(f"tool {spec.name}: unknown task {spec.task!r}; tasks: {', '.join(TASKS)}")
    if spec.kind not in KINDS:
        raise ValueError(f"tool {spec.name}: kind must be one of {KINDS}")
    if (spec.function is None) == (spec.builder is None):
        raise ValueError(f"tool {spec.name}: set exactly one of 'function' or 'builder'")


def register(spec: ToolSpec) -> None:
    """Add a tool at run time (hub models found in the cache, user plug-ins)."""
    _validate(spec)
    _EXTRA_SPECS[spec.name] = spec
    get_tool.cache_clear()


def extra_specs() -> tuple[ToolSpec, ...]:
    """The tools added at run time with :func:`register` (worker processes re-register them)."""
    return tuple(_EXTRA_SPECS.values())


def list_specs(task: str | None = None) -> list[ToolSpec]:
    """Every catalogued tool (available or not), optionally for one task."""
    specs = list(_catalog_specs()) + [s for s in _EXTRA_SPECS.values()]
    return [s for s in specs if task is None or s.task == task]


def available_tools(task: str | None = None) -> list[ToolSpec]:
    return [s for s in list_specs(task) if s.available]


def tools_for_task(task: str) -> list[str]:
    """Names of the tools the search and the planners choose from for a task: the available
    candidates (every available tool when ``RESTOREAGENT_ALL_TOOLS=1``)."""
    if task not in TASKS:
        raise UnknownNameError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    every = os.environ.get("RESTOREAGENT_ALL_TOOLS") == "1"
    names = []
    for s in list_specs(task):
        missing = s.missing
        if not missing:
            if s.candidate or every:
                names.append(s.name)
        elif s.kind == "hub" and s.name not in _WARNED and any("sha256" in m for m in missing):
            _WARNED.add(s.name)  # a damaged download is skipped, loudly, rather than abort a whole job
            log.warning("tool %s skipped: %s", s.name, "; ".join(missing))
    return names


_WARNED: set[str] = set()
log = logging.getLogger("restoreagent")


def spec(name: str) -> ToolSpec:
    return by_name(list_specs(), name, "tool", "tools")


@functools.cache
def get_tool(name: str) -> Tool:
    """Build (once) and return the tool called ``name``."""
    s = spec(name)
    if s.missing:
        raise UnknownNameError(f"tool {name!r} is not available here: missing {', '.join(s.missing)}")
    if s.function:
        fn = functools.partial(import_ref(s.function), **s.params)
    else:
        params = dict(s.params)
        if s.weights:
            params["weights"] = str(weights_path(s.weights))
        fn = import_ref(s.builder)(**params)
    return Tool(s, fn)
