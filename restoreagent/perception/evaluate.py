"""How well the detector sees: exact-set accuracy, per-degradation precision/recall, top-k,
calibration, false positives on clean photos, and detection rates on real degraded photos.

Samples follow the benchmark's protocol (:func:`restoreagent.sampling.sample_plan`: the same images,
combinations and seeds as ``restoreagent bench`` with the same ``--seed``), at a centre crop of
``crop`` px or on the whole photo (``crop=0``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..degradations import degrade
from ..imageio import atomic_write_text, center_crop, list_images, load_image
from ..jobs.bench import BenchConfig
from ..sampling import sample_plan
from ..tasks import parse_combos
from .calibration import expected_calibration_error
from .detector import Detector


@dataclass
class EvalSet:
    name: str
    images: str
    samples: int = 200
    seed: int = 0
    crop: int = 128  # 0: the whole photo
    combos_file: str | None = None  # None: 1-4 random core degradations
    camera: float = 0.0  # camera-realism probability of the degradations (0: the benchmark's chains)


def run_set(detector: Detector, spec: EvalSet) -> dict:
    """Per-sample truth and predictions of one evaluation set."""
    files = list_images(spec.images)
    combos = parse_combos(Path(spec.combos_file).read_text(), spec.combos_file) if spec.combos_file else None
    cfg = BenchConfig(images=spec.images, out="", samples=spec.samples, seed=spec.seed, crop=spec.crop or None)
    rows = []
    for s in tqdm(sample_plan(cfg, files, combos), desc=spec.name, unit="sample", disable=None):
        clean = center_crop(load_image(s["image"]), spec.crop or None)
        degraded, record = degrade(clean, chain=", ".join(s["combo"]), seed=s["seed"], camera=spec.camera)
        d = detector.detect(degraded)
        rows.append({"image": Path(s["image"]).name, "truth": record["degradations"], "pred": d.degradations,
                     "probs": d.probabilities})
    return {"spec": spec.__dict__, "rows": rows}


def run_clean(detector: Detector, images: str, crop: int) -> dict:
    rows = []
    for p in tqdm(list_images(images), desc="clean", unit="image", disable=None):
        d = detector.detect(center_crop(load_image(p), crop or None))
        rows.append({"image": p.name, "truth": [], "pred": d.degradations, "probs": d.probabilities})
    return {"spec": {"name": f"clean {crop or 'whole'}", "images": images, "crop": crop}, "rows": rows}


def run_real(detector: Detector, folder: str, label: str) -> dict:
    rows = []
    for p in tqdm(list_images(folder), desc=label, unit="image", disable=None):
        d = detector.detect(load_image(p))
        rows.append({"image": p.name, "pred": d.degradations, "probs": d.probabilities})
    hit = [label in r["pred"] for r in rows]
    return {"folder": folder, "label": label, "rate": float(np.mean(hit)), "rows": rows}


def summarise(result: dict, labels: list[str]) -> dict:
    rows = result["rows"]
    truth = np.array([[lb in r["truth"] for lb in labels] for r in rows])
    pred = np.array([[lb in r["pred"] for lb in labels] for r in rows])
    probs = np.array([[r["probs"][lb] for lb in labels] for r in rows])
    exact = (truth == pred).all(axis=1)
    n_true = truth.sum(axis=1)
    out = {"samples": len(rows), "exact_set": float(exact.mean()),
           "exact_by_count": {int(k): float(exact[n_true == k].mean()) for k in np.unique(n_true)},
           "any_false_positive": float((pred & ~truth).any(axis=1).mean())}
    per = {}
    for j, lb in enumerate(labels):
        tp, fp, fn = int((truth[:, j] & pred[:, j]).sum()), int((~truth[:, j] & pred[:, j]).sum()), int((truth[:, j] & ~pred[:, j]).sum())
        if tp + fn or fp:
            per[lb] = {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
                       "support": tp + fn}
    out["per_degradation"] = per
    order = np.argsort(-probs, axis=1)
    topk = {}
    for extra in (0, 1, 2):
        ok = [set(np.flatnonzero(truth[i])) <= set(order[i, : n_true[i] + extra]) for i in range(len(rows))]
        topk[f"top(n+{extra})"] = float(np.mean(ok))
    out["true_set_in_top_k"] = topk
    out["ece"] = expected_calibration_error(probs, truth.astype(float))
    out["_arrays"] = (truth, pred, probs)
    return out


def confusion_png(summaries: dict, labels: list[str], path: Path) -> None:
    """One panel per synthetic set (clean sets give the 'clean' row of the panels of their size).

    Row i, column j: on the samples where degradation i is present, how often j is *wrongly*
    reported (j absent but predicted); the diagonal is i's recall. Row 'clean': how often each
    degradation is reported on clean photos. Co-occurring true degradations are not counted as
    confusions, so the picture shows what the detector mistakes for what.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = {k: v for k, v in summaries.items() if k.startswith("clean")}
    sets = {k: v for k, v in summaries.items() if k not in clean}
    n = max(1, len(sets))
    cols = min(2, n)
    rows_n = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.4 * cols, 5.0 * rows_n), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, s) in zip(axes.ravel(), sets.items()):
        truth, pred, _ = s["_arrays"]
        m = np.full((len(labels) + 1, len(labels)), np.nan)
        for i in range(len(labels)):
            rows = truth[:, i]
            if rows.any():
                m[i] = (pred[rows] & ~truth[rows]).mean(axis=0)
                m[i, i] = pred[rows, i].mean()
        size = "whole" if "whole" in name else "128"
        for cname, cs in clean.items():
            if size in cname:
                m[-1] = cs["_arrays"][1].mean(axis=0)
        ax.imshow(np.nan_to_num(m, nan=0.0), vmin=0, vmax=1, cmap="magma")
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v) and (v >= 0.005 or i == j):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels) + 1), [*labels, "clean"], fontsize=7)
        ax.set_xlabel("reported (diagonal: recall; elsewhere: wrongly reported)", fontsize=7)
        ax.set_ylabel("present")
        ax.set_title(f"{name}: exact set {s['exact_set']:.1%}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_png(summaries: dict, path: Path, bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    edges = np.linspace(0, 1, bins + 1)
    for name, s in summaries.items():
        truth, _, probs = s["_arrays"]
        p, y = probs.ravel(), truth.ravel().astype(float)
        idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
        xs = [p[idx == b].mean() for b in range(bins) if (idx == b).any()]
        ys = [y[idx == b].mean() for b in range(bins) if (idx == b).any()]
        ax.plot(xs, ys, "o-", ms=3, label=f"{name} (ECE {s['ece']:.3f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summaries: dict, real: list[dict], labels: list[str]) -> str:
    lines = ["| set | samples | exact set | by number of degradations | any false positive | true set in top n / n+1 / n+2 | ECE |",
             "|---|---|---|---|---|---|---|"]
    for name, s in summaries.items():
        by = " / ".join(f"{k}: {v:.1%}" for k, v in s["exact_by_count"].items())
        tk = " / ".join(f"{v:.1%}" for v in s["true_set_in_top_k"].values())
        lines.append(f"| {name} | {s['samples']} | {s['exact_set']:.1%} | {by} | {s['any_false_positive']:.1%} | {tk} | {s['ece']:.3f} |")
    lines += ["", "| set | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name, s in summaries.items():
        cells = []
        for lb in labels:
            v = s["per_degradation"].get(lb)
            if v is None:
                cells.append("")
            else:
                pr = "-" if v["precision"] is None else f"{v['precision']:.2f}"
                rc = "-" if v["recall"] is None else f"{v['recall']:.2f}"
                cells.append(f"{pr} / {rc}")
        lines.append(f"| {name} (precision / recall) | " + " | ".join(cells) + " |")
    if real:
        lines += ["", "| real photos | images | detected as | rate | what else was found |", "|---|---|---|---|---|"]
        for r in real:
            others = {}
            for row in r["rows"]:
                for d in row["pred"]:
                    if d != r["label"]:
                        others[d] = others.get(d, 0) + 1
            other = ", ".join(f"{k} {v}" for k, v in sorted(others.items(), key=lambda kv: -kv[1])) or "-"
            lines.append(f"| {r['folder']} | {len(r['rows'])} | {r['label']} | {r['rate']:.1%} | {other} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, summaries: dict, real: list[dict], labels: list[str], command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    confusion_png(summaries, labels, out / "confusion.png")
    reliability_png(summaries, out / "reliability.png")
    clean = {k: {kk: vv for kk, vv in v.items() if kk != "_arrays"} for k, v in summaries.items()}
    atomic_write_text(out / "results.json", json.dumps({"command": command, "sets": clean, "real": real}, indent=1) + "\n")
    atomic_write_text(out / "results.md", f"`{command}`\n\n" + markdown(summaries, real, labels))
