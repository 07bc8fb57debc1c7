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
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.utils import ModelOutput

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
)


@dataclass
class SalovaVideoFeatures(ModelOutput):
    """
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
class SalovaModelOutputWithPast(BaseModelOutputWithPast):
    """
    router_scores, segment_mask, selected_segments: see `SalovaVideoFeatures`; None when no video was given.
    video_hidden_states (`torch.FloatTensor` of shape `(num_video_tokens, d_llm)`): the spliced FocusFast tokens.
    """

    router_scores: torch.FloatTensor | None = None
    segment_mask: torch.BoolTensor | None = None
    selected_segments: torch.LongTensor | None = None
    video_hidden_states: torch.FloatTensor | None = None
    video_features: SalovaVideoFeatures | None = None


@dataclass
class SalovaCausalLMOutputWithPast(ModelOutput):
    """
    loss: `lm_loss + similarity_loss_weight * similarity_loss` (either part may be absent).
    lm_loss: next-token loss on the labelled (response) tokens. similarity_loss: `L_sim` of the router.
    router_scores `(B, N_max)`, segment_mask `(B, N_max)`, selected_segments `(B, K)`: see `SalovaVideoFeatures`.
    """

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    similarity_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    router_scores: torch.FloatTensor | None = None
    segment_mask: torch.BoolTensor | None = None
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
    _skip_keys_device_placement = ["past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True

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
                attention.to_q.weight.mul_(self.config.connector_attention_init_gain)
                attention.to_kv.weight[:inner].mul_(self.config.connector_attention_init_gain)  # keys; values follow
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

    def encode_frames(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames `(F, 3, H, W)` -> pooled patch tokens `(F, P, d_v)` and frame summaries `(F, d_v)`.

        Frames go through the (truncated) vision tower `config.vision_chunk_size` at a time, without autograd
        when none of its weights train (stages 1 and 1.5), so the only memory that grows with `F` is the
        returned features. The summary is CLIP's class token, or the mean of SigLIP's patches, before pooling.
        """
        tower_trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.vision_tower.parameters())
        tokens, summaries = [], []
        with torch.set_grad_enabled(tower_trains):
            for chunk in pixel_values.split(self.config.vision_chunk_size):
                hidden = self.vision_tower(pixel_values=chunk.to(self.vision_tower.dtype)).last_hidden_state
                grid = self.config.patch_grid_size
                patches = hidden[:, -grid * grid :]
                summaries.append(hidden[:, 0] if hidden.shape[1] > grid * grid else patches.mean(dim=1))
                tokens.append(self._pool_patches(patches))
        return torch.cat(tokens), torch.cat(summaries)

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
        mask = torch.cat([query_attention_mask.new_ones(len(pooled), 1), query_attention_mask], dim=1).bool()
        return self.query_projection(states), mask

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        frames_per_segment: torch.LongTensor,
        segments_per_video: torch.LongTensor,
        query_input_ids: torch.LongTensor,
        query_attention_mask: torch.Tensor | None = None,
        segment_labels: torch.Tensor | None = None,
        num_focus_segments: int | None = None,
    ) -> SalovaVideoFeatures:
        """Encodes, routes and assembles the FocusFast tokens of a batch (shapes in the module docstring)."""
        num_focus_segments = num_focus_segments or self.config.num_focus_segments
        _check_video_layout(self.config, pixel_values_videos, frames_per_segment, segments_per_video, query_input_ids)
        frame_features, frame_summaries = self.encode_frames(pixel_values_videos)
        segment_tokens = self.encode_segments(frame_features, frame_summaries, frames_per_segment)
        query_states, query_mask = self.encode_query(query_input_ids, query_attention_mask)

        segment_mask = torch.arange(int(segments_per_video.max()), device=segment_tokens.device) < (
            segments_per_video.to(segment_tokens.device).unsqueeze(1)
        )
        routing_tokens = segment_tokens.new_zeros(*segment_mask.shape, segment_tokens.shape[-1])
        routing_tokens[segment_mask] = segment_tokens[:, 0]
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
            focus = segment_tokens[chosen, 1:].flatten(0, 1)
            fast = routing_tokens[row, segment_mask[row]]
            video_tokens.append(torch.cat([focus, fast]))
        return SalovaVideoFeatures(
            video_embeds=self.projector(torch.cat(video_tokens)),
            router_scores=scores,
            segment_mask=segment_mask,
            selected_segments=selected,
            routing_tokens=routing_tokens,
            query_states=query_states,
            query_mask=query_mask,
        )

    def in_batch_scores(self, video_features: SalovaVideoFeatures) -> torch.Tensor:
        """`(B, B)` scores of every query (rows) against every one-segment video of the batch (columns)."""
        batch = video_features.routing_tokens.shape[0]
        clips = video_features.routing_tokens[:, :1].repeat(batch, 1, 1)
        queries = video_features.query_states.repeat_interleave(batch, dim=0)
        query_mask = video_features.query_mask.repeat_interleave(batch, dim=0)
        clip_mask = torch.ones(batch * batch, 1, dtype=torch.bool, device=clips.device)
        return self.router(clips, clip_mask, queries, query_mask).view(batch, batch)

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
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> SalovaModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        video_features = None
        if pixel_values_videos is not None:
            if input_ids is None:
                raise ValueError("Video inputs need input_ids: the video placeholders are found by token id.")
            missing = [
                name
                for name, value in (
                    ("frames_per_segment", frames_per_segment),
                    ("segments_per_video", segments_per_video),
                    ("query_input_ids", query_input_ids),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"pixel_values_videos was given without {', '.join(missing)}.")
            if segment_times is not None and tuple(segment_times.shape) != (len(frames_per_segment), 2):
                raise ValueError(
                    f"segment_times must be (S, 2) = ({len(frames_per_segment)}, 2) start/end seconds, got shape "
                    f"{tuple(segment_times.shape)}."
                )
            video_features = self.get_video_features(
                pixel_values_videos,
                frames_per_segment,
                segments_per_video,
                query_input_ids,
                query_attention_mask,
                segment_labels,
                num_focus_segments,
            )
            placeholder_mask = self._check_placeholders(
                input_ids, segments_per_video, num_focus_segments or self.config.num_focus_segments
            )
            inputs_embeds = inputs_embeds.masked_scatter(
                placeholder_mask[..., None].to(inputs_embeds.device),
                video_features.video_embeds.to(inputs_embeds.device, inputs_embeds.dtype),
            )
        elif input_ids is not None and self.config.video_token_id is not None:
            if (input_ids == self.config.video_token_id).any() and past_key_values is None:
                raise ValueError(
                    f"input_ids hold video placeholders (id {self.config.video_token_id}) but no pixel_values_videos "
                    "were given."
                )

        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return SalovaModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            router_scores=video_features.router_scores if video_features is not None else None,
            segment_mask=video_features.segment_mask if video_features is not None else None,
            selected_segments=video_features.selected_segments if video_features is not None else None,
            video_hidden_states=video_features.video_embeds if video_features is not None else None,
            video_features=video_features,
        )

    def _check_placeholders(
        self, input_ids: torch.LongTensor, segments_per_video: torch.LongTensor, num_focus_segments: int
    ) -> torch.Tensor:
        if self.config.video_token_id is None:
            raise ValueError("config.video_token_id is not set: the model cannot find where the video goes.")
        placeholder_mask = input_ids == self.config.video_token_id
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
        return placeholder_mask


