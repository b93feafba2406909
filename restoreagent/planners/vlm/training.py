"""Training the VLM planner: a dataset on disk -> the collator -> an accelerate loop (full or LoRA).

Data is a Hugging Face ``datasets`` dataset saved with ``save_to_disk``, with columns ``image``
(``datasets.Image``), ``prompt`` (str), ``target`` (an :class:`~restoreagent.dialogue.Answer` text)
and ``scenario`` (str); a ``DatasetDict`` with ``train`` and ``validation`` splits, or one split
from which a validation part is held out. The labeled SFT set comes from
``restoreagent dataset build-sft``; until then :func:`build_stage1_dataset` makes a stage-1 set
with the degradation generator whose target is the true degradations and the fixed expert recipe
(catalog/fixed_recipe.yaml) -- it teaches perception first.

The loss is on the answer tokens only: prompt, image and padding tokens are labelled -100
(:class:`PlannerCollator`). :func:`train` is driven by the hydra app ``train/train_planner.py``;
checkpoints carry their config and the run resumes from the last one with ``resume=true``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...dialogue import QUESTION, Answer, parse_answer
from ...errors import PlanError, RestoreAgentError
from ...imageio import list_images
from ...plan import Plan
from ...tasks import CORE_DEGRADATIONS, DEGRADATIONS, TASK_FOR_DEGRADATION
from .build_default import read_meta, write_meta
from .planner import VLMPlanner, eos_ids, user_messages
from .view import ViewConfig, planner_view

log = logging.getLogger(__name__)

STAGE1 = "stage1"
# Attention projections of both the vision tower and the language model, across families:
# SigLIP/CLIP/Idefics3 (q,k,v,out_proj), Llama/Qwen2 (q,k,v,o_proj), Qwen2-VL vision (attn.qkv, attn.proj).
LORA_TARGET = r".*(self_attn|attn|attention)\.(q_proj|k_proj|v_proj|o_proj|out_proj|qkv|proj)$"


# --------------------------------------------------------------------------------------------
# stage-1 data: degradation generator -> (image, prompt, target)
# --------------------------------------------------------------------------------------------
def stage1_plan(degradations: Sequence[str], tools: Mapping[str, Sequence[str]]) -> Plan:
    """The fixed expert recipe's plan for these degradations, with installed tools only."""
    from ..baselines import fixed_recipe

    return Plan.of(fixed_recipe({TASK_FOR_DEGRADATION[d] for d in degradations}, tools=tools))


def stage1_target(degradations: Sequence[str], tools: Mapping[str, Sequence[str]]) -> str:
    return Answer(tuple(degradations), stage1_plan(degradations, tools)).text()


def skimage_images() -> list[np.ndarray]:
    """The colour photographs scikit-image ships (for tests and machines without ../shared)."""
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "colorwheel"]
    out = []
    for n in names:
        try:
            a = getattr(data, n)()
        except Exception:  # noqa: BLE001 - some need pooch downloads on some versions
            continue
        if a.ndim == 3 and a.shape[2] >= 3:
            out.append(np.ascontiguousarray(a[..., :3]).astype(np.float32) / 255.0)
    return out


