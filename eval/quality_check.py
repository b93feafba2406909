"""Which steps do the stepwise agent's quality checks roll back? (restoreagent/quality.py)

    .venv/bin/python eval/quality_check.py [--n 4] [--crop 256] [--json OUT.json]

Output: docs/quality_check.md. Photos: the first ``n`` colour photos scikit-image ships (astronaut,
coffee, chelsea, rocket), centre crop ``crop``. Every step is one classical tool run on an image;
it is *good* when it raises PSNR against the clean photo by 0.5 dB or more, *harmful* when it
lowers it by 0.5 dB or more (PSNR capped at 40 dB: an untouched clean photo counts as 40), and
every check scores the image before and after it. Steps:

- clean: every classical tool on the clean photo (nothing to restore: mostly harmful);
- matched: each degradation alone at a low and a high severity, every classical tool of its task;
- wrong: each degradation alone at the high severity, the recipe tool of every *other* task;
- pipeline: RestoreAgent's seven combinations (parameters drawn with seed = photo index), the
  fixed recipe's order with the classical tool matched to the severity, step after step.

Every check is measured on every task, including those it skips (``judged: no``), to show why it
skips them. The last tables are the two harmful steps of docs/quality_check.md (a strong denoiser and
gamma_strong on a clean photo) and each score's time at 512 px (one CPU thread).
"""

import argparse
import json
import statistics
import time

import numpy as np
from skimage.metrics import peak_signal_noise_ratio

from restoreagent.bench import RESTOREAGENT_COMBOS
from restoreagent.degradations import apply_degradation, degrade
from restoreagent.degradations.params import complete_params
from restoreagent.imageio import center_crop
from restoreagent.planners.vlm.train_data import skimage_images
from restoreagent.quality import (
    DEFAULT_QUALITY_CHECK,
    FAINT_NOISE,
    FAINT_NOT_WITH,
    FAINT_PIQE_TASKS,
    HAZE_FLOOR,
    HAZE_TASKS,
    QUALITY_CHECKS,
    haze_level,
    noise_level,
    resolve_quality_checks,
)
from restoreagent.tasks import CORE_TASKS as TASKS  # the experiment covers the original eight tasks
from restoreagent.tasks import DEGRADATION_FOR_TASK
from restoreagent.tools.registry import available_tools, get_tool

# task -> (parameter, low and high value), inside the generator's sampling ranges
SEVERITIES = {
    "denoise": ("sigma", (10.0, 40.0)),
    "motion_deblur": ("length", (8, 22)),
    "defocus_deblur": ("radius", (1.5, 4.5)),
    "dejpeg": ("quality", (12, 40)),
    "dehaze": ("beta", (0.8, 1.6)),
    "derain": ("intensity", (0.55, 0.85)),
    "brighten": ("gamma", (1.7, 2.4)),
    "super_resolve": ("scale", (2, 4)),
}
# The fixed recipe (catalog/fixed_recipe.yaml, as of this script): its order and one tool per task.
RECIPE_ORDER = [
    "dejpeg",
    "denoise",
    "super_resolve",
    "defocus_deblur",
    "motion_deblur",
    "brighten",
    "derain",
    "dehaze",
]
RECIPE_TOOL = {
    "dejpeg": "dejpeg_mild",
    "denoise": "dct_high",
    "super_resolve": "ibp_x2",
    "defocus_deblur": "defocus_small",
    "motion_deblur": "motion_short",
    "brighten": "gamma_mild",
    "derain": "derain_heavy",
    "dehaze": "dcp_dense",
}
# The classical tool for a severity: task -> (parameter, [(upper bound, tool), ...]).
BY_SEVERITY = {
    "denoise": ("sigma", [(15, "dct_low"), (30, "dct_mid"), (1e9, "dct_high")]),
    "motion_deblur": ("length", [(12, "motion_short"), (1e9, "motion_long")]),
    "defocus_deblur": ("radius", [(2.5, "defocus_small"), (1e9, "defocus_large")]),
    "dejpeg": ("quality", [(18, "dejpeg_severe"), (1e9, "dejpeg_mild")]),
    "dehaze": ("beta", [(1.2, "dcp_light"), (1e9, "dcp_dense")]),
    "derain": ("intensity", [(0.6, "derain_light"), (1e9, "derain_heavy")]),
    "brighten": ("gamma", [(1.875, "gamma_mild"), (2.375, "gamma_mid"), (1e9, "gamma_strong")]),
    "super_resolve": ("scale", [(2.5, "ibp_x2"), (3.5, "ibp_x3"), (1e9, "ibp_x4")]),
}
COMBOS = RESTOREAGENT_COMBOS
CAP, GOOD = 40.0, 0.5


