# Copyright 2026 The SALOVA package authors. Licensed under the Apache License, Version 2.0.
"""Spatio-Temporal Connector: a perceiver resampler that turns one video segment into 1 + N tokens.

Each segment (T frames x P pooled patch tokens) is flattened, tagged with a learned spatial embedding
(per patch position) and a learned temporal embedding (per frame), optionally thinned by the dynamic
token drop, and read by N visual latents plus one routing latent. The routing latent starts from the
segment's mean frame vector, so token 0 of the output (the routing token R_i) summarises the segment for
the router and for the fast pathway.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


def dynamic_token_drop(
    tokens: torch.Tensor,
    token_mask: torch.Tensor,
    max_drop: float,
    reference_length: int,
    longest: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keeps the same number of random tokens in every segment of a batch.

    With `L` the longest segment of the batch in tokens (`longest`, by default the longest in `tokens`,
    which may be one slice of a larger batch), the drop rate is `p = max_drop * min(1, L / reference_length)`
    and every segment keeps `n = max(1, floor(L * (1 - p)))` of its tokens, chosen uniformly at random
    (all of them when it has `n` or fewer). Order among kept tokens follows their original order.

    Args:
        tokens: `(num_segments, L, dim)`.
        token_mask: `(num_segments, L)`, True on real tokens.

    Returns:
        `(num_segments, L', dim)` kept tokens and their `(num_segments, L')` mask, `L' <= n`.
    """
    longest = int(token_mask.sum(-1).max()) if longest is None else longest
    drop_rate = max_drop * min(1.0, longest / reference_length)
    keep = max(1, math.floor(longest * (1.0 - drop_rate)))
    if keep >= token_mask.shape[1]:
        return tokens, token_mask
    # Random priority per real token; padding sorts last so it is only taken by segments shorter than `keep`.
    priority = torch.rand(token_mask.shape, device=tokens.device).masked_fill(~token_mask, 2.0)
    kept_index = priority.topk(keep, dim=-1, largest=False).indices.sort(dim=-1).values
    kept_tokens = tokens.gather(1, kept_index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return kept_tokens, token_mask.gather(1, kept_index)


class PerceiverAttention(nn.Module):
    """Latents attend to `[media ; latents]` (Flamingo), padding of the media masked."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor, media_mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            media: `(B, M, dim)`; latents: `(B, N, dim)`; media_mask: `(B, M)`, True on real tokens.

        Returns:
            `(B, N, dim)` attention output (residual not added).
        """
        media, latents = self.norm_media(media), self.norm_latents(latents)
        context = torch.cat([media, latents], dim=1)
        query = self._split_heads(self.to_q(latents))
        key, value = (self._split_heads(t) for t in self.to_kv(context).chunk(2, dim=-1))
        latent_mask = media_mask.new_ones(latents.shape[:2])
        attend = torch.cat([media_mask, latent_mask], dim=1)[:, None, None, :]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attend)
        return self.to_out(out.transpose(1, 2).flatten(2))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int):
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * mult, dim, bias=False),
        )


class PerceiverLayer(GradientCheckpointingLayer):
    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int):
        super().__init__()
        self.attention = PerceiverAttention(dim, heads, head_dim)
        self.feed_forward = FeedForward(dim, ff_mult)

    def forward(self, latents: torch.Tensor, media: torch.Tensor, media_mask: torch.Tensor) -> torch.Tensor:
        latents = latents + self.attention(media, latents, media_mask)
        return latents + self.feed_forward(latents)


class SpatioTemporalConnector(nn.Module):
    """Segment frames `(S, T, P, d_v)` -> `(S, 1 + num_latents, width)`; output token 0 is the routing token."""

    def __init__(self, config):
        super().__init__()
        width = config.hidden_width
        self.input_projection = (
            nn.Linear(config.vision_hidden_size, width) if width != config.vision_hidden_size else nn.Identity()
        )
        self.spatial_embedding = nn.Parameter(torch.zeros(config.tokens_per_frame, width))
        self.temporal_embedding = nn.Parameter(torch.zeros(config.max_frames_per_segment, width))
        self.routing_latent = nn.Parameter(torch.zeros(1, width))
        self.latents = nn.Parameter(torch.randn(config.connector_num_latents, width))
        self.layers = nn.ModuleList(
            PerceiverLayer(width, config.connector_num_heads, config.connector_head_dim, config.connector_ff_mult)
            for _ in range(config.connector_num_layers)
        )
        self.norm = nn.LayerNorm(width)

    def forward(
        self,
        frame_tokens: torch.Tensor,
        frame_summaries: torch.Tensor,
        frame_mask: torch.Tensor,
        max_token_drop: float = 0.0,
        token_drop_reference_length: int = 18000,
        longest_segment_tokens: int | None = None,
    ) -> torch.Tensor:
        """
        Args:
            frame_tokens: `(S, T_max, P, d_v)` pooled patch tokens of S segments, padded along time.
            frame_summaries: `(S, T_max, d_v)` one vector per frame (CLIP's class token, SigLIP's patch mean).
            frame_mask: `(S, T_max)`, True on real frames (every segment has at least one).
            max_token_drop: `p_max` of the dynamic token drop; it applies in training mode only.
            token_drop_reference_length: length in tokens at which the drop rate reaches `max_token_drop`.
            longest_segment_tokens: `L` of the whole batch when this call sees only part of it.

        Returns:
            `(S, 1 + num_latents, width)`.
        """
        num_segments, num_frames, tokens_per_frame, _ = frame_tokens.shape
        if num_frames > self.temporal_embedding.shape[0]:
            raise ValueError(
                f"A segment has {num_frames} frames but the connector's temporal embedding has "
                f"{self.temporal_embedding.shape[0]} rows (config.max_frames_per_segment): split long scenes first."
            )
        frame_tokens = self.input_projection(frame_tokens)
        mask = frame_mask[..., None].to(frame_tokens.dtype)
        segment_mean = (self.input_projection(frame_summaries) * mask).sum(1) / mask.sum(1)

        media = (
            frame_tokens
            + self.spatial_embedding[None, None, :tokens_per_frame]
            + self.temporal_embedding[None, :num_frames, None]
        ).flatten(1, 2)
        media_mask = frame_mask[:, :, None].expand(-1, -1, tokens_per_frame).flatten(1)
        if self.training and max_token_drop > 0:
            media, media_mask = dynamic_token_drop(
                media, media_mask, max_token_drop, token_drop_reference_length, longest_segment_tokens
            )

        routing = self.routing_latent + segment_mean[:, None]
        latents = torch.cat([routing, self.latents.expand(num_segments, -1, -1)], dim=1)
        for layer in self.layers:
            latents = layer(latents, media, media_mask)
        return self.norm(latents)
