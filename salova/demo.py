"""The package's main job on its embedded default: build a tiny SALOVA, make a video, retrieve and answer.

The tiny model's weights are random until the training pipeline has run, so the answer text is noise; what
the demo shows is the whole inference path: one decode pass with scene detection and 1 FPS sampling, segment
encoding, routing, FocusFast and generation.
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

from .hub_configs import build_salova
from .training.synthetic_corpus import BACKGROUNDS
from .video_writer import write_video

SCENE_COLOURS = {name: BACKGROUNDS[name] for name in ("red", "green", "blue", "yellow", "purple", "cyan")}


def scene_frames(scene_seconds: int = 4, fps: int = 8, size: int = 96):
    """One scene per colour: a white square moving left to right on a coloured background."""
    per_scene = scene_seconds * fps
    for colour in SCENE_COLOURS.values():
        for index in range(per_scene):
            frame = np.empty((size, size, 3), dtype=np.uint8)
            frame[:] = colour
            offset = index * (size // 2) // per_scene
            frame[size // 4 : size // 4 + 16, offset : offset + 16] = 255
            yield frame


def run_demo(question: str = "What moves in the blue scene?", scene_seconds: int = 4, max_new_tokens: int = 12):
    model, processor = build_salova("tiny")
    model.eval()
    with tempfile.TemporaryDirectory() as workdir:
        video_path = write_video(Path(workdir) / "scenes.mp4", scene_frames(scene_seconds), fps=8)
        inputs = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video", "path": str(video_path)}, question]}],
            add_generation_prompt=True,
            tokenize=True,
        )
    with torch.no_grad():
        features = model.get_video_features(
            **{name: inputs[name] for name in ("pixel_values_videos", "frames_per_segment", "segments_per_video")},
            query_input_ids=inputs["query_input_ids"],
            query_attention_mask=inputs["query_attention_mask"],
        )
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    segments = processor.describe_segments(inputs, features.router_scores, features.selected_segments)[0]
    num_segments = len(segments)
    frames = int(inputs["frames_per_segment"].sum())
    print(f"video: {len(SCENE_COLOURS)} scenes of {scene_seconds} s, {frames} frames at 1 FPS, {num_segments} segments")
    print(f"question: {question}")
    print(
        f"LLM visual tokens: {processor.num_video_tokens(num_segments)} "
        f"= {processor.num_latents} x min({processor.num_focus_segments}, {num_segments}) + {num_segments}"
    )
    for segment in segments:
        span = f"{segment['start']}-{segment['end']}"
        mark = "focus" if segment["selected"] else ""
        print(f"  segment {segment['segment']}: {span}  score {segment['score']:+.3f}  {mark}")
    print(f"answer (random weights until trained): {answer!r}")
    return answer