def psnr(clean, x) -> float:
    return min(
        CAP, float(peak_signal_noise_ratio(clean, x, data_range=1.0)) if not np.array_equal(clean, x) else CAP
    )


def luma(x) -> float:
    return float(np.mean(x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114))


def matched_plan(record) -> list[tuple[str, str]]:
    params = {c["name"]: c["params"] for c in record["chain"]}
    steps = []
    for task in RECIPE_ORDER:
        degradation = DEGRADATION_FOR_TASK[task]
        if degradation in params:
            key, table = BY_SEVERITY[task]
            steps.append((task, next(tool for bound, tool in table if params[degradation][key] < bound)))
    return steps


def cases(photos, classical):
    """(kind, photo index, task, tool, note, clean, before[, photo, planned tasks]) for every step of the
    experiment; a single step's photo is its input and its plan that step alone."""
    for i, clean in enumerate(photos):
        for task in TASKS:
            for tool in classical[task]:
                yield "clean", i, task, tool, "", clean, clean
        for task in TASKS:
            degradation = DEGRADATION_FOR_TASK[task]
            key, levels = SEVERITIES[task]
            for level in levels:
                rng = np.random.default_rng(i)
                x = apply_degradation(
                    clean,
                    degradation,
                    complete_params(degradation, {key: level}, rng),
                    np.random.default_rng(i),
                )
                note = f"{degradation} {key}={level}"
                for tool in classical[task]:
                    yield "matched", i, task, tool, note, clean, x
                if level == levels[-1]:
                    for other in TASKS:
                        if other != task:
                            yield "wrong", i, other, RECIPE_TOOL[other], note, clean, x
        for combo in COMBOS:
            x, record = degrade(clean, chain=", ".join(combo), seed=i)
            photo, plan = x, matched_plan(record)
            for task, tool in plan:
                yield "pipeline", i, task, tool, " + ".join(combo), clean, x, photo, [t for t, _ in plan]
                x = get_tool(tool)(x)


def run(n: int, crop: int) -> tuple[list[dict], list]:
    photos = [center_crop(p, crop) for p in skimage_images()[:n]]
    classical = {t: [s.name for s in available_tools(t) if s.kind == "classical"] for t in TASKS}
    rows = []
    for kind, i, task, tool, note, clean, before, *context in cases(photos, classical):
        photo, planned = context or (before, [task])
        after = get_tool(tool)(before)
        rows.append(
            {
                "kind": kind,
                "photo": i,
                "task": task,
                "tool": tool,
                "input": note,
                "psnr_before": psnr(clean, before),
                "psnr_after": psnr(clean, after),
                "before": {c.name: c.score(before) for c in QUALITY_CHECKS.values()},
                "after": {c.name: c.score(after) for c in QUALITY_CHECKS.values()},
                "mean_luma": [luma(before), luma(after)],
                # for the one-shot rules (restoreagent.quality: judge_step's faint-noise rule, precheck)
                "photo_noise": noise_level(photo),
                "planned": planned,
                "haze_level": haze_level(before),
            }
        )
    return rows, photos


def rejected(check, row) -> bool:
    return check.judge(row["before"][check.name], row["after"][check.name])["rejected"]


