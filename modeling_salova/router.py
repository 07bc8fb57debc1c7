# Copyright 2026 The SALOVA package authors. Licensed under the Apache License, Version 2.0.
"""Segment-Retrieval Router: scores every segment of a video against the query and picks the focus segments.

Routing tokens (one per segment, in temporal order) are the queries of a small post-norm transformer whose
layers cross-attend to the projected query text (no attention among segments, so a segment's score does not
depend on the other segments). Each updated routing token is compared with the
projected pooled text by a scaled cosine: `s_i = cos(R'_i, t) * exp(min(logit_scale, router_logit_scale_max))`,
the temperature bounded as in CLIP.

The logit scale is a `(1,)` parameter: engines that move parameters as flat bytes (DeepSpeed's start-up broadcast
views each one as uint8) cannot take a 0-dim one. Checkpoints written while it was 0-dim load through
`LogitScaleAsVector`, from `from_pretrained` (a conversion registered for the `salova` model type) and from
`load_state_dict` (a pre-hook of the router).
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.modeling_layers import GradientCheckpointingLayer

LOGIT_SCALE_KEY = "router.logit_scale"


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """x: `(B, N, dim)` attends to context `(B, M, dim)`; context_mask `(B, M)` is True on real tokens."""
        query = self._split_heads(self.to_q(x))
        key, value = (self._split_heads(t) for t in self.to_kv(context).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=context_mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.to_out(out.transpose(1, 2).flatten(2))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class RouterLayer(GradientCheckpointingLayer):
    """Post-norm layer: segment-to-text cross-attention, then a PReLU feed-forward."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.cross_attention = Attention(dim, heads, dropout)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.PReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.dropout = nn.Dropout(dropout)

    def forward(self, segments: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        segments = self.norms[0](segments + self.dropout(self.cross_attention(segments, text, text_mask)))
        return self.norms[1](segments + self.dropout(self.feed_forward(segments)))


class SegmentRetrievalRouter(nn.Module):
    def __init__(self, config):
        super().__init__()
        dim = config.hidden_width
        self.segment_positions = nn.Embedding(config.router_max_segments, dim)
        self.text_positions = nn.Embedding(config.router_max_query_tokens, dim)
        self.segment_norm = nn.LayerNorm(dim)
        self.text_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.router_dropout)
        self.layers = nn.ModuleList(
            RouterLayer(dim, config.router_num_heads, dim, config.router_dropout)
            for _ in range(config.router_num_layers)
        )
        self.logit_scale = nn.Parameter(torch.full((1,), float(config.router_logit_scale_init)))
        self.logit_scale_max = config.router_logit_scale_max
        self.register_load_state_dict_pre_hook(_logit_scale_as_vector)

    def forward(
        self,
        routing_tokens: torch.Tensor,
        segment_mask: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            routing_tokens: `(B, N, dim)` routing token of each segment, temporal order, padded.
            segment_mask: `(B, N)`, True on real segments.
            text_states: `(B, 1 + L_q, dim)` projected pooled text followed by projected token states.
            text_mask: `(B, 1 + L_q)`, True on real text positions.

        Returns:
            `(B, N)` scores, `-inf` on padded segments.
        """
        num_segments, num_text = routing_tokens.shape[1], text_states.shape[1]
        if num_segments > self.segment_positions.num_embeddings:
            raise ValueError(
                f"A video has {num_segments} segments but the router has {self.segment_positions.num_embeddings} "
                "segment positions (config.router_max_segments): merge scenes before calling the model."
            )
        if num_text > self.text_positions.num_embeddings:
            raise ValueError(
                f"The router query has {num_text - 1} tokens (+1 pooled state) but the router has "
                f"{self.text_positions.num_embeddings} text positions (config.router_max_query_tokens)."
            )
        segments = self.dropout(self.segment_norm(routing_tokens + self.segment_positions.weight[:num_segments]))
        text = self.dropout(self.text_norm(text_states + self.text_positions.weight[:num_text]))
        for layer in self.layers:
            segments = layer(segments, text, text_mask)
        similarity = F.cosine_similarity(segments, text_states[:, :1], dim=-1)
        scores = similarity * self.logit_scale.clamp(max=self.logit_scale_max).exp()
        return scores.masked_fill(~segment_mask, float("-inf"))


class LogitScaleAsVector(ConversionOps):
    """Loads a 0-dim logit scale (checkpoints written before it became `(1,)`) as shape `(1,)`; saving keeps `(1,)`."""

    def convert(self, input_dict, source_patterns, target_patterns, **kwargs) -> dict[str, torch.Tensor]:
        tensors = next(iter(input_dict.values()))
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        return {target_patterns[0]: tensor.reshape(1)}

    @property
    def reverse_op(self) -> ConversionOps:
        return self


# Registered again (overwrite) when the remote-code copy of this file is imported beside the package's own.
register_checkpoint_conversion_mapping(
    "salova", [WeightConverter(LOGIT_SCALE_KEY, LOGIT_SCALE_KEY, operations=[LogitScaleAsVector()])], overwrite=True
)


def _logit_scale_as_vector(module, state_dict, prefix, *args) -> None:
    key = prefix + "logit_scale"
    if key in state_dict and state_dict[key].dim() == 0:
        state_dict[key] = state_dict[key].reshape(1)


def select_focus_segments(
    scores: torch.Tensor,
    segment_mask: torch.Tensor,
    top_k: int,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Picks `min(top_k, N_v)` segments per video and returns them in temporal order.

    Without labels the router's highest scores win. With labels (teacher forcing in training) segments rank
    by label first, router score second: ground-truth positives fill the focus slots (the best-labelled ones
    when there are more than `top_k`), and the router's best negatives fill any slot left.

    Args:
        scores: `(B, N)` router scores. segment_mask: `(B, N)`. labels: `(B, N)` or None.

    Returns:
        `(B, min(top_k, N))` segment indices, ascending, `-1` where a video has fewer than `top_k` segments.
    """
    num_segments = scores.shape[1]
    k = min(top_k, num_segments)
    segment_mask = segment_mask.to(scores.device)
    order = scores.detach().float().masked_fill(~segment_mask, float("-inf")).argsort(dim=-1, descending=True)
    if labels is not None:
        # Stable sort by label over the score order: labels decide, router scores break ties.
        label_key = labels.to(scores.device).float().masked_fill(~segment_mask, float("-inf")).gather(1, order)
        order = order.gather(1, label_key.argsort(dim=-1, descending=True, stable=True))
    chosen = order[:, :k]
    chosen = chosen.masked_fill(~segment_mask.gather(1, chosen), num_segments).sort(dim=-1).values
    return chosen.masked_fill(chosen == num_segments, -1)
