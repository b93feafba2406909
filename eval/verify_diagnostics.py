"""Diagnostics of the ``verify`` planner on a benchmark's cached searches (run `restoreagent bench`
with ``--planners verify`` into OUT first; the same --images/--samples/--seed/--crop/--combos):

- ``worst``: the samples whose pick ranks 50% or worse, their share of the mean, and whether the
  true degradation set was among the candidate sets;
- ``truth``: the verifier told the true set (its first candidate set, with the scorer's
  ``--per-set`` best pipelines for it, then the detector's two most likely other sets x 3): the
  pick's ranking and the best of the true set's candidates;
- ``prefixes``: the best ranking among the candidates (the ceiling) without and with every shorter
  prefix of them as a candidate;
- ``gap``: where the pick loses to the best of its own candidates: the ranking points lost, split by
  how the pick differs from that best candidate (another degradation set, the same tasks in another
  order, or another tool for a task);
- ``curve``, ``rules``: the brightening-curve rules and other pick rules (docs/benchmarks.md, eleventh session);
- ``resynth``: self-supervised re-degradation: the pick degraded again by each candidate set with the
  detector's estimates and restored by that set's candidates, as a judge of tools and order.

    python eval/verify_diagnostics.py worst --images ../shared/data/images/cbsd68 --samples 56 \\
        --combos configs/bench/restoreagent_combos.txt --out bench_out/combos_v5
    python eval/verify_diagnostics.py truth --per-set 3 ...   (same arguments)
    python eval/verify_diagnostics.py prefixes --images /tmp/valphotos ... --out bench_out/val_combos
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _samples(args):
    from restoreagent.bench import _sample_key, prepare_sample
    from restoreagent.imageio import list_images
    from restoreagent.jobs.bench import BenchConfig
    from restoreagent.sampling import sample_plan
    from restoreagent.scoring import Scorer
    from restoreagent.search import search_result_from_json
    from restoreagent.tasks import parse_combos

    cfg = BenchConfig(images=args.images, samples=args.samples, seed=args.seed, crop=args.crop,
                      combos_file=args.combos, out=args.out, planners=("verify",))
    combos = parse_combos(Path(args.combos).read_text(), args.combos) if args.combos else None
    scorer = Scorer(("psnr", "ssim"))
    for sample in sample_plan(cfg, list_images(cfg.images, recursive=False), combos):
        clean, degraded, record = prepare_sample(sample, cfg.crop)
        stem = f"{sample['index']:05d}_{_sample_key(sample, cfg.crop, scorer.metrics)}"
        cache = Path(args.out) / "samples" / f"{stem}.json"
        if not cache.is_file():
            raise SystemExit(f"{cache}: no cached search; run restoreagent bench with the same arguments first")
        yield sample, clean, degraded, record, search_result_from_json(json.loads(cache.read_text())), scorer


def _member_scores(det, model, cands, outs, image) -> np.ndarray:
    """The verifier's members' scores (M, K) of candidates ``cands`` whose outputs are ``outs``."""
    import torch

    from restoreagent.planners.verify.features import (
        candidate_table,
        consistency_stats,
        detector_view,
        image_stats,
        verifier_features,
    )

    seen = [detector_view(det, o) for o in outs]
    x = verifier_features(candidate_table(cands), np.stack([v[0] for v in seen]), detector_view(det, image)[0],
                          image_stats(outs, image),
                          consistency=consistency_stats(outs, image) if model.cfg.consistency else None)
    with torch.inference_mode():
        return model.member_scores(torch.from_numpy(x[None]), torch.ones(1, len(cands), dtype=torch.bool))[:, 0].numpy()


def worst(args) -> None:
    from restoreagent.perception import default_detector
    from restoreagent.planners.verify.candidates import likely_sets

    det = default_detector()
    rows = {r["sample"]: r for r in json.loads((Path(args.out) / "results.json").read_text())["rows"] if r["planner"] == "verify"}
    total, n_bad = 0.0, 0
    for sample, _, degraded, record, _, _ in _samples(args):
        r = rows[sample["index"]]
        if r["ranking"] < 50:
            continue
        n_bad += 1
        total += r["ranking"]
        sets = [set(s.degradations) for s in likely_sets(det, det.raw(degraded)[0], n_sets=3)]
        print(f"{r['ranking']:5.1f}% {' + '.join(sample['combo'])} | {r['plan']} | exact set: {r['degradations_correct']} | "
              f"true set among the candidate sets: {set(record['degradations']) in sets}")
    print(f"{n_bad} of {len(rows)} samples rank 50% or worse: {total / len(rows):.2f} points of the mean "
          f"{np.mean([r['ranking'] for r in rows.values()]):.2f}")


def truth(args) -> None:

    from restoreagent.bench import evaluate_plan
    from restoreagent.executor import run_plans
    from restoreagent.perception import default_detector
    from restoreagent.planners.ranker import RankerPlanner
    from restoreagent.planners.ranker.features import features_from_raw
    from restoreagent.planners.verify.candidates import CandidateSet, likely_sets, propose
    from restoreagent.planners.verify.weights import load_verifier
    from restoreagent.tasks import physical_order

    det = default_detector()
    ranker = RankerPlanner(detector=det)
    model, _ = load_verifier(args.verifier)
    picks, ceilings = [], []
    for _, clean, degraded, record, search, scorer in _samples(args):
        logits, sev, feats = det.raw(degraded)
        true = tuple(physical_order(sorted(record["degradations"])))
        others = [s for s in likely_sets(det, logits, n_sets=4) if set(s.degradations) != set(true)][:2]
        sets = [CandidateSet(true, 0.0, 0)] + [CandidateSet(s.degradations, s.margin, i + 1) for i, s in enumerate(others)]
        f = features_from_raw(logits, sev, feats)
        cands = propose(ranker, f, sets[:1], args.per_set) + [c for c in propose(ranker, f, sets, 3) if c.set.rank > 0]
        outs = run_plans(degraded, [c.plan for c in cands])
        s = _member_scores(det, model, cands, outs, degraded).mean(0)
        ranks = [evaluate_plan(c.plan, search, degraded, clean, scorer, restored=o)["ranking"] for c, o in zip(cands, outs)]
        picks.append(ranks[int(np.argmax(s))])
        ceilings.append(min(r for r, c in zip(ranks, cands) if c.set.rank == 0))
    print(f"told the true set ({args.per_set} pipelines for it), {len(picks)} samples: the verifier's pick ranks "
          f"{np.mean(picks):.1f}%, the best of the true set's candidates {np.mean(ceilings):.1f}%")


def prefixes(args) -> None:
    from restoreagent.bench import evaluate_plan
    from restoreagent.executor import run_plans
    from restoreagent.perception import default_detector
    from restoreagent.planners.ranker import RankerPlanner
    from restoreagent.planners.ranker.features import features_from_raw
    from restoreagent.planners.verify.candidates import likely_sets, propose, with_prefixes

    det = default_detector()
    ranker = RankerPlanner(detector=det)
    plain, extended, counts = [], [], []
    for _, clean, degraded, _, search, scorer in _samples(args):
        logits, sev, feats = det.raw(degraded)
        cands = with_prefixes(propose(ranker, features_from_raw(logits, sev, feats), likely_sets(det, logits, 3), 3), det, logits)
        outs = run_plans(degraded, [c.plan for c in cands])
        ranks = [evaluate_plan(c.plan, search, degraded, clean, scorer, restored=o)["ranking"] for c, o in zip(cands, outs)]
        plain.append(min(r for r, c in zip(ranks, cands) if c.dropped == 0))
        extended.append(min(ranks))
        counts.append(len(cands))
    print(f"{len(plain)} samples: the best candidate ranks {np.mean(plain):.2f}%, {np.mean(extended):.2f}% with the "
          f"prefixes ({np.mean(counts):.1f} candidates on average)")


def _difference(pick, best) -> list[str]:
    """How plan ``pick`` differs from plan ``best``: ["set"], ["order"] and/or ["tool:TASK", ...]."""
    a = {st.task: st.tool for st in pick.steps}
    b = {st.task: st.tool for st in best.steps}
    if set(a) != set(b):
        return ["set"]
    out = [] if [st.task for st in pick.steps] == [st.task for st in best.steps] else ["order"]
    return out + [f"tool:{t}" for t in sorted(a) if a[t] != b[t]]


def gap(args) -> None:
    from collections import defaultdict

    from restoreagent.bench import evaluate_plan
    from restoreagent.perception import default_detector
    from restoreagent.plan import Plan
    from restoreagent.planners.verify import VerifyPlanner

    det = default_detector()
    planner = VerifyPlanner(model=args.verifier, detector=det)
    lost: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    picks, ceilings, n = [], [], 0
    for _, clean, degraded, record, search, scorer in _samples(args):
        n += 1
        ranked = planner.ranked(degraded)
        plans = [a.plan if a.plan is not None else Plan() for a, _ in ranked]
        ranks = [evaluate_plan(p, search, degraded, clean, scorer)["ranking"] for p in plans]
        best = int(np.argmin(ranks))
        picks.append(ranks[0])
        ceilings.append(ranks[best])
        if ranks[0] <= ranks[best]:
            continue
        kinds = _difference(plans[0], plans[best])
        if args.verbose:
            print(f"  {ranks[0]:5.1f}% -> {ranks[best]:5.1f}% true {'+'.join(record['degradations'])} | pick {plans[0].text()} "
                  f"| best {plans[best].text()}")
        for k in kinds:  # a pick that differs in several ways shares its loss between them
            lost[k] += (ranks[0] - ranks[best]) / len(kinds)
            count[k] += 1
    print(f"{n} samples: the pick ranks {np.mean(picks):.2f}%, the best of its candidates {np.mean(ceilings):.2f}%; "
          "points of the mean lost, by how the pick differs from the best candidate:")
    for k in sorted(lost, key=lambda k: -lost[k]):
        print(f"  {k:28s} {lost[k] / n:6.2f} points ({count[k]} samples)")


def curve(args) -> None:
    import re

    from restoreagent.executor import run_plans
    from restoreagent.perception import default_detector
    from restoreagent.plan import parse_plan

    luma = np.array([0.299, 0.587, 0.114], np.float32)
    det = default_detector()
    hits = {"closest to the clean crop's mean luma": 0, "closest to the input brightened by the detector's estimate": 0,
            "closest to a mean luma of 0.45": 0, "always gamma_mild": 0}
    n = 0
    for _, clean, degraded, record, search, _ in _samples(args):
        if "low_light" not in record["degradations"]:
            continue
        best = max(search.candidates, key=lambda c: c.balanced).plan.text()
        means, scores = [], []
        for tool in ("gamma_mild", "gamma_mid", "gamma_strong"):
            plan = parse_plan(re.sub(r"brighten:gamma_\w+", f"brighten:{tool}", best))
            means.append(float((run_plans(degraded, [plan])[0] @ luma).mean()))
            scores.append(search.find(plan).balanced)
        est = det.detect(degraded).params.get("low_light")
        if est:  # invert the model V' = scale * V ** gamma with the detector's parameters
            v = np.maximum(degraded.max(axis=2, keepdims=True), 1e-6)
            inverse = np.clip(degraded * np.power(v / est["scale"], 1 / est["gamma"]) / v, 0, 1)
        else:  # the detector saw no low light: the input as it is
            inverse = degraded
        targets = [float((clean @ luma).mean()), float((inverse @ luma).mean()), 0.45]
        right = int(np.argmax(scores))
        n += 1
        for name, t in zip(list(hits)[:3], targets):
            hits[name] += int(int(np.argmin([abs(m - t) for m in means])) == right)
        hits["always gamma_mild"] += int(right == 0)
    print(f"{n} low-light samples; the rule picks the best brightening curve:")
    for name, h in hits.items():
        print(f"  {name:60s} {h / max(n, 1):.0%}")


def rules(args) -> None:

    from restoreagent.bench import evaluate_plan
    from restoreagent.executor import run_plans
    from restoreagent.perception import default_detector
    from restoreagent.planners.ranker import RankerPlanner
    from restoreagent.planners.ranker.features import features_from_raw
    from restoreagent.planners.verify.candidates import likely_sets, propose
    from restoreagent.planners.verify.weights import load_verifier

    det = default_detector()
    ranker = RankerPlanner(detector=det)
    model, meta = load_verifier(args.verifier)
    rows = []  # per sample: members' scores (M, K), the candidates' rankings (K), their sets' margins (K)
    for _, clean, degraded, _, search, scorer in _samples(args):
        logits, sev, feats = det.raw(degraded)
        cands = propose(ranker, features_from_raw(logits, sev, feats), likely_sets(det, logits, meta["n_sets"]), meta["per_set"])
        outs = run_plans(degraded, [c.plan for c in cands])
        ranks = np.array([evaluate_plan(c.plan, search, degraded, clean, scorer, restored=o)["ranking"] for c, o in zip(cands, outs)])
        margin = np.array([c.set.margin for c in cands])
        if len(cands) == 1:
            rows.append((np.zeros((1, 1)), ranks, margin))
            continue
        rows.append((_member_scores(det, model, cands, outs, degraded), ranks, margin))
    print(f"{len(rows)} samples; the pick's mean ranking (the best candidate: {np.mean([r.min() for _, r, _ in rows]):.2f}%):")
    for lam in (0, 0.25, 0.5, 1, 2, 3, 4, 6):
        print(f"  mean - {lam} x spread of the members: {np.mean([r[int(np.argmax(m.mean(0) - lam * m.std(0)))] for m, r, _ in rows]):.2f}%")
    vote = [r[int(np.argmax(np.bincount(m.argmax(1), minlength=len(r))))] for m, r, _ in rows]
    print(f"  majority vote of the members: {np.mean(vote):.2f}%")
    for beta in (0.1, 0.25, 0.5, 1, 2):
        print(f"  mean + {beta} x the set's margin: {np.mean([r[int(np.argmax(m.mean(0) + beta * g))] for m, r, g in rows]):.2f}%")


def _resynth_chain(est: dict, degradations) -> list[dict]:
    """A degradation chain of ``degradations`` with the detector's parameter estimates, clipped to the
    generator's ranges (integers where the generator draws integers); the rest drawn by the seed."""
    from restoreagent.degradations.params import PARAM_RANGES

    chain = []
    for name in degradations:
        params = {}
        for key, value in (est.get(name) or {}).items():
            lo, hi = PARAM_RANGES[name][key]
            v = float(np.clip(value, lo, hi))
            params[key] = int(round(v)) if isinstance(lo, int) else v
        chain.append({"name": name, "params": params})
    return chain


