"""Compact, replayable labeled records: no pixels, a few hundred bytes a sample, committed to git.

A record names what rebuilds its images instead of holding them:

- the source photo (``folder/file``, folder = the photo folder's name, and the file's sha256),
- the crop box and the degradation record (seed + complete parameters: :func:`~restoreagent.degradations.replay`
  rebuilds the degraded crop byte for byte), and a short sha256 of the degraded 8-bit pixels, so a
  loader proves it rebuilt exactly the image every candidate was run on,
- which labeler made it, and the scores it computed: every evaluated candidate pipeline and every
  evaluated internal node, each a row of step ids into the record's ``steps`` vocabulary
  (``task:tool``), with its metrics as float16.

The exhaustive labeler's records hold every candidate (1,728 for four degradations); the beam
labeler's (:mod:`.beam`) only the pipelines it evaluated. Loading (:func:`rebuild`,
:class:`CompactRows`) decodes a record into the row format of the full labeler
(:mod:`.records`), so the SFT builder reads both kinds.

The dataset grows run after run with one resumable command (``restoreagent job label-compact``):
sample ``i`` depends only on ``(seed, i)``, finished shards are never rewritten, and a larger
``samples`` continues where the last run stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from ..degradations import degrade
from ..errors import RestoreAgentError
from ..imageio import load_image, png_bytes, quantize, to_uint8
from ..jobs.label import CompactLabelConfig, LabelConfig
from ..plan import Plan, Step
from ..scoring import ZStats
from ..search import exhaustive_search
from ..tasks import TASK_FOR_DEGRADATION, parse_combos, tasks_for
from .backends import BackendChoice
from .beam import beam_search
from .card import VALIDATION_NOTE
from .labeler import (
    ResolvedLabeling,
    _jsonable,
    _scorer,
    choose_combo,
    degrade_sample,
    fixed_plan,
    plan_labels,
    resolve_toolset,
    tool_code_fingerprints,
    tool_fingerprints,
)
from .shards import Job, data_files, read_manifest, run_job, shard_range, write_card_files

COMPACT_KIND = "labeled-compact"
COMPACT_FORMAT = 1
DEGRADED_HASH_CHARS = 16  # of the hex sha256 of the degraded crop's 8-bit pixels (H, W, 3, C order)


def compact_features(metrics=None):
    import datasets
    from datasets import Features, Value

    def List(f):  # noqa: N802 - datasets' name
        return datasets.List(f) if hasattr(datasets, "List") else [f]

    return Features(
        {
            "sample_id": Value("int64"),
            "photo": Value("string"),
            "photo_sha256": Value("string"),
            "crop_box": List(Value("int32")),
            "degradation_record": Value("string"),
            "degraded_sha256": Value("string"),
            "labeler": Value("string"),
            "metric_names": List(Value("string")),
            "steps": List(Value("string")),
            "candidates": Value("binary"),
            "candidate_scores": Value("binary"),
            "nodes": List(Value("binary")),
            "node_scores": Value("binary"),
            "n_candidates": Value("int32"),
            "tool_calls": Value("int32"),
            "seconds": Value("float32"),
        }
    )


def pixels_sha256(image: np.ndarray) -> str:
    """Short sha256 of an image's 8-bit pixels (what the PNG would hold)."""
    return hashlib.sha256(np.ascontiguousarray(to_uint8(image)).tobytes()).hexdigest()[:DEGRADED_HASH_CHARS]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- encoding ---------------------------------------------------------------------------------


def _vocabulary(search) -> list[str]:
    return [f"{t}:{tool}" for t in search.tasks for tool in search.toolset[t]]


def encode_search(search) -> dict:
    """The scores of a search result as compact columns (step ids, float16 metrics)."""
    vocab = _vocabulary(search)
    index = {v: i for i, v in enumerate(vocab)}
    if len(vocab) > 255:
        raise RestoreAgentError(f"{len(vocab)} candidate steps: more than a byte can number")
    metrics = list(search.metric_names)

    def ids(steps) -> bytes:
        return bytes(index[f"{s.task}:{s.tool}"] for s in steps)

    def scores(rows) -> bytes:
        return np.asarray([[r[m] for m in metrics] for r in rows], dtype="<f2").reshape(-1, len(metrics)).tobytes()

    return {
        "metric_names": metrics,
        "steps": vocab,
        "candidates": b"".join(ids(c.plan.steps) for c in search.candidates),
        "candidate_scores": scores([c.metrics for c in search.candidates]),
        "nodes": [ids(n.steps) for n in search.nodes],
        "node_scores": scores([n.metrics for n in search.nodes]),
        "n_candidates": len(search.candidates),
        "tool_calls": search.tool_calls,
    }


