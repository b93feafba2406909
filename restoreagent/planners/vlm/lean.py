"""A lean inference path for the shipped planner: plain torch + safetensors + tokenizers.

The shipped planner (``restoreagent/assets/planner``) is a ``LlavaForConditionalGeneration``: the
degradation detector as vision tower (:mod:`.perception_tower`), a two-layer GELU projector and a
tiny Llama. Building it through ``transformers`` costs seconds of imports (transformers, its image
processors, torchvision) for a 1.8M-parameter model. This module loads the very same
``model.safetensors`` + ``config.json`` + ``tokenizer.json`` + ``chat_template.jinja`` and computes
the same logits with a few dozen lines of torch, so ``restoreagent plan`` and ``run --auto`` start
in a fraction of the time. :func:`lean_support` says whether a folder is one this code reproduces
exactly (anything else -- other planners, adapters, training -- goes through transformers), and
``tests/test_lean.py`` checks logits, preprocessing and greedy plans against transformers.

    model, processor = load_lean(folder)              # what VLMPlanner uses when lean_support is None
    enc = processor(text=[prompt], images=[[view]], return_tensors="pt", add_special_tokens=False)
    logits, past = model(enc["input_ids"], pixel_values=enc["pixel_values"])   # the prompt
    logits, past = model(next_ids, past=past)                                   # one more token

Decoding on top: :meth:`LeanLlava.generate` is greedy decoding with the subset of
``transformers``' ``generate`` arguments the planner uses; other decoders (beam search, sampling)
drive :meth:`LeanLlava.forward` directly (see its contract).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...perception.model import DegradationNet, NetConfig

PAST = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer (keys, values): (batch, kv_heads, seq, head_dim)


# --- which folders the lean path reproduces ----------------------------------------------------
def lean_support(folder) -> str | None:
    """None when ``folder`` is a planner this module reproduces exactly, else why not (one line).

    Supported: a LLaVA config whose text model is a Llama without biases (SiLU MLP, default RoPE,
    tied or untied head), whose vision tower is ``restoreagent_perception`` with the full feature
    selection, a GELU projector, a ``tokenizer.json`` and a chat template, and an image processor
    that only rescales (and optionally normalises) images already at its size -- the planner's view
    size (``restoreagent_planner.json``), so no resampling is involved.
    """
    folder = Path(folder)
    need = ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json")
    missing = [n for n in need if not (folder / n).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    if (folder / "adapter" / "adapter_config.json").is_file():
        return "has a LoRA adapter"
    try:
        cfg = json.loads((folder / "config.json").read_text())
        proc = json.loads((folder / "processor_config.json").read_text())
        meta_path = folder / "restoreagent_planner.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (OSError, ValueError) as e:
        return f"unreadable config: {e}"
    text, vision = cfg.get("text_config", {}), cfg.get("vision_config", {})
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {"rope_type": "default"}
    checks = [
        (cfg.get("model_type") == "llava", "not a llava model"),
        (text.get("model_type") == "llama", "text model is not llama"),
        (vision.get("model_type") == "restoreagent_perception", "vision tower is not the perception tower"),
        (cfg.get("projector_hidden_act") == "gelu", "projector activation is not gelu"),
        (cfg.get("vision_feature_layer", -1) == -1, "vision_feature_layer is not -1"),
        (cfg.get("vision_feature_select_strategy", "full") == "full", "vision feature strategy is not full"),
        (text.get("hidden_act") == "silu", "text activation is not silu"),
        (not text.get("attention_bias") and not text.get("mlp_bias"), "biased attention or MLP"),
        (rope.get("rope_type", rope.get("type", "default")) == "default", "RoPE scaling"),
        ((folder / "chat_template.jinja").is_file() or "chat_template" in _read_json(folder / "tokenizer_config.json"),
         "no chat template"),
    ]
    for ok, why in checks:
        if not ok:
            return why
    ip = proc.get("image_processor", {})
    size = ip.get("size", {})
    view = meta.get("view", {})
    if view.get("layout") != "tiles" or size.get("height") != view.get("size") or size.get("width") != view.get("size"):
        return "the image processor would resize the planner view"
    if proc.get("num_additional_image_tokens", 0) or proc.get("vision_feature_select_strategy", "full") != "full":
        return "unusual image-token count"
    patch = int(proc.get("patch_size") or vision.get("patch_size") or 0)
    tokens = (size["height"] // patch) * (size["width"] // patch) if patch else -1
    if int(cfg.get("image_seq_length") or 0) != tokens or vision.get("tile", 128) != patch:
        return "image tokens do not match the perception tower's tiles"
    return None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# --- tokenizer and processor --------------------------------------------------------------------
class LeanTokenizer:
    """The folder's ``tokenizer.json`` through the ``tokenizers`` library, with the small part of the
    ``transformers`` tokenizer interface that the planner and :func:`.grammar.token_strings` use."""

    def __init__(self, folder):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        cfg = _read_json(folder / "tokenizer_config.json")
        self.chat_template = cfg.get("chat_template")
        if (folder / "chat_template.jinja").is_file():
            self.chat_template = (folder / "chat_template.jinja").read_text()
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        self.added_tokens_decoder = {
            i: t.content for i, t in self._tokenizer.get_added_tokens_decoder().items() if t.special
        }
        named = [cfg.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
        extra = cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens") or []
        if isinstance(extra, dict):
            extra = list(extra.values())
        self.all_special_ids = sorted({vocab[t] for t in [*named, *extra] if isinstance(t, str) and t in vocab})
        self.eos_token_id = vocab.get(cfg.get("eos_token")) if cfg.get("eos_token") else None
        self.pad_token_id = vocab.get(cfg.get("pad_token")) if cfg.get("pad_token") else None
        self.bos_token_id = vocab.get(cfg.get("bos_token")) if cfg.get("bos_token") else None
        self._vocab = vocab

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def convert_ids_to_tokens(self, ids):
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens):
        return [self._tokenizer.token_to_id(t) for t in tokens]

    def convert_tokens_to_string(self, tokens) -> str:
        return self._tokenizer.decoder.decode(tokens) if self._tokenizer.decoder else "".join(tokens)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __call__(self, text, add_special_tokens: bool = False, return_tensors: str | None = None):
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self.encode(t, add_special_tokens) for t in texts]
        if return_tensors is None:
            ids = rows[0] if isinstance(text, str) else rows
            return {"input_ids": ids}
        if return_tensors != "pt" or len({len(r) for r in rows}) > 1:
            raise ValueError("the lean tokenizer returns torch tensors of unpadded rows only")
        ids = torch.tensor(rows, dtype=torch.long)
        return Encoding(input_ids=ids, attention_mask=torch.ones_like(ids))

    def apply_chat_template(self, messages, add_generation_prompt: bool = False, tokenize: bool = False, **kw):
        if tokenize:
            raise ValueError("the lean tokenizer renders chat templates as text only (tokenize=False)")
        return render_chat_template(self.chat_template, messages, add_generation_prompt, **kw)


def render_chat_template(template: str, messages, add_generation_prompt: bool, **kw) -> str:
    """The template rendered as ``transformers`` does (a sandboxed jinja2 with trimmed blocks)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **kw)