def _random_crop(img: np.ndarray, rng: np.random.Generator, crop: int, scale_range) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = float(rng.uniform(*scale_range))
    s = max(s, crop / min(h, w))  # never smaller than the crop
    if abs(s - 1.0) > 1e-3:
        img = cv2.resize(
            img,
            (max(crop, round(w * s)), max(crop, round(h * s))),
            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
        )
        h, w = img.shape[:2]
    y = int(rng.integers(0, h - crop + 1))
    x = int(rng.integers(0, w - crop + 1))
    return np.ascontiguousarray(img[y : y + crop, x : x + crop])


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    a = (np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def stage1_examples(
    images,
    n: int,
    seed: int = 0,
    crop: int = 256,
    k_weights=(0.1, 0.3, 0.3, 0.2, 0.1),
    scale_range=(0.5, 1.0),
    tools=None,
    camera: float = 0.0,
    p_snow: float = 0.0,
    targets: str = "fixed",
):
    """Yield ``n`` stage-1 examples (dicts with PNG bytes) made from clean ``images``.

    ``images``: paths or float arrays. ``k_weights[k]`` is the probability of k degradations.
    ``camera``: probability of camera-realism parameters per degradation (``degrade(camera=)``);
    ``p_snow``: probability of adding the ``snow`` extension. ``targets``: ``fixed`` (the fixed
    recipe) or ``severity`` (its tools matched to the recorded severity,
    :func:`restoreagent.planners.baselines.severity_matched_plan`).
    Example ``i`` depends only on ``(seed, i)``, so sets are reproducible and extendable
    (the defaults give the bytes they always gave).
    """
    from ...degradations import degrade, sample_combination
    from ...imageio import load_image
    from .grammar import installed_tools

    tools = installed_tools() if tools is None else tools
    if not len(images):
        raise RestoreAgentError("no clean images to make stage-1 examples from")
    p = np.asarray(k_weights, dtype=np.float64)
    p = p / p.sum()
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        j = int(rng.integers(len(images)))
        src = images[j]
        img = load_image(src) if isinstance(src, str | Path) else src
        size = int(rng.choice(crop)) if isinstance(crop, list | tuple) else crop  # a list: one size per example
        img = _random_crop(img, rng, size, scale_range)
        k = int(rng.choice(len(p), p=p))
        snow = p_snow > 0 and rng.random() < p_snow
        if k > 0 or snow:
            dseed = int(rng.integers(2**31))
            if snow:
                names = sample_combination(np.random.default_rng([dseed, 0]), k) if k else []
                img, record = degrade(img, chain=[*names, "snow"], seed=dseed, camera=camera)
            else:
                img, record = degrade(img, k=k, seed=dseed, camera=camera)
            record = {**record, "source": str(src) if isinstance(src, str | Path) else f"array{j}"}
        else:
            record = {"seed": None, "chain": [], "degradations": [], "source": str(src)}
        if targets == "severity":
            from ..baselines import severity_matched_plan

            target = Answer(tuple(record["degradations"]), severity_matched_plan(record)).text()
        else:
            target = stage1_target(record["degradations"], tools)
        yield {
            "image": {"bytes": _png(img), "path": None},
            "prompt": QUESTION,
            "target": target,
            "scenario": STAGE1,
            "record": json.dumps(record),
        }


def _features():
    from datasets import Features, Image, Value

    return Features(
        {
            "image": Image(),
            "prompt": Value("string"),
            "target": Value("string"),
            "scenario": Value("string"),
            "record": Value("string"),
        }
    )


def stage1_dataset(images, n: int, **kw):
    """An in-memory ``datasets.Dataset`` of stage-1 examples (small sets, tests)."""
    from datasets import Dataset

    return Dataset.from_list(list(stage1_examples(images, n, **kw)), features=_features())


def build_stage1_dataset(
    out, train_images, n_train: int, val_images=None, n_val: int = 0, seed: int = 0, **kw
) -> Path:
    """Write a stage-1 ``DatasetDict`` (train [+ validation]) to ``out`` with ``save_to_disk``.

    Validation examples come from ``val_images`` (other photos) with another seed stream.
    """
    from datasets import Dataset, DatasetDict

    out = Path(out)
    cache = out.parent / (out.name + ".cache")

    def split(images, n, s):
        imgs = list_images(images) if images is not None and not _is_arrays(images) else images
        if images is None:
            imgs = skimage_images()
        # tuples: datasets would shard list-valued gen_kwargs into one generator call per item
        gen_kw = {
            "images": tuple(imgs),
            "n": n,
            "seed": s,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()},
        }
        return Dataset.from_generator(
            stage1_examples, gen_kwargs=gen_kw, features=_features(), cache_dir=str(cache)
        )

    parts = {"train": split(train_images, n_train, seed)}
    if n_val:
        parts["validation"] = split(
            val_images if val_images is not None else train_images, n_val, seed + 10_000
        )
    DatasetDict(parts).save_to_disk(str(out))
    shutil.rmtree(cache, ignore_errors=True)
    return out


def _crop_sizes(crop):
    """``data.stage1.crop``: one size, or a list of sizes drawn per example."""
    return tuple(int(c) for c in crop) if isinstance(crop, list | tuple) or hasattr(crop, "__len__") else int(crop)


