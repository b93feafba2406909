"""The learned planner: any transformers image-text-to-text model (+ optional LoRA), constrained.

    VLMPlanner()                                   # the shipped default (restoreagent/assets/planner)
    VLMPlanner("runs/planner/x/final")             # a trained folder (an adapter/ inside is used)
    VLMPlanner("HuggingFaceTB/SmolVLM-256M-Instruct", adapter="runs/planner/y/final/adapter")

The prompt is :func:`restoreagent.dialogue.prompt` in the model's chat template, with the planner
view of the image (:mod:`.view`). Decoding is greedy (beam search for several answers:
:meth:`VLMPlanner.generate_texts`) and constrained by :mod:`.grammar`, so the answer always parses
and only names tools that are installed now. The shipped planner is loaded by :mod:`.lean` (plain
torch, the same logits, no transformers import; :func:`load_for_planning`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from pathlib import Path

from ...dialogue import Answer, History, parse_answer, prompt
from ...errors import PlanError, RestoreAgentError
from ...perception import default_detector
from ...plan import Plan
from .build_default import default_planner_dir, read_meta
from .grammar import (
    AnswerGrammar,
    TokenConstraint,
    installed_tools,
    make_logits_processor,
    plannable_degradations,
    token_strings,
)
from .view import ViewConfig, planner_view

log = logging.getLogger(__name__)

BUILD_HINT = (
    "build it with `python -m restoreagent.planners.vlm.build_default` and train it with "
    "`python train/train_planner.py` (or pass a trained model folder)"
)


SMALL_MODEL = 50_000_000  # parameters


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Use ``n`` torch CPU threads inside the block (no change when None)."""
    import torch

    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n and n != old:
            torch.set_num_threads(old)


def user_messages(text: str) -> list[dict]:
    """The chat messages of one planner question: the image, then the text."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends an answer: the generation config's and the tokenizer's end tokens."""
    ids = []
    gen = getattr(model, "generation_config", None)
    e = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids += list(e) if isinstance(e, list | tuple) else ([e] if e is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids})


