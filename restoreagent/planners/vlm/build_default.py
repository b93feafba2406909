"""Build the embedded default planner from scratch: a tiny LLaVA-style VLM with a plan vocabulary.

The architecture is stock ``transformers`` (``LlavaForConditionalGeneration`` = a SigLIP vision
tower + a 2-layer MLP projector + a Llama language model), so the same loading, training, LoRA
and generation code serves the default and any real pretrained VLM. Only the sizes are tiny and
the tokenizer is word-level, made from the words the planner reads and writes: the question and
history words, task, tool (from the registry, at build time) and degradation names, punctuation.

    python -m restoreagent.planners.vlm.build_default [--out DIR] [--seed 0]

writes an untrained HF folder (config, safetensors, tokenizer, processor with a chat template,
``restoreagent_planner.json``); ``train/train_planner.py`` then trains it. Tools catalogued later
are added to a trained planner's vocabulary by :mod:`.extend` (``restoreagent planner extend``).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

from ...dialogue import QUESTION, ROLLBACK, History, prompt
from ...perception.detector import DEFAULT_DIR
from ...plan import Step
from ...tasks import DEGRADATIONS, PHYSICAL_ORDER, TASKS
from ...tools.registry import list_specs
from .view import ViewConfig

PLANNER_META = "restoreagent_planner.json"
META_VERSION = 1

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "<|end|>", "<image>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE) + ROLE_TOKENS
# Words are plan atoms, each with the separator in front of it (", ", " ") so an answer is a few
# tokens: "saw:" " noise" ", jpeg" " | plan:" " dejpeg:deblock_mild" ", denoise:nlm_mid".
# A task:tool step is one word (the model picks the pair at once). Anything else is one character.
WORD_PATTERN = r"saw:| \| plan:|(?:, | )?[A-Za-z0-9_\-]+(?::[A-Za-z0-9_\-]+)?|."

# One user turn holds the image then the text; the assistant's answer ends with <|end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Sizes of the default model. "vision": "siglip" (a ViT trained from scratch with the planner) or
# "perception" (the degradation detector, restoreagent/perception, as a frozen pretrained tower;
# "detector" names its folder, the shipped one by default; the view is then a "tiles" mosaic of
# view_size / patch_size tiles per side).
DEFAULT_SIZES = {
    "view_size": 128,
    "patch_size": 16,
    "vision_hidden": 128,
    "vision_layers": 2,
    "vision_heads": 4,
    "vision_mlp": 256,
    "text_hidden": 128,
    "text_layers": 2,
    "text_heads": 4,
    "text_kv_heads": 2,
    "text_mlp": 384,
    "vision": "siglip",
    "detector": None,
}


def default_planner_dir() -> Path:
    """Where the shipped default lives: ``restoreagent/assets/planner``."""
    return Path(str(resources.files("restoreagent"))) / "assets" / "planner"


def catalogue_tools() -> dict[str, list[str]]:
    """Task -> every catalogued tool name (installed or not): the vocabulary must cover them all."""
    out: dict[str, list[str]] = {t: [] for t in TASKS}
    for s in list_specs():
        out[s.task].append(s.name)
    return out


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")


def vocabulary_corpus(tools: dict[str, list[str]]) -> list[str]:
    """Every kind of text the planner reads or writes, with every name in every position."""
    steps = [Step(t, x) for t in TASKS for x in tools.get(t, [])] or [Step(t, "x") for t in TASKS]
    texts = [QUESTION, ROLLBACK, "saw: none | plan: none"]
    texts.append(prompt(History(done=tuple(steps[:2]), rolled_back=tuple(steps[2:3]), last_step=steps[-1])))
    for s in steps:
        texts.append(prompt(History(done=(s, s), rolled_back=(s, s), last_step=s)))
        texts.append(f"saw: none | plan: {s.text()}, {s.text()}")
    texts.append("saw: " + ", ".join(PHYSICAL_ORDER) + " | plan: none")
    for d in DEGRADATIONS:
        texts.append(f"saw: {d}, {d} | plan: none")
    return texts


def vocabulary_words(tools: dict[str, list[str]], pre_tokenizer=None) -> list[str]:
    """The words (not the special tokens) of the vocabulary for ``tools``, in the order of their ids.

    The words of :func:`vocabulary_corpus` as the pre-tokenizer splits it, then every atom (each
    degradation, each ``task:tool``, ``rollback``, ``none``) alone and after " " and ", ".
    ``pre_tokenizer``: a saved tokenizer's own (default: the one of :data:`WORD_PATTERN`).
    """
    pre = _pre_tokenizer() if pre_tokenizer is None else pre_tokenizer
    words: list[str] = []
    seen = set(SPECIAL_TOKENS)

    def add(w: str):
        if w and w not in seen:
            seen.add(w)
            words.append(w)

    for text in vocabulary_corpus(tools):
        for w, _ in pre.pre_tokenize_str(text):
            add(w)
    atoms = list(DEGRADATIONS) + [f"{t}:{x}" for t in TASKS for x in tools.get(t, [])] + [ROLLBACK, "none"]
    for a in atoms:
        for sep in ("", " ", ", "):
            add(sep + a)
    return words


def build_tokenizer(tools: dict[str, list[str]] | None = None):
    """A word-level ``tokenizers`` tokenizer wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    tools = catalogue_tools() if tools is None else tools
    pre = _pre_tokenizer()
    vocab = {w: i for i, w in enumerate(list(SPECIAL_TOKENS) + vocabulary_words(tools, pre))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=[IMAGE, *ROLE_TOKENS],
        clean_up_tokenization_spaces=False,
        model_max_length=512,
        padding_side="right",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer, sizes: dict):
    from transformers import LlavaProcessor, SiglipImageProcessor

    s = sizes["view_size"]
    perception = sizes.get("vision") == "perception"
    image_processor = SiglipImageProcessor(
        do_resize=True,
        size={"height": s, "width": s},
        resample=3,  # bicubic; a no-op on views that already have the right size
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=not perception,  # the detector reads pixel values in [0, 1]
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=sizes["patch_size"],
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
        num_additional_image_tokens=0,
    )