def _is_arrays(images) -> bool:
    return isinstance(images, list | tuple) and bool(images) and isinstance(images[0], np.ndarray)


def load_splits(path, val_fraction: float = 0.05, seed: int = 0, max_val: int | None = None):
    """(train, validation) from a dataset folder; holds out ``val_fraction`` when there is no split."""
    from datasets import Dataset, DatasetDict, load_from_disk

    p = Path(path)
    if not p.exists():
        raise RestoreAgentError(
            f"planner dataset {p} does not exist (build it: restoreagent dataset build-sft, "
            "or data.source=stage1)"
        )
    ds = load_from_disk(str(p))
    if isinstance(ds, DatasetDict):
        train = ds["train"] if "train" in ds else ds[next(iter(ds))]
        val = next((ds[k] for k in ("validation", "val", "dev", "test") if k in ds), None)
    else:
        train, val = ds, None
    assert isinstance(train, Dataset)
    missing = {"image", "prompt", "target"} - set(train.column_names)
    if missing:
        raise RestoreAgentError(
            f"planner dataset {p} lacks columns {sorted(missing)}; has {train.column_names}"
        )
    if val is None and val_fraction > 0 and len(train) > 1:
        parts = train.train_test_split(test_size=val_fraction, seed=seed)
        train, val = parts["train"], parts["test"]
    if val is not None and max_val is not None and len(val) > max_val:
        val = val.select(range(max_val))
    return train, val


def mix_replay(train, replay_path, ratio: float, seed: int = 0):
    """``train`` plus ``ratio * len(train)`` examples drawn from another dataset's train split.

    Used when tuning a planner on a new task: replaying examples of what it already does keeps
    it from forgetting them (only the columns both datasets share are kept).
    """
    from datasets import concatenate_datasets

    if ratio <= 0:
        return train
    old, _ = load_splits(replay_path, 0.0)
    n = min(len(old), int(round(ratio * len(train))))
    old = old.shuffle(seed=seed).select(range(n))
    cols = [c for c in train.column_names if c in set(old.column_names)]
    train, old = train.select_columns(cols), old.select_columns(cols)
    old = old.cast(train.features)
    return concatenate_datasets([train, old]).shuffle(seed=seed)


# --------------------------------------------------------------------------------------------
# the collator: examples -> model inputs with labels on the answer only
# --------------------------------------------------------------------------------------------
@dataclass
class PlannerCollator:
    """Builds batches for any chat VLM processor; labels only the answer and its end token.

    Each example is the user turn (image + prompt) and the assistant turn (target) in the
    processor's chat template. The answer part is what follows the generation prompt, cut right
    after the first end-of-turn token; its tokens are the only ones with labels.
    """

    processor: object
    view: ViewConfig
    eos_token_ids: Sequence[int] = ()
    augment: bool = False
    seed: int = 0

    def __post_init__(self):
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self._rng = np.random.default_rng(self.seed)
        ids = list(self.eos_token_ids) or [self.tokenizer.eos_token_id]
        self._eos_strings = [self.tokenizer.convert_ids_to_tokens(int(i)) for i in ids if i is not None]

    def split_texts(self, prompt_text: str, target: str) -> tuple[str, str]:
        """(prompt part, answer part) of the full chat text of one example."""
        msgs = user_messages(prompt_text)
        head = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        full = self.processor.apply_chat_template(
            msgs + [{"role": "assistant", "content": [{"type": "text", "text": target}]}], tokenize=False
        )
        if not full.startswith(head):
            raise RestoreAgentError(
                "the chat template does not render the generation prompt as a prefix of the "
                "conversation; cannot tell the answer tokens apart"
            )
        answer = full[len(head) :]
        at = answer.find(target)
        ends = [(answer.find(e, at + len(target)), e) for e in self._eos_strings if e]
        ends = [(i, e) for i, e in ends if i >= 0]
        if ends:
            i, e = min(ends)
            answer = answer[: i + len(e)]
        else:
            answer = answer + (self.tokenizer.eos_token or "")
        return head, answer

    def __call__(self, examples: Sequence[Mapping]) -> dict:
        import torch

        texts, images, answers = [], [], []
        for ex in examples:
            head, answer = self.split_texts(ex["prompt"], ex["target"])
            texts.append(head + answer)
            answers.append(answer)
            rng = self._rng if self.augment else None
            images.append([planner_view(_as_array(ex["image"]), self.view, rng=rng)])
        old_side = getattr(self.tokenizer, "padding_side", "right")
        self.tokenizer.padding_side = "right"
        try:
            batch = self.processor(
                text=texts, images=images, padding=True, return_tensors="pt", add_special_tokens=False
            )
        finally:
            self.tokenizer.padding_side = old_side
        ids = batch["input_ids"]
        labels = torch.full_like(ids, -100)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for b, answer in enumerate(answers):
            ans = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            end = int(lengths[b])
            got = ids[b, end - len(ans) : end].tolist()
            if got != ans:
                raise RestoreAgentError(
                    "the answer does not tokenize the same alone and inside the conversation "
                    f"({self.tokenizer.convert_ids_to_tokens(got)} vs {self.tokenizer.convert_ids_to_tokens(ans)})"
                )
            labels[b, end - len(ans) : end] = ids[b, end - len(ans) : end]
        batch["labels"] = labels
        return dict(batch)


