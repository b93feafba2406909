"""The labeler: clean images -> degraded samples -> every candidate pipeline, scored (a dataset).

Sample ``i`` of a run depends only on ``(seed, i)`` and the configuration, never on the worker,
backend or the order in which samples finish:

- image: ``default_rng([seed, 1, i // n_files]).permutation(n_files)[i % n_files]`` (every image
  once per round of ``n_files`` samples, in a fresh order each round),
- degradations: the ``--combos`` file cycled (``combos[i % len]``), else ``k`` uniform in
  ``[min_degradations, max_degradations]`` then ``k`` distinct degradations uniformly, both from
  ``default_rng([seed, 2, i])``; only degradations whose task has a tool in the toolset,
- crop box: random (``default_rng([seed, 4, i])``) or centre, ``crop`` pixels square,
- degradation seed: ``SeedSequence([seed, 3, i])``; the degradation record replays it exactly.

The degraded image is quantised to 8 bits *before* the search, so the PNG stored in the dataset
decodes to exactly the image every candidate was run on: replaying a pipeline's tool calls on
the stored image reproduces the searched images bit for bit (the SFT builder relies on it).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..catalog.spec import weights_path
from ..degradations import degrade
from ..errors import RestoreAgentError
from ..imageio import list_images, load_image, png_bytes, quantize
from ..jobs.label import LabelConfig
from ..plan import Plan
from ..scoring import Scorer, resolve_metrics
from ..search import exhaustive_search
from ..tasks import (
    CORE_DEGRADATIONS,
    DEGRADATIONS,
    TASK_FOR_DEGRADATION,
    TASKS,
    parse_combos,
    physical_order,
    tasks_for,
)
from ..tools.fixed_recipe import fixed_recipe
from ..tools.registry import list_specs, spec, tools_for_task
from .backends import BackendChoice
from .card import write_labeled_card
from .records import label_features
from .shards import Job, data_files, load, read_manifest, run_job

LABEL_FORMAT = 1
TIMING_COLUMNS = ("search_seconds", "seconds")  # the only columns that differ between identical runs


# ---- images and the sample plan ---------------------------------------------------------------


def _roots(images) -> list[tuple[str, Path]]:
    if isinstance(images, str | Path):
        images = [images]
    roots = []
    for folder in images:
        p = Path(folder).expanduser()
        list_images(p, recursive=False)  # raises a clear error for a missing / empty folder
        roots.append((p.resolve().name, p.resolve()))
    names = [n for n, _ in roots]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise RestoreAgentError(f"two image folders have the same name {sorted(dup)[0]!r}; records name images by folder name")
    return roots


def list_files(roots) -> list[tuple[str, str]]:
    """(folder name, file name) of every image, folders in the given order, files sorted."""
    return [(name, f.name) for name, root in roots for f in list_images(root, recursive=False)]


def image_index(seed: int, i: int, n_files: int) -> int:
    rnd, pos = divmod(i, n_files)
    return int(np.random.default_rng([seed, 1, rnd]).permutation(n_files)[pos])


def degradation_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, 3, i]).generate_state(1)[0] & 0x7FFFFFFF)


def choose_combo(seed: int, i: int, allowed, combos, kmin: int, kmax: int) -> list[str]:
    if combos:
        return list(combos[i % len(combos)])
    rng = np.random.default_rng([seed, 2, i])
    k = int(rng.integers(kmin, kmax + 1))
    idx = rng.choice(len(allowed), size=k, replace=False)
    return physical_order(allowed[int(j)] for j in idx)


def crop_box(seed: int, i: int, h: int, w: int, crop: int | None, mode: str) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the sample's crop."""
    if not crop:
        return 0, 0, h, w
    ch, cw = min(crop, h), min(crop, w)
    if mode == "center":
        return (h - ch) // 2, (w - cw) // 2, ch, cw
    rng = np.random.default_rng([seed, 4, i])
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


# ---- toolset and metrics ----------------------------------------------------------------------


def resolve_toolset(toolset: dict | None, tasks=TASKS) -> dict[str, list[str]]:
    """Task -> candidate tool names (checked against the registry); tasks without tools left out."""
    if toolset is None:
        return {t: tools_for_task(t) for t in tasks if tools_for_task(t)}
    specs = {s.name: s for s in list_specs()}
    out = {}
    for task, tools in toolset.items():
        if task not in TASKS:
            raise RestoreAgentError(f"toolset: unknown task {task!r}; tasks: {', '.join(TASKS)}")
        tools = [tools] if isinstance(tools, str) else list(tools)
        for name in tools:
            s = specs.get(name)
            if s is None or s.task != task:
                here = ", ".join(n for n, x in specs.items() if x.task == task) or "none"
                raise RestoreAgentError(f"toolset: unknown tool {name!r} for {task}; tools for {task}: {here}")
            if not s.available:
                raise RestoreAgentError(f"toolset: tool {name!r} is not available here (missing {', '.join(s.missing)})")
        if len(set(tools)) != len(tools):
            raise RestoreAgentError(f"toolset: a tool is listed twice for {task}")
        if tools:
            out[task] = tools
    return {t: out[t] for t in TASKS if t in out}