class SalovaForConditionalGeneration(SalovaPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

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

    def get_video_features(self, *args, **kwargs) -> SalovaVideoFeatures:
        return self.model.get_video_features(*args, **kwargs)

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
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> SalovaCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(B, L)`, *optional*):
            LM targets, -100 outside the response. segment_labels (`(S,)`): retrieval targets (see module docstring).
        segment_times (`torch.Tensor` of shape `(S, 2)`, *optional*):
            Start and end seconds of each segment, as the processor returns them; checked, not computed with.
        num_focus_segments (`int`, *optional*):
            `K` for this call (defaults to `config.num_focus_segments`); the prompt's placeholders must match it.
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
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])

        lm_loss = None
        if labels is not None:
            lm_loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        retrieval_loss = self._similarity_loss(outputs.video_features, segment_labels)
        parts = [lm_loss, None if retrieval_loss is None else self.config.similarity_loss_weight * retrieval_loss]
        parts = [part for part in parts if part is not None]
        return SalovaCausalLMOutputWithPast(
            loss=sum(parts) if parts else None,
            lm_loss=lm_loss,
            similarity_loss=retrieval_loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            router_scores=outputs.router_scores,
            segment_mask=outputs.segment_mask,
            selected_segments=outputs.selected_segments,
        )

    def _similarity_loss(
        self, video_features: SalovaVideoFeatures | None, segment_labels: torch.Tensor | None
    ) -> torch.Tensor | None:
        if video_features is None:
            return None
        segment_mask = video_features.segment_mask
        one_segment_each = segment_mask.shape[1] == 1 and segment_mask.shape[0] > 1
        if self.config.router_in_batch_negatives and one_segment_each:
            scores = self.model.in_batch_scores(video_features)
            targets = torch.eye(len(scores), device=scores.device, dtype=scores.dtype)
            return similarity_loss(scores, targets, torch.ones_like(targets, dtype=torch.bool), use_margin=False)
        if segment_labels is None:
            return None
        targets = video_features.router_scores.new_zeros(segment_mask.shape)
        targets[segment_mask] = segment_labels.to(targets)
        return similarity_loss(
            video_features.router_scores,
            targets,
            segment_mask,
            margin=self.config.similarity_margin,
            use_margin=self.config.similarity_margin_loss,
        )

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ):
        """Beam search and `num_return_sequences` repeat each row; frames and segments repeat by whole video."""
        per_frame = model_kwargs.pop("pixel_values_videos", None)
        per_segment = {
            name: model_kwargs.pop(name, None) for name in ("frames_per_segment", "segment_labels", "segment_times")
        }
        segments_per_video = model_kwargs.get("segments_per_video")
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        if per_frame is not None and segments_per_video is not None and per_segment["frames_per_segment"] is not None:
            counts = segments_per_video.tolist()
            frames_per_video = [int(chunk.sum()) for chunk in per_segment["frames_per_segment"].split(counts)]
            model_kwargs["pixel_values_videos"] = _repeat_videos(per_frame, frames_per_video, expand_size)
            for name, value in per_segment.items():
                model_kwargs[name] = None if value is None else _repeat_videos(value, counts, expand_size)
        else:
            model_kwargs.update(pixel_values_videos=per_frame, **per_segment)
        return input_ids, model_kwargs

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
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


def _check_video_layout(
    config: SalovaConfig,
    pixel_values_videos: torch.Tensor,
    frames_per_segment: torch.LongTensor,
    segments_per_video: torch.LongTensor,
    query_input_ids: torch.LongTensor,
) -> None:
    """Raises a ValueError naming the inconsistency before any tensor reaches attention."""
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
    if int(segments_per_video.sum()) != len(frames_per_segment):
        raise ValueError(
            f"segments_per_video sums to {int(segments_per_video.sum())} but frames_per_segment lists "
            f"{len(frames_per_segment)} segments."
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


__all__ = ["SalovaModel", "SalovaForConditionalGeneration", "SalovaPreTrainedModel"]
