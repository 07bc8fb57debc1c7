# Copyright 2026 The SALOVA package authors. Licensed under the Apache License, Version 2.0.
"""SALOVA: retrieval-augmented long-video LLM (Kim et al., CVPR 2025).

Input contract of one batch of B rows, each with one video (an image is a one-frame, one-segment video):

* `pixel_values_videos` `(F, 3, H, W)`: the 1 FPS frames of every segment of every video, concatenated in
  order (video 0 segment 0, video 0 segment 1, ..., video 1 segment 0, ...).
* `frames_per_segment` `(S,)`: frames of each segment, `sum == F`, each >= 1.
* `segments_per_video` `(B,)`: segments of each video, `sum == S`, each in `[1, router_max_segments]`.
* `query_input_ids` / `query_attention_mask` `(B, L_q)`: the router query of each row, tokenized with the
  vision tower's own text tokenizer.
* `input_ids` `(B, L)`: the LLM prompt, where each row holds exactly
  `connector_num_latents * min(K, N_v) + N_v` `video_token_id` placeholders.
* `segment_labels` `(S,)`, optional: retrieval target of each segment in [0, 1]; enables `L_sim` and, in
  training mode, teacher-forced focus segments.
* `segment_times` `(S, 2)`, optional: start and end seconds of each segment (from the processor), checked
  against `frames_per_segment` and otherwise only carried along.

Training adds the targets of the loss `L_ar + similarity_loss_weight * L_sim`: `labels` `(B, L)` for the LM, and
for the router, besides `segment_labels`, the targets of every labelled query of the batch (a video may be asked
several questions, as a conversation's turns or a scene's captions):

* `query_labels` `(B, N_max)` and `query_label_mask` `(B,)`, optional: retrieval targets of each row's query (the
  one in `query_input_ids`) and which rows have them; without them, `segment_labels` are the targets of every row.
* `extra_query_input_ids` / `extra_query_attention_mask` `(Q, L_e)`, `extra_query_rows` `(Q,)`,
  `extra_query_labels` `(Q, N_max)`, optional: further queries, each about the video of row `extra_query_rows[q]`,
  routed against that video's encoding (no focus tokens are assembled for them), with their targets.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoModel,
    CLIPTextModel,
    CLIPVisionModel,
    GenerationMixin,
    PreTrainedModel,
    SiglipTextModel,
    SiglipVisionModel,
)
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPooling,
    MultimodalBaseModelOutputWithPast,
    MultimodalCausalLMOutputWithPast,
)
from transformers.utils import ModelOutput, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_salova import SalovaConfig
from .connector import SpatioTemporalConnector
from .losses import similarity_loss
from .router import SegmentRetrievalRouter, select_focus_segments

# Each class registers one auto class when saved; the rest of the mapping is written here.
AUTO_MAP = {
    "AutoConfig": "configuration_salova.SalovaConfig",
    "AutoModel": "modeling_salova.SalovaModel",
    "AutoModelForImageTextToText": "modeling_salova.SalovaForConditionalGeneration",
}

# (vision tower, query encoder) classes of each supported dual encoder.
TOWER_CLASSES = {"siglip": (SiglipVisionModel, SiglipTextModel), "clip": (CLIPVisionModel, CLIPTextModel)}

# Inputs that only the prefill step consumes; `generate()` must not feed them again with the KV cache.
VIDEO_INPUT_NAMES = (
    "pixel_values_videos",
    "frames_per_segment",
    "segments_per_video",
    "query_input_ids",
    "query_attention_mask",
    "segment_labels",
    "segment_times",
    "num_focus_segments",
    "video_latents",
    "video_routing_tokens",
)
# Inputs with one row per segment; beam search repeats them by whole video.
PER_SEGMENT_INPUT_NAMES = (
    "frames_per_segment",
    "segment_labels",
    "segment_times",
    "video_latents",
    "video_routing_tokens",
)


@dataclass
class SalovaVideoFeaturesOutput(BaseModelOutputWithPooling):
    """
    The question-independent half of the video path: what the connector makes of each segment.

    last_hidden_state (`torch.FloatTensor` of shape `(S, connector_num_latents, width)`):
        Focus latents of each segment, before the projector.
    pooler_output (`torch.FloatTensor` of shape `(S, width)`):
        Routing token of each segment, before the projector.
    hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*):
        Of the (truncated) vision tower, one row per frame `(F, ...)`, when asked for.
    """


@dataclass
class SalovaRoutingOutput(ModelOutput):
    """
    The question-dependent half: segments routed against the query and the FocusFast tokens assembled.

    video_embeds (`torch.FloatTensor` of shape `(num_video_tokens, d_llm)`):
        FocusFast tokens of all rows, projected to the LLM width, in placeholder order.
    router_scores (`torch.FloatTensor` of shape `(B, N_max)`):
        Router score of each segment, `-inf` on padding.
    segment_mask (`torch.BoolTensor` of shape `(B, N_max)`):
        True on real segments.
    selected_segments (`torch.LongTensor` of shape `(B, min(K, N_max))`):
        Focus segments of each video, indices within the video, ascending, `-1` on padding.
    routing_tokens (`torch.FloatTensor` of shape `(B, N_max, width)`):
        Routing token of each segment (before the projector).
    query_states (`torch.FloatTensor` of shape `(B, 1 + L_q, width)`) and `query_mask`:
        Projected pooled + token states of the router query.
    """

    video_embeds: torch.FloatTensor | None = None
    router_scores: torch.FloatTensor | None = None
    segment_mask: torch.BoolTensor | None = None
    selected_segments: torch.LongTensor | None = None
    routing_tokens: torch.FloatTensor | None = None
    query_states: torch.FloatTensor | None = None
    query_mask: torch.BoolTensor | None = None


@dataclass
class SalovaModelOutputWithPast(MultimodalBaseModelOutputWithPast):
    """
    video_outputs (`SalovaVideoFeaturesOutput`): the connector's output for every segment (`get_video_features`),
    when frames were given. image_outputs: an image is a one-frame video, so this stays None.
    router_scores, selected_segments, routing_tokens, query_states: see `SalovaRoutingOutput`; None when no video
    was given. A video's padding segments score `-inf` (`router_scores.isfinite()` is the segment mask).
    video_hidden_states (`torch.FloatTensor` of shape `(num_video_tokens, d_llm)`): the spliced FocusFast tokens.
    """

    router_scores: torch.FloatTensor | None = None
    selected_segments: torch.LongTensor | None = None
    video_hidden_states: torch.FloatTensor | None = None
    routing_tokens: torch.FloatTensor | None = None
    query_states: torch.FloatTensor | None = None


@dataclass
class SalovaCausalLMOutputWithPast(MultimodalCausalLMOutputWithPast):
    """
    loss: `lm_loss + similarity_loss_weight * similarity_loss` (either part may be absent), each part normalised as
        `num_items_in_batch` and `num_micro_batches` ask; when no query is labelled, the router's scores join it with
        zero weight.
    lm_loss: mean next-token loss on this batch's labelled (response) tokens. similarity_loss: `L_sim` of the router
        over every labelled query of the batch.
    video_outputs: see `SalovaModelOutputWithPast`.
    router_scores `(B, N_max)` (`-inf` on padding segments), selected_segments `(B, K)`: see `SalovaRoutingOutput`.
    """

    lm_loss: torch.FloatTensor | None = None
    similarity_loss: torch.FloatTensor | None = None
    router_scores: torch.FloatTensor | None = None
    selected_segments: torch.LongTensor | None = None


class FocusFastProjector(nn.Sequential):
    """Shared 2-layer MLP from the connector width to the LLM width, for focus latents and routing tokens."""

    def __init__(self, config: SalovaConfig):
        llm_width = config.text_config.hidden_size
        super().__init__(
            nn.Linear(config.hidden_width, llm_width),
            ACT2FN[config.projector_hidden_act],
            nn.Linear(llm_width, llm_width),
        )


class SalovaPreTrainedModel(PreTrainedModel):
    config: SalovaConfig
    base_model_prefix = "model"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["SpatioTemporalConnector", "SegmentRetrievalRouter", "FocusFastProjector"]
    _skip_keys_device_placement = ["cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _can_compile_fullgraph = True

    @classmethod
    def is_custom_code(cls) -> bool:
        """False, although SALOVA is defined outside transformers (and loads as remote code).

        transformers treats custom code as possibly writing weights in place without `transformers.initialization`,
        and then skips every module whose own parameters are all initialised, parameter-less ones included. That
        skips SigLIP's attention and MLP blocks, whose `_init_weights` sets their linears, so weights re-initialised
        on load would differ from a freshly built model. SALOVA's `_init_weights` uses `transformers.initialization`
        throughout and ties parameters, never modules, so the guard is not needed.
        """
        return False

    def save_pretrained(self, *args, **kwargs):
        self.config.auto_map = {**AUTO_MAP, **(getattr(self.config, "auto_map", None) or {})}
        return super().save_pretrained(*args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SpatioTemporalConnector):
            init.normal_(module.latents, mean=0.0, std=1.0)
            init.zeros_(module.routing_latent)
            init.normal_(module.spatial_embedding, std=self.config.connector_position_init_std)
            init.normal_(module.temporal_embedding, std=self.config.connector_position_init_std)
            for linear in module.modules():
                if isinstance(linear, nn.Linear):
                    # nn.Linear's own fan-in scaled default, as in lucidrains' resampler: about the 0.02 of
                    # `initializer_range` at real widths, while at a tiny width 0.02 leaves the latents blind to media.
                    init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
            for attention in (layer.attention for layer in module.layers):
                inner = attention.to_q.out_features
                # An in-place scaling, unlike `init.*`, would also scale weights loaded from a checkpoint.
                if not getattr(attention.to_q.weight, "_is_hf_initialized", False):
                    attention.to_q.weight.mul_(self.config.connector_attention_init_gain)
                if not getattr(attention.to_kv.weight, "_is_hf_initialized", False):
                    attention.to_kv.weight[:inner].mul_(self.config.connector_attention_init_gain)  # keys, not values
        elif isinstance(module, SegmentRetrievalRouter):
            init.constant_(module.logit_scale, self.config.router_logit_scale_init)
        elif isinstance(module, nn.PReLU):
            init.constant_(module.weight, 0.25)


class SalovaModel(SalovaPreTrainedModel):
    def __init__(self, config: SalovaConfig):
        super().__init__(config)
        vision_class, query_encoder_class = TOWER_CLASSES[config.tower_config.model_type]
        self.vision_tower = vision_class._from_config(config.vision_config)
        truncate_vision_tower(self.vision_tower, config)
        self.query_encoder = query_encoder_class._from_config(config.query_encoder_config)
        self.query_projection = nn.Linear(config.query_encoder_config.hidden_size, config.hidden_width)
        self.connector = SpatioTemporalConnector(config)
        self.router = SegmentRetrievalRouter(config)
        self.projector = FocusFastProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def encode_frames(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, BaseModelOutput]:
        """Frames `(F, 3, H, W)` -> pooled patch tokens `(F, P, d_v)`, frame summaries `(F, d_v)` and the tower's
        per-frame hidden states / attentions (None unless asked for).

        Frames go through the (truncated) vision tower `config.vision_chunk_size` at a time, without autograd
        when none of its weights train (stages 1 and 1.5), and each chunk is written into outputs allocated once,
        so the only memory that grows with `F` is the returned features. The summary is the mean of the patches
        before pooling, or CLIP's class token (`config.frame_summary`).
        """
        tower_trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.vision_tower.parameters())
        grid = self.config.patch_grid_size
        tokens = summaries = None
        hidden_states, attentions = [], []
        with torch.set_grad_enabled(tower_trains):
            for start in range(0, len(pixel_values), self.config.vision_chunk_size):
                chunk = pixel_values[start : start + self.config.vision_chunk_size]
                encoded = self.vision_tower(
                    pixel_values=chunk.to(self.vision_tower.dtype),
                    output_hidden_states=output_hidden_states,
                    output_attentions=output_attentions,
                )
                hidden = encoded.last_hidden_state
                patches = hidden[:, -grid * grid :]
                pooled = self._pool_patches(patches)
                summary = hidden[:, 0] if self.config.frame_summary == "class_token" else patches.mean(dim=1)
                if tokens is None:
                    tokens = pooled.new_empty(len(pixel_values), *pooled.shape[1:])
                    summaries = summary.new_empty(len(pixel_values), *summary.shape[1:])
                tokens[start : start + len(chunk)] = pooled
                summaries[start : start + len(chunk)] = summary
                hidden_states.append(encoded.hidden_states)
                attentions.append(encoded.attentions)
        tower_outputs = BaseModelOutput(
            last_hidden_state=None, hidden_states=_cat_layers(hidden_states), attentions=_cat_layers(attentions)
        )
        return tokens, summaries, tower_outputs

    def _pool_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """`(F, g*g, d_v)` -> `(F, ceil(g/s)^2, d_v)` by bilinear s x s pooling on the patch grid."""
        grid = self.config.patch_grid_size
        side = -(-grid // self.config.vision_pooling_stride)
        image = patches.unflatten(1, (grid, grid)).permute(0, 3, 1, 2)
        pooled = F.interpolate(image.float(), size=(side, side), mode="bilinear", align_corners=False)
        return pooled.to(patches.dtype).flatten(2).transpose(1, 2)

    def encode_segments(
        self, frame_features: torch.Tensor, frame_summaries: torch.Tensor, frames_per_segment: torch.Tensor
    ) -> torch.Tensor:
        """Frame tokens `(F, P, d_v)` + summaries `(F, d_v)` -> connector outputs `(S, 1 + num_latents, width)`.

        Segments go through the connector in length-sorted groups padded to at most
        `max(vision_chunk_size, longest segment)` frames, so a short scene never pads to a long one.
        """
        lengths = frames_per_segment.tolist()
        segments = frame_features.split(lengths)
        summaries = frame_summaries.split(lengths)
        frame_budget = max(self.config.vision_chunk_size, max(lengths))
        longest_tokens = max(lengths) * frame_features.shape[1]
        outputs = [None] * len(lengths)
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        group: list[int] = []
        for position, index in enumerate(order):
            group.append(index)
            next_length = lengths[order[position + 1]] if position + 1 < len(order) else None
            if next_length is None or next_length * (len(group) + 1) > frame_budget:
                padded = nn.utils.rnn.pad_sequence([segments[i] for i in group], batch_first=True)
                padded_summaries = nn.utils.rnn.pad_sequence([summaries[i] for i in group], batch_first=True)
                frame_mask = torch.arange(padded.shape[1], device=padded.device) < torch.tensor(
                    [lengths[i] for i in group], device=padded.device
                ).unsqueeze(1)
                encoded = self.connector(
                    padded,
                    padded_summaries,
                    frame_mask,
                    max_token_drop=self.config.max_token_drop,
                    token_drop_reference_length=self.config.token_drop_reference_length,
                    longest_segment_tokens=longest_tokens,
                )
                for i, segment_output in zip(group, encoded, strict=True):
                    outputs[i] = segment_output
                group = []
        return torch.stack(outputs)

    def encode_query(
        self, query_input_ids: torch.LongTensor, query_attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Router query `(B, L_q)` -> projected `[pooled ; penultimate token states]` `(B, 1 + L_q, width)` + mask.

        The pooled state is the final-normed state of the last real token (the EOS of both SigLIP and CLIP
        tokenizers), through SigLIP's text head where the tower has one, so padding never leaks into it.
        """
        if query_attention_mask is None:
            query_attention_mask = torch.ones_like(query_input_ids)
        max_positions = self.config.query_encoder_config.max_position_embeddings
        if query_input_ids.shape[1] > max_positions:
            raise ValueError(
                f"query_input_ids has {query_input_ids.shape[1]} tokens but the text tower accepts "
                f"{max_positions} (tower_config.text_config.max_position_embeddings); truncate the query."
            )
        encoded = self.query_encoder(
            input_ids=query_input_ids, attention_mask=query_attention_mask, output_hidden_states=True
        )
        last_token = query_attention_mask.sum(1).clamp(min=1) - 1
        pooled = encoded.last_hidden_state[torch.arange(len(last_token), device=last_token.device), last_token]
        if isinstance(getattr(self.query_encoder, "head", None), nn.Linear):
            pooled = self.query_encoder.head(pooled)
        states = torch.cat([pooled[:, None], encoded.hidden_states[-2]], dim=1)
        return self.query_projection(states), router_query_mask(query_input_ids, query_attention_mask)

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        frames_per_segment: torch.LongTensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> SalovaVideoFeaturesOutput:
        r"""
        The question-independent half of the video path: frames -> vision tower -> connector, per segment.

        pixel_values_videos (`torch.FloatTensor` of shape `(F, 3, H, W)`): the frames of all segments, in order.
        frames_per_segment (`torch.LongTensor` of shape `(S,)`): frames of each segment, `sum == F`.
        return_dict (`bool`, *optional*): `False` returns the output as a tuple.

        Returns `last_hidden_state` `(S, connector_num_latents, width)` (focus latents) and `pooler_output`
        `(S, width)` (routing tokens), both before the projector: pass them to `forward`/`generate` as
        `video_latents` and `video_routing_tokens` to answer questions without encoding the frames again.
        """
        _check_frames(pixel_values_videos, frames_per_segment)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        frame_features, frame_summaries, tower_outputs = self.encode_frames(
            pixel_values_videos, output_hidden_states, output_attentions
        )
        segment_tokens = self.encode_segments(frame_features, frame_summaries, frames_per_segment)
        return SalovaVideoFeaturesOutput(
            last_hidden_state=segment_tokens[:, 1:],
            pooler_output=segment_tokens[:, 0],
            hidden_states=tower_outputs.hidden_states,
            attentions=tower_outputs.attentions,
        )

    def route_segments(
        self,
        video_latents: torch.Tensor,
        video_routing_tokens: torch.Tensor,
        segments_per_video: torch.LongTensor,
        query_input_ids: torch.LongTensor,
        query_attention_mask: torch.Tensor | None = None,
        segment_labels: torch.Tensor | None = None,
        num_focus_segments: int | None = None,
    ) -> SalovaRoutingOutput:
        """The question-dependent half: scores the segments of each video against its query, keeps the top K and
        assembles the FocusFast tokens (shapes in the module docstring and `SalovaRoutingOutput`).

        `video_latents` `(S, connector_num_latents, width)` and `video_routing_tokens` `(S, width)` are what
        `get_video_features` returned, for the videos of all rows concatenated.
        """
        num_focus_segments = self.config.resolve_num_focus_segments(num_focus_segments)
        _check_segments(self.config, video_latents, video_routing_tokens, segments_per_video, query_input_ids)
        query_states, query_mask = self.encode_query(query_input_ids, query_attention_mask)

        segment_mask = torch.arange(int(segments_per_video.max()), device=video_routing_tokens.device) < (
            segments_per_video.to(video_routing_tokens.device).unsqueeze(1)
        )
        routing_tokens = video_routing_tokens.new_zeros(*segment_mask.shape, video_routing_tokens.shape[-1])
        routing_tokens[segment_mask] = video_routing_tokens
        scores = self.router(routing_tokens, segment_mask, query_states, query_mask)

        labels = None
        if segment_labels is not None and self.training:
            labels = scores.new_zeros(segment_mask.shape)
            labels[segment_mask] = segment_labels.to(scores)
        selected = select_focus_segments(scores, segment_mask, num_focus_segments, labels)

        first_segment = torch.cumsum(segments_per_video, 0) - segments_per_video
        video_tokens = []
        for row, chosen in enumerate(selected.tolist()):
            chosen = [first_segment[row].item() + i for i in chosen if i >= 0]
            focus = video_latents[chosen].flatten(0, 1)
            fast = routing_tokens[row, segment_mask[row]]
            video_tokens.append(torch.cat([focus, fast]))
        return SalovaRoutingOutput(
            video_embeds=self.projector(torch.cat(video_tokens)),
            router_scores=scores,
            segment_mask=segment_mask,
            selected_segments=selected,
            routing_tokens=routing_tokens,
            query_states=query_states,
            query_mask=query_mask,
        )

    def in_batch_scores(
        self, routing_tokens: torch.Tensor, query_states: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """`(B, B)` scores of every query (rows) against every one-segment video of the batch (columns), from the
        `(B, N, width)` routing tokens, `(B, 1 + L_q, width)` query states and `(B, 1 + L_q)` mask of `route_segments`.
        """
        batch = routing_tokens.shape[0]
        clips = routing_tokens[:, :1].repeat(batch, 1, 1)
        queries = query_states.repeat_interleave(batch, dim=0)
        query_mask = query_mask.repeat_interleave(batch, dim=0)
        clip_mask = torch.ones(batch * batch, 1, dtype=torch.bool, device=clips.device)
        return self.router(clips, clip_mask, queries, query_mask).view(batch, batch)

    def score_queries(
        self,
        routing_tokens: torch.Tensor,
        segment_mask: torch.BoolTensor,
        query_input_ids: torch.LongTensor,
        query_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(Q, N)` router scores of `Q` queries `(Q, L_q)`, each against the `(Q, N, width)` routing tokens of its
        own video (`segment_mask` `(Q, N)`), by the router alone: no focus segment is chosen, no token assembled."""
        query_states, query_mask = self.encode_query(query_input_ids, query_attention_mask)
        return self.router(routing_tokens, segment_mask, query_states, query_mask)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        frames_per_segment: torch.LongTensor | None = None,
        segments_per_video: torch.LongTensor | None = None,
        query_input_ids: torch.LongTensor | None = None,
        query_attention_mask: torch.Tensor | None = None,
        segment_labels: torch.Tensor | None = None,
        segment_times: torch.Tensor | None = None,
        num_focus_segments: int | None = None,
        video_latents: torch.Tensor | None = None,
        video_routing_tokens: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> SalovaModelOutputWithPast:
        r"""
        video_latents (`torch.FloatTensor` of shape `(S, connector_num_latents, width)`, *optional*) and
        video_routing_tokens (`torch.FloatTensor` of shape `(S, width)`, *optional*):
            `get_video_features`' `last_hidden_state` and `pooler_output`, in place of `pixel_values_videos`
            (then `frames_per_segment` is optional).

        Without a video, `<video>` placeholders in the prompt are embedded as ordinary tokens (as transformers'
        other video LLMs do), so that compiled and exported decoding has no data-dependent branch;
        `generate()` rejects a prompt with placeholders and no video before it starts.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        routed = video_outputs = None
        if pixel_values_videos is not None or video_latents is not None or video_routing_tokens is not None:
            missing = [
                name
                for name, value in (("segments_per_video", segments_per_video), ("query_input_ids", query_input_ids))
                if value is None
            ]
            if missing:
                raise ValueError(f"The video was given without {', '.join(missing)}.")
            num_focus_segments = self.config.resolve_num_focus_segments(num_focus_segments)
            video_outputs = self._segment_features(
                pixel_values_videos, frames_per_segment, video_latents, video_routing_tokens
            )
            num_segments = len(video_outputs.pooler_output)
            if segment_times is not None and tuple(segment_times.shape) != (num_segments, 2):
                raise ValueError(
                    f"segment_times must be (S, 2) = ({num_segments}, 2) start/end seconds, got shape "
                    f"{tuple(segment_times.shape)}."
                )
            routed = self.route_segments(
                video_outputs.last_hidden_state,
                video_outputs.pooler_output,
                segments_per_video,
                query_input_ids,
                query_attention_mask,
                segment_labels,
                num_focus_segments,
            )
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds)
            self._check_placeholder_counts(placeholder_mask, segments_per_video, num_focus_segments)
            inputs_embeds = inputs_embeds.masked_scatter(
                placeholder_mask[..., None].to(inputs_embeds.device),
                routed.video_embeds.to(inputs_embeds.device, inputs_embeds.dtype),
            )

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return SalovaModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            video_outputs=video_outputs,
            router_scores=routed.router_scores if routed is not None else None,
            selected_segments=routed.selected_segments if routed is not None else None,
            video_hidden_states=routed.video_embeds if routed is not None else None,
            routing_tokens=routed.routing_tokens if routed is not None else None,
            query_states=routed.query_states if routed is not None else None,
        )

    def _segment_features(
        self,
        pixel_values_videos: torch.Tensor | None,
        frames_per_segment: torch.LongTensor | None,
        video_latents: torch.Tensor | None,
        video_routing_tokens: torch.Tensor | None,
    ) -> SalovaVideoFeaturesOutput:
        """The connector's output (`get_video_features`) from the frames, or the stored one as given (checked)."""
        if pixel_values_videos is not None:
            if video_latents is not None or video_routing_tokens is not None:
                raise ValueError(
                    "Pass either pixel_values_videos or video_latents + video_routing_tokens "
                    "(from get_video_features), not both."
                )
            if frames_per_segment is None:
                raise ValueError("pixel_values_videos was given without frames_per_segment.")
            return self.get_video_features(pixel_values_videos, frames_per_segment, return_dict=True)
        if video_latents is None or video_routing_tokens is None:
            given, absent = (
                ("video_latents", "video_routing_tokens")
                if video_routing_tokens is None
                else ("video_routing_tokens", "video_latents")
            )
            raise ValueError(f"{given} was given without {absent}: pass both, as get_video_features returns them.")
        num_segments, width = len(video_routing_tokens), self.config.hidden_width
        expected = {
            "video_latents": (num_segments, self.config.connector_num_latents, width),
            "video_routing_tokens": (num_segments, width),
        }
        for name, value in (("video_latents", video_latents), ("video_routing_tokens", video_routing_tokens)):
            if tuple(value.shape) != expected[name]:
                raise ValueError(
                    f"{name} must have shape (S, {', '.join(map(str, expected[name][1:]))}) "
                    f"(get_video_features' output), got {tuple(value.shape)} for S = {num_segments} segments."
                )
        if frames_per_segment is not None and len(frames_per_segment) != num_segments:
            raise ValueError(
                f"frames_per_segment lists {len(frames_per_segment)} segments but video_routing_tokens has "
                f"{num_segments}."
            )
        return SalovaVideoFeaturesOutput(last_hidden_state=video_latents, pooler_output=video_routing_tokens)

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.FloatTensor | None = None
    ) -> torch.BoolTensor:
        """`(B, L)` True on `<video>` placeholders, found by id or, given only `inputs_embeds`, by embedding."""
        if self.config.video_token_id is None:
            raise ValueError("config.video_token_id is not set: the model cannot find where the video goes.")
        if input_ids is not None:
            return input_ids == self.config.video_token_id
        video_token = torch.tensor(self.config.video_token_id, device=inputs_embeds.device)
        return (inputs_embeds == self.get_input_embeddings()(video_token).to(inputs_embeds.dtype)).all(-1)

    def _check_placeholder_counts(
        self, placeholder_mask: torch.BoolTensor, segments_per_video: torch.LongTensor, num_focus_segments: int
    ) -> None:
        found = placeholder_mask.sum(1).tolist()
        expected = [self.config.num_video_tokens(n, num_focus_segments) for n in segments_per_video.tolist()]
        if found != expected:
            pairs = enumerate(zip(found, expected, strict=True))
            rows = [f"row {i}: {f} found, {e} expected" for i, (f, e) in pairs if f != e]
            raise ValueError(
                f"Video placeholders (token id {self.config.video_token_id}) do not match the videos: "
                f"{'; '.join(rows)}. Each video needs connector_num_latents * min(K, N_v) + N_v = "
                f"{self.config.connector_num_latents} * min({num_focus_segments}, N_v) + N_v placeholders."
            )


class SalovaForConditionalGeneration(SalovaPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # The language model's own plan covers its layers; a tied head reads the sharded embedding and needs its entry.
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: SalovaConfig):
        super().__init__(config)
        self.model = SalovaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def get_video_features(
        self, pixel_values_videos: torch.Tensor, frames_per_segment: torch.LongTensor, **kwargs
    ) -> SalovaVideoFeaturesOutput:
        """See `SalovaModel.get_video_features`."""
        return self.model.get_video_features(pixel_values_videos, frames_per_segment, **kwargs)

    def route_segments(self, *args, **kwargs) -> SalovaRoutingOutput:
        """See `SalovaModel.route_segments`."""
        return self.model.route_segments(*args, **kwargs)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        frames_per_segment: torch.LongTensor | None = None,
        segments_per_video: torch.LongTensor | None = None,
        query_input_ids: torch.LongTensor | None = None,
        query_attention_mask: torch.Tensor | None = None,
        segment_labels: torch.Tensor | None = None,
        segment_times: torch.Tensor | None = None,
        num_focus_segments: int | None = None,
        video_latents: torch.Tensor | None = None,
        video_routing_tokens: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        query_labels: torch.Tensor | None = None,
        query_label_mask: torch.BoolTensor | None = None,
        extra_query_input_ids: torch.LongTensor | None = None,
        extra_query_attention_mask: torch.Tensor | None = None,
        extra_query_rows: torch.LongTensor | None = None,
        extra_query_labels: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        num_micro_batches: int = 1,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> SalovaCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(B, L)`, *optional*):
            LM targets, -100 outside the response. segment_labels (`(S,)`): retrieval targets (see module docstring).
        shift_labels (`torch.LongTensor` of shape `(B, L)`, *optional*):
            The LM targets already shifted (position i's is the token after i), in place of `labels`, as sequence
            parallelism gives them.
        query_labels, query_label_mask, extra_query_input_ids, extra_query_attention_mask, extra_query_rows,
        extra_query_labels: the router's targets for each labelled query (see module docstring).
        num_items_in_batch (`int` or `torch.Tensor`, *optional*):
            When this batch is one micro-batch of an optimiser step: the labelled tokens the step's LM loss averages
            over on this process (its share when the step's tokens are averaged across processes). The loss then
            holds this batch's token-loss sum over it. Default: this batch's own labelled tokens.
        num_micro_batches (`int`, defaults to 1):
            Micro-batches of the optimiser step on this process: `L_sim`, a mean per micro-batch, is divided by it.
        segment_times (`torch.Tensor` of shape `(S, 2)`, *optional*):
            Start and end seconds of each segment, as the processor returns them; checked, not computed with.
        num_focus_segments (`int`, *optional*):
            `K` for this call (defaults to `config.num_focus_segments`); the prompt's placeholders must match it.
        video_latents, video_routing_tokens: `get_video_features`' output, in place of `pixel_values_videos`.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values_videos=pixel_values_videos,
            frames_per_segment=frames_per_segment,
            segments_per_video=segments_per_video,
            query_input_ids=query_input_ids,
            query_attention_mask=query_attention_mask,
            segment_labels=segment_labels,
            segment_times=segment_times,
            num_focus_segments=num_focus_segments,
            video_latents=video_latents,
            video_routing_tokens=video_routing_tokens,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])

        parts, lm_loss = [], None
        if labels is not None or shift_labels is not None:
            if shift_labels is None:
                shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]
            next_token_labels = shift_labels[:, slice_indices].to(logits.device)
            token_loss_sum = F.cross_entropy(
                logits.float().flatten(0, 1), next_token_labels.flatten(), ignore_index=-100, reduction="sum"
            )
            num_tokens = (next_token_labels != -100).sum().clamp(min=1)
            lm_loss = token_loss_sum / num_tokens
            parts.append(lm_loss if num_items_in_batch is None else token_loss_sum / num_items_in_batch)
        retrieval_loss = self._similarity_loss(
            outputs,
            query_input_ids,
            query_attention_mask,
            segment_labels,
            query_labels,
            query_label_mask,
            extra_query_input_ids,
            extra_query_attention_mask,
            extra_query_rows,
            extra_query_labels,
        )
        if retrieval_loss is not None:
            parts.append(self.config.similarity_loss_weight * retrieval_loss / num_micro_batches)
        elif parts and outputs.router_scores is not None:
            # No labelled query: the routing path (query encoder, router) still joins the loss, with zero weight, so
            # that every batch reduces the same gradients, as distributed engines need (DDP without a search for
            # unused parameters, FSDP, ZeRO: a process without them would leave the others waiting).
            parts.append(outputs.router_scores[outputs.router_scores.isfinite()].sum() * 0.0)
        return SalovaCausalLMOutputWithPast(
            loss=sum(parts) if parts else None,
            lm_loss=lm_loss,
            similarity_loss=retrieval_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            video_outputs=outputs.video_outputs,
            router_scores=outputs.router_scores,
            selected_segments=outputs.selected_segments,
        )

    def _similarity_loss(
        self,
        outputs: SalovaModelOutputWithPast,
        query_input_ids: torch.LongTensor | None,
        query_attention_mask: torch.Tensor | None,
        segment_labels: torch.Tensor | None,
        query_labels: torch.Tensor | None,
        query_label_mask: torch.BoolTensor | None,
        extra_query_input_ids: torch.LongTensor | None,
        extra_query_attention_mask: torch.Tensor | None,
        extra_query_rows: torch.LongTensor | None,
        extra_query_labels: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """`L_sim` over every labelled query of the batch (each row's, then the extra ones), or over every clip
        against every caption with in-batch negatives; None when no query is labelled."""
        if outputs.router_scores is None:
            return None
        segment_mask = outputs.router_scores.isfinite()
        one_segment_each = segment_mask.shape[1] == 1 and segment_mask.shape[0] > 1
        if self.config.router_in_batch_negatives and one_segment_each:
            query_mask = router_query_mask(query_input_ids, query_attention_mask)
            scores = self.model.in_batch_scores(outputs.routing_tokens, outputs.query_states, query_mask)
            targets = torch.eye(len(scores), device=scores.device, dtype=scores.dtype)
            return similarity_loss(scores, targets, torch.ones_like(targets, dtype=torch.bool), use_margin=False)
        _check_query_targets(
            segment_mask, query_labels, query_label_mask, extra_query_input_ids, extra_query_rows, extra_query_labels
        )
        if query_labels is None and segment_labels is not None:
            query_labels = outputs.router_scores.new_zeros(segment_mask.shape)
            query_labels[segment_mask] = segment_labels.to(query_labels)
        scores, targets, masks = [], [], []
        if query_labels is not None:
            labelled = slice(None) if query_label_mask is None else query_label_mask.to(segment_mask.device, torch.bool)
            scores.append(outputs.router_scores[labelled])
            targets.append(query_labels.to(outputs.router_scores)[labelled])
            masks.append(segment_mask[labelled])
        if extra_query_input_ids is not None:
            rows = extra_query_rows.to(segment_mask.device)
            scores.append(
                self.model.score_queries(
                    outputs.routing_tokens[rows], segment_mask[rows], extra_query_input_ids, extra_query_attention_mask
                )
            )
            targets.append(extra_query_labels.to(scores[-1]))
            masks.append(segment_mask[rows])
        if sum(len(score) for score in scores) == 0:
            return None
        # The margin term samples its pairs: fresh draws in training, the same draws in evaluation so that an
        # evaluation loss is reproducible.
        generator = None if self.training else torch.Generator().manual_seed(0)
        return similarity_loss(
            torch.cat(scores),
            torch.cat(targets),
            torch.cat(masks),
            margin=self.config.similarity_margin,
            use_margin=self.config.similarity_margin_loss,
            generator=generator,
        )

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):
        """`GenerationMixin.generate`, refusing a prompt whose `<video>` placeholders have no video.

        Placeholders already in a given `cache` were consumed with their video: only the tokens after the cache
        need one.
        """
        has_video = any(kwargs.get(name) is not None for name in ("pixel_values_videos", "video_latents"))
        cache = kwargs.get("cache")
        cached = cache.get_seq_length() if isinstance(cache, Cache) else 0
        input_ids = inputs if inputs is not None else kwargs.get("input_ids")
        input_ids = None if input_ids is None else input_ids[:, cached:]
        prompt = kwargs.get("inputs_embeds")
        if not has_video and self.config.video_token_id is not None and (input_ids is not None or prompt is not None):
            ids = input_ids if input_ids is not None and not torch.is_floating_point(input_ids) else None
            embeds = None if ids is not None else (prompt if prompt is not None else input_ids)
            if self.model.get_placeholder_mask(ids, embeds).any():
                raise ValueError(
                    f"The prompt holds video placeholders (token id {self.config.video_token_id}) but no video was "
                    "given: pass pixel_values_videos (or video_latents + video_routing_tokens) with "
                    "frames_per_segment, segments_per_video and query_input_ids, as the processor returns them."
                )
        return super().generate(inputs, generation_config, **kwargs)

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        """Beam search and `num_return_sequences` repeat each row; frames and segments repeat by whole video."""
        per_frame = model_kwargs.pop("pixel_values_videos", None)
        per_segment = {name: model_kwargs.pop(name, None) for name in PER_SEGMENT_INPUT_NAMES}
        segments_per_video = model_kwargs.get("segments_per_video")
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        if segments_per_video is not None:
            counts = segments_per_video.tolist()
            if per_frame is not None and per_segment["frames_per_segment"] is not None:
                frames = [int(chunk.sum()) for chunk in per_segment["frames_per_segment"].split(counts)]
                per_frame = _repeat_videos(per_frame, frames, expand_size)
            per_segment = {
                name: None if value is None else _repeat_videos(value, counts, expand_size)
                for name, value in per_segment.items()
            }
        model_kwargs.update(pixel_values_videos=per_frame, **per_segment)
        return input_ids, model_kwargs

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: Cache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            cache=cache,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        if not is_first_iteration and kwargs.get("use_cache", True):
            for name in VIDEO_INPUT_NAMES:
                model_inputs.pop(name, None)
        return model_inputs