def tool_fingerprints(toolset: dict[str, list[str]]) -> dict[str, str]:
    """What each tool is (implementation reference and parameters): a changed tool changes labels."""
    out = {}
    for tools in toolset.values():
        for name in tools:
            s = spec(name)
            # the weight file's name, not its folder: moving the zoo cache does not change a tool
            weights = Path(s.weights).name if s.weights else None
            out[name] = json.dumps([s.function or s.builder, s.params, weights], sort_keys=True, default=str)
    return out


def _source_hash(module: str, cache: dict) -> str:
    """Hash of a tool's code: its module's file, or every .py file of its package folder."""
    import importlib.util

    if module not in cache:
        h = hashlib.sha256()
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is not None and found.origin and found.origin.endswith(".py"):
            origin = Path(found.origin)
            files = sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" or "." in module else [origin]
            for f in files:
                h.update(f.name.encode() + b"\0" + f.read_bytes())
        cache[module] = h.hexdigest()
    return cache[module]


def tool_code_fingerprints(toolset: dict[str, list[str]]) -> dict[str, str]:
    """Per tool, a hash of its code (module or package sources) and weight file.

    Stored in the manifest: resuming after a tool's code changed would mix two versions of its
    labels, so it is refused unless accepted explicitly (``accept_tool_changes``).
    """
    cache: dict = {}
    out = {}
    for tools in toolset.values():
        for name in tools:
            s = spec(name)
            h = hashlib.sha256(_source_hash((s.function or s.builder).partition(":")[0], cache).encode())
            if s.weights:
                w = weights_path(s.weights)
                if w.exists():
                    with open(w, "rb") as f:
                        h.update(str(w.stat().st_size).encode() + f.read(1 << 20))
            out[name] = h.hexdigest()[:16]
    return out


def fixed_plan(tasks, toolset: dict[str, list[str]]):
    """The fixed expert recipe (``baselines.fixed_recipe``) inside this toolset.

    The recipe's order; its tool when that tool is a candidate, else the task's first candidate
    (only differs from the recipe when the toolset was given explicitly).
    """
    try:
        recipe = fixed_recipe(set(tasks))
    except (IndexError, RestoreAgentError):  # a task with no installed tool at all
        recipe = []
    order = [t for t, _ in recipe] + [t for t in tasks if t not in {t for t, _ in recipe}]
    chosen = dict(recipe)
    return Plan.of((t, chosen[t] if chosen.get(t) in toolset[t] else toolset[t][0]) for t in order if t in toolset)


# ---- the worker: one sample -------------------------------------------------------------------

_SCORERS: dict = {}


def _scorer(metrics: tuple[str, ...]):
    if metrics not in _SCORERS:
        s = Scorer(metrics)
        if tuple(s.metrics) != tuple(metrics):
            raise RestoreAgentError(
                f"this worker can compute only the metrics {', '.join(s.metrics)}, the dataset uses {', '.join(metrics)} "
                "(weights missing from the torch hub cache?)"
            )
        _SCORERS[metrics] = s
    return _SCORERS[metrics]


def degrade_sample(p: dict):
    """A labeling unit's degraded crop (8-bit quantised, as a saved file would be), its record, and
    the tasks and tool choices the search covers: the same for every labeler."""
    degraded, record = degrade(p["clean"], chain=", ".join(p["combo"]), seed=p["deg_seed"])
    tasks = tasks_for(record["degradations"])
    return quantize(degraded), record, tasks, {t: list(p["toolset"][t]) for t in tasks}