class Encoding(dict):
    """A dict of tensors with ``.to(device)`` (what ``transformers``' BatchEncoding offers the planner)."""

    def to(self, device) -> Encoding:
        return Encoding({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.items()})


class LeanProcessor:
    """The LLaVA processor of the folder: prompt text with the image token repeated once per image
    token, tokenised, plus ``pixel_values`` (RGB, rescaled, optionally normalised; no resizing: the
    view must already have the processor's size, as :func:`lean_support` checks)."""

    def __init__(self, folder, image_seq_length: int):
        folder = Path(folder)
        self.tokenizer = LeanTokenizer(folder)
        cfg = json.loads((folder / "processor_config.json").read_text())
        ip = cfg.get("image_processor", {})
        self.image_token = cfg.get("image_token", "<image>")
        self.image_seq_length = int(image_seq_length)
        self.size = (int(ip["size"]["height"]), int(ip["size"]["width"]))
        self.rescale = float(ip.get("rescale_factor", 1 / 255)) if ip.get("do_rescale", True) else 1.0
        self.normalize = bool(ip.get("do_normalize", False))
        self.mean = np.asarray(ip.get("image_mean", [0.0] * 3), np.float32)
        self.std = np.asarray(ip.get("image_std", [1.0] * 3), np.float32)

    def apply_chat_template(self, messages, **kw) -> str:
        return self.tokenizer.apply_chat_template(messages, **kw)

    def pixel_values(self, image) -> torch.Tensor:
        """(3, H, W) float32 of one PIL image or uint8 (H, W, 3) array."""
        if hasattr(image, "convert"):
            image = image.convert("RGB")
        a = np.asarray(image)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"the lean processor takes uint8 RGB images, got {a.dtype} {a.shape}")
        if a.shape[:2] != self.size:
            raise ValueError(f"the lean processor does not resize: expected a {self.size} view, got {a.shape[:2]}")
        # as transformers does it: rescale in float32 (x * (1/255)), then normalise
        x = a.astype(np.float32) * np.float32(self.rescale)
        if self.normalize:
            x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def __call__(self, text, images=None, return_tensors: str = "pt", add_special_tokens: bool = False, **kw):
        if kw:
            raise ValueError(f"the lean processor does not take {', '.join(sorted(kw))}")
        texts = [text] if isinstance(text, str) else list(text)
        texts = [t.replace(self.image_token, self.image_token * self.image_seq_length) for t in texts]
        enc = self.tokenizer(texts, add_special_tokens=add_special_tokens, return_tensors="pt")
        if images is not None:
            flat = [im for row in images for im in (row if isinstance(row, list | tuple) else [row])]
            enc["pixel_values"] = torch.stack([self.pixel_values(im) for im in flat])
        return enc