def _is_local_model_folder(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def resolve_model(model=None, adapter=None) -> tuple[str, str | None]:
    """(base model name or folder, adapter folder or None) with friendly errors."""
    if model is None:
        path = default_planner_dir()
        if not _is_local_model_folder(path):
            raise RestoreAgentError(f"the default VLM planner is not built ({path} is missing); {BUILD_HINT}")
        model = str(path)
    p = Path(str(model)).expanduser()
    if p.exists() and not _is_local_model_folder(p):
        # an adapter folder alone (or a training result holding only adapter/): base from its config
        ad = p if (p / "adapter_config.json").is_file() else p / "adapter"
        if adapter is None and (ad / "adapter_config.json").is_file():
            import json

            base = json.loads((ad / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise RestoreAgentError(f"{ad}: adapter without base_model_name_or_path; pass model= too")
            if (ad / base).exists():  # a base given relative to the adapter
                base = str((ad / base).resolve())
            return base, str(ad)
        raise RestoreAgentError(f"{p} is not a model folder (no config.json); {BUILD_HINT}")
    if adapter is None and _is_local_model_folder(p) and (p / "adapter" / "adapter_config.json").is_file():
        adapter = p / "adapter"
    return (str(p) if p.exists() else str(model)), (str(adapter) if adapter is not None else None)


def processor_source(model: str, adapter: str | None) -> str:
    """Where the processor lives: next to a trained adapter when saved there, else with the model."""
    if adapter is not None:
        parent = Path(adapter).parent
        if (parent / "tokenizer_config.json").is_file():
            return str(parent)
    return model


def load_model_and_processor(
    model, adapter=None, dtype=None, device="cpu", processor_kwargs=None, merge=True
):
    """Load a VLM + processor (+ LoRA adapter) from a folder or hub name; one-line errors."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    from . import perception_tower  # noqa: F401 - registers the detector as a vision model type
    from .safe_load import check_weight_files

    check_weight_files(model)  # a pickle or a damaged file: a one-line refusal, not a traceback
    if adapter is not None:
        check_weight_files(adapter)
    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a planner loads quietly (the CLI prints one line per image)
    try:
        processor = AutoProcessor.from_pretrained(
            processor_source(model, adapter), **(processor_kwargs or {})
        )
        net = AutoModelForImageTextToText.from_pretrained(model, dtype=dt or torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RestoreAgentError(
            f"cannot load planner model {model!r} (a local folder or a hub name reachable from here): {first}"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise RestoreAgentError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
        net = PeftModel.from_pretrained(net, adapter)
        if merge:
            net = net.merge_and_unload()
    net.to(device)
    net.eval()
    return net, processor


BACKENDS = ("auto", "lean", "transformers")


def load_for_planning(model, adapter=None, dtype=None, device="cpu", processor_kwargs=None, backend=None):
    """(net, processor) for planning: the lean plain-torch path (:mod:`.lean`) when it reproduces the
    folder exactly -- the shipped planner and folders like it load in a fraction of the time, without
    transformers -- else transformers (:func:`load_model_and_processor`).

    ``backend``: ``auto`` (default; ``RESTOREAGENT_PLANNER_BACKEND`` overrides), ``lean`` (an error
    when the folder is not supported) or ``transformers``.
    """
    import os

    backend = backend or os.environ.get("RESTOREAGENT_PLANNER_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise RestoreAgentError(f"unknown planner backend {backend!r}; backends: {', '.join(BACKENDS)}")
    if backend != "transformers":
        why = "a LoRA adapter" if adapter is not None else None
        why = why or ("processor options" if processor_kwargs else None)
        why = why or (None if Path(model).is_dir() else "not a local folder")
        if why is None:
            from .lean import lean_support

            why = lean_support(model)
        if why is None:
            return _load_lean(model, dtype, device)
        if backend == "lean":
            raise RestoreAgentError(f"the lean planner path cannot run {model}: {why}")
    return load_model_and_processor(model, adapter, dtype, device, processor_kwargs)


def _load_lean(model, dtype, device):
    from safetensors import SafetensorError

    from .lean import load_lean

    try:
        return load_lean(model, dtype=dtype, device=device)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RestoreAgentError(f"cannot load planner model {model!r}: {first}") from None


class VLMPlanner:
    """Planner protocol implementation around a VLM: transformers', or the lean plain-torch one
    (:mod:`.lean`) for the shipped planner and folders like it."""

    name = "vlm"

    def __init__(
        self,
        model=None,
        adapter=None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        view: dict | ViewConfig | None = None,
        constrained: bool = True,
        tools: dict | None = None,
        processor_kwargs: dict | None = None,
        num_threads: int | None = None,
        max_new_tokens: int | None = None,
        net=None,
        processor=None,
        saw: str | None = None,
        backend: str | None = None,
        plan_scorer: str | None = None,
    ):
        """``tools`` (task -> names) fixes the tool set instead of asking the registry at each plan.

        ``num_threads``: torch CPU threads while planning (restored afterwards); by default 1 for
        small models (under 50M parameters), whose layers are too small to gain from more threads and
        lose much when the cores are busy. ``net`` and ``processor`` wrap an already loaded model.
        ``backend``: how the model is loaded (:func:`load_for_planning`; default: the lean path when it
        supports the folder).
        """
        if net is None:
            base, adapter = resolve_model(model, adapter)
            net, processor = load_for_planning(base, adapter, dtype, device, processor_kwargs, backend)
            meta = (read_meta(adapter) or read_meta(Path(adapter).parent)) if adapter else {}
            meta = meta or read_meta(base)
        else:
            meta = {}
            base = model
        if processor is None:
            raise RestoreAgentError("VLMPlanner(net=...) also needs processor=")
        self.net, self.processor, self.tokenizer = net, processor, getattr(processor, "tokenizer", processor)
        self.source = str(base)
        if view is None:
            view = meta.get("view", {"layout": "none"})
        self.view = view if isinstance(view, ViewConfig) else ViewConfig(**view)
        self.constrained = constrained
        # "detector": the answer's "saw:" part is the calibrated detector's decision (on as many
        # tiles as the planner's view shows), forced as the start of the answer, and the language
        # model plans from there (order and tools); "model": the model says what it saw itself.
        self.saw = saw or meta.get("saw", "model")
        if self.saw not in ("model", "detector"):
            raise RestoreAgentError(f"saw must be 'model' or 'detector', got {self.saw!r}")
        self.detector_tiles = int(meta.get("detector_tiles", 4))
        self.last_detection = None
        # "shipped" or a folder: the first answer's plan is the plan scorer's pick among every pipeline
        # for the detector's set (:mod:`restoreagent.planners.ranker`, trained on every labeled
        # candidate's score), read from the same tower pass; "none": the language model's own plan.
        scorer = plan_scorer or meta.get("plan_scorer", "none")
        if scorer != "none" and self.saw != "detector":
            raise RestoreAgentError("a plan scorer needs saw='detector' (it plans for the detector's set)")
        self.plan_scorer = None if scorer == "none" else scorer
        self._ranker = None
        self.last_features = None
        self.tools = tools
        self.max_new_tokens = max_new_tokens
        self.eos_ids = eos_ids(net, self.tokenizer)
        if num_threads is None and sum(p.numel() for p in net.parameters()) < SMALL_MODEL:
            num_threads = 1
        self.num_threads = num_threads
        self._strings = None
        self._constraints: OrderedDict = OrderedDict()
        self._warned: set[str] = set()
        self.last_text: str | None = None
        self.last_seconds: float | None = None

    # --- pieces ---------------------------------------------------------------------------
    def grammar(self, history: History | None) -> AnswerGrammar:
        tools = self.tools if self.tools is not None else installed_tools()
        return AnswerGrammar.for_history(history, tools)

    def constraint(self, grammar: AnswerGrammar) -> TokenConstraint:
        key = grammar.key()
        if key not in self._constraints:
            if self._strings is None:
                self._strings = token_strings(self.tokenizer)
            con = TokenConstraint(grammar, self._strings, self.eos_ids)
            missing = [m for m in con.unnameable_tools() if m not in self._warned]
            if missing:
                self._warned.update(missing)
                log.warning(
                    "the planner %s cannot name installed tools %s (not in its vocabulary); to use them, "
                    "extend it (restoreagent planner extend) and fine-tune it (train/train_planner.py)",
                    self.source,
                    ", ".join(missing),
                )
            self._constraints[key] = con
            while len(self._constraints) > 32:
                self._constraints.popitem(last=False)
        self._constraints.move_to_end(key)
        return self._constraints[key]

    def prompt_text(self, history: History | None) -> str:
        return self.processor.apply_chat_template(
            user_messages(prompt(history)), add_generation_prompt=True, tokenize=False
        )

    def inputs(self, image, history: History | None):
        view = planner_view(image, self.view)
        enc = self.processor(
            text=[self.prompt_text(history)], images=[[view]], return_tensors="pt", add_special_tokens=False
        )
        return enc.to(self.net.device)

    def forced_prefix(self, image, history: History | None, enc=None) -> str:
        """The start of the answer that is not left to the model ("" when it says all of it).

        With ``saw="detector"`` the first answer for an image (not a reply after executed steps,
        which may be a rollback) starts with the detector's set: ``saw: noise, jpeg | plan:``.
        When the vision tower is the detector (:mod:`.perception_tower`), its output on the view's
        tiles gives the decision (calibrated by the shipped detector's thresholds) and is handed
        back to the tower for the generation, so the network runs once.
        """
        import torch

        if self.saw != "detector" or (history is not None and history.last_step is not None):
            return ""
        detector = default_detector()
        tower = getattr(getattr(self.net, "model", None), "vision_tower", None)
        # the perception tower (transformers' or the lean path's): it has split_tokens and reuse_once
        if hasattr(tower, "split_tokens") and hasattr(tower, "reuse_once") and enc is not None and "pixel_values" in enc:
            # the planner's thread count (1 for small models) here too: on 2 busy cores a second
            # thread made this 40-ms network several times slower (docs/performance.md)
            cpu = self.net.device.type == "cpu"
            with _torch_threads(self.num_threads if cpu else None), torch.inference_mode():
                out = tower(enc["pixel_values"])
            tower.reuse_once(enc["pixel_values"], out)
            emb, logits, sev = tower.split_tokens(out.last_hidden_state[0].float())
            logits, sev = logits.mean(0).cpu().numpy(), sev.mean(0).cpu().numpy()
            self.last_detection = detector.decide(logits, sev, tiles=int(emb.shape[0]))
        else:
            logits, sev, emb = detector.raw(image, max_tiles=self.detector_tiles)
            self.last_detection = detector.decide(logits, sev, tiles=int(emb.shape[0]))
        from ..ranker.features import features_from_raw

        self.last_features = features_from_raw(logits, sev, emb)
        return Answer(tuple(self.last_detection.degradations), Plan.of([])).text().rsplit(" ", 1)[0]

    # --- the protocol -----------------------------------------------------------------------
    def generate_text(self, image, history: History | None = None) -> str:
        import torch

        t0 = time.perf_counter()
        enc = self.inputs(image, history)
        n = enc["input_ids"].shape[1]
        prefix = self.forced_prefix(image, history, enc)
        if prefix:  # generation continues the forced words; the grammar checks them like generated ones
            ids = self.tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.net.device)
            enc["input_ids"] = torch.cat([enc["input_ids"], ids], dim=1)
            enc["attention_mask"] = torch.cat([enc["attention_mask"], torch.ones_like(ids)], dim=1)
        kw = {}
        grammar = self.grammar(history)
        if self.constrained:
            con = self.constraint(grammar)
            kw["logits_processor"] = [make_logits_processor(con, n)]
        pad = self.tokenizer.pad_token_id
        try:
            with (
                _torch_threads(self.num_threads if self.net.device.type == "cpu" else None),
                torch.inference_mode(),
            ):
                out = self.net.generate(
                    **enc,
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=self.max_new_tokens or grammar.max_chars() + 2,
                    eos_token_id=self.eos_ids,
                    pad_token_id=pad if pad is not None else self.eos_ids[0],
                    **kw,
                )
        finally:
            tower = getattr(getattr(self.net, "model", None), "vision_tower", None)
            if hasattr(tower, "reuse_once"):
                tower.reuse_once(None)
        ids = out[0, n:].tolist()
        if self.constrained:
            text = con.text(ids)
        else:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        self.last_text = text.strip()
        self.last_seconds = time.perf_counter() - t0
        return self.last_text

    def generate_texts(self, image, history: History | None = None, k: int = 4) -> list[str]:
        """Up to ``k`` distinct constrained answers, best first (beam search with ``k`` beams).

        The answers "not satisfied? the next plan" offers (:meth:`restoreagent.Agent.alternatives`):
        beams are ranked by the model's total log-probability, so the first is usually the greedy
        answer. Beams that spell the same text in different tokens are merged.
        """

        if k < 1:
            raise RestoreAgentError(f"k must be at least 1, got {k}")
        texts = self._beam_texts(image, history, max(k, 2))  # one beam would be greedy search: one answer
        if len(texts) < k:  # beams that spelled one answer twice: search wider once
            texts = self._beam_texts(image, history, 2 * k)
        return texts[:k]

    def _beam_texts(self, image, history: History | None, beams: int) -> list[str]:
        import torch

        enc = self.inputs(image, history)
        n = enc["input_ids"].shape[1]
        prefix = self.forced_prefix(image, history, enc)
        if prefix:
            ids = self.tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.net.device)
            enc["input_ids"] = torch.cat([enc["input_ids"], ids], dim=1)
            enc["attention_mask"] = torch.cat([enc["attention_mask"], torch.ones_like(ids)], dim=1)
        grammar = self.grammar(history)
        con = self.constraint(grammar)
        max_new = self.max_new_tokens or grammar.max_chars() + 2
        tower = getattr(getattr(self.net, "model", None), "vision_tower", None)
        try:
            with (
                _torch_threads(self.num_threads if self.net.device.type == "cpu" else None),
                torch.inference_mode(),
            ):
                if hasattr(self.net, "select_past"):  # a model whose forward() takes and returns a cache (lean)
                    rows = beam_search(self.net, enc, n, con, beams, max_new)
                else:  # transformers
                    if hasattr(tower, "reuse_once"):  # beams expand pixel_values: the tower runs on the copies
                        tower.reuse_once(None)
                    pad = self.tokenizer.pad_token_id
                    out = self.net.generate(
                        **enc,
                        do_sample=False,
                        num_beams=beams,
                        num_return_sequences=beams,
                        early_stopping=True,
                        max_new_tokens=max_new,
                        eos_token_id=self.eos_ids,
                        pad_token_id=pad if pad is not None else self.eos_ids[0],
                        logits_processor=[make_logits_processor(con, n)],
                    )
                    rows = out[:, n:].tolist()
        finally:
            if hasattr(tower, "reuse_once"):
                tower.reuse_once(None)
        texts: list[str] = []
        for row in rows:
            text = con.text(row).strip()
            if grammar.accepts(text) and text not in texts:
                texts.append(text)
        return texts

    @property
    def ranker(self):
        if self._ranker is None:
            from ..ranker import RankerPlanner

            self._ranker = RankerPlanner(model=None if self.plan_scorer == "shipped" else self.plan_scorer)
        return self._ranker

    def scored_answers(self, image, history: History | None, k: int) -> list[Answer] | None:
        """With a plan scorer, the first answer for an image: the detector's set (the tower's pass)
        and the scorer's ``k`` best pipelines for it; None when the language model answers instead
        (no scorer, or a reply after executed steps, which may be a rollback)."""
        if self.plan_scorer is None or (history is not None and history.last_step is not None):
            return None
        t0 = time.perf_counter()
        enc = self.inputs(image, history)
        try:
            self.forced_prefix(image, history, enc)
        finally:
            tower = getattr(getattr(self.net, "model", None), "vision_tower", None)
            if hasattr(tower, "reuse_once"):
                tower.reuse_once(None)
        saw = tuple(self.last_detection.degradations)
        allowed = self.tools or installed_tools()
        with _torch_threads(self.num_threads if self.net.device.type == "cpu" else None):
            ranked = self.ranker.ranked(self.last_features, saw)
        plans = [p for p in ranked if all(s.tool in allowed.get(s.task, ()) for s in p)]
        answers = [Answer(saw, p) for p in plans[:k]] or [Answer(saw, Plan())]
        if len(answers) < k:  # a small set has few pipelines: then what the detector may have got wrong
            for other in self._neighbour_sets(saw):
                with _torch_threads(self.num_threads if self.net.device.type == "cpu" else None):
                    more = self.ranker.ranked(self.last_features, other, k - len(answers))
                answers += [Answer(other, p) for p in more
                            if all(s.tool in allowed.get(s.task, ()) for s in p) and all(p != a.plan for a in answers)]
                if len(answers) >= k:
                    break
        answers = answers[:k]
        self.last_text = answers[0].text()
        self.last_seconds = time.perf_counter() - t0
        return answers

    def _neighbour_sets(self, saw: tuple[str, ...]) -> list[tuple[str, ...]]:
        """Degradation sets one change away from the detector's, most plausible first: the absent
        degradations it rated likeliest added, then the present one it was least sure of removed."""
        from ...tasks import physical_order

        probs = self.last_detection.probabilities
        plannable = set(plannable_degradations(self.tools or installed_tools()))
        absent = sorted((d for d in probs if d not in saw and d in plannable), key=lambda d: -probs[d])
        sets = [tuple(physical_order((*saw, d))) for d in absent[:3]]
        if len(saw) > 1:
            weakest = min(saw, key=lambda d: probs.get(d, 0.0))
            sets.append(tuple(d for d in saw if d != weakest))
        return sets

    def plan_candidates(self, request, k: int = 4) -> list[Answer]:
        """Up to ``k`` distinct answers for ``request``, best first (see :meth:`generate_texts`)."""
        scored = self.scored_answers(request.image, request.history, k)
        if scored is not None:
            return scored
        return [parse_answer(t, check_tools=self.tools is None) for t in self.generate_texts(request.image, request.history, k)]

    def plan(self, request) -> Answer:
        scored = self.scored_answers(request.image, request.history, 1)
        if scored is not None:
            return scored[0]
        text = self.generate_text(request.image, request.history)
        try:
            return parse_answer(text, check_tools=self.tools is None)
        except PlanError as e:  # only possible unconstrained
            raise PlanError(
                f"the VLM planner ({self.source}) answered something that does not parse: {e}"
            ) from None


def beam_search(net, enc, prompt_length: int, constraint: TokenConstraint, beams: int, max_new_tokens: int) -> list[list[int]]:
    """Constrained beam search on a model whose ``forward(input_ids, pixel_values=, past=)`` returns
    ``(logits, past)`` and whose ``select_past(past, index)`` picks cache rows (the lean path).

    As ``transformers``' beam search: a beam's score is its tokens' log-probabilities under the
    model (the grammar masks tokens, it does not renormalise), a finished answer is ranked by that
    sum divided by its length, and the search stops once ``beams`` answers are finished. Returns
    the generated ids after ``prompt_length`` (forced words included), best first.
    """
    import torch

    eos = set(constraint.eos_ids)
    ids = enc["input_ids"]
    forced = tuple(ids[0, prompt_length:].tolist())  # words written for the model (the detector's set)
    logits, past = net(ids, pixel_values=enc.get("pixel_values"))
    live: list[tuple[tuple[int, ...], float]] = [(forced, 0.0)]
    finished: list[tuple[float, tuple[int, ...]]] = []
    last = logits[:, -1, :]
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(last.float(), dim=-1)
        cands = []
        for b, (seq, score) in enumerate(live):
            allowed = list(constraint.allowed_after(seq) or constraint.eos_ids)
            vals = logp[b, allowed]
            top = torch.topk(vals, min(2 * beams, len(allowed)))
            cands += [(score + v, b, allowed[i]) for v, i in zip(top.values.tolist(), top.indices.tolist())]
        cands.sort(key=lambda c: -c[0])
        nxt = []
        for score, b, tok in cands:
            seq = live[b][0] + (tok,)
            if tok in eos:
                finished.append((score / (len(seq) - len(forced)), seq))
            else:
                nxt.append((seq, score, b))
            if len(nxt) == beams:
                break
        if len(finished) >= beams or not nxt:
            break
        past = net.select_past(past, torch.tensor([b for _, _, b in nxt], device=last.device))
        step = torch.tensor([[seq[-1]] for seq, _, _ in nxt], device=last.device)
        logits, past = net(step, past=past)
        last = logits[:, -1, :]
        live = [(seq, score) for seq, score, _ in nxt]
    finished.sort(key=lambda f: -f[0])
    return [list(seq) for _, seq in finished[:beams]]
