"""The package's main job on its embedded default: build a tiny SALOVA, make a video, retrieve and answer.

The tiny model's weights are random until the training pipeline has run, so the answer text is noise; what
the demo shows is the whole inference path: decode at 1 FPS, segment, encode, route, FocusFast, generate.
"""

import tempfile
from pathlib import Path

import av
import numpy as np
import torch

from .hub_configs import VIDEO_TOKEN, build_salova
from .processing import preprocess_frames, sample_frames

SCENE_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 220, 40),
    "purple": (150, 50, 200),
    "cyan": (40, 210, 220),
}


def write_scene_video(path: Path, scene_seconds: int = 4, fps: int = 8, size: int = 96) -> list[str]:
    """Writes one scene per colour (a white square moving on a coloured background); returns the colours."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for colour in SCENE_COLOURS.values():
            for index in range(scene_seconds * fps):
                frame = np.empty((size, size, 3), dtype=np.uint8)
                frame[:] = colour
                offset = index * (size // 2) // (scene_seconds * fps)
                frame[size // 4 : size // 4 + 16, offset : offset + 16] = 255
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return list(SCENE_COLOURS)


def hhmmss(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_demo(question: str = "What moves in the blue scene?", window_seconds: int = 4, max_new_tokens: int = 12):
    model, tokenizer = build_salova("tiny")
    model.eval()
    config = model.config
    with tempfile.TemporaryDirectory() as workdir:
        video_path = Path(workdir) / "scenes.mp4"
        write_scene_video(video_path, scene_seconds=window_seconds)
        sampled = sample_frames(video_path, fps=1.0)

    # Fixed windows until scene detection lands: one segment per `window_seconds` of sampled frames.
    num_frames = len(sampled.frames)
    frames_per_segment = [min(window_seconds, num_frames - start) for start in range(0, num_frames, window_seconds)]
    starts = np.cumsum([0] + frames_per_segment[:-1])
    pixels = preprocess_frames(sampled.frames, config.vision_config.image_size, config.tower_config.model_type)
    num_segments = len(frames_per_segment)

    placeholders = VIDEO_TOKEN * config.num_video_tokens(num_segments)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"{placeholders}\n{question}"}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    query = tokenizer(question, return_tensors="pt")
    video_inputs = {
        "pixel_values_videos": pixels,
        "frames_per_segment": torch.tensor(frames_per_segment),
        "segments_per_video": torch.tensor([num_segments]),
        "query_input_ids": query.input_ids,
        "query_attention_mask": query.attention_mask,
    }
    with torch.no_grad():
        features = model.get_video_features(**video_inputs)
        output = model.generate(**inputs, **video_inputs, max_new_tokens=max_new_tokens, do_sample=False)
    answer = tokenizer.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)

    scores = features.router_scores[0]
    selected = set(features.selected_segments[0].tolist())
    print(f"video: {sampled.duration:.1f} s, {len(sampled.frames)} frames at 1 FPS, {num_segments} segments")
    print(f"question: {question}")
    print(
        f"LLM visual tokens: {config.num_video_tokens(num_segments)} "
        f"= {config.connector_num_latents} x min({config.num_focus_segments}, {num_segments}) + {num_segments}"
    )
    for index in range(num_segments):
        start = sampled.timestamps[starts[index]]
        end = sampled.timestamps[starts[index] + frames_per_segment[index] - 1] + 1.0
        mark = "focus" if index in selected else ""
        print(f"  segment {index}: {hhmmss(start)}-{hhmmss(end)}  score {scores[index].item():+.3f}  {mark}")
    print(f"answer (random weights until trained): {answer!r}")
    return answer