def report(rows, photos) -> None:
    for r in rows:
        r["dpsnr"] = r["psnr_after"] - r["psnr_before"]
    good = [r for r in rows if r["dpsnr"] >= GOOD]
    bad = [r for r in rows if r["dpsnr"] <= -GOOD]
    print(
        f"{len(rows)} steps on {len(photos)} photos: {len(good)} good (PSNR +{GOOD} dB or more), {len(bad)} harmful\n"
    )
    print(
        "| check (margin) | task | judged | good steps rejected | largest worsening of a good step | harmful steps rejected |"
    )
    print("|---|---|---|---|---|---|")
    for c in QUALITY_CHECKS.values():
        for task in TASKS:
            g = [r for r in good if r["task"] == task]
            b = [r for r in bad if r["task"] == task]
            worst = max(
                (c.worse_by(r["before"][c.name], r["after"][c.name]) for r in g), default=float("nan")
            )
            print(
                f"| {c.name} ({c.margin:g}) | {task} | {'yes' if task in c.tasks else 'no'} "
                f"| {sum(rejected(c, r) for r in g)} / {len(g)} | {worst:+.3g} | {sum(rejected(c, r) for r in b)} / {len(b)} |"
            )
    default = resolve_quality_checks(DEFAULT_QUALITY_CHECK)

    def by_default(r):
        return any(rejected(c, r) for c in default if r["task"] in c.tasks)

    def by_rules(r):
        """The default checks plus the rules `run --auto` adds (restoreagent.quality): the haze
        pre-check before dehazing, PIQE on denoising when the photo's noise is faint (not with deJPEG)."""
        piqe = QUALITY_CHECKS["piqe"]
        faint = (
            r["task"] in FAINT_PIQE_TASKS
            and r["photo_noise"] < FAINT_NOISE
            and not FAINT_NOT_WITH & set(r["planned"])
            and rejected(piqe, r)
        )
        haze = r["task"] in HAZE_TASKS and r["haze_level"] < HAZE_FLOOR
        return by_default(r) or faint or haze

    print(f"\nDefault ({DEFAULT_QUALITY_CHECK}), each step judged by the checks that judge its task; then with")
    print("the rules `run --auto` adds (haze pre-check, faint-noise PIQE on denoising):\n")
    print("| steps | good rejected | harmful rejected | with the rules: good rejected | harmful rejected |")
    print("|---|---|---|---|---|")
    for kind in ("clean", "matched", "wrong", "pipeline", None):
        g = [r for r in good if kind in (None, r["kind"])]
        b = [r for r in bad if kind in (None, r["kind"])]
        print(
            f"| {kind or 'all'} | {sum(map(by_default, g))} / {len(g)} | {sum(map(by_default, b))} / {len(b)} "
            f"| {sum(map(by_rules, g))} / {len(g)} | {sum(map(by_rules, b))} / {len(b)} |"
        )
    print("\nThe two harmful steps of docs/quality_check.md, on each clean photo (PSNR of the output; rejected by: ...):\n")
    print("| photo | mean luma, gamma_strong before -> after | dct_high | gamma_strong |")
    print("|---|---|---|---|")
    for i in range(len(photos)):

        def verdicts(tool, i=i):
            r = next(r for r in rows if r["kind"] == "clean" and r["photo"] == i and r["tool"] == tool)
            who = [c.name for c in QUALITY_CHECKS.values() if r["task"] in c.tasks and rejected(c, r)]
            lum = f"{r['mean_luma'][0]:.2f} -> {r['mean_luma'][1]:.2f}"
            return f"{r['psnr_after']:.1f} dB; {', '.join(who) or 'none'}", lum

        dn, _ = verdicts("dct_high")
        gs, lum = verdicts("gamma_strong")
        print(f"| {i} | {lum} | {dn} | {gs} |")
    print("\nScore time, astronaut 512 x 512, one CPU thread (median of 10):\n")
    import torch
    from skimage import data

    torch.set_num_threads(1)
    img = data.astronaut().astype(np.float32) / 255.0
    for c in QUALITY_CHECKS.values():
        c.score(img)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            c.score(img)
            times.append(time.perf_counter() - t0)
        print(f"- {c.name}: {1000 * statistics.median(times):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows, photos = run(args.n, args.crop)
    report(rows, photos)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