def build_model(tokenizer, sizes: dict, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    detector = None
    if sizes.get("vision") == "perception":
        # the degradation detector as the vision tower (one token per 128-px tile of a "tiles" view)
        from .perception_tower import PerceptionVisionConfig  # torch and transformers: imported when used

        detector = Path(sizes.get("detector") or DEFAULT_DIR)
        net = json.loads((detector / "detector.json").read_text())["net"]
        vision = PerceptionVisionConfig(net=net, tile=sizes["patch_size"], grid=sizes["view_size"] // sizes["patch_size"])
    else:
        vision = SiglipVisionConfig(
            hidden_size=sizes["vision_hidden"],
            intermediate_size=sizes["vision_mlp"],
            num_hidden_layers=sizes["vision_layers"],
            num_attention_heads=sizes["vision_heads"],
            image_size=sizes["view_size"],
            patch_size=sizes["patch_size"],
            vision_use_head=False,
        )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=sizes["text_hidden"],
        intermediate_size=sizes["text_mlp"],
        num_hidden_layers=sizes["text_layers"],
        num_attention_heads=sizes["text_heads"],
        num_key_value_heads=sizes["text_kv_heads"],
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_seq_length=(sizes["view_size"] // sizes["patch_size"]) ** 2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    if detector is not None:
        model.model.vision_tower.load_detector(detector)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False
    return model


def write_meta(out: Path, view: ViewConfig, extra: dict | None = None) -> None:
    meta = {"version": META_VERSION, "view": view.to_dict()}
    meta.update(extra or {})
    (Path(out) / PLANNER_META).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(folder) -> dict:
    p = Path(folder) / PLANNER_META
    return json.loads(p.read_text()) if p.is_file() else {}


def build_default(
    out=None, seed: int = 0, sizes: dict | None = None, tools=None, layout: str = "mosaic_detail"
) -> Path:
    """Build the untrained default planner folder; returns its path."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    out = Path(out) if out is not None else default_planner_dir()
    out.mkdir(parents=True, exist_ok=True)
    tools = catalogue_tools() if tools is None else tools
    tokenizer = build_tokenizer(tools)
    processor = build_processor(tokenizer, sizes)
    model = build_model(tokenizer, sizes, seed=seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_meta(
        out,
        ViewConfig(layout=layout, size=sizes["view_size"]),
        {"built_from_scratch": True, "sizes": sizes, "tools_at_build": tools, "trained": False},
    )
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help=f"output folder (default: {default_planner_dir()})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--layout", default="mosaic_detail", help="planner view: mosaic_detail, mosaic, crop or resize"
    )
    ap.add_argument("--sizes", default=None, help="JSON overriding sizes, e.g. '{\"text_layers\": 3}'")
    args = ap.parse_args(argv)
    out = build_default(
        args.out, seed=args.seed, sizes=json.loads(args.sizes) if args.sizes else None, layout=args.layout
    )
    print(f"built untrained default planner in {out}")


if __name__ == "__main__":
    main()
