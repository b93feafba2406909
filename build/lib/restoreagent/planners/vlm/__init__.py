"""The learned planner: a vision-language model (transformers) tuned with LoRA (peft).

- :class:`VLMPlanner` -- the Planner (``get_planner("vlm")``); wraps any image-text-to-text model.
- :mod:`.grammar` -- constrained decoding: answers always parse and name only installed tools.
- :mod:`.view` -- the picture the planner sees (keeps native pixels for noise, JPEG, blur).
- :mod:`.build_default` -- builds the small embedded default from scratch.
- :mod:`.extend` -- adds tools catalogued later to a trained default's vocabulary (no retraining).
- :mod:`.training` -- dataset -> collator -> accelerate loop (full or LoRA); ``train/train_planner.py``.
"""

from .planner import VLMPlanner

__all__ = ["VLMPlanner"]