def decode_scores(row: dict) -> tuple[list[tuple[tuple[Step, ...], dict]], list[tuple[tuple[Step, ...], dict]]]:
    """(candidates, nodes) of a compact record: each (steps, metrics as floats), in stored order."""
    vocab = [Step(*s.split(":", 1)) for s in row["steps"]]
    metrics = list(row["metric_names"])
    m = len(metrics)
    n_tasks = len(json.loads(row["degradation_record"])["degradations"])
    cand_ids = np.frombuffer(row["candidates"], np.uint8).reshape(-1, n_tasks)
    cand_sc = np.frombuffer(row["candidate_scores"], "<f2").reshape(-1, m).astype(np.float64)
    node_sc = np.frombuffer(row["node_scores"], "<f2").reshape(-1, m).astype(np.float64)
    cands = [(tuple(vocab[j] for j in ids), dict(zip(metrics, map(float, sc)))) for ids, sc in zip(cand_ids, cand_sc)]
    nodes = [(tuple(vocab[j] for j in ids), dict(zip(metrics, map(float, sc)))) for ids, sc in zip(row["nodes"], node_sc)]
    return cands, nodes


# ---- labeling ---------------------------------------------------------------------------------


def labeler_name(cfg: CompactLabelConfig) -> str:
    if cfg.labeler == "exhaustive":
        return "exhaustive"
    return f"beam(width={cfg.beam_width},polish={cfg.polish})"


def compact_label_sample(p: dict) -> list[dict]:
    """Degrade the clean crop, search (beam or exhaustive), encode the scores; the one record."""
    t0 = time.perf_counter()
    clean = p["clean"]
    degraded, record, tasks, toolset = degrade_sample(p)
    scorer = _scorer(tuple(p["metrics"]))
    if p["labeler"] == "exhaustive":
        search = exhaustive_search(degraded, clean, degradations=record["degradations"], toolset=toolset, scorer=scorer, record_nodes=True)
    else:
        search = beam_search(degraded, clean, degradations=record["degradations"], toolset=toolset, scorer=scorer,
                             width=p["beam_width"], polish=p["polish"])
    row = {
        "sample_id": p["index"],
        "photo": f"{p['root']}/{p['path']}",
        "photo_sha256": p["photo_sha256"],
        "crop_box": list(p["crop_box"]),
        "degradation_record": json.dumps(record, sort_keys=True),
        "degraded_sha256": pixels_sha256(degraded),
        "labeler": p["labeler_name"],
        **encode_search(search),
        "seconds": time.perf_counter() - t0,
    }
    return [row]