def label_sample(p: dict) -> list[dict]:
    """Degrade the clean crop, run and score every candidate pipeline; returns the one record."""
    t0 = time.perf_counter()
    clean = p["clean"]
    degraded, record, tasks, toolset = degrade_sample(p)
    metrics = tuple(p["metrics"])
    search = exhaustive_search(degraded, clean, degradations=record["degradations"], toolset=toolset, scorer=_scorer(metrics), record_nodes=True)
    fixed = fixed_plan(search.tasks, toolset)
    row = {
        "sample_id": p["index"],
        "degraded": {"bytes": png_bytes(degraded), "path": None},
        "clean_root": p["root"],
        "clean_path": p["path"],
        "crop_box": list(p["crop_box"]),
        "degradations": list(record["degradations"]),
        "n_degradations": len(record["degradations"]),
        "degradation_record": json.dumps(record, sort_keys=True),
        "tasks": list(search.tasks),
        "toolset": json.dumps(search.toolset),
        "metric_names": list(search.metric_names),
        "candidates": [c.to_json() for c in search.candidates],
        "nodes": [n.to_json() for n in search.nodes],
        "zstats": {"mean": search.stats.mean, "std": search.stats.std},
        "best_plan": search.best.plan.text(),
        "best_balanced": search.best.balanced,
        "fixed_plan": fixed.text(),
        "n_candidates": len(search.candidates),
        "tool_calls": search.tool_calls,
        "naive_tool_calls": search.naive_tool_calls,
        "search_seconds": search.seconds,
        "seconds": time.perf_counter() - t0,
    }
    return [row]


# ---- the driver -------------------------------------------------------------------------------


@dataclass
class ResolvedLabeling:
    """Everything the driver resolved once: what sample i is made of."""

    cfg: LabelConfig
    roots: list[tuple[str, Path]]
    files: list[tuple[str, str]]
    toolset: dict[str, list[str]]
    allowed: list[str]
    combos: list[list[str]] | None
    metrics: tuple[str, ...]
    kmax: int
    identity: dict = field(default_factory=dict)

    def spec(self, i: int) -> dict:
        c = self.cfg
        root, name = self.files[image_index(c.seed, i, len(self.files))]
        combo = choose_combo(c.seed, i, self.allowed, self.combos, c.min_degradations, self.kmax)
        return {"index": i, "root": root, "path": name, "combo": combo, "deg_seed": degradation_seed(c.seed, i)}

    def payload(self, i: int) -> dict:
        s = self.spec(i)
        image = load_image(dict(self.roots)[s["root"]] / s["path"])
        h, w = image.shape[:2]
        top, left, ch, cw = crop_box(self.cfg.seed, i, h, w, self.cfg.crop, self.cfg.crop_mode)
        s["crop_box"] = (top, left, ch, cw)
        s["clean"] = np.ascontiguousarray(image[top : top + ch, left : left + cw])
        s["toolset"] = {t: self.toolset[t] for t in tasks_for(s["combo"])}
        s["metrics"] = self.metrics
        return s


def plan_labels(cfg: LabelConfig) -> ResolvedLabeling:
    """Check the configuration and resolve everything the samples depend on."""
    if cfg.samples < 1:
        raise RestoreAgentError("--samples must be at least 1")
    if cfg.crop_mode not in ("random", "center"):
        raise RestoreAgentError(f"crop mode must be 'random' or 'center', got {cfg.crop_mode!r}")
    if cfg.crop is not None and cfg.crop < 0:
        raise RestoreAgentError("--crop must be a positive number of pixels (0: the whole image)")
    roots = _roots(cfg.images)
    given = [Path(f).expanduser().absolute().name for f in ([cfg.images] if isinstance(cfg.images, str | Path) else cfg.images)]
    bad = [n for n in given + [n for n, _ in roots] if n in set(cfg.refused)]
    if bad:
        raise RestoreAgentError(f"image folder {bad[0]!r} is a dev split (used to measure planners); it must not be labeled for training")
    files = list_files(roots)
    toolset = resolve_toolset(cfg.toolset)
    if not toolset:
        raise RestoreAgentError("no restoration tool is available (see `restoreagent tools`); nothing can be labeled")
    with_tools = [d for d in DEGRADATIONS if TASK_FOR_DEGRADATION[d] in toolset]
    if cfg.degradations is not None:
        unknown = [d for d in cfg.degradations if d not in DEGRADATIONS]
        if unknown:
            raise RestoreAgentError(f"unknown degradation {unknown[0]!r}; known: {', '.join(DEGRADATIONS)}")
        lacking = [d for d in cfg.degradations if d not in with_tools]
        if lacking:
            raise RestoreAgentError(f"no tool in the toolset for {TASK_FOR_DEGRADATION[lacking[0]]!r} (undoes {lacking[0]})")
        allowed = physical_order(cfg.degradations)
    else:
        allowed = [d for d in with_tools if d in CORE_DEGRADATIONS]  # extensions (snow) only when named
    combos = None
    if cfg.combos_file:
        combos = parse_combos(Path(cfg.combos_file).read_text(), str(cfg.combos_file))
        for combo in combos:
            lacking = [d for d in combo if TASK_FOR_DEGRADATION[d] not in toolset]
            if lacking:
                raise RestoreAgentError(f"{cfg.combos_file}: no tool in the toolset for {TASK_FOR_DEGRADATION[lacking[0]]!r} (undoes {lacking[0]})")
    if not 1 <= cfg.min_degradations <= cfg.max_degradations:
        raise RestoreAgentError("degradations per sample: need 1 <= min <= max")
    kmax = min(cfg.max_degradations, len(allowed))
    if not combos and cfg.min_degradations > kmax:
        raise RestoreAgentError(f"only {len(allowed)} degradation(s) have tools ({', '.join(allowed)}); lower --min-degradations")
    used_tasks = {TASK_FOR_DEGRADATION[d] for d in (allowed if not combos else {d for c in combos for d in c})}
    toolset = {t: v for t, v in toolset.items() if t in used_tasks}
    metrics = resolve_metrics(cfg.metrics)
    if not metrics:
        raise RestoreAgentError("no metric is available")
    plan = ResolvedLabeling(cfg, roots, files, toolset, allowed, combos, metrics, kmax)
    plan.identity = {
        "format": LABEL_FORMAT,
        "seed": cfg.seed,
        "crop": cfg.crop or None,
        "crop_mode": cfg.crop_mode,
        "combos": combos,
        "min_degradations": cfg.min_degradations,
        "max_degradations": kmax,
        "degradations": allowed,
        "toolset": toolset,
        "tools": tool_fingerprints(toolset),
        "metrics": list(metrics),
        "images": {
            "folders": [n for n, _ in roots],
            "files": len(files),
            "files_sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest(),
        },
    }
    return plan


