"""The learned planner: any transformers image-text-to-text model (+ optional LoRA), constrained.

    VLMPlanner()                                   # the shipped default (restoreagent/assets/planner)
    VLMPlanner("runs/planner/x/final")             # a trained folder (an adapter/ inside is used)
    VLMPlanner("HuggingFaceTB/SmolVLM-256M-Instruct", adapter="runs/planner/y/final/adapter")

The prompt is :func:`restoreagent.dialogue.prompt` in the model's chat template, with the planner
view of the image (:mod:`.view`). Decoding is greedy and constrained by :mod:`.grammar`, so the
answer always parses and only names tools that are installed now.
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
from .grammar import AnswerGrammar, TokenConstraint, installed_tools, make_logits_processor, token_strings
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


class VLMPlanner:
    """Planner protocol implementation around a transformers VLM."""

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
    ):
        """``tools`` (task -> names) fixes the tool set instead of asking the registry at each plan.

        ``num_threads``: torch CPU threads while planning (restored afterwards); by default 1 for
        small models (under 50M parameters), whose layers are too small to gain from more threads and
        lose much when the cores are busy. ``net`` and ``processor`` wrap an already loaded model.
        """
        if net is None:
            base, adapter = resolve_model(model, adapter)
            net, processor = load_model_and_processor(base, adapter, dtype, device, processor_kwargs)
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

        from .perception_tower import PerceptionVisionModel

        if self.saw != "detector" or (history is not None and history.last_step is not None):
            return ""
        detector = default_detector()
        tower = getattr(getattr(self.net, "model", None), "vision_tower", None)
        if isinstance(tower, PerceptionVisionModel) and enc is not None and "pixel_values" in enc:
            with torch.inference_mode():
                out = tower(enc["pixel_values"])
            tower.reuse_once(enc["pixel_values"], out)
            _, logits, sev = tower.split_tokens(out.last_hidden_state[0].float())
            self.last_detection = detector.decide(logits.mean(0).cpu().numpy(), sev.mean(0).cpu().numpy(), tiles=int(logits.shape[0]))
        else:
            self.last_detection = detector.detect(image, max_tiles=self.detector_tiles)
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

    def plan(self, request) -> Answer:
        text = self.generate_text(request.image, request.history)
        try:
            return parse_answer(text, check_tools=self.tools is None)
        except PlanError as e:  # only possible unconstrained
            raise PlanError(
                f"the VLM planner ({self.source}) answered something that does not parse: {e}"
            ) from None