# --- the network ------------------------------------------------------------------------------
def perception_tokens(net: DegradationNet, pixel_values: torch.Tensor, tile: int) -> torch.Tensor:
    """The perception tower's image tokens (b, tiles, hidden + labels + severities) of a mosaic of
    ``tile``-px tiles: per tile, the detector's embedding, presence logits and sigmoid severities.
    Shared by :class:`LeanVisionTower` and the transformers tower (:mod:`.perception_tower`)."""
    b, c, h, w = pixel_values.shape
    if h % tile or w % tile:
        raise ValueError(f"the perception tower needs a mosaic of {tile}-px tiles, got {h}x{w}")
    tiles = pixel_values.unfold(2, tile, tile).unfold(3, tile, tile)  # (b, c, gh, gw, t, t)
    gh, gw = tiles.shape[2], tiles.shape[3]
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(b * gh * gw, c, tile, tile)
    feats = net.features(tiles.to(net.stem[1].weight.dtype))
    tokens = torch.cat([feats, net.presence(feats), torch.sigmoid(net.severity(feats))], dim=-1)
    return tokens.reshape(b, gh * gw, -1)


@dataclass
class TowerOutput:
    last_hidden_state: torch.Tensor


class LeanVisionTower(nn.Module):
    """The detector as the planner's vision tower (same tokens as :mod:`.perception_tower`)."""

    def __init__(self, vision_config: dict):
        super().__init__()
        self.net_config = NetConfig.from_dict(vision_config["net"])
        self.tile = int(vision_config.get("tile", 128))
        self.net = DegradationNet(self.net_config)
        self._reuse = None

    def reuse_once(self, pixel_values: torch.Tensor | None, output=None) -> None:
        """The next call with this very tensor returns ``output`` instead of running again; None clears."""
        self._reuse = (pixel_values, output) if pixel_values is not None else None

    def split_tokens(self, tokens: torch.Tensor):
        """(tile embeddings, presence logits, severities) of the tower's tokens (..., hidden_size)."""
        n = self.net_config
        return tokens[..., : n.hidden], tokens[..., n.hidden : n.hidden + n.n_labels], tokens[..., n.hidden + n.n_labels :]

    def forward(self, pixel_values: torch.Tensor) -> TowerOutput:
        reuse = self._reuse
        if reuse is not None and reuse[0] is pixel_values:
            self._reuse = None
            return reuse[1]
        return TowerOutput(perception_tokens(self.net, pixel_values, self.tile))

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # BatchNorm keeps the detector's statistics
        return self


class Projector(nn.Module):
    def __init__(self, vision_hidden: int, text_hidden: int, bias: bool = True):
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=bias)
        self.linear_2 = nn.Linear(text_hidden, text_hidden, bias=bias)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x)))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()  # the variance in float32 whatever the weights' dtype, as Llama does
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, past: tuple[torch.Tensor, torch.Tensor] | None):
        b, q, _ = x.shape
        qs = self.q_proj(x).view(b, q, self.heads, self.head_dim).transpose(1, 2)
        ks = self.k_proj(x).view(b, q, self.kv_heads, self.head_dim).transpose(1, 2)
        vs = self.v_proj(x).view(b, q, self.kv_heads, self.head_dim).transpose(1, 2)
        qs = qs * cos + _rotate_half(qs) * sin
        ks = ks * cos + _rotate_half(ks) * sin
        if past is not None:
            ks, vs = torch.cat([past[0], ks], dim=2), torch.cat([past[1], vs], dim=2)
        new_past = (ks, vs)
        rep = self.heads // self.kv_heads
        k, v = ks.repeat_interleave(rep, dim=1), vs.repeat_interleave(rep, dim=1)
        kv = k.shape[2]
        if q == 1:
            mask = None  # the one new token sees everything before it
        else:  # causal over the new tokens, everything cached is visible
            mask = torch.ones(q, kv, dtype=torch.bool, device=x.device).tril(kv - q)
        out = F.scaled_dot_product_attention(qs, k, v, attn_mask=mask, scale=1.0 / math.sqrt(self.head_dim))
        return self.o_proj(out.transpose(1, 2).reshape(b, q, -1)), new_past


