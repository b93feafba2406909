"""Labeled prefix trees -> the planner's SFT pairs, in RestoreAgent's five training scenarios.

Every example is (image the planner sees, prompt, target). Prompts are
``dialogue.prompt(History(...))`` and targets ``dialogue.Answer(...).text()``; the histories are
the ones the stepwise agent loop (:mod:`restoreagent.agent`) asks with: after executing a step it
asks with ``last: <step>`` (answer: the rest of the plan to keep it, or ``rollback``), after a
rollback with ``rolled back: <step>`` and the kept steps under ``done:``.

Per labeled sample with n degradations and best pipeline ``b1..bn`` (images are recomputed by
replaying the tool calls on the stored degraded image, which is bit-exactly the searched one):

1. ``full_plan``: the degraded image, no history -> ``saw: <all degradations> | plan: b1..bn``.
2. ``partial``: the image after ``b1..bk`` (k = 1..n-1), history ``done: b1..b(k-1); last: bk``
   -> ``saw: <degradations still there> | plan: b(k+1)..bn``. Plus ``detours_per_sample`` detours:
   a prefix of another candidate that never makes things worse (the agent may take a good but
   not the best step) -> the best completion among the candidates with that prefix.
3. ``rollback``: a step that made things worse (below its parent by more than
   ``rollback_psnr_db`` dB PSNR *and* ``rollback_ssim`` SSIM, and lower in the balanced frame),
   image after it, history ``done: <parent steps>; last: <step>`` -> ``rollback``. Steps of the
   best pipeline are never used, nor steps with no alternative; steps taken from a node on the
   best path are preferred (where the agent is most of the time). ``rollbacks_per_sample`` each.
4. ``after_rollback``: the parent image, history ``done: <parent steps>; rolled back: <step>``
   -> the best completion from the parent that never uses the rolled-back step (the agent never
   retries it). Also the next question on that path (``rolled back`` + ``last``), as ``partial``
   (or ``stop`` when nothing is left).
5. ``stop``: the image after the whole best pipeline, history ``done: b1..b(n-1); last: bn`` ->
   ``saw: none | plan: none``; and with probability ``clean_stop_prob`` the clean crop itself,
   no history -> the same (so the planner can say an image needs nothing).

Mix (measured on 16 urban100 samples, 1-4 degradations, the classical toolbox): 6.7 pairs per
labeled sample: full_plan 15%, partial 42% (best path, detours and post-rollback follow-ups),
rollback 10%, after_rollback 10%, stop 22%. Every sample gives one full plan and at least one
stop; rollbacks need a tree with a harmful step (11 of 16 had one). The exact counts of a build
are in its ``restoreagent_sft.json`` and README.md; the knobs are the ``*_per_sample`` fields.
Everything random comes from ``default_rng([seed, stream, sample_id])``: same seed, same bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..dialogue import Answer, History, prompt
from ..errors import RestoreAgentError
from ..imageio import atomic_write_text, decode_png, load_image, png_bytes
from ..jobs.label import SFTConfig
from ..plan import Plan, Step
from ..tasks import TASK_FOR_DEGRADATION
from ..tools.registry import get_tool
from .backends import BackendChoice
from .card import sft_card
from .compact import COMPACT_KIND, CompactRows
from .records import SCENARIOS, search_from_row
from .shards import Job, data_files, read_manifest, run_job, shard_range, write_card_files

SFT_FORMAT = 1
SFT_META = "restoreagent_sft.json"



def sft_features():
    from datasets import Features, Image, Value

    return Features(
        {
            "image": Image(),
            "prompt": Value("string"),
            "target": Value("string"),
            "scenario": Value("string"),
            "sample_id": Value("int64"),
            "example": Value("int32"),
        }
    )


# ---- the tree of one labeled sample -----------------------------------------------------------


class SampleTree:
    """Metrics of every prefix of a labeled sample's search, and the questions built on it."""

    def __init__(self, row: dict, psnr_db: float = 0.5, ssim_drop: float = 0.005):
        self.search = search_from_row(row)
        self.degradations = tuple(row["degradations"])
        self.metrics: dict[tuple[Step, ...], dict] = {n.steps: n.metrics for n in self.search.nodes}
        for c in self.search.candidates:
            self.metrics[c.plan.steps] = c.metrics
        self.best = self.search.best.plan.steps
        self.psnr_db, self.ssim_drop = psnr_db, ssim_drop
        self.harmful = {k: self._harmful(k) for k in self.metrics if k}

    def _harmful(self, key) -> bool:
        parent, child = self.metrics.get(key[:-1]), self.metrics[key]
        if parent is None:  # not recorded (labeled without nodes)
            return False
        if "psnr" in child and parent["psnr"] - child["psnr"] <= self.psnr_db:
            return False
        if "ssim" in child and parent["ssim"] - child["ssim"] <= self.ssim_drop:
            return False
        return self.search.balanced_of(child) < self.search.balanced_of(parent)

    def on_best_path(self, prefix) -> bool:
        return tuple(prefix) == self.best[: len(prefix)]

    def best_with(self, prefix, banned=()) -> Plan | None:
        """The best candidate that starts with ``prefix`` and never uses a ``banned`` step after it."""
        prefix, n = tuple(prefix), len(prefix)
        for c in self.search.candidates:
            s = c.plan.steps
            if s[:n] == prefix and not any(x in banned for x in s[n:]):
                return c.plan
        return None

    def remaining(self, prefix) -> tuple[str, ...]:
        done = {s.task for s in prefix}
        return tuple(d for d in self.degradations if TASK_FOR_DEGRADATION[d] not in done)

    def rollback_edges(self) -> list[tuple[tuple[Step, ...], Step]]:
        """(parent steps, harmful step) pairs usable for rollback examples, preferred ones first."""
        edges = []
        for key, bad in self.harmful.items():
            if not bad or self.on_best_path(key):
                continue
            parent, step = key[:-1], key[-1]
            if self.best_with(parent, banned={step}) is None:
                continue
            edges.append((parent, step))
        on_path = [e for e in edges if self.on_best_path(e[0])]
        return on_path or edges

    def detour_prefixes(self) -> list[tuple[Step, ...]]:
        """Prefixes of other candidates, off the best path, none of whose steps made things worse."""
        seen, out = set(), []
        n = len(self.best)
        for c in self.search.candidates[1:]:
            s = c.plan.steps
            for k in range(1, n):
                p = s[:k]
                if p in seen or self.on_best_path(p):
                    continue
                seen.add(p)
                if not any(self.harmful.get(p[:j]) for j in range(1, k + 1)):
                    out.append(p)
        return out


