"""What the verifying planner tries: the likely degradation sets, the scorer's best pipelines for
each, and their outputs (run once per shared prefix).

The detector names the exact set of only about 57% of the benchmark's images, but the true set is
usually one flip away from its decision (a degradation near its threshold). So the candidates come
from the decided set and the sets that flip the least certain degradations, each with the plan
scorer's best few pipelines; running them (``executor.run_plans``) and looking at the results decides.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...plan import Plan
from ...tasks import DEGRADATION_FOR_TASK, physical_order

MAX_SET = 4  # the core tasks come 1-4 at a time (+ snow, which the detector may add as a fifth)


@dataclass(frozen=True)
class CandidateSet:
    degradations: tuple[str, ...]
    margin: float  # minus the summed |logit margin| of the flipped degradations (0: the decided set)
    rank: int  # 0 = the detector's decision


def margins(detector, logits) -> np.ndarray:
    """Per label, the calibrated log-odds minus the threshold's log-odds (> 0: decided present)."""
    z = np.asarray(logits, np.float64) * detector.a + detector.b
    t = np.clip(detector.thresholds, 1e-6, 1 - 1e-6)
    return z - np.log(t / (1 - t))


def likely_sets(detector, logits, n_sets: int = 3, max_flips: int = 2) -> list[CandidateSet]:
    """The decided set, then the sets that flip the least certain labels, most likely first."""
    m = margins(detector, logits)
    labels = list(detector.labels)
    present = {lab for lab, v in zip(labels, m) if v >= 0}
    found: list[CandidateSet] = []
    seen = set()
    scored = []
    for k in range(max_flips + 1):
        for flips in itertools.combinations(range(len(labels)), k):
            s = set(present)
            for i in flips:
                s ^= {labels[i]}
            if len(s) > MAX_SET + ("snow" in s):
                continue
            if present and not s:
                # Doing nothing is never offered against a detection: on real under-exposed photos
                # the verifier (trained on synthetic darkening) preferred it to any brightening.
                continue
            scored.append((-float(sum(abs(m[i]) for i in flips)), k, tuple(physical_order(sorted(s)))))
    scored.sort(key=lambda t: (-t[0], t[1]))
    for margin, _, degs in scored:
        if degs in seen:
            continue
        seen.add(degs)
        found.append(CandidateSet(degs, margin, len(found)))
        if len(found) == n_sets:
            break
    return found


@dataclass
class Candidate:
    plan: Plan
    set: CandidateSet
    scorer_rank: int  # position among the scorer's picks for its set (0 = its best)
    scorer_gap: float  # the scorer's score minus that of its best for the set (<= 0)
    dropped: int = 0  # a prefix of a proposed plan: how many of its last steps it leaves out


def propose(ranker, features: np.ndarray, sets: Sequence[CandidateSet], per_set: int) -> list[Candidate]:
    """The plan scorer's ``per_set`` best pipelines for each set (a plan proposed twice is kept once)."""
    out, seen = [], set()
    for cs in sets:
        plans, s = ranker.ranked_scores(features, cs.degradations, k=per_set)
        for i, p in enumerate(plans):
            key = tuple(st.text() for st in p.steps)
            if key in seen:
                continue
            seen.add(key)
            out.append(Candidate(p, cs, i, float(s[i] - s[0])))
    return out


def with_prefixes(cands: Sequence[Candidate], detector, logits) -> list[Candidate]:
    """The candidates, then every shorter prefix of them (at least one step) not already among them.

    Their outputs cost nothing more: ``run_plans`` computes every prefix on the way. They are the
    plans that leave out a last step the detector only thought it saw: a spurious dehaze or derain
    at the end of a plan was the verifier's worst kind of pick, because every candidate carried it.
    A prefix keeps its parent's set rank and scorer rank (so a narrower training setting keeps a
    prefix with its parent) and gets the margin of its own degradation set."""
    m = margins(detector, logits)
    labels = list(detector.labels)
    present = {lab for lab, v in zip(labels, m) if v >= 0}
    out = list(cands)
    seen = {tuple(st.text() for st in c.plan.steps) for c in cands}
    for c in cands:
        for keep in range(len(c.plan.steps) - 1, 0, -1):
            steps = tuple(c.plan.steps[:keep])
            key = tuple(st.text() for st in steps)
            if key in seen:
                continue
            seen.add(key)
            degs = {DEGRADATION_FOR_TASK[st.task] for st in steps}
            margin = -float(sum(abs(v) for lab, v in zip(labels, m) if (lab in degs) != (lab in present)))
            cs = CandidateSet(tuple(physical_order(sorted(degs))), margin, c.set.rank)
            out.append(Candidate(Plan(list(steps)), cs, c.scorer_rank, c.scorer_gap, len(c.plan.steps) - keep))
    return out
