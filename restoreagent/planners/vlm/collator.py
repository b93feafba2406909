"""The collator: examples -> model inputs with labels on the answer tokens only.

Prompt, image and padding tokens are labelled -100; the answer is what follows the chat
template's generation prompt, cut right after the first end-of-turn token.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...errors import RestoreAgentError
from .planner import user_messages
from .view import ViewConfig, planner_view


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
            images.append([planner_view(as_array(ex["image"]), self.view, rng=rng)])
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


def as_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Mapping) and image.get("bytes") is not None:  # undecoded datasets.Image
        image = Image.open(io.BytesIO(image["bytes"]))
    return np.asarray(image.convert("RGB"))
