"""Plain words -> agent actions: the offline intent parser.

An action is a small JSON-able dict, ``{"action": NAME, ...arguments}``, the same whether it came
from this parser, from a chat model's tool call (:mod:`.llm`) or from a button in the page:

==================  ===============================================  ==================================
action              arguments                                        said as
==================  ===============================================  ==================================
``restore``         ``plan`` (text form, optional: planner decides)  "restore", "fix it", "denoise:dct_mid"
``alternative``     -                                                "try again", "not satisfied"
``more``            ``task``                                         "still noisy", "too dark"
``less``            ``task``                                         "too smooth", "too bright"
``stronger``        ``task`` (optional: every step)                  "stronger", "stronger denoising"
``weaker``          ``task`` (optional: every step)                  "weaker", "gentler"
``remove``          ``tasks``                                        "don't sharpen", "no deblurring"
``set_tool``        ``task``, ``tool``                               "use unet_denoise_high"
``region``          ``kind`` box | mask | sky | whole, ``box``      "only the box", "only the sky"
``fuse``            ``k`` (optional, default 8)                      "blend the best results", "fuse them"
``undo``            -                                                "undo", "go back"
``help``            -                                                "help", "?"
==================  ===============================================  ==================================

Words are matched, not understood: a sentence the parser cannot map gets ``None`` and the caller
answers with examples (:data:`EXAMPLES`) instead of guessing.
"""

from __future__ import annotations

import re

ACTIONS = (
    "restore", "alternative", "more", "less", "stronger", "weaker", "remove", "set_tool", "region", "fuse", "undo", "help",
)

EXAMPLES = (
    '"not satisfied" / "try again" (next plan), "still noisy", "too dark", "too bright", '
    '"don\'t sharpen", "no deblurring", "stronger", "weaker denoising", "use dct_mid", '
    '"only the box", "only the sky", "whole image", "blend the best results", "undo", or a plan such as "denoise:unet_denoise_mid"'
)

# Words for each task, most specific first. "sharpen" means any of the three sharpening tasks.
SHARPEN = ("motion_deblur", "defocus_deblur", "super_resolve")
DEBLUR = ("motion_deblur", "defocus_deblur")
_TASK_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"motion|shak|camera shake", ("motion_deblur",)),
    (r"out of focus|defocus|focus", ("defocus_deblur",)),
    (r"super.?resol|upscal|upsampl|pixelat|low.?res|resolution", ("super_resolve",)),
    (r"sharpen|sharper|sharpness|crisp", SHARPEN),
    (r"deblur|blur", DEBLUR),
    (r"denois|nois|grain", ("denoise",)),
    (r"jpe?g|block|compress|artifact|artefact", ("dejpeg",)),
    (r"dehaz|haz|fog|mist", ("dehaze",)),
    (r"derain|rain", ("derain",)),
    (r"desnow|snow", ("desnow",)),
    (r"brighten|bright|dark|dim|exposure|light", ("brighten",)),
)

_NEGATION = r"\b(don'?t|do not|no|without|stop|skip|remove|drop|never|not)\b"


def tasks_in(text: str) -> tuple[str, ...]:
    """The tasks a sentence names, in the order of :data:`_TASK_WORDS` (no duplicates)."""
    found: list[str] = []
    for pattern, tasks in _TASK_WORDS:
        if re.search(pattern, text):
            found += [t for t in tasks if t not in found]
            text = re.sub(pattern, " ", text)  # "out of focus blur": focus wins, blur is not counted again
    return tuple(found)


