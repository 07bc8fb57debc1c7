# Copyright 2026 The SALOVA package authors. Licensed under the Apache License, Version 2.0.
"""Configuration of SALOVA (Segment-Augmented LOng Video Assistant, CVPR 2025).

A SALOVA checkpoint is three pretrained parts glued by three small trained modules:

* ``tower_config``: a SigLIP or CLIP dual encoder. Its vision half encodes frames; its text half encodes
  the router query (with the position table extended to 2048 rows).
* ``text_config``: the causal LLM (any architecture ``AutoModel`` knows: Qwen2, Llama, Phi-3, ...).
* the Spatio-Temporal Connector (perceiver resampler, one routing token + N latents per segment), the
  Segment-Retrieval Router (scores each segment against the query) and the FocusFast projector.

Where the paper and the authors' code disagree, the default follows the code and the paper value is one
setting away (see ``connector_hidden_size``). The processor shares some settings under the same names
(``connector_num_latents``, ``num_focus_segments``, and the limits ``router_max_segments`` and
``max_frames_per_segment``) and is checked against this config when a checkpoint loads.
"""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

# google/siglip-so400m-patch14-384, with the text position table extended to the router's 2048 positions.
_SIGLIP_SO400M_384 = {
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 384,
        "vision_use_head": False,
    },
    "text_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "projection_size": 1152,
        "max_position_embeddings": 2048,
        "vocab_size": 32000,
        "bos_token_id": None,
        "eos_token_id": 1,
        "pad_token_id": 1,
    },
}

SUPPORTED_TOWERS = ("siglip", "clip")
FRAME_SUMMARIES = ("patch_mean", "class_token")
TOWERS_WITH_CLASS_TOKEN = ("clip",)