def examples_for(row: dict, cfg: SFTConfig, clean: np.ndarray | None = None) -> list[dict]:
    """The SFT examples of one labeled record (see the module docstring)."""
    sid = int(row["sample_id"])
    rng = np.random.default_rng([cfg.seed, 12, sid])
    tree = SampleTree(row, cfg.rollback_psnr_db, cfg.rollback_ssim)
    images: dict[tuple[Step, ...], np.ndarray] = {(): decode_png(row["degraded"]["bytes"])}

    def image_at(steps) -> np.ndarray:
        steps = tuple(steps)
        k = len(steps)
        while steps[:k] not in images:
            k -= 1
        img = images[steps[:k]]
        for j in range(k, len(steps)):
            img = get_tool(steps[j].tool)(img)
            images[steps[: j + 1]] = img
        return img

    out: list[tuple[str, np.ndarray, History, Answer]] = []
    best = tree.best
    n = len(best)

    def keep_going(done, rolled, last, plan: Plan, scenario="partial"):
        """The question after executing ``last`` on top of ``done``: answer = the rest of ``plan``."""
        here = tuple(done) + (last,)
        rest = Plan(plan.steps[len(here):])
        ans = Answer(tree.remaining(here), rest) if rest.steps else Answer()
        out.append((scenario if rest.steps else "stop", image_at(here), History(tuple(done), tuple(rolled), last), ans))

    # 1. full plan
    out.append(("full_plan", image_at(()), History(), Answer(tree.degradations, Plan(best))))
    # 2. partial, along the best path
    best_plan = Plan(best)
    for k in range(1, n):
        keep_going(best[: k - 1], (), best[k - 1], best_plan)
    # 2b. detours
    detours = tree.detour_prefixes()
    if detours and cfg.detours_per_sample > 0:
        for j in sorted(rng.choice(len(detours), size=min(cfg.detours_per_sample, len(detours)), replace=False)):
            p = detours[int(j)]
            keep_going(p[:-1], (), p[-1], tree.best_with(p))
    # 3./4. rollback and after rollback
    edges = tree.rollback_edges()
    if edges and cfg.rollbacks_per_sample > 0:
        for j in sorted(rng.choice(len(edges), size=min(cfg.rollbacks_per_sample, len(edges)), replace=False)):
            parent, bad = edges[int(j)]
            out.append(("rollback", image_at(parent + (bad,)), History(parent, (), bad), Answer(rollback=True)))
            alt = tree.best_with(parent, banned={bad})
            out.append(("after_rollback", image_at(parent), History(parent, (bad,)), Answer(tree.remaining(parent), Plan(alt.steps[len(parent):]))))
            if cfg.followups:
                keep_going(parent, (bad,), alt.steps[len(parent)], alt)
    # 5. stop
    out.append(("stop", image_at(best), History(best[:-1], (), best[-1]), Answer()))
    if clean is not None:
        out.append(("stop", clean, History(), Answer()))

    rows = []
    for j, (scenario, img, hist, ans) in enumerate(out):
        rows.append(
            {
                "image": {"bytes": png_bytes(img), "path": None},
                "prompt": prompt(hist),
                "target": ans.text(),
                "scenario": scenario,
                "sample_id": sid,
                "example": j,
            }
        )
    return rows