def parse_intent(text: str, tools: dict[str, str] | None = None) -> dict | None:
    """The action a sentence asks for, or ``None`` when no rule matches.

    ``tools`` maps tool name -> task (the registry), so "use dct_mid" can be understood; plans
    written in the text form ("denoise:dct_mid, dejpeg:dejpeg_mild") become ``restore`` with that plan.
    """
    raw = text.strip()
    t = " " + re.sub(r"\s+", " ", raw.lower()) + " "
    if not raw:
        return None
    if re.fullmatch(r"\s*(\w+\s*:\s*\w+\s*,?\s*)+", raw) or raw.lower() in ("none", "plan: none"):
        return {"action": "restore", "plan": raw.removeprefix("plan:").strip()}
    if re.search(r"^ (help|\?|what can (i|you) (say|do)) ", t):
        return {"action": "help"}
    if re.search(r"\b(undo|go back|revert|back to (the )?previous)\b", t):
        return {"action": "undo"}
    if re.search(r"\b(blend|fuse|fusion|combine|mix)\b", t):  # "blend the best results"
        return {"action": "fuse"}
    if re.search(r"\b(whole|entire|full|all of the) (image|photo|picture)\b|\beverywhere\b", t):
        return {"action": "region", "kind": "whole"}
    if re.search(r"\b(only|just)\b", t) and re.search(r"\b(brush\w*|mask|painted)\b", t):
        return {"action": "region", "kind": "mask"}
    if re.search(r"\bonly\b|\bjust\b|\bregion\b|\bselection\b", t) and re.search(r"\b(box|rectangle|selection|region|area)\b", t):
        numbers = re.search(r"(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", t)  # "only the box 10,20,100,80"
        return {"action": "region", "kind": "box", **({"box": [int(n) for n in numbers.groups()]} if numbers else {})}
    if re.search(r"\b(only|just)\b.*\bsky\b|\bsky only\b", t):  # "the sky is too dark" is not a region
        return {"action": "region", "kind": "sky"}
    if tools:
        named = [name for name in tools if re.search(rf"\b{re.escape(name.lower())}\b", t)]
        if named:
            name = max(named, key=len)  # "dejpeg_mild" inside "unet_dejpeg_mild": the longer name
            return {"action": "set_tool", "task": tools[name], "tool": name}
    if re.search(r"not (satisfied|happy|good|great|right)|try again|another (one|plan|try|way)|something else|"
                 r"\bnext\b|\bretry\b|don'?t like|\bworse\b|\bbad\b|other plan", t):
        return {"action": "alternative"}
    tasks = tasks_in(t)
    if tasks and re.search(_NEGATION, t) and not re.search(r"\bstill\b|\bnot enough\b", t):
        return {"action": "remove", "tasks": list(tasks)}
    if tasks == ("brighten",) or (tasks and "brighten" in tasks and re.search(r"\btoo (dark|bright)\b", t)):
        if re.search(r"too bright|overexposed|too light|washed out|less bright|darker", t):
            return {"action": "less", "task": "brighten"}
        if re.search(r"dark|dim|underexposed|brighter|more light|brighten|lighter|\bbright\b", t):
            return {"action": "more", "task": "brighten"}
    if tasks:
        # "still blurry" names a family (motion or defocus deblurring, ...): the session picks the one in
        # the plan, or the one the detector finds more likely
        which = {"tasks": list(tasks)} if len(tasks) > 1 and set(tasks) <= set(SHARPEN) else {"task": tasks[0]}
        if re.search(r"too (smooth|soft|plastic|waxy|strong|much)|over|less|weaker|gentler|milder|softer|lighter", t):
            return {"action": "weaker" if _named_change(t) else "less", **which}
        if re.search(r"stronger|harder|\bmore\b|still|not enough|a lot of|lots of|too (noisy|blurry|hazy|blocky)|-y\b|"
                     r"noisy|blurry|hazy|blocky|grainy|sharper", t):
            return {"action": "stronger" if _named_change(t) else "more", **which}
    if re.search(r"\b(stronger|harder|more|increase|boost|not enough)\b", t):
        return {"action": "stronger"}
    if re.search(r"\b(weaker|gentler|milder|softer|less|too (much|strong)|overdone|decrease|tone it down)\b", t):
        return {"action": "weaker"}
    if re.search(r"\b(restore|fix|clean|enhance|improve|repair|go|start|auto)\b", t):
        return {"action": "restore"}
    return None


def _named_change(t: str) -> bool:
    """ "stronger denoising" names the variant change itself; "still noisy" asks for more of the task."""
    return bool(re.search(r"\b(stronger|weaker|gentler|milder|softer|harder)\b", t))