class MLP(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        head_dim = int(c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"])
        self.self_attn = Attention(c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], head_dim)
        self.mlp = MLP(c["hidden_size"], c["intermediate_size"])
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, past):
        h, new_past = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), new_past


class LlamaText(nn.Module):
    """Llama decoder (embeddings, layers, final norm); the LM head lives in :class:`LeanLlava`."""

    def __init__(self, c: dict):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.head_dim = int(c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"])
        rope = c.get("rope_parameters") or {}
        self.rope_theta = float(rope.get("rope_theta", c.get("rope_theta", 10000.0)))

    def rope(self, start: int, n: int, dtype, device):
        """(cos, sin) of positions start..start+n-1 (default RoPE, computed in float32 as Llama does)."""
        d = self.head_dim
        inv_freq = 1.0 / (self.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        pos = torch.arange(start, start + n, dtype=torch.float32)
        freqs = (pos[:, None] * inv_freq[None, :]).to(device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]

    def forward(self, embeds: torch.Tensor, past: PAST | None):
        start = past[0][0].shape[2] if past else 0
        cos, sin = self.rope(start, embeds.shape[1], embeds.dtype, embeds.device)
        new_past = []
        x = embeds
        for i, layer in enumerate(self.layers):
            x, p = layer(x, cos, sin, past[i] if past else None)
            new_past.append(p)
        return self.norm(x), tuple(new_past)


class LlavaParts(nn.Module):
    """The ``model`` of a LLaVA: vision tower, projector, language model (transformers' names)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.vision_tower = LeanVisionTower(cfg["vision_config"])
        vh = int(cfg["vision_config"].get("hidden_size") or 0) or (
            self.vision_tower.net_config.hidden + self.vision_tower.net_config.n_labels + self.vision_tower.net_config.n_severity
        )
        self.multi_modal_projector = Projector(vh, cfg["text_config"]["hidden_size"], cfg.get("multimodal_projector_bias", True))
        self.language_model = LlamaText(cfg["text_config"])


class LeanLlava(nn.Module):
    """The shipped planner's LLaVA in plain torch, with a KV cache (see :func:`load_lean`)."""

    def __init__(self, cfg: dict, generation_config: dict | None = None):
        super().__init__()
        self.config = cfg
        self.model = LlavaParts(cfg)
        t = cfg["text_config"]
        self.tie = bool(cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", True)))
        self.lm_head = None if self.tie else nn.Linear(t["hidden_size"], t["vocab_size"], bias=False)
        self.image_token_index = int(cfg.get("image_token_index", cfg.get("image_token_id", -1)))
        gen = {"eos_token_id": t.get("eos_token_id"), **(generation_config or {})}
        self.generation_config = SimpleNamespace(**gen)

    @property
    def device(self) -> torch.device:
        return self.model.language_model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.language_model.embed_tokens.weight.dtype

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, image tokens, text hidden): the tower's tokens through the projector."""
        tokens = self.model.vision_tower(pixel_values).last_hidden_state
        return self.model.multi_modal_projector(tokens.to(self.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        past: PAST | None = None,
    ) -> tuple[torch.Tensor, PAST]:
        """Logits of every new position and the grown cache.

        Contract:
        - ``input_ids``: (batch, new) long, the tokens *after* those in ``past`` (the whole prompt
          when ``past`` is None). Rows are unpadded and equally long (no attention mask): decode a
          beam or a set of samples as a batch of equally long continuations.
        - Image tokens (``image_token_index``) among ``input_ids`` are replaced, in order, by the
          image features: give ``pixel_values`` (images, 3, H, W) -- as the processor makes them --
          or precomputed ``image_features`` (images, tokens, hidden) from :meth:`image_features`
          (e.g. once for all beams). Their count must match the image tokens in the batch.
        - ``past``: None, or the value returned by the previous call. It is a tuple over layers
          of (keys, values), each (batch, kv_heads, seq, head_dim); positions continue from
          ``seq``. Reorder or repeat it for beams with :meth:`select_past`. It is never modified in
          place, so one prefix's cache can feed several continuations.
        - Returns ``(logits, past)``: logits (batch, new, vocab) in float32, and the cache of
          everything seen so far.
        Call it under ``torch.inference_mode()``.
        """
        lm = self.model.language_model
        embeds = lm.embed_tokens(input_ids)
        mask = input_ids == self.image_token_index
        if mask.any():
            if image_features is None:
                if pixel_values is None:
                    raise ValueError("image tokens in input_ids but neither pixel_values nor image_features")
                image_features = self.image_features(pixel_values.to(self.device))
            feats = image_features.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
            if feats.shape[0] != int(mask.sum()):
                raise ValueError(f"{int(mask.sum())} image tokens but {feats.shape[0]} image features")
            embeds = embeds.masked_scatter(mask[..., None].expand_as(embeds), feats)
        hidden, past = lm(embeds, past)
        weight = lm.embed_tokens.weight if self.tie else self.lm_head.weight
        return F.linear(hidden, weight).float(), past

    @staticmethod
    def select_past(past: PAST, index: torch.Tensor) -> PAST:
        """The cache rows ``index`` (a long tensor over the batch): reorder, repeat or drop beams."""
        return tuple((k.index_select(0, index), v.index_select(0, index)) for k, v in past)

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        *,
        max_new_tokens: int,
        eos_token_id=None,
        logits_processor=None,
        do_sample: bool = False,
        num_beams: int = 1,
        pad_token_id: int | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Greedy decoding as ``transformers``' ``generate(do_sample=False, num_beams=1)``: returns
        (batch, prompt + new) ids; the prompt's rows must be unpadded. ``logits_processor``: callables
        ``(ids so far, scores) -> scores`` applied in order to the float32 next-token scores."""
        if do_sample or num_beams != 1 or kwargs:
            extra = ", ".join(sorted(kwargs)) or ("do_sample" if do_sample else "num_beams")
            raise ValueError(f"the lean planner's generate() decodes greedily; not supported: {extra} (use forward())")
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the lean planner's generate() takes unpadded prompts only")
        eos = eos_token_id if eos_token_id is not None else self.generation_config.eos_token_id
        eos = {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None}
        pad = pad_token_id if pad_token_id is not None else (min(eos) if eos else 0)
        ids = input_ids.to(self.device)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        logits, past = self(ids, pixel_values=pixel_values)
        for _ in range(max_new_tokens):
            scores = logits[:, -1, :]
            for proc in logits_processor or ():
                scores = proc(ids, scores)
            nxt = scores.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            done |= torch.isin(nxt, torch.tensor(sorted(eos), device=ids.device)) if eos else done
            if bool(done.all()):
                break
            logits, past = self(nxt[:, None], past=past)
        return ids


# --- loading ------------------------------------------------------------------------------------
_PREFIXES = (  # saved key prefixes (old and new transformers layouts) -> this module's names
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.language_model.", "model.language_model."),
    ("vision_tower.", "model.vision_tower."),
    ("model.vision_tower.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
    ("model.multi_modal_projector.", "model.multi_modal_projector."),
    ("lm_head.", "lm_head."),
)


def _rename(key: str) -> str:
    for old, new in _PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def load_lean(folder, dtype=None, device="cpu") -> tuple[LeanLlava, LeanProcessor]:
    """(model, processor) of a supported planner folder (:func:`lean_support`), eval mode.

    Weights are read with safetensors (no pickle) and cast to ``dtype`` (default float32, as the
    transformers path loads them); every weight of the file must be used and every weight of the
    model present, so a folder that does not match fails here rather than planning wrongly.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    gen = _read_json(folder / "generation_config.json")
    dt = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)
    # One thread: the many tiny copies below are slower with a thread pool, much slower when the
    # cores are busy. The weights are assigned, not copied (the module's initial ones are dropped;
    # building on the meta device instead would import torch._dynamo, ~1 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = LeanLlava(cfg, gen)
        state = {_rename(k): v for k, v in load_file(str(folder / "model.safetensors")).items()}
        if model.lm_head is None:
            state.pop("lm_head.weight", None)  # tied: the embeddings are the head
        # the tower runs in float32 (BatchNorm statistics), as the transformers path loads it
        state = {
            k: (v.to(torch.float32 if k.startswith("model.vision_tower.") else dt) if v.is_floating_point() else v)
            for k, v in state.items()
        }
        model.load_state_dict(state, strict=True, assign=True)
        model.to(device).eval()
    finally:
        torch.set_num_threads(threads)
    return model, LeanProcessor(folder, int(cfg["image_seq_length"]))