def _work(p: dict) -> list[dict]:
    return examples_for(p["row"], p["cfg"], p.get("clean"))


# ---- the driver -------------------------------------------------------------------------------


class _Rows:
    """Sequential access to the labeled records, one shard file in memory at a time."""

    def __init__(self, files):
        self.ranges = [(*shard_range(f), f) for f in files]
        self._cur = None
        self._rows: list[dict] = []

    def __len__(self) -> int:
        return self.ranges[-1][1] if self.ranges else 0

    def get(self, i: int) -> dict:
        import pyarrow.parquet as pq

        for a, b, f in self.ranges:
            if a <= i < b:
                if self._cur != f:
                    self._rows = pq.read_table(f).to_pylist()
                    self._cur = f
                row = self._rows[i - a]
                assert row["sample_id"] == i, (row["sample_id"], i)
                return row
        raise IndexError(i)


def _in_validation(seed: int, sid: int, fraction: float) -> bool:
    return fraction > 0 and float(np.random.default_rng([seed, 13, sid]).random()) < fraction


def build_sft(cfg: SFTConfig, progress: bool = True) -> dict:
    """Build (or resume) the SFT DatasetDict at ``cfg.out`` from the labeled dataset ``cfg.labeled``."""
    import hashlib
    import shutil

    labeled = Path(cfg.labeled)
    man = read_manifest(labeled)
    compact = man is not None and man.get("kind") == COMPACT_KIND
    if compact:  # pixel-free records: images rebuilt from the photos (checked against the stored hashes)
        rows = CompactRows(labeled, cfg.images)
        if len(rows) == 0:
            raise RestoreAgentError(f"{labeled}: no finished shard yet; grow it with `restoreagent job label-compact`")
        man = {**man, "status": "complete", "n": len(rows)}
    if man is None or man.get("kind") not in ("labeled", COMPACT_KIND):
        raise RestoreAgentError(f"{labeled}: not a labeled dataset (no manifest.json of kind 'labeled'); make one with `restoreagent label`")
    if man.get("status") != "complete":
        raise RestoreAgentError(f"{labeled}: labeling is not finished ({man.get('done', 0)} of {man.get('n')}); re-run the label command to finish it")
    if not 0 <= cfg.val_fraction < 1 or not 0 <= cfg.clean_stop_prob <= 1:
        raise RestoreAgentError("val fraction must be in [0, 1) and the clean-stop probability in [0, 1]")
    n = int(man["n"])
    if not compact:
        rows = _Rows(data_files(labeled))
    if len(rows) != n:
        raise RestoreAgentError(f"{labeled}: the data files hold {len(rows)} samples, the manifest says {n}")
    roots = {k: Path(v) for k, v in man.get("images_roots", {}).items()}
    if cfg.images:
        for folder in cfg.images:
            p = Path(folder).expanduser().resolve()
            roots[p.name] = p
    lcfg = man["config"]
    out = Path(cfg.out)
    identity = {
        "format": SFT_FORMAT,
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "clean_stop_prob": cfg.clean_stop_prob,
        "rollbacks_per_sample": cfg.rollbacks_per_sample,
        "detours_per_sample": cfg.detours_per_sample,
        "followups": cfg.followups,
        "rollback_psnr_db": cfg.rollback_psnr_db,
        "rollback_ssim": cfg.rollback_ssim,
        "labeled": {"samples": n, "config_sha256": hashlib.sha256(json.dumps(lcfg, sort_keys=True).encode()).hexdigest()},
    }
    meta_path = out / SFT_META
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("config") == identity:
            return {"out": str(out), "already_built": True, **meta.get("stats", {})}
        raise RestoreAgentError(f"{out} holds SFT data built with a different configuration; choose another --out or delete it")
    if out.exists() and any(p.name != ".build" for p in out.iterdir()):
        raise RestoreAgentError(f"{out}: folder exists and is not empty; choose a new --out")

    def payload(i: int) -> dict:
        row = rows.get(i)
        p = {"row": row, "cfg": cfg}
        if float(np.random.default_rng([cfg.seed, 11, i]).random()) < cfg.clean_stop_prob:
            root = roots.get(row["clean_root"])
            src = root / row["clean_path"] if root else None
            if src is None or not src.exists():
                raise RestoreAgentError(
                    f"clean image {row['clean_root']}/{row['clean_path']} not found (for a clean 'stop' example); "
                    "pass --images FOLDER for where the clean images are now, or --clean-stop 0"
                )
            top, left, h, w = row["crop_box"]
            p["clean"] = np.ascontiguousarray(load_image(src)[top : top + h, left : left + w])
        return p

    build = out / ".build"
    job = Job(
        out=build, kind="sft", config=identity, n_units=n, shard_size=cfg.shard_size, features=sft_features(),
        make_payload=payload, work=_work, desc="sft", info={"labeled_path": str(labeled.resolve())},
    )
    backend = BackendChoice(cfg.backend, cfg.workers, cfg.ray_address).build()
    run = run_job(job, backend, progress=progress)
    stats = _save(out, build, cfg, identity)
    stats["build"] = run
    atomic_write_text(meta_path, json.dumps({"config": identity, "sft_config": {k: v for k, v in asdict(cfg).items()}, "stats": stats}, indent=1, default=str))
    shutil.rmtree(build, ignore_errors=True)
    return {"out": str(out), **stats}