def truncate_vision_tower(vision_tower: nn.Module, config: SalovaConfig) -> None:
    """Drops the encoder layers past `vision_feature_layer` and the final norm, in place.

    Their outputs are never used: left in, they cost compute and, when the tower trains (stage 2), hold
    parameters that never get a gradient, which DDP rejects.
    """
    transformer = getattr(vision_tower, "vision_model", vision_tower)  # flattened in recent transformers
    kept_layers = config.vision_feature_layer % (config.vision_config.num_hidden_layers + 1)
    transformer.encoder.layers = transformer.encoder.layers[:kept_layers]
    transformer.post_layernorm = nn.Identity()


def _repeat_videos(values: torch.Tensor, counts: list[int], expand_size: int) -> torch.Tensor:
    """Repeats each video's block of rows (`counts[b]` rows for video b) `expand_size` times, in place."""
    if expand_size == 1:
        return values
    return torch.cat([block for block in values.split(counts) for _ in range(expand_size)])


def router_query_mask(query_input_ids: torch.LongTensor, query_attention_mask: torch.Tensor | None) -> torch.Tensor:
    """`(B, 1 + L_q)` True on the router's text positions: the pooled state, then the query's real tokens."""
    if query_attention_mask is None:
        query_attention_mask = torch.ones_like(query_input_ids)
    return torch.cat([query_attention_mask.new_ones(len(query_attention_mask), 1), query_attention_mask], dim=1).bool()


