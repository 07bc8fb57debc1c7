import pytest
import torch
from salova.hub_configs import build_salova


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the tiny variant, eval mode. Tests that train must deep-copy the model."""
    model, tokenizer = build_salova("tiny", seed=0)
    return model.eval(), tokenizer


def make_batch(config, segment_frames, query_lengths=None, seed=0, num_focus_segments=None, prompt_lengths=None):
    """Random model inputs for videos whose segments have `segment_frames[b]` frames each.

    Rows are right-padded; row b holds its placeholders after 2 prompt tokens, then `prompt_lengths[b]` text
    tokens. LM labels cover the text after the video.
    """
    generator = torch.Generator().manual_seed(seed)
    size = config.vision_config.image_size
    frames_per_segment = torch.tensor([f for video in segment_frames for f in video])
    segments_per_video = torch.tensor([len(video) for video in segment_frames])
    placeholders = [config.num_video_tokens(len(video), num_focus_segments) for video in segment_frames]
    prompt_lengths = prompt_lengths or [5] * len(segment_frames)
    lengths = [2 + p + t for p, t in zip(placeholders, prompt_lengths, strict=True)]
    input_ids = torch.zeros(len(segment_frames), max(lengths), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for row, (count, length) in enumerate(zip(placeholders, lengths, strict=True)):
        text = torch.randint(10, config.text_config.vocab_size, (length,), generator=generator)
        input_ids[row, :length] = text.masked_fill(text == config.video_token_id, 10)
        input_ids[row, 2 : 2 + count] = config.video_token_id
        attention_mask[row, :length] = 1
        labels[row, 2 + count : length] = input_ids[row, 2 + count : length]
    query_lengths = query_lengths or [6] * len(segment_frames)
    query_input_ids = torch.zeros(len(segment_frames), max(query_lengths), dtype=torch.long)
    query_attention_mask = torch.zeros_like(query_input_ids)
    for row, length in enumerate(query_lengths):
        query_input_ids[row, :length] = torch.randint(10, 400, (length,), generator=generator)
        query_attention_mask[row, :length] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values_videos": torch.randn(int(frames_per_segment.sum()), 3, size, size, generator=generator),
        "frames_per_segment": frames_per_segment,
        "segments_per_video": segments_per_video,
        "query_input_ids": query_input_ids,
        "query_attention_mask": query_attention_mask,
    }