@strict
class SalovaConfig(PreTrainedConfig):
    r"""
    tower_config (`dict` or `PreTrainedConfig`, *optional*):
        SigLIP (`model_type="siglip"`) or CLIP (`"clip"`) dual-encoder config. Defaults to SigLIP-so400m-384.
    text_config (`dict` or `PreTrainedConfig`, *optional*):
        Config of the LLM. Defaults to Qwen2.
    video_token_id (`int`, *optional*):
        Id of the `<video>` placeholder in the LLM vocabulary. Each video expands to
        `connector_num_latents * min(num_focus_segments, N_v) + N_v` of them (focus latents, then one routing
        token per segment).
    vision_feature_layer (`int`, defaults to -2):
        Hidden-state index of the vision tower used as frame features (the penultimate layer).
    vision_pooling_stride (`int`, defaults to 2):
        Bilinear pooling factor on the patch grid (27x27 -> 14x14 for SigLIP-384, 24x24 -> 12x12 for CLIP-336).
    vision_frame_summary (`str`, *optional*):
        The per-frame vector that offsets each segment's routing latent: `"patch_mean"` (the mean of the frame's
        patch tokens, as the paper specifies) or `"class_token"` (CLIP's class token). `None`, for configs saved
        before this setting existed, keeps what those checkpoints were trained with: the class token where the
        tower has one (CLIP), the patch mean otherwise (SigLIP).
    vision_chunk_size (`int`, defaults to 64):
        Frames sent through the vision tower at once; bounds activation memory whatever the video length.
    connector_hidden_size (`int`, *optional*):
        Width of the connector latents and of the router. `None` uses the vision width (the authors' code);
        the paper's appendix says 1024.
    connector_num_latents (`int`, defaults to 256):
        Visual latents per segment (the routing latent comes on top).
    connector_position_init_std (`float`, defaults to 1.0):
        Standard deviation of the connector's spatial and temporal embeddings at initialisation. Unit variance
        (like the latents and lucidrains' `media_pos_emb`) makes a token's frame and patch position as loud as
        its content from the first step; at 0.02 a connector trained from scratch cannot tell frames apart.
    connector_attention_init_gain (`float`, defaults to 1.0):
        Gain on the fan-in scaled initialisation of the connector's query and key projections; attention logits
        start with a std of about `gain**2 / 3`. At 1 (lucidrains' resampler) every latent starts by reading the
        average of its media, which keeps what a pretrained tower's features say but loses where things are.
        Larger gains start each latent on a few positions, so spatial detail (the shape of an object, the side its
        motion trail lies on) reaches the latents before attention has learnt where to look: the tiny variant,
        over a random tower, uses 5.
    max_frames_per_segment (`int`, defaults to 2160):
        Rows of the connector's temporal embedding: the longest segment, in frames, it accepts.
    max_token_drop (`float`, defaults to 0.0):
        `p_max` of the dynamic token drop, applied in training mode only (0.0 / 0.7 / 0.4 in stages 1 / 1.5 / 2).
    token_drop_reference_length (`int`, defaults to 18000):
        Segment length in tokens at which the drop rate reaches `max_token_drop`.
    router_max_segments (`int`, defaults to 256):
        Rows of the router's segment position table: the most segments a video may have.
    router_max_query_tokens (`int`, defaults to 2048):
        Rows of the router's text position table (the pooled state plus the query tokens).
    num_focus_segments (`int`, defaults to 5):
        `K` of the router's top-K: segments fed to the LLM through the focus pathway. (Not named `top_k`, which
        `generate()` reads as a sampling setting.)
    router_logit_scale_max (`float`, defaults to `ln 100`):
        Upper bound of the router's learned log temperature, as in CLIP: scores stay within +-100, so the
        `similarity_margin` keeps its meaning however long the router trains.
    router_in_batch_negatives (`bool`, defaults to `False`):
        Stage-1 retrieval target: when every video of a batch is one segment, score each query against every
        clip of the batch and train on the identity matrix, instead of per-segment labels.
    similarity_loss_weight (`float`, defaults to 1.0):
        `w` in `L = L_ar + w * L_sim` (5.0 in stage 1, 1.0 afterwards).
    similarity_margin (`float`, defaults to 0.2):
        `delta` of the score-margin term.
    similarity_margin_loss (`bool`, defaults to `True`):
        Whether `L_sim` includes the margin term (stages 1.5 and 2) or is BCE only (stage 1).
    """

    model_type = "salova"
    sub_configs_defaults = {
        "tower_config": SubConfigSpec(config_class=AutoConfig, model_type="siglip", init_kwargs=_SIGLIP_SO400M_384),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
    }

    # PreTrainedConfig first: the validator tries the types in order, and a failed `dict` check renders the config,
    # which builds transformers' default SigLIP config and its warning about special tokens outside its vocabulary.
    tower_config: PreTrainedConfig | dict | None = None
    text_config: PreTrainedConfig | dict | None = None
    video_token_id: int | None = None

    vision_feature_layer: int = -2
    vision_pooling_stride: int = 2
    vision_frame_summary: str | None = None
    vision_chunk_size: int = 64

    connector_hidden_size: int | None = None
    connector_num_latents: int = 256
    connector_num_layers: int = 2
    connector_num_heads: int = 2
    connector_head_dim: int = 64
    connector_ff_mult: int = 4
    connector_position_init_std: float = 1.0
    connector_attention_init_gain: float = 1.0
    max_frames_per_segment: int = 2160
    max_token_drop: float = 0.0
    token_drop_reference_length: int = 18000

    router_num_layers: int = 2
    router_num_heads: int = 1
    router_dropout: float = 0.1
    router_max_segments: int = 256
    router_max_query_tokens: int = 2048
    router_logit_scale_init: float = 1.0
    router_logit_scale_max: float = math.log(100.0)
    num_focus_segments: int = 5
    router_in_batch_negatives: bool = False

    similarity_loss_weight: float = 1.0
    similarity_margin: float = 0.2
    similarity_margin_loss: bool = True

    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # LLMs such as Llama-3.2-3B tie their LM head to the input embeddings; the composite model must too.
        if self.text_config.tie_word_embeddings:
            self.tie_word_embeddings = True
        self._check_settings()

    def to_diff_dict(self) -> dict:
        # transformers diffs each sub-config against a default instance of its class, and the default SigLIP config
        # carries CLIP's special-token ids outside its own vocabulary: the warning it prints is about that default
        # instance, never about this config, so it is silenced while the defaults are built.
        config_logger = logging.get_logger("transformers.configuration_utils")
        level = config_logger.level
        config_logger.setLevel(logging.ERROR)
        try:
            return super().to_diff_dict()
        finally:
            config_logger.setLevel(level)

    @property
    def vision_config(self) -> PreTrainedConfig:
        return self.tower_config.vision_config

    @property
    def query_encoder_config(self) -> PreTrainedConfig:
        return self.tower_config.text_config

    @property
    def vision_hidden_size(self) -> int:
        return self.vision_config.hidden_size

    @property
    def hidden_width(self) -> int:
        """Width of routing tokens, latents and router (before the projector to the LLM)."""
        return self.connector_hidden_size or self.vision_hidden_size

    @property
    def patch_grid_size(self) -> int:
        """Side of the vision tower's patch grid (27 for SigLIP-384, 24 for CLIP-336)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def frame_summary(self) -> str:
        """`vision_frame_summary`, with `None` resolved to the tower's own summary (see the docstring)."""
        if self.vision_frame_summary is not None:
            return self.vision_frame_summary
        return "class_token" if self.tower_config.model_type in TOWERS_WITH_CLASS_TOKEN else "patch_mean"

    @property
    def tokens_per_frame(self) -> int:
        """`P`: visual tokens per frame after pooling (196 for SigLIP-384, 144 for CLIP-336)."""
        side = -(-self.patch_grid_size // self.vision_pooling_stride)
        return side * side

    def num_video_tokens(self, num_segments: int, num_focus_segments: int | None = None) -> int:
        """LLM placeholder tokens of one video: `connector_num_latents * min(K, N_v) + N_v`."""
        k = self.num_focus_segments if num_focus_segments is None else num_focus_segments
        return self.connector_num_latents * min(k, num_segments) + num_segments

    def resolve_num_focus_segments(self, num_focus_segments: int | None) -> int:
        """`K` of one call: the given value (checked), or `num_focus_segments` when None."""
        if num_focus_segments is None:
            return self.num_focus_segments
        if (
            hasattr(num_focus_segments, "ndim")
            and num_focus_segments.ndim == 0
            and not num_focus_segments.is_floating_point()
        ):
            num_focus_segments = int(num_focus_segments)  # a processor's BatchFeature holds it as a 0-d tensor
        if isinstance(num_focus_segments, bool) or not isinstance(num_focus_segments, int) or num_focus_segments < 1:
            raise ValueError(
                f"num_focus_segments must be an integer >= 1 (or None for the config's), got {num_focus_segments!r}."
            )
        return num_focus_segments

    def _check_settings(self):
        tower_type = getattr(self.tower_config, "model_type", None)
        if tower_type not in SUPPORTED_TOWERS:
            raise ValueError(
                f"SalovaConfig.tower_config must be a SigLIP or CLIP dual-encoder config "
                f"(model_type in {SUPPORTED_TOWERS}), got model_type={tower_type!r}."
            )
        text_tower = self.query_encoder_config
        if tower_type == "siglip" and text_tower.projection_size != text_tower.hidden_size:
            raise ValueError(
                "SalovaConfig.tower_config.text_config.projection_size must equal its hidden_size "
                f"({text_tower.hidden_size}): the router projects pooled and token states with one linear layer; "
                f"got {text_tower.projection_size}."
            )
        if self.vision_frame_summary not in (None, *FRAME_SUMMARIES):
            raise ValueError(
                f"SalovaConfig.vision_frame_summary must be one of {FRAME_SUMMARIES} or None, "
                f"got {self.vision_frame_summary!r}."
            )
        if self.frame_summary == "class_token" and tower_type not in TOWERS_WITH_CLASS_TOKEN:
            raise ValueError(
                f"SalovaConfig.vision_frame_summary='class_token' needs a tower with a class token "
                f"({TOWERS_WITH_CLASS_TOKEN}); the {tower_type} tower has none: use 'patch_mean'."
            )
        num_vision_states = self.vision_config.num_hidden_layers + 1
        _check_range("vision_feature_layer", self.vision_feature_layer, -num_vision_states, num_vision_states - 1)
        _check_range("vision_pooling_stride", self.vision_pooling_stride, 1, self.patch_grid_size)
        _check_range("vision_chunk_size", self.vision_chunk_size, 1)
        if self.connector_hidden_size is not None:
            _check_range("connector_hidden_size", self.connector_hidden_size, 1)
        for name in ("connector_num_latents", "connector_num_layers", "connector_num_heads", "connector_head_dim"):
            _check_range(name, getattr(self, name), 1)
        _check_range("connector_ff_mult", self.connector_ff_mult, 1)
        _check_range("connector_position_init_std", self.connector_position_init_std, 0.0)
        _check_range("connector_attention_init_gain", self.connector_attention_init_gain, 0.0, low_inclusive=False)
        _check_range("max_frames_per_segment", self.max_frames_per_segment, 1)
        _check_range("max_token_drop", self.max_token_drop, 0.0, 1.0, high_inclusive=False)
        _check_range("token_drop_reference_length", self.token_drop_reference_length, 1)
        _check_range("router_num_layers", self.router_num_layers, 1)
        _check_range("router_num_heads", self.router_num_heads, 1)
        if self.hidden_width % self.router_num_heads:
            raise ValueError(
                f"SalovaConfig.router_num_heads must divide the router width {self.hidden_width}, "
                f"got {self.router_num_heads}."
            )
        _check_range("router_dropout", self.router_dropout, 0.0, 1.0, high_inclusive=False)
        _check_range("router_max_segments", self.router_max_segments, 1)
        _check_range("router_max_query_tokens", self.router_max_query_tokens, 2)
        _check_range("router_logit_scale_max", self.router_logit_scale_max, self.router_logit_scale_init)
        _check_range("num_focus_segments", self.num_focus_segments, 1, self.router_max_segments)
        _check_range("similarity_loss_weight", self.similarity_loss_weight, 0.0)
        _check_range("similarity_margin", self.similarity_margin, 0.0)


def _check_range(name, value, low, high=None, high_inclusive=True, low_inclusive=True):
    above_high = high is not None and (value > high if high_inclusive else value >= high)
    below_low = value < low if low_inclusive else value <= low
    if below_low or above_high:
        if high is None:
            allowed = f"{'>=' if low_inclusive else '>'} {low}"
        else:
            allowed = f"in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"SalovaConfig.{name} must be {allowed}, got {value!r}.")


__all__ = ["SalovaConfig"]