def _as_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Mapping) and image.get("bytes") is not None:  # undecoded datasets.Image
        from PIL import Image

        image = Image.open(io.BytesIO(image["bytes"]))
    return np.asarray(image.convert("RGB"))


# --------------------------------------------------------------------------------------------
# models: build / load, full or LoRA
# --------------------------------------------------------------------------------------------
def _get(cfg, key, default=None):
    """cfg.key for dicts and OmegaConf alike, with a default."""
    if cfg is None:
        return default
    try:
        v = cfg[key] if key in cfg else default
    except TypeError:
        v = getattr(cfg, key, default)
    return default if v is None else v


NEW_TOKEN_MODES = ("trainable_tokens", "modules_to_save", "frozen")


def _leaf_name(net, module) -> str | None:
    """The last part of the name ``module`` has inside ``net`` (e.g. ``embed_tokens``, ``lm_head``)."""
    return next((n.rsplit(".", 1)[-1] for n, m in net.named_modules() if m is module and n), None)


def lora_config(cfg, new_token_ids: Sequence[int] = (), net=None):
    """The peft LoraConfig of ``finetune.lora``; ``new_token_ids`` (tokens added to the vocabulary
    since the model was trained, see :mod:`.extend`) get trainable embedding and head rows.

    ``lora.new_tokens``: ``trainable_tokens`` (peft's ``trainable_token_indices``: only those rows,
    tied head included, saved in the adapter as a small delta), ``modules_to_save`` (the whole input
    embedding and output head are trained and saved with the adapter) or ``frozen``.
    """
    from peft import LoraConfig

    fields = LoraConfig.__dataclass_fields__
    kw = {}
    modules_to_save = list(_get(cfg, "modules_to_save", []) or [])
    how = _get(cfg, "new_tokens", "trainable_tokens")
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
        r=int(_get(cfg, "r", 16)),
        lora_alpha=int(_get(cfg, "alpha", 32)),
        lora_dropout=float(_get(cfg, "dropout", 0.05)),
        target_modules=_get(cfg, "target_modules", LORA_TARGET),
        modules_to_save=modules_to_save or None,
        bias="none",
        **kw,
    )


def apply_finetune_mode(net, finetune, new_token_ids: Sequence[int] = ()):
    """Full training (every parameter) or LoRA (peft) on the attention projections.

    With LoRA, the embedding and head rows of ``new_token_ids`` are trained too (:func:`lora_config`).
    """
    mode = _get(finetune, "mode", "full")
    if mode == "full":
        for p in net.parameters():
            p.requires_grad_(True)
        if _get(finetune, "freeze_vision", False):
            for n, p in net.named_parameters():
                if "vision" in n or "visual" in n:
                    p.requires_grad_(False)
        return net
    if mode == "lora":
        from peft import get_peft_model

        return get_peft_model(net, lora_config(_get(finetune, "lora", {}), new_token_ids, net))
    raise RestoreAgentError(f"finetune.mode must be 'full' or 'lora', got {mode!r}")


def count_parameters(net) -> tuple[int, int]:
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return trainable, total


