"""The planner's vision encoder is the degradation detector (the LLaVA recipe: a pretrained vision
encoder, a projector, a language model).

:class:`PerceptionVisionModel` wraps :class:`restoreagent.perception.model.DegradationNet` as a
``transformers`` vision model, registered with the Auto classes under ``model_type =
"restoreagent_perception"``, so a stock ``LlavaForConditionalGeneration`` uses it as its vision
tower and every planner path (save/load, training, LoRA, constrained generation) stays the same.

Its input is the planner view of layout ``tiles`` (:mod:`.view`): a mosaic of ``grid x grid``
native-pixel tiles of ``tile`` px, pixel values in [0, 1] (the processor does not normalise). Each
tile becomes one image token: the detector's tile embedding, its presence logits and its
severities, concatenated. The projector maps those tokens into the language model.

The tower is frozen by default (``planner.finetune.freeze_vision``): its BatchNorm layers always
run on their trained statistics, also when the planner is trained.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ...perception.model import DegradationNet, NetConfig
from .lean import perception_tokens

MODEL_TYPE = "restoreagent_perception"


class PerceptionVisionConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, net: dict | None = None, tile: int = 128, grid: int = 2, **kwargs):
        net = dict(net or NetConfig().to_dict())
        n = NetConfig.from_dict(net)
        kwargs.setdefault("hidden_size", n.hidden + n.n_labels + n.n_severity)
        super().__init__(**kwargs)
        self.net = net
        self.tile = int(tile)
        self.grid = int(grid)
        self.patch_size = self.tile  # one image token per tile (LlavaProcessor counts patches)
        self.image_size = self.tile * self.grid


class PerceptionVisionModel(PreTrainedModel):
    config_class = PerceptionVisionConfig
    main_input_name = "pixel_values"
    base_model_prefix = "perception"
    _no_split_modules: list[str] = []

    def __init__(self, config: PerceptionVisionConfig):
        super().__init__(config)
        self.net = DegradationNet(NetConfig.from_dict(config.net))
        self.post_init()

    def _init_weights(self, module):
        # The weights come from a trained detector (load_detector); torch's defaults otherwise.
        return

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # BatchNorm keeps the detector's statistics
        return self

    def reuse_once(self, pixel_values: torch.Tensor | None, output=None) -> None:
        """The next call with this very tensor returns ``output`` (computed already, e.g. by the
        planner to read the detector's decision) instead of running the network again; None clears."""
        self._reuse = (pixel_values, output) if pixel_values is not None else None

    def split_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tile embeddings, presence logits, severities) of the tower's tokens (..., hidden_size)."""
        n = NetConfig.from_dict(self.config.net)
        return tokens[..., : n.hidden], tokens[..., n.hidden : n.hidden + n.n_labels], tokens[..., n.hidden + n.n_labels :]

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        reuse = getattr(self, "_reuse", None)
        if reuse is not None and reuse[0] is pixel_values:
            self._reuse = None
            return reuse[1]
        tokens = perception_tokens(self.net, pixel_values, self.config.tile)  # the same code as the lean path
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens.mean(1), hidden_states=(tokens,))

    def load_detector(self, folder) -> None:
        """Copy a trained detector folder's weights (restoreagent.perception) into the tower."""
        from pathlib import Path

        from safetensors.torch import load_file

        state = load_file(str(Path(folder) / "model.safetensors"))
        self.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


AutoConfig.register(MODEL_TYPE, PerceptionVisionConfig, exist_ok=True)
AutoModel.register(PerceptionVisionConfig, PerceptionVisionModel, exist_ok=True)