def resynth(args) -> None:
    """Self-supervised re-degradation: the verifier's pick is taken as the clean photo, degraded again
    by each candidate set with the detector's parameter estimates, and every candidate of that set
    restores it; how close it comes (PSNR + SSIM z-scores among the set's candidates) judges the
    tools and the order inside a set, on this photo's own content."""
    from restoreagent.bench import evaluate_plan
    from restoreagent.degradations import degrade
    from restoreagent.executor import run_plans
    from restoreagent.imageio import quantize
    from restoreagent.perception import default_detector
    from restoreagent.planners.ranker import RankerPlanner
    from restoreagent.planners.ranker.features import features_from_raw
    from restoreagent.planners.verify.candidates import likely_sets, propose
    from restoreagent.planners.verify.weights import load_verifier
    from restoreagent.scoring import ZStats

    det = default_detector()
    ranker = RankerPlanner(detector=det)
    model, meta = load_verifier(args.verifier)
    rows = []  # per sample: verifier mean (K), resynth z within set (K), set index (K), rankings (K)
    for _, clean, degraded, _, search, scorer in _samples(args):
        logits, sev, feats = det.raw(degraded)
        cands = propose(ranker, features_from_raw(logits, sev, feats), likely_sets(det, logits, meta["n_sets"]), meta["per_set"])
        outs = run_plans(degraded, [c.plan for c in cands])
        ranks = np.array([evaluate_plan(c.plan, search, degraded, clean, scorer, restored=o)["ranking"] for c, o in zip(cands, outs)])
        mean = _member_scores(det, model, cands, outs, degraded).mean(0) if len(cands) > 1 else np.zeros(1)
        est = det.detect(degraded).params
        pseudo = outs[int(np.argmax(mean))]
        sets = list(dict.fromkeys(c.set.degradations for c in cands))  # in the candidates' order
        z = np.zeros(len(cands))
        for degs in sets:
            idx = [i for i, c in enumerate(cands) if c.set.degradations == degs]
            if len(idx) < 2 or not degs:
                continue
            metrics = []
            for seed in range(args.resynth_seeds):
                again = quantize(degrade(pseudo, chain=_resynth_chain(est, degs), seed=seed)[0])
                restored = run_plans(again, [cands[i].plan for i in idx])
                metrics.append([scorer(r, pseudo) for r in restored])
            avg = [{m: float(np.mean([ms[j][m] for ms in metrics])) for m in scorer.metrics} for j in range(len(idx))]
            frame = ZStats.of(avg, scorer.metrics)
            for j, i in enumerate(idx):
                z[i] = frame.balanced(avg[j])
        rows.append((mean, z, np.array([sets.index(c.set.degradations) for c in cands]), ranks))
    n = len(rows)
    print(f"{n} samples; the pick's mean ranking (the best candidate: {np.mean([r.min() for *_, r in rows]):.2f}%):")

    def pick_set_then(rule):
        out = []
        for mean, z, s, r in rows:
            chosen = s == s[int(np.argmax(mean))]
            out.append(r[int(np.argmax(np.where(chosen, rule(mean, z, r), -np.inf)))])
        return np.mean(out)

    print(f"  the verifier (shipped): {np.mean([r[int(np.argmax(m))] for m, _, _, r in rows]):.2f}%")
    print(f"  the verifier's set, then the re-degradation's best in it: {pick_set_then(lambda m, z, r: z):.2f}%")
    print(f"  the verifier's set, then the best in it (the ceiling of a within-set rule): {pick_set_then(lambda m, z, r: -r):.2f}%")
    for alpha in (0.25, 0.5, 1.0, 2.0):
        def blend(m, z, r, a=alpha):
            return (m - m.mean()) / (m.std() + 1e-9) + a * z
        print(f"  the verifier's set, then its score + {alpha} x the re-degradation's: {pick_set_then(blend):.2f}%")
        print(f"  every candidate by the verifier's score + {alpha} x the re-degradation's: "
              f"{np.mean([r[int(np.argmax(blend(m, z, r)))] for m, z, _, r in rows]):.2f}%")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("worst", "truth", "prefixes", "gap", "curve", "rules", "resynth"))
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", required=True, help="the benchmark's output folder (its cached searches)")
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--combos", default=None)
    ap.add_argument("--per-set", type=int, default=3, help="truth: the scorer's pipelines for the true set")
    ap.add_argument("--verbose", action="store_true", help="gap: print each sample the pick loses on")
    ap.add_argument("--verifier", default=None, help="verifier file (default: the shipped one)")
    ap.add_argument("--resynth-seeds", type=int, default=1, help="resynth: re-degradations averaged per set")
    args = ap.parse_args(argv)
    {"worst": worst, "truth": truth, "prefixes": prefixes, "gap": gap, "curve": curve, "rules": rules,
     "resynth": resynth}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
