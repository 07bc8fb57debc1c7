"""The README's main job: `salova demo` builds the tiny model, writes a video, retrieves and answers."""

import re
import subprocess
import sys

import numpy as np
from salova.processing import preprocess_frames, sample_frames

from salova.demo import hhmmss, write_scene_video


def test_hhmmss():
    assert [hhmmss(s) for s in (0, 59.6, 3599, 3725)] == ["00:00:00", "00:01:00", "00:59:59", "01:02:05"]


def test_generated_video_samples_at_one_fps(tmp_path):
    path = tmp_path / "scenes.mp4"
    colours = write_scene_video(path, scene_seconds=2, fps=8, size=64)
    sampled = sample_frames(path, fps=1.0)
    assert len(sampled.frames) == 2 * len(colours) and sampled.frames.shape[1:] == (64, 64, 3)
    assert np.allclose(sampled.timestamps, np.arange(len(sampled.frames)), atol=0.13)
    assert abs(sampled.duration - 2 * len(colours)) < 0.2
    pixels = preprocess_frames(sampled.frames, 32, "siglip")
    assert pixels.shape == (len(sampled.frames), 3, 32, 32) and -1.0 <= pixels.min() and pixels.max() <= 1.0


def test_sample_frames_names_the_bad_file(tmp_path):
    missing = tmp_path / "missing.mp4"
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    for path, message in ((missing, "not found"), (not_video, "could not be opened")):
        try:
            sample_frames(path)
        except (FileNotFoundError, ValueError) as error:
            assert str(path) in str(error) and message in str(error)
        else:
            raise AssertionError(f"{path} was accepted")


def test_demo_command_prints_retrieved_segments_and_an_answer():
    result = subprocess.run([sys.executable, "-m", "salova.cli", "demo"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    spans = re.findall(r"segment \d+: (\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d)\s+score [+-]\d\.\d+\s*(focus)?", result.stdout)
    assert len(spans) == 6 and sum(1 for *_, focus in spans if focus) == 5
    assert spans[0][0] == "00:00:00" and spans[-1][1] == "00:00:24"
    assert "LLM visual tokens: 166 = 32 x min(5, 6) + 6" in result.stdout and "answer" in result.stdout