def prepare_base(planner_cfg, run_dir: Path) -> tuple[str, dict]:
    """The base model folder or name for a run (built into ``run_dir/base`` when asked), and its meta."""
    build = _get(planner_cfg, "build", None)
    if build:
        base = run_dir / "base"
        if not (base / "config.json").is_file():
            if build == "default":
                from .build_default import build_default

                sizes = dict(_get(planner_cfg, "sizes", {}) or {})
                view = _get(planner_cfg, "view", {}) or {}
                if "size" in view:
                    sizes["view_size"] = int(view["size"])
                tools = _get(planner_cfg, "tools", None)
                build_default(
                    base,
                    seed=int(_get(planner_cfg, "seed", 0)),
                    sizes=sizes,
                    tools=dict(tools) if tools else None,
                    layout=view.get("layout", "mosaic_detail"),
                )
            else:
                from .tiny import TINY_BUILDERS

                if build not in TINY_BUILDERS:
                    raise RestoreAgentError(
                        f"unknown planner build {build!r}; builds: default, {', '.join(TINY_BUILDERS)}"
                    )
                TINY_BUILDERS[build](base, seed=int(_get(planner_cfg, "seed", 0)))
        return str(base), read_meta(base)
    from .planner import resolve_model

    model, adapter = resolve_model(_get(planner_cfg, "model", None))
    if adapter is not None:
        raise RestoreAgentError(
            f"{model}: continuing from a LoRA adapter is not supported; merge it first (restoreagent planner merge SRC -o DST)"
        )
    if _get(planner_cfg, "extend_vocabulary", True):
        extended = extend_base(model, planner_cfg, run_dir)
        if extended is not None:
            return extended
    return model, read_meta(model)