def _save(out: Path, build: Path, cfg: SFTConfig, identity: dict) -> dict:
    import collections

    import datasets
    import pyarrow.parquet as pq

    files = [str(f) for f in data_files(build)]
    ids, scen = [], []
    for f in files:
        t = pq.read_table(f, columns=["sample_id", "scenario"])
        ids += t.column("sample_id").to_pylist()
        scen += t.column("scenario").to_pylist()
    ds = datasets.Dataset.from_parquet(files, cache_dir=str(build / "cache"))
    val = [i for i, s in enumerate(ids) if _in_validation(cfg.seed, s, cfg.val_fraction)]
    val_set = set(val)
    parts = {"train": ds.select([i for i in range(len(ids)) if i not in val_set])}
    if val:
        parts["validation"] = ds.select(val)
    dd = datasets.DatasetDict(parts)
    dd.save_to_disk(str(out))
    stats = {
        "examples": len(ids),
        "samples": len(set(ids)),
        "scenarios": dict(collections.Counter(scen)),
        "splits": {k: len(v) for k, v in parts.items()},
    }
    examples, png = _card_examples(parts["train"])
    write_card_files(out, sft_card(out, stats, {"labeled": str(cfg.labeled), "seed": cfg.seed, "val_fraction": cfg.val_fraction}, examples, png), png)
    return stats


def _card_examples(ds) -> tuple[list[dict], bytes | None]:
    """One example per scenario (the first), with a picture of them."""
    import io

    picked: dict[str, int] = {}
    scen = ds["scenario"]
    for i, s in enumerate(scen):
        picked.setdefault(s, i)
    order = [picked[s] for s in SCENARIOS if s in picked]
    ex = [ds[i] for i in order]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return [{k: v for k, v in e.items() if k != "image"} for e in ex], None
    fig, axes = plt.subplots(1, max(1, len(ex)), figsize=(3.2 * max(1, len(ex)), 4.4))
    axes = np.atleast_1d(axes)
    for a, e in zip(axes, ex):
        a.imshow(e["image"])
        a.set_axis_off()
        hist = e["prompt"].split("Execution history:", 1)[1].strip() if "Execution history:" in e["prompt"] else "(no history)"
        a.set_title(f"{e['scenario']}\n{_wrap(hist)}\n-> {_wrap(e['target'])}", fontsize=6, loc="left")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.72, wspace=0.08)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return [{k: v for k, v in e.items() if k != "image"} for e in ex], buf.getvalue()


def _wrap(text: str, width: int = 40) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def load_sft(path):
    """The SFT DatasetDict (``datasets.load_from_disk``)."""
    import datasets

    return datasets.load_from_disk(str(path))
