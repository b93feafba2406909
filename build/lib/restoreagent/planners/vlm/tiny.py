"""Tiny, randomly initialised stand-ins of real pretrained VLM families, made offline.

``build_tiny_idefics3`` has the classes, processor, chat template and kind of tokenizer (byte-level
BPE) of SmolVLM (``HuggingFaceTB/SmolVLM-256M-Instruct`` is an ``Idefics3ForConditionalGeneration``);
``build_tiny_qwen2_vl`` those of Qwen2-VL. Both are saved with ``save_pretrained`` so that tests and
smoke runs take exactly the path of ``planner=smolvlm_256m`` / ``planner=qwen2_vl_2b``
(``from_pretrained`` + LoRA + training + constrained planning), with a local folder.
"""

from __future__ import annotations

from pathlib import Path

from ...dialogue import QUESTION, History, prompt
from ...plan import Step
from ...tasks import DEGRADATIONS, TASKS

SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# General text so that plan words are split into several BPE pieces, as in a real tokenizer.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. A picture is worth a thousand words.",
    "User: describe this image. Assistant: a photo of a city street at night with rain.",
    "Image restoration removes noise, blur and compression artifacts from photographs.",
    "How to enhance the quality of this image? Execution history: done; rolled back; last.",
]


def _bpe_tokenizer(specials: list[str], bos: str, eos: str, pad: str, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    steps = [Step(t, "tool") for t in TASKS]
    corpus = _CORPUS + [QUESTION, prompt(History(done=tuple(steps[:2])))] + [" ".join(DEGRADATIONS)]
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=[s for s in specials if s not in (bos, eos, pad)],
        clean_up_tokenization_spaces=False,
    )


def _llama_text(tokenizer, hidden: int = 32, layers: int = 1) -> dict:
    return {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def build_tiny_idefics3(out, seed: int = 0, image_size: int = 32) -> Path:
    """A SmolVLM-shaped (Idefics3) model of a few thousand parameters, saved to ``out``."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    out = Path(out)
    rows = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<end_of_utterance>",
        "<fake_token_around_image>",
        "<image>",
        "<global-img>",
        *rows,
    ]
    tokenizer = _bpe_tokenizer(specials, bos="<|im_start|>", eos="<|im_end|>", pad="<|endoftext|>")
    patch, scale = 8, 2
    image_seq_len = (image_size // patch) ** 2 // scale**2
    image_processor = Idefics3ImageProcessor(
        do_resize=True,
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=False,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    config = Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch,
        },
        text_config=_llama_text(tokenizer),
        scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids("<end_of_utterance>"),
        tokenizer.eos_token_id,
    ]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_qwen2_vl(out, seed: int = 0, image_size: int = 56) -> Path:
    """A Qwen2-VL-shaped model of a few thousand parameters, saved to ``out``."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out = Path(out)
    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tokenizer = _bpe_tokenizer(specials, bos="<|im_start|>", eos="<|im_end|>", pad="<|endoftext|>")
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessor(
        min_pixels=pixels,
        max_pixels=pixels,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    video_processor = Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    text = _llama_text(tokenizer)
    text.update(
        model_type="qwen2_vl_text",
        rope_parameters={"rope_type": "default", "mrope_section": [4, 2, 2], "rope_theta": 10000.0},
    )
    config = Qwen2VLConfig(
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": text["hidden_size"],
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


TINY_BUILDERS = {"tiny_idefics3": build_tiny_idefics3, "tiny_qwen2_vl": build_tiny_qwen2_vl}
