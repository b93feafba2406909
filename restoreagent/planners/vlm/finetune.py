"""Fine-tuning set-up: the base model of a run (built, loaded or extended with new words), and
full training or LoRA on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ...config import build
from ...errors import RestoreAgentError
from ...jobs.train_planner import NEW_TOKEN_MODES, FinetuneOptions, LoraOptions, PlannerOptions
from .build_default import build_default, catalogue_tools, read_meta
from .extend import EXTENSIONS, extend_planner, merged_tools, missing_words, unnameable_steps
from .planner import resolve_model
from .tiny import TINY_BUILDERS

log = logging.getLogger(__name__)


def _leaf_name(net, module) -> str | None:
    """The last part of the name ``module`` has inside ``net`` (e.g. ``embed_tokens``, ``lm_head``)."""
    return next((n.rsplit(".", 1)[-1] for n, m in net.named_modules() if m is module and n), None)


def lora_config(cfg: LoraOptions, new_token_ids: Sequence[int] = (), net=None):
    """The peft LoraConfig of ``finetune.lora``; ``new_token_ids`` (tokens added to the vocabulary
    since the model was trained, see :mod:`.extend`) get trainable embedding and head rows.

    ``lora.new_tokens``: ``trainable_tokens`` (peft's ``trainable_token_indices``: only those rows,
    tied head included, saved in the adapter as a small delta), ``modules_to_save`` (the whole input
    embedding and output head are trained and saved with the adapter) or ``frozen``.
    """
    from peft import LoraConfig

    cfg = build(LoraOptions, cfg)
    fields = LoraConfig.__dataclass_fields__
    kw = {}
    modules_to_save = list(cfg.modules_to_save or [])
    how = cfg.new_tokens
    if how not in NEW_TOKEN_MODES:
        raise RestoreAgentError(
            f"finetune.lora.new_tokens must be one of {', '.join(NEW_TOKEN_MODES)}, got {how!r}"
        )
    if new_token_ids and how == "trainable_tokens" and "trainable_token_indices" in fields:
        kw["trainable_token_indices"] = sorted(int(i) for i in new_token_ids)
    elif new_token_ids and how != "frozen":  # modules_to_save (asked, or an older peft)
        if net is None:
            raise ValueError("lora_config: pass net= to train new tokens with modules_to_save")
        for m in (net.get_input_embeddings(), net.get_output_embeddings()):
            name = _leaf_name(net, m) if m is not None else None
            if name and name not in modules_to_save:
                modules_to_save.append(name)
        if "ensure_weight_tying" in fields:
            kw["ensure_weight_tying"] = True
    return LoraConfig(
        r=int(cfg.r),
        lora_alpha=int(cfg.alpha),
        lora_dropout=float(cfg.dropout),
        target_modules=cfg.target_modules,
        modules_to_save=modules_to_save or None,
        bias="none",
        **kw,
    )


def apply_finetune_mode(net, finetune: FinetuneOptions, new_token_ids: Sequence[int] = ()):
    """Full training (every parameter) or LoRA (peft) on the attention projections.

    With LoRA, the embedding and head rows of ``new_token_ids`` are trained too (:func:`lora_config`).
    """
    finetune = build(FinetuneOptions, finetune)
    mode = finetune.mode
    if mode == "full":
        for p in net.parameters():
            p.requires_grad_(True)
        if finetune.freeze_vision:
            for n, p in net.named_parameters():
                if "vision" in n or "visual" in n:
                    p.requires_grad_(False)
        return net
    if mode == "lora":
        from peft import get_peft_model

        return get_peft_model(net, lora_config(finetune.lora, new_token_ids, net))
    raise RestoreAgentError(f"finetune.mode must be 'full' or 'lora', got {mode!r}")


def count_parameters(net) -> tuple[int, int]:
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return trainable, total


def prepare_base(planner_cfg: PlannerOptions, run_dir: Path) -> tuple[str, dict]:
    """The base model folder or name for a run (built into ``run_dir/base`` when asked), and its meta."""
    build = planner_cfg.build
    if build:
        base = run_dir / "base"
        if not (base / "config.json").is_file():
            if build == "default":
                sizes = dict(planner_cfg.sizes or {})
                view = planner_cfg.view
                if view is not None:
                    sizes["view_size"] = int(view.size)
                tools = planner_cfg.tools
                build_default(
                    base,
                    seed=int(planner_cfg.seed),
                    sizes=sizes,
                    tools=dict(tools) if tools else None,
                    layout=view.layout if view is not None else "mosaic_detail",
                )
            else:
                if build not in TINY_BUILDERS:
                    raise RestoreAgentError(
                        f"unknown planner build {build!r}; builds: default, {', '.join(TINY_BUILDERS)}"
                    )
                TINY_BUILDERS[build](base, seed=int(planner_cfg.seed))
        return str(base), read_meta(base)
    model, adapter = resolve_model(planner_cfg.model)
    if adapter is not None:
        raise RestoreAgentError(
            f"{model}: continuing from a LoRA adapter is not supported; merge it first (restoreagent planner merge SRC -o DST)"
        )
    if planner_cfg.extend_vocabulary:
        extended = extend_base(model, planner_cfg, run_dir)
        if extended is not None:
            return extended
    return model, read_meta(model)


def extend_base(model: str, planner_cfg: PlannerOptions, run_dir: Path) -> tuple[str, dict] | None:
    """Give a word-level starting planner the words of every tool it cannot name yet.

    The tools are the catalogue's (installed or not) and ``planner.tools``. The extended copy is
    written to ``run_dir/base`` (the starting folder is never changed) and reused when the run is
    resumed. None when nothing is missing (or the tokenizer spells any name: real VLMs).
    """
    from transformers import AutoTokenizer

    base = run_dir / "base"
    meta = read_meta(base) if (base / "config.json").is_file() else {}
    if any(e.get("source") == str(model) for e in meta.get(EXTENSIONS, []) or []):
        log.info("planner: continuing with %s, the copy of %s extended earlier in this run", base, model)
        return str(base), meta
    tools = merged_tools(catalogue_tools(), dict(planner_cfg.tools or {}))
    tok = AutoTokenizer.from_pretrained(model)
    words = missing_words(tok, tools)
    if not words:
        return None
    extend_planner(model, base, tools, overwrite=True)
    steps = unnameable_steps(words, tools)
    log.info(
        "planner: %s cannot name %d tools (%s); added %d words to its vocabulary (new embedding and head "
        "rows start from the mean of their task's tools) in %s; set planner.extend_vocabulary=false not to",
        model,
        len(steps),
        ", ".join(steps),
        len(words),
        base,
    )
    return str(base), read_meta(base)