def _cat_layers(chunks: list[tuple[torch.Tensor, ...] | None]) -> tuple[torch.Tensor, ...] | None:
    """Per-chunk tuples of per-layer tensors -> one tuple of per-layer tensors over all frames."""
    if not chunks or chunks[0] is None:
        return None
    return tuple(torch.cat(layer) for layer in zip(*chunks, strict=True))


def _check_frames(pixel_values_videos: torch.Tensor, frames_per_segment: torch.LongTensor) -> None:
    """Raises a ValueError naming the inconsistency before any frame reaches the vision tower."""
    if pixel_values_videos.ndim != 4:
        raise ValueError(
            f"pixel_values_videos must be (frames, 3, H, W) with all segments concatenated, got shape "
            f"{tuple(pixel_values_videos.shape)}."
        )
    if int(frames_per_segment.sum()) != pixel_values_videos.shape[0]:
        raise ValueError(
            f"frames_per_segment sums to {int(frames_per_segment.sum())} but pixel_values_videos has "
            f"{pixel_values_videos.shape[0]} frames."
        )
    empty = (frames_per_segment < 1).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"Segments {empty} have no frame; every segment needs at least one.")


def _check_segments(
    config: SalovaConfig,
    video_latents: torch.Tensor,
    video_routing_tokens: torch.Tensor,
    segments_per_video: torch.LongTensor,
    query_input_ids: torch.LongTensor,
) -> None:
    """Raises a ValueError naming the inconsistency before any segment reaches the router."""
    if len(video_latents) != len(video_routing_tokens):
        raise ValueError(
            f"video_latents has {len(video_latents)} segments but video_routing_tokens has {len(video_routing_tokens)}."
        )
    if int(segments_per_video.sum()) != len(video_routing_tokens):
        raise ValueError(
            f"segments_per_video sums to {int(segments_per_video.sum())} but the video has "
            f"{len(video_routing_tokens)} segments (frames_per_segment / video_routing_tokens)."
        )
    for row, count in enumerate(segments_per_video.tolist()):
        if not 1 <= count <= config.router_max_segments:
            raise ValueError(
                f"Video {row} has {count} segments; each video needs 1 to {config.router_max_segments} "
                "(config.router_max_segments). Merge neighbouring scenes or split the batch."
            )
    if query_input_ids.shape[0] != len(segments_per_video):
        raise ValueError(
            f"query_input_ids has {query_input_ids.shape[0]} rows but the batch has {len(segments_per_video)} videos."
        )