def extend_base(model: str, planner_cfg, run_dir: Path) -> tuple[str, dict] | None:
    """Give a word-level starting planner the words of every tool it cannot name yet.

    The tools are the catalogue's (installed or not) and ``planner.tools``. The extended copy is
    written to ``run_dir/base`` (the starting folder is never changed) and reused when the run is
    resumed. None when nothing is missing (or the tokenizer spells any name: real VLMs).
    """
    from transformers import AutoTokenizer

    from .build_default import catalogue_tools
    from .extend import EXTENSIONS, extend_planner, merged_tools, missing_words, unnameable_steps

    base = run_dir / "base"
    meta = read_meta(base) if (base / "config.json").is_file() else {}
    if any(e.get("source") == str(model) for e in meta.get(EXTENSIONS, []) or []):
        log.info("planner: continuing with %s, the copy of %s extended earlier in this run", base, model)
        return str(base), meta
    tools = merged_tools(catalogue_tools(), dict(_get(planner_cfg, "tools", {}) or {}))
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


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
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
    from .grammar import AnswerGrammar, make_logits_processor

    planner = VLMPlanner(net=net, processor=processor, view=view, tools=tools)
    was_training = net.training
    net.eval()
    preds, targets = [], []
    t0 = time.perf_counter()
    import torch

    grammar = AnswerGrammar(planner.tools if planner.tools is not None else None, allow_rollback=True)
    con = planner.constraint(grammar)
    for i in range(min(max_n, len(dataset))):
        ex = dataset[i]
        head = processor.apply_chat_template(
            user_messages(ex["prompt"]), add_generation_prompt=True, tokenize=False
        )
        enc = processor(
            text=[head],
            images=[[planner_view(_as_array(ex["image"]), view)]],
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


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def _plain(cfg) -> dict:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return json.loads(json.dumps(cfg, default=str))


def _latest_checkpoint(run_dir: Path) -> Path | None:
    ck = sorted((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    ck = [c for c in ck if (c / "state.json").is_file()]
    return ck[-1] if ck else None


def _save_yaml(path: Path, cfg: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def resolve_resume(cfg: dict) -> tuple[dict, Path | None]:
    """The config to run with and the checkpoint to resume from (the checkpoint's config wins)."""
    resume = cfg.get("resume")
    if not resume:
        return cfg, None
    run_dir = Path(cfg["output_dir"])
    ck = (
        Path(resume)
        if isinstance(resume, str) and resume not in ("true", "True", "last", "auto")
        else _latest_checkpoint(run_dir)
    )
    if resume == "auto" and (ck is None or not (ck / "state.json").is_file()):
        return cfg, None  # auto: resume when there is a checkpoint, else start (scripts re-run safely)
    if ck is None or not (ck / "state.json").is_file():
        raise RestoreAgentError(f"resume: no checkpoint found under {run_dir / 'checkpoints'}")
    saved = _load_yaml(ck / "config.yaml")
    keep = {"resume": resume, "output_dir": str(ck.parent.parent)}
    saved.update(keep)
    if cfg.get("train", {}).get("max_steps") and cfg["train"]["max_steps"] != saved["train"].get("max_steps"):
        log.info("resume: max_steps %s -> %s", saved["train"].get("max_steps"), cfg["train"]["max_steps"])
        saved["train"]["max_steps"] = cfg["train"]["max_steps"]
    return saved, ck


def train(cfg) -> dict:
    """Run one training job from a config (the hydra app's, as a dict or DictConfig). Returns a summary."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor, get_cosine_schedule_with_warmup

    cfg = _plain(cfg)
    cfg, resume_from = resolve_resume(cfg)
    run_dir = Path(cfg["output_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    tcfg, pcfg, dcfg = cfg["train"], cfg["planner"], cfg["data"]
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg["num_threads"]))
    seed = int(tcfg.get("seed", 0))
    set_seed(seed)

    wb = cfg.get("wandb", {}) or {}
    use_wandb = bool(wb.get("enabled", False))
    if use_wandb:
        os.environ.setdefault("WANDB_MODE", wb.get("mode", "offline"))
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        try:
            import wandb  # noqa: F401
        except ImportError:
            log.warning("wandb is not installed; logging to the console only")
            use_wandb = False
    accelerator = Accelerator(
        gradient_accumulation_steps=int(tcfg.get("grad_accum", 1)),
        mixed_precision=tcfg.get("mixed_precision", "no"),
        log_with="wandb" if use_wandb else None,
        project_dir=str(run_dir),
        cpu=tcfg.get("device", "auto") == "cpu",
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    main = accelerator.is_main_process

    # --- data ---
    data_path = Path(dcfg["path"])
    if dcfg.get("source", "disk") == STAGE1 and not data_path.exists():
        s1 = dcfg.get("stage1", {}) or {}
        if main:
            log.info("building the stage-1 dataset in %s", data_path)
            build_stage1_dataset(
                data_path,
                s1.get("train_images"),
                int(s1.get("n_train", 2000)),
                s1.get("val_images"),
                int(s1.get("n_val", 200)),
                seed=int(s1.get("seed", 0)),
                crop=_crop_sizes(s1.get("crop", 256)),
                k_weights=tuple(s1.get("k_weights", (0.1, 0.3, 0.3, 0.2, 0.1))),
                tools=dict(pcfg["tools"]) if pcfg.get("tools") else None,
                camera=float(s1.get("camera", 0.0)),
                p_snow=float(s1.get("p_snow", 0.0)),
                targets=str(s1.get("targets", "fixed")),
            )
        accelerator.wait_for_everyone()
    train_ds, val_ds = load_splits(
        data_path, float(dcfg.get("val_fraction", 0.05)), seed, dcfg.get("max_val")
    )
    n_train = dcfg.get("max_train")
    if n_train and len(train_ds) > int(n_train):
        train_ds = train_ds.select(range(int(n_train)))
    replay = dcfg.get("replay") or {}
    if replay.get("path"):
        train_ds = mix_replay(train_ds, replay["path"], float(replay.get("ratio", 1.0)), seed)
        log.info("training on %d examples (new data + %s replayed)", len(train_ds), replay["path"])

    # --- model ---
    if resume_from is not None and (run_dir / "base").is_dir():
        pcfg = {**pcfg, "build": pcfg.get("build")}  # base already built: prepare_base reuses it
    if main:  # the main process builds or extends the base; the others then find it made
        base, meta = prepare_base(pcfg, run_dir)
    accelerator.wait_for_everyone()
    if not main:
        base, meta = prepare_base(pcfg, run_dir)
    view = ViewConfig(**(pcfg.get("view") or meta.get("view") or {"layout": "none"}))
    from . import perception_tower  # noqa: F401 - registers the detector as a vision model type

    processor = AutoProcessor.from_pretrained(base, **(pcfg.get("processor_kwargs") or {}))
    dtype = getattr(torch, pcfg.get("dtype", "float32"))
    net = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    if tcfg.get("gradient_checkpointing"):
        net.gradient_checkpointing_enable()
        if hasattr(net, "enable_input_require_grads"):
            net.enable_input_require_grads()
    finetune = pcfg.get("finetune", {}) or {}
    from .extend import extension_token_ids

    new_ids = extension_token_ids(meta, processor.tokenizer)
    if new_ids and main and finetune.get("mode", "full") == "lora":
        how = (finetune.get("lora") or {}).get("new_tokens") or "trainable_tokens"
        log.info("LoRA: the %d tokens added to the vocabulary are trained too (%s)", len(new_ids), how)
    net = apply_finetune_mode(net, finetune, new_ids)
    trainable, total = count_parameters(net)
    if main:
        log.info(
            "model %s: %s parameters, %s trainable (%s)",
            base,
            f"{total:,}",
            f"{trainable:,}",
            finetune.get("mode", "full"),
        )

    eos = eos_ids(net, processor.tokenizer)
    collate = PlannerCollator(processor, view, eos, augment=bool(dcfg.get("augment", True)), seed=seed)
    val_collate = PlannerCollator(processor, view, eos, augment=False)
    bs = int(tcfg.get("batch_size", 16))
    loader = DataLoader(
        train_ds,
        batch_size=bs,
        shuffle=True,
        collate_fn=collate,
        num_workers=int(tcfg.get("num_workers", 0)),
        drop_last=len(train_ds) > bs,
    )
    val_loader = (
        DataLoader(val_ds, batch_size=bs, shuffle=False, collate_fn=val_collate)
        if val_ds is not None and len(val_ds)
        else None
    )

    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params,
        lr=float(tcfg.get("lr", 1e-3)),
        weight_decay=float(tcfg.get("weight_decay", 0.01)),
        betas=(0.9, 0.98),
    )
    ga = int(tcfg.get("grad_accum", 1))
    steps_per_epoch = max(1, math.floor(len(loader) / ga))
    max_steps = int(tcfg.get("max_steps") or steps_per_epoch * int(tcfg.get("epochs", 1)))
    sched = get_cosine_schedule_with_warmup(opt, int(tcfg.get("warmup_steps", 0.05 * max_steps)), max_steps)
    net, opt, loader, sched = accelerator.prepare(net, opt, loader, sched)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    step = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        step = int(json.loads((resume_from / "state.json").read_text())["step"])
        if main:
            log.info("resumed from %s at step %d", resume_from, step)
    elif main:
        _save_yaml(run_dir / "config.yaml", cfg)

    if use_wandb:
        accelerator.init_trackers(
            wb.get("project", "restoreagent-planner"),
            config=cfg,
            init_kwargs={"wandb": {"dir": str(run_dir), "name": run_dir.name}},
        )

    def val_loss() -> float | None:
        if val_loader is None:
            return None
        net.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for batch in val_loader:
                out = net(**batch)
                k = int((batch["labels"] != -100).sum())
                tot += float(out.loss) * k
                cnt += k
        net.train()
        return tot / max(cnt, 1)

    def save_checkpoint():
        ck = run_dir / "checkpoints" / f"step_{step:07d}"
        accelerator.save_state(str(ck))
        if main:
            _save_yaml(ck / "config.yaml", cfg)
            (ck / "state.json").write_text(json.dumps({"step": step, "time": time.time()}) + "\n")
            keep = int(tcfg.get("keep_checkpoints", 2))
            old = sorted((run_dir / "checkpoints").glob("step_*"))[:-keep] if keep > 0 else []
            for o in old:
                shutil.rmtree(o, ignore_errors=True)

    history = []
    eval_every = int(tcfg.get("eval_every", 0) or 0)
    save_every = int(tcfg.get("save_every", 0) or 0)
    log_every = int(tcfg.get("log_every", 10))
    max_gen = int(tcfg.get("eval_generate", 50))
    tools = dict(pcfg["tools"]) if pcfg.get("tools") else None
    pbar = tqdm(total=max_steps, initial=step, disable=not main, desc="train planner", dynamic_ncols=True)
    net.train()
    epoch = step // steps_per_epoch
    running, running_n, t0 = 0.0, 0, time.perf_counter()
    while step < max_steps:
        loader.set_epoch(epoch)
        skip = (step - epoch * steps_per_epoch) * ga
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip > 0 else loader
        for batch in epoch_loader:
            with accelerator.accumulate(net):
                out = net(**batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and tcfg.get("max_grad_norm"):
                    accelerator.clip_grad_norm_(params, float(tcfg["max_grad_norm"]))
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            running += float(out.loss.detach())
            running_n += 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            pbar.update(1)
            if step % log_every == 0 or step == max_steps:
                rec = {
                    "step": step,
                    "loss": running / running_n,
                    "lr": sched.get_last_lr()[0],
                    "s_per_step": (time.perf_counter() - t0) / log_every,
                }
                running, running_n, t0 = 0.0, 0, time.perf_counter()
                pbar.set_postfix(loss=f"{rec['loss']:.4f}")
                accelerator.log({"train/loss": rec["loss"], "train/lr": rec["lr"]}, step=step)
                history.append(rec)
            if eval_every and (step % eval_every == 0 or step == max_steps):
                rec = {"step": step, "val_loss": val_loss()}
                if main and val_ds is not None and max_gen:
                    m = evaluate_generation(
                        accelerator.unwrap_model(net), processor, view, val_ds, max_gen, tools
                    )
                    rec.update({k: v for k, v in m.items() if k != "examples"})
                    log.info(
                        "step %d: %s",
                        step,
                        json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}),
                    )
                    for ex in m["examples"][:3]:
                        log.info("  pred %-60s target %s", ex["pred"], ex["target"])
                accelerator.log(
                    {f"val/{k}": v for k, v in rec.items() if isinstance(v, int | float) and k != "step"},
                    step=step,
                )
                history.append(rec)
            if save_every and step % save_every == 0:
                save_checkpoint()
            if step >= max_steps:
                break
        epoch += 1
    pbar.close()
    if save_every and not (run_dir / "checkpoints" / f"step_{step:07d}").exists():
        save_checkpoint()

    final = run_dir / "final"
    if main:
        save_final(accelerator.unwrap_model(net), processor, base, final, view, cfg, history)
        export = cfg.get("export")
        if export:
            export_planner(final, Path(export))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    summary = {"final": str(final), "steps": step, "history": history}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def save_final(net, processor, base: str, final: Path, view: ViewConfig, cfg: dict, history) -> Path:
    """A folder VLMPlanner loads: full weights, or base (when local) + ``adapter/``."""
    from peft import PeftModel

    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    extra = {
        "trained": True,
        "train_config": cfg,
        "last": history[-1] if history else None,
        "tools_at_training": cfg.get("planner", {}).get("tools"),
    }
    base_meta = read_meta(base) if Path(base).is_dir() else {}
    extra = {**{k: v for k, v in base_meta.items() if k not in ("version", "view")}, **extra, "trained": True}
    if isinstance(net, PeftModel):
        net.save_pretrained(final / "adapter")
        base_path = Path(base)
        if base_path.is_dir():  # a local base (the built default): ship it next to the adapter
            for f in base_path.iterdir():
                if f.is_file():
                    shutil.copy2(f, final / f.name)
            cfg_path = final / "adapter" / "adapter_config.json"
            ac = json.loads(cfg_path.read_text())
            ac["base_model_name_or_path"] = ".."  # resolved relative to the adapter by VLMPlanner
            cfg_path.write_text(json.dumps(ac, indent=2))
        else:
            processor.save_pretrained(final)
        write_meta(final / "adapter", view, extra)
    else:
        net.save_pretrained(final)
        processor.save_pretrained(final)
    write_meta(final, view, extra)
    return final


def export_planner(final: Path, dest: Path) -> Path:
    """Copy a trained planner folder to ``dest`` (e.g. restoreagent/assets/planner)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(final, dest)
    for f in dest.rglob("*"):  # package data: readable by everyone (safetensors writes 0600)
        if f.is_file():
            f.chmod(0o644)
    return dest
