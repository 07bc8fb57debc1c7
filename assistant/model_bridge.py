"""The two model/processor calls the index path needs, in the transformers v5 form they take upstream.

`encode_video` is `get_video_features(pixel_values_videos, frames_per_segment)`: per-segment focus latents and
routing tokens, before the projector. `answer_inputs` is the processor's text-only path: prompt and router query
for a video of `N` segments, without touching the video.
"""

import torch
from transformers import BatchFeature


def encode_video(model, pixel_values_videos: torch.Tensor, frames_per_segment: torch.LongTensor):
    """Frames `(F, 3, H, W)` -> focus latents `(S, num_latents, width)` and routing tokens `(S, width)`."""
    inner = model.model
    frame_features, frame_summaries = inner.encode_frames(pixel_values_videos)
    segment_tokens = inner.encode_segments(frame_features, frame_summaries, frames_per_segment)
    return segment_tokens[:, 1:], segment_tokens[:, 0]


def answer_inputs(processor, text: str, query: str, num_segments: int, num_focus_segments: int | None, **kwargs):
    """`input_ids`, `attention_mask`, `query_input_ids`, `query_attention_mask` for one video of `num_segments`."""
    prompt = processor._expand_placeholder(text, 0, num_segments, num_focus_segments)
    encoding = processor.tokenizer([prompt], return_tensors="pt", **kwargs)
    query = processor.query_tokenizer(
        [query], padding=True, truncation=True, max_length=processor.query_max_length, return_tensors="pt"
    )
    return BatchFeature(
        {
            "input_ids": encoding["input_ids"],
            "attention_mask": encoding["attention_mask"],
            "query_input_ids": query["input_ids"],
            "query_attention_mask": query["attention_mask"],
            "segments_per_video": torch.tensor([num_segments]),
        }
    )


def route(model, routing_tokens: torch.Tensor, query_input_ids, query_attention_mask, num_focus_segments: int):
    """Router scores `(N,)` of one video's segments and its focus segments (ascending indices, `(min(K, N),)`)."""
    from salova.modeling.router import select_focus_segments

    inner = model.model
    query_states, query_mask = inner.encode_query(query_input_ids, query_attention_mask)
    segment_mask = torch.ones(1, len(routing_tokens), dtype=torch.bool, device=routing_tokens.device)
    scores = inner.router(routing_tokens[None].to(query_states.dtype), segment_mask, query_states, query_mask)
    selected = select_focus_segments(scores, segment_mask, num_focus_segments, None)
    return scores[0], selected[0]


def generate_from_index(model, inputs, latents, routing_tokens, num_focus_segments: int, **generate_kwargs):
    """Generation with the index's tensors in place of the frames; returns the new tokens `(1, T)` only."""
    inner = model.model
    segment_tokens = torch.cat([routing_tokens[:, None], latents], dim=1)
    frames_per_segment = torch.ones(len(segment_tokens), dtype=torch.long)
    inner.encode_frames = lambda pixel_values: (None, None)
    inner.encode_segments = lambda features, summaries, frames: segment_tokens
    try:
        output = model.generate(
            **inputs,
            pixel_values_videos=torch.empty(len(segment_tokens), 0, 0, 0),
            frames_per_segment=frames_per_segment,
            num_focus_segments=num_focus_segments,
            **generate_kwargs,
        )
    finally:
        del inner.encode_frames, inner.encode_segments
    return output[:, inputs["input_ids"].shape[1] :]