class _CompactPlan:
    """What sample i of a compact dataset is: the labeler's sample plan, every ``snow_every``-th a snow one."""

    def __init__(self, cfg: CompactLabelConfig):
        self.cfg = cfg
        base = LabelConfig(
            images=cfg.images, out=cfg.out, samples=cfg.samples, seed=cfg.seed, crop=cfg.crop,
            min_degradations=cfg.min_degradations, max_degradations=cfg.max_degradations,
            toolset=cfg.toolset, metrics=cfg.metrics, allow_dev_split=cfg.allow_dev_split,
        )
        self.plan: ResolvedLabeling = plan_labels(base)
        self.snow = parse_combos(Path(cfg.snow_combos).read_text(), str(cfg.snow_combos)) if cfg.snow_every else []
        every = resolve_toolset(cfg.toolset)
        for combo in self.snow:
            for d in combo:
                if TASK_FOR_DEGRADATION[d] not in every:
                    raise RestoreAgentError(f"{cfg.snow_combos}: no tool for {TASK_FOR_DEGRADATION[d]!r} (undoes {d})")
        used = set(self.plan.toolset) | {TASK_FOR_DEGRADATION[d] for c in self.snow for d in c}
        self.toolset = {t: v for t, v in every.items() if t in used}
        self._sha: dict[tuple[str, str], str] = {}
        self.identity = {
            **self.plan.identity,
            "format": COMPACT_FORMAT,
            "toolset": self.toolset,
            "tools": tool_fingerprints(self.toolset),
            "labeler": labeler_name(cfg),
            "snow_every": cfg.snow_every,
            "snow_combos": self.snow,
        }

    def combo(self, i: int) -> list[str]:
        c, n = self.cfg, self.cfg.snow_every
        if n and i % n == n - 1:
            return list(self.snow[(i // n) % len(self.snow)])
        return choose_combo(c.seed, i, self.plan.allowed, None, c.min_degradations, self.plan.kmax)

    def payload(self, i: int) -> dict:
        p = self.plan.payload(i)
        p["combo"] = self.combo(i)
        p["toolset"] = {t: self.toolset[t] for t in tasks_for(p["combo"])}
        key = (p["root"], p["path"])
        if key not in self._sha:
            self._sha[key] = file_sha256(dict(self.plan.roots)[p["root"]] / p["path"])
        p.update(photo_sha256=self._sha[key], labeler=self.cfg.labeler, labeler_name=labeler_name(self.cfg),
                 beam_width=self.cfg.beam_width, polish=self.cfg.polish)
        return p


def label_compact(cfg: CompactLabelConfig, progress: bool = True) -> dict:
    """Label samples ``0..cfg.samples-1`` into ``cfg.out`` as compact records, resuming what is there."""
    if cfg.labeler not in ("beam", "exhaustive"):
        raise RestoreAgentError(f"labeler must be 'beam' or 'exhaustive', got {cfg.labeler!r}")
    plan = _CompactPlan(cfg)
    code = tool_code_fingerprints(plan.toolset)
    man = read_manifest(cfg.out)
    if man and man.get("kind") == COMPACT_KIND and man.get("config") == plan.identity and man.get("tool_code", code) != code:
        changed = sorted(k for k in code if man["tool_code"].get(k) != code[k])
        if not cfg.accept_tool_changes:
            raise RestoreAgentError(
                f"{cfg.out}: the code of tool(s) {', '.join(changed)} changed since this dataset was started "
                f"({man.get('done', 0)} samples done); growing it would mix labels of two versions. "
                "Use another --out, or accept_tool_changes=true to continue anyway"
            )
    have = finished_samples(cfg.out) if man else 0
    if cfg.samples < have:
        raise RestoreAgentError(f"{cfg.out} holds {have} labeled samples; samples={cfg.samples} would drop some (give samples >= {have})")
    info = {"images_roots": {n: str(p) for n, p in plan.plan.roots}, "label_config": _jsonable(cfg), "tool_code": code}
    job = Job(
        out=Path(cfg.out), kind=COMPACT_KIND, config=plan.identity, n_units=cfg.samples, shard_size=cfg.shard_size,
        features=compact_features(), make_payload=plan.payload, work=compact_label_sample, desc="label-compact", info=info,
    )
    backend = BackendChoice(cfg.backend, cfg.workers, cfg.ray_address).build()
    try:
        stats = run_job(job, backend, progress=progress)
    finally:  # also when stopped (Ctrl-C): the card describes the finished shards
        if data_files(cfg.out):
            write_compact_card(cfg.out)
    return {"out": str(cfg.out), "samples": cfg.samples, **stats}


# ---- loading ----------------------------------------------------------------------------------


def finished_samples(out) -> int:
    """Samples in the finished shards (they cover 0..n-1 without gaps; later shards may be missing)."""
    n = 0
    for f in data_files(out):
        a, b = shard_range(f)
        if a != n:
            break
        n = b
    return n


def read_compact_table(out, columns=None):
    """The finished compact records as one pyarrow Table (no pixels are rebuilt)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    man = read_manifest(out)
    if man is None or man.get("kind") != COMPACT_KIND:
        raise RestoreAgentError(f"{out}: not a compact labeled dataset (no manifest.json of kind {COMPACT_KIND!r})")
    files = data_files(out)
    if not files:
        raise RestoreAgentError(f"{out}: no finished shard yet; run `restoreagent job label-compact out={out}`")
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def photo_roots(out, images=None) -> dict[str, Path]:
    """Folder name -> where the photos are: the manifest's folders, replaced by ``images`` ones of the same name."""
    man = read_manifest(out) or {}
    roots = {k: Path(v) for k, v in man.get("images_roots", {}).items()}
    for folder in images or ():
        p = Path(folder).expanduser().resolve()
        roots[p.name] = p
    return roots


def rebuild(row: dict, roots: dict[str, Path], check_photo: bool = True,
            photos: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clean crop, degraded crop) of a compact record, rebuilt from its photo and checked against its hashes.

    ``photos``: a dict kept by the caller across calls (photo path -> decoded, checked pixels), so a
    pass over many records decodes and hashes each photo once.
    """
    folder, _, name = row["photo"].partition("/")
    if folder not in roots:
        raise RestoreAgentError(f"photo folder {folder!r} is not known here; pass its location (images=[.../{folder}])")
    src = roots[folder] / name
    key = (str(src), row["photo_sha256"])
    if photos is not None and key in photos:
        pixels = photos[key]
    else:
        if not src.exists():
            raise RestoreAgentError(f"{src}: photo of sample {row['sample_id']} not found (pass where {folder!r} is now)")
        if check_photo and file_sha256(src) != row["photo_sha256"]:
            raise RestoreAgentError(f"{src}: not the photo sample {row['sample_id']} was made from (sha256 differs)")
        pixels = load_image(src)
        if photos is not None:
            photos[key] = pixels
    top, left, h, w = row["crop_box"]
    clean = np.ascontiguousarray(pixels[top : top + h, left : left + w])
    record = json.loads(row["degradation_record"])
    degraded, _ = degrade(clean, chain=record["chain"], seed=record["seed"])
    degraded = quantize(degraded)
    if pixels_sha256(degraded) != row["degraded_sha256"]:
        raise RestoreAgentError(
            f"sample {row['sample_id']}: the rebuilt degraded image differs from the labeled one "
            f"(sha256 {pixels_sha256(degraded)} != {row['degraded_sha256']}); the degradation code changed?"
        )
    return clean, degraded


def to_labeled_row(row: dict, degraded: np.ndarray) -> dict:
    """A compact record as a row of the full labeler (:mod:`.records`), for the SFT builder and cards."""
    record = json.loads(row["degradation_record"])
    degs = record["degradations"]
    tasks = tuple(tasks_for(degs))
    cands, nodes = decode_scores(row)
    metrics = list(row["metric_names"])
    stats = ZStats.of([m for _, m in cands], metrics)
    scored = sorted(
        ({"plan": Plan(s).text(), "metrics": m, "balanced": stats.balanced(m)} for s, m in cands), key=lambda c: -c["balanced"]
    )
    toolset: dict[str, list[str]] = {}
    for s in row["steps"]:
        t, _, tool = s.partition(":")
        toolset.setdefault(t, []).append(tool)
    return {
        "sample_id": row["sample_id"],
        "degraded": {"bytes": png_bytes(degraded), "path": None},
        "clean_root": row["photo"].partition("/")[0],
        "clean_path": row["photo"].partition("/")[2],
        "crop_box": list(row["crop_box"]),
        "degradations": degs,
        "n_degradations": len(degs),
        "degradation_record": row["degradation_record"],
        "tasks": list(tasks),
        "toolset": json.dumps(toolset),
        "metric_names": metrics,
        "candidates": scored,
        "nodes": [{"steps": Plan(s).text(), "metrics": m} for s, m in nodes],
        "zstats": {"mean": stats.mean, "std": stats.std},
        "best_plan": scored[0]["plan"],
        "best_balanced": scored[0]["balanced"],
        "fixed_plan": fixed_plan(tasks, toolset).text(),
        "n_candidates": len(scored),
        "tool_calls": row["tool_calls"],
        "naive_tool_calls": 0,
        "search_seconds": float(row["seconds"]),
        "seconds": float(row["seconds"]),
    }


class CompactRows:
    """Sequential access to a compact dataset's finished records as full rows (pixels rebuilt on the fly)."""

    def __init__(self, out, images=None):
        self.out = Path(out)
        self.roots = photo_roots(out, images)
        self.ranges = [(*shard_range(f), f) for f in data_files(out)]
        self.n = finished_samples(out)
        self._cur = None
        self._rows: list[dict] = []

    def __len__(self) -> int:
        return self.n

    def compact(self, i: int) -> dict:
        import pyarrow.parquet as pq

        for a, b, f in self.ranges:
            if a <= i < b:
                if self._cur != f:
                    self._rows = pq.read_table(f).to_pylist()
                    self._cur = f
                return self._rows[i - a]
        raise IndexError(i)

    def get(self, i: int) -> dict:
        row = self.compact(i)
        _, degraded = rebuild(row, self.roots)
        return to_labeled_row(row, degraded)


# ---- the card ---------------------------------------------------------------------------------


def compact_stats(out) -> dict:
    from collections import Counter

    t = read_compact_table(out, columns=["degradation_record", "labeler", "n_candidates", "tool_calls", "seconds", "photo"])
    ks = Counter()
    combos = Counter()
    for rec in t.column("degradation_record").to_pylist():
        d = json.loads(rec)["degradations"]
        ks[len(d)] += 1
        combos[" + ".join(d)] += 1
    secs = t.column("seconds").to_pylist()
    return {
        "samples": t.num_rows,
        "labelers": dict(Counter(t.column("labeler").to_pylist())),
        "by_n": dict(sorted(ks.items())),
        "snow_samples": sum(v for k, v in combos.items() if "snow" in k.split(" + ")),
        "photo_folders": sorted({p.partition("/")[0] for p in t.column("photo").to_pylist()}),
        "candidates_mean": float(np.mean(t.column("n_candidates").to_pylist())),
        "tool_calls_mean": float(np.mean(t.column("tool_calls").to_pylist())),
        "seconds_per_sample_median": float(np.median(secs)),
        "bytes": sum(f.stat().st_size for f in data_files(out)),
    }


def write_compact_card(out) -> None:
    man = read_manifest(out) or {}
    st = compact_stats(out)
    cfg = man.get("label_config", {})
    folders = ", ".join(st["photo_folders"])
    lines = [
        "---",
        "pretty_name: restoreagent labels (compact, replayable)",
        "configs:",
        "- config_name: default",
        "  data_files: data/train-*.parquet",
        "---",
        "",
        f"# {Path(out).name}",
        "",
        "Labeled samples for restoreagent's planner, stored without pixels: each record names its source",
        "photo (folder-relative name and sha256), the crop box, the degradation record (it replays the",
        "degraded crop byte for byte) with a short hash of the degraded pixels, the labeler that made it,",
        "and the scores of the candidate pipelines and internal nodes that labeler evaluated (float16).",
        "Format: `restoreagent/labeling/compact.py`; docs/labeling.md.",
        "",
        f"- **samples**: {st['samples']} in finished shards ({st['bytes'] / 1e6:.1f} MB); by number of degradations: "
        + ", ".join(f"{k}: {v}" for k, v in st["by_n"].items()) + f"; snow-extension samples: {st['snow_samples']}",
        f"- **labeler**: {', '.join(f'`{k}` ({v})' for k, v in st['labelers'].items())}. The beam labeler "
        "(`restoreagent/labeling/beam.py`) stores only the candidates it evaluated "
        f"({st['candidates_mean']:.1f} per sample on average, {st['tool_calls_mean']:.0f} tool calls), "
        "not every pipeline: balanced scores are z-scores among those. Its agreement with the exhaustive "
        "search is measured in docs/labeling.md.",
        f"- **metrics**: {', '.join(man.get('config', {}).get('metrics', []))}",
        f"- **recipe**: random {cfg.get('crop')} px crops, {cfg.get('min_degradations')}-{cfg.get('max_degradations')} core "
        f"degradations (seed {cfg.get('seed')}); one sample in {cfg.get('snow_every')} a snow combination "
        f"(`{cfg.get('snow_combos')}`, cycled)",
        f"- **photos needed to rebuild the images**: the folders {folders} (the project's train folders, "
        "`restoreagent/splits.py`; they live in the shared data folder `../shared/data/images/` beside a checkout and "
        "are not in the repository). Loading checks each photo's sha256 and each rebuilt degraded crop's hash.",
        f"- {VALIDATION_NOTE}",
        "",
        "## Grow it (resumable: run it again, it continues where the last run stopped)",
        "",
        "```bash",
        f"nohup nice -n 5 env OMP_NUM_THREADS=1 .venv/bin/restoreagent job label-compact out={out} samples=N > /tmp/label-compact.log 2>&1 &",
        "```",
        "",
        "A larger `samples` adds samples; the same seed gives the same records. Then commit `data/` and `manifest.json`.",
        "",
        "## Use it",
        "",
        "```bash",
        f"restoreagent dataset build-sft {out} --out data/sft_compact --images ../shared/data/images/urban100_crops ../shared/data/images/sun_hays80 ../shared/data/images/set14",
        "```",
        "",
        "```python",
        "from restoreagent.labeling.compact import CompactRows",
        f"rows = CompactRows('{out}')       # rebuilds pixels on the fly, checked against the stored hashes",
        "row = rows.get(0)                  # the full labeler's row format, degraded PNG included",
        "```",
        "",
    ]
    write_card_files(Path(out), "\n".join(lines), None)


__all__ = ["CompactRows", "compact_features", "label_compact", "rebuild", "to_labeled_row"]
