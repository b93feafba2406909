"""Evaluation of a planner while it trains: constrained generation on validation examples and
answer metrics (exact answer, degradation set, plan, per-degradation accuracy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ...dialogue import parse_answer
from ...errors import PlanError
from ...tasks import CORE_DEGRADATIONS, DEGRADATIONS
from .collator import as_array
from .grammar import AnswerGrammar, make_logits_processor
from .planner import VLMPlanner, user_messages
from .view import ViewConfig, planner_view


def answer_metrics(preds: Sequence[str], targets: Sequence[str]) -> dict:
    """Exact answer, degradation-set, plan and per-degradation accuracy (with the all-absent baseline).

    Per-degradation accuracy covers the core degradations, plus an extension (snow) only when some
    prediction or target names it, so the numbers stay comparable with runs made before it existed.
    """
    n = len(targets)
    if n == 0:
        return {}
    exact = sets = plans = 0
    parsed = []
    for p, t in zip(preds, targets):
        exact += p.strip() == t.strip()
        try:
            pa, ta = parse_answer(p, check_tools=False), parse_answer(t, check_tools=False)
        except PlanError:
            parsed.append(None)
            continue
        parsed.append((pa, ta))
        sets += set(pa.degradations) == set(ta.degradations) and pa.rollback == ta.rollback
        plans += pa.plan == ta.plan and pa.rollback == ta.rollback
    named = {d for pt in parsed if pt for a in pt for d in a.degradations}
    names = [d for d in DEGRADATIONS if d in CORE_DEGRADATIONS or d in named]
    label_hits = np.zeros(len(names))
    truth = np.zeros(len(names))
    for pt in parsed:
        if pt is None:
            continue
        pa, ta = pt
        for i, d in enumerate(names):
            label_hits[i] += (d in pa.degradations) == (d in ta.degradations)
            truth[i] += d in ta.degradations
    out = {
        "exact": exact / n,
        "saw_set": sets / n,
        "plan": plans / n,
        "saw_label_acc": float(label_hits.sum() / (n * len(names))),
        "saw_label_acc_all_absent": float(1 - truth.sum() / (n * len(names))),
    }
    for i, d in enumerate(names):
        out[f"acc/{d}"] = float(label_hits[i] / n)
    return out


def evaluate_generation(net, processor, view: ViewConfig, dataset, max_n: int = 100, tools=None) -> dict:
    """Constrained generation on up to ``max_n`` examples; metrics of :func:`answer_metrics`."""
    planner = VLMPlanner(net=net, processor=processor, view=view, tools=tools)
    was_training = net.training
    net.eval()
    preds, targets = [], []
    t0 = time.perf_counter()
    import torch  # lazily: importing this module stays light

    grammar = AnswerGrammar(planner.tools if planner.tools is not None else None, allow_rollback=True)
    con = planner.constraint(grammar)
    for i in range(min(max_n, len(dataset))):
        ex = dataset[i]
        head = processor.apply_chat_template(
            user_messages(ex["prompt"]), add_generation_prompt=True, tokenize=False
        )
        enc = processor(
            text=[head],
            images=[[planner_view(as_array(ex["image"]), view)]],
            return_tensors="pt",
            add_special_tokens=False,
        ).to(net.device)
        n = enc["input_ids"].shape[1]
        with torch.inference_mode():
            out = net.generate(
                **enc,
                do_sample=False,
                max_new_tokens=grammar.max_chars() + 2,
                eos_token_id=planner.eos_ids,
                pad_token_id=planner.tokenizer.pad_token_id,
                logits_processor=[make_logits_processor(con, n)],
            )
        preds.append(con.text(out[0, n:].tolist()).strip())
        targets.append(ex["target"])
    if was_training:
        net.train()
    m = answer_metrics(preds, targets)
    m["seconds_per_plan"] = (time.perf_counter() - t0) / max(1, len(preds))
    m["examples"] = [{"pred": p, "target": t} for p, t in list(zip(preds, targets))[:5]]
    return m