def _check_query_targets(
    segment_mask: torch.BoolTensor,
    query_labels: torch.Tensor | None,
    query_label_mask: torch.BoolTensor | None,
    extra_query_input_ids: torch.LongTensor | None,
    extra_query_rows: torch.LongTensor | None,
    extra_query_labels: torch.Tensor | None,
) -> None:
    """Raises a ValueError naming the router target that does not fit the `(B, N_max)` segments of the batch."""
    rows, width = segment_mask.shape
    if query_labels is not None and tuple(query_labels.shape) != (rows, width):
        raise ValueError(
            f"query_labels must be (B, N_max) = ({rows}, {width}) targets of each row's query, got shape "
            f"{tuple(query_labels.shape)}."
        )
    if query_label_mask is not None and (query_labels is None or tuple(query_label_mask.shape) != (rows,)):
        raise ValueError(f"query_label_mask must be ({rows},) and come with query_labels.")
    extra = {
        "extra_query_input_ids": extra_query_input_ids,
        "extra_query_rows": extra_query_rows,
        "extra_query_labels": extra_query_labels,
    }
    if all(value is None for value in extra.values()):
        return
    missing = [name for name, value in extra.items() if value is None]
    if missing:
        raise ValueError(f"Extra queries were given without {', '.join(missing)}.")
    if extra_query_rows.ndim != 1 or not ((extra_query_rows >= 0) & (extra_query_rows < rows)).all():
        raise ValueError(f"extra_query_rows must be (Q,) row indices in [0, {rows}), got {extra_query_rows.tolist()}.")
    if len(extra_query_input_ids) != len(extra_query_rows):
        raise ValueError(
            f"extra_query_input_ids has {len(extra_query_input_ids)} queries but extra_query_rows "
            f"{len(extra_query_rows)}."
        )
    if tuple(extra_query_labels.shape) != (len(extra_query_rows), width):
        raise ValueError(
            f"extra_query_labels must be (Q, N_max) = ({len(extra_query_rows)}, {width}), got shape "
            f"{tuple(extra_query_labels.shape)}."
        )


__all__ = ["SalovaModel", "SalovaForConditionalGeneration", "SalovaPreTrainedModel"]