def label_dataset(cfg: LabelConfig, progress: bool = True) -> dict:
    """Label ``cfg.samples`` samples into ``cfg.out`` (resuming a previous run); returns a summary."""
    plan = plan_labels(cfg)
    code = tool_code_fingerprints(plan.toolset)
    info = {"images_roots": {n: str(p) for n, p in plan.roots}, "label_config": _jsonable(cfg), "tool_code": code}
    man = read_manifest(cfg.out)
    if man and man.get("kind") == "labeled" and man.get("config") == plan.identity and man.get("tool_code", code) != code:
        changed = sorted(k for k in code if man["tool_code"].get(k) != code[k])
        if not cfg.accept_tool_changes:
            raise RestoreAgentError(
                f"{cfg.out}: the code of tool(s) {', '.join(changed)} changed since this dataset was started "
                f"({man.get('done', 0)} of {man.get('n')} samples done); resuming would mix labels of two versions. "
                "Use another --out to start over, or --accept-tool-changes to continue anyway"
            )
        info["tool_code_changes"] = man.get("tool_code_changes", []) + [{"done": man.get("done", 0), "tools": changed}]
    elif man and "tool_code_changes" in man:
        info["tool_code_changes"] = man["tool_code_changes"]
    job = Job(
        out=Path(cfg.out),
        kind="labeled",
        config=plan.identity,
        n_units=cfg.samples,
        shard_size=cfg.shard_size,
        features=label_features(plan.metrics),
        make_payload=plan.payload,
        work=label_sample,
        desc="label",
        info=info,
    )
    backend = BackendChoice(cfg.backend, cfg.workers, cfg.ray_address).build()
    stats = run_job(job, backend, progress=progress)
    if cfg.card:
        write_labeled_card(cfg.out)
    return {"out": str(cfg.out), "samples": cfg.samples, **stats}


def _jsonable(cfg: LabelConfig) -> dict:
    d = asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def load_labeled(path, cache_dir=None):
    """A finished labeled dataset as a ``datasets.Dataset`` (also: ``datasets.load_dataset(path)``)."""
    return load(path, cache_dir=cache_dir)


def read_labeled_table(path, columns=None):
    """The labeled records as a pyarrow Table (no image decoding, no cache); ``columns`` to select."""
    import pyarrow as pa
    import pyarrow.parquet as pq


    man = read_manifest(path)
    if man is None or man.get("kind") != "labeled":
        raise RestoreAgentError(f"{path}: not a labeled dataset (no manifest.json of kind 'labeled'); make one with `restoreagent label`")
    if man.get("status") != "complete":
        raise RestoreAgentError(f"{path}: labeling is not finished ({man.get('done', 0)} of {man.get('n')}); re-run the label command to finish it")
    files = data_files(path)
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
