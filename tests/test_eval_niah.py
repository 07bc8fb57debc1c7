"""V-NIAH: splicing a needle into a (looped, coarsened) haystack at the model input, and `salova eval niah`."""

import json
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image
from salova.evaluation.niah import Footage, splice
from salova.training.synthetic_corpus import BACKGROUNDS, write_niah_case


def _footage(values, starts):
    """Frames whose pixels all hold their value, so a spliced sequence can be read back."""
    frames = np.stack([np.full((4, 4, 3), value, dtype=np.uint8) for value in values])
    return Footage(frames, starts)


HAYSTACK = _footage(range(10), [0, 4, 7])  # scenes of frames 0-3, 4-6, 7-9
NEEDLE = _footage([200, 201, 202], [0])


def _values(video):
    return video.frames[:, 0, 0, 0].tolist()


def test_needle_first_last_and_in_the_middle_of_a_looped_haystack():
    first = splice(HAYSTACK, NEEDLE, 20, 0.0, max_segments=256)
    assert _values(first) == [200, 201, 202, *range(10), *range(10)]
    assert (first.scene_starts, first.needle_segment, first.needle_start) == ([0, 3, 7, 10, 13, 17, 20], 0, 0)

    last = splice(HAYSTACK, NEEDLE, 20, 1.0, max_segments=256)
    assert _values(last) == [*range(10), *range(10), 200, 201, 202]
    assert last.scene_starts == [0, 4, 7, 10, 14, 17, 20] and last.needle_segment == 6

    # Depth 0.55 of 20 frames is frame 11; the nearest haystack scene start is 10, the loop's start.
    middle = splice(HAYSTACK, NEEDLE, 20, 0.55, max_segments=256)
    assert _values(middle) == [*range(10), 200, 201, 202, *range(10)]
    assert middle.scene_starts == [0, 4, 7, 10, 13, 17, 20] and middle.needle_segment == 3
    assert middle.coarsened_every == 1


def test_haystack_scenes_are_coarsened_so_the_needle_stays_a_segment():
    video = splice(HAYSTACK, NEEDLE, 20, 0.55, max_segments=4)
    # The needle (10-12) and the haystack after it (from 13) are kept; of 4, 7, 17, 20 only every 4th remains.
    assert video.scene_starts == [0, 4, 10, 13] and video.needle_segment == 2 and video.coarsened_every == 4
    assert _values(video) == [*range(10), 200, 201, 202, *range(10)]


def test_an_hour_long_haystack_is_held_at_the_tower_size():
    haystack = Footage(np.zeros((37, 56, 56, 3), dtype=np.uint8), [0, 6, 12, 17, 21, 28, 32])
    needle = Footage(np.full((3, 56, 56, 3), 255, dtype=np.uint8), [0])
    video = splice(haystack, needle, 3600, 0.5, max_segments=256)
    assert video.frames.shape == (3603, 56, 56, 3) and video.frames.dtype == np.uint8
    assert len(video.scene_starts) <= 256 and video.coarsened_every == 3
    start = video.needle_start
    assert video.scene_starts[video.needle_segment : video.needle_segment + 2] == [start, start + 3]
    assert (video.frames[start : start + 3] == 255).all() and not video.frames[start + 3 :].any()


def test_bad_depth_is_refused():
    with pytest.raises(ValueError, match="depth"):
        splice(HAYSTACK, NEEDLE, 20, 1.5, max_segments=256)


def test_niah_case_haystack_lacks_the_needle_colour(tmp_path):
    case = write_niah_case(tmp_path, "red", haystack_scenes=8)
    assert case["question"] == "what shape is in the red scene?"
    red = np.array(BACKGROUNDS["red"])
    with av.open(str(case["haystack"])) as container:
        corners = [frame.to_ndarray(format="rgb24")[1, 1] for frame in container.decode(video=0)]
    assert min(np.abs(corner.astype(int) - red).sum() for corner in corners) > 60
    with av.open(str(case["needle"])) as container:
        frames = list(container.decode(video=0))
    assert len(frames) >= 3 * 4 and np.abs(frames[0].to_ndarray(format="rgb24")[1, 1].astype(int) - red).sum() < 30


@pytest.mark.parametrize("needle_kind", ["video", "image"])
def test_cli_writes_the_grid_and_the_heatmap(tmp_path, tiny, needle_kind):
    model, processor = tiny
    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    case = write_niah_case(tmp_path / "case", "blue", haystack_scenes=6)
    needle = case["needle"]
    if needle_kind == "image":
        needle = tmp_path / "needle.png"
        Image.new("RGB", (64, 48), BACKGROUNDS["blue"]).save(needle)
    command = [
        sys.executable, "-m", "salova.cli", "eval", "niah", "--model", str(tmp_path / "checkpoint"),
        "--haystack", str(case["haystack"]), "--needle", str(needle), "--question", case["question"],
        "--answer", case["answer"], "--lengths", "10,40", "--depths", "0,0.5,1", "--output", str(tmp_path / "out"),
        "--max-new-tokens", "2",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out/niah.json").read_text())
    points = report["points"]
    assert [(p["length_seconds"], p["depth"]) for p in points] == [
        (10, 0),
        (10, 0.5),
        (10, 1),
        (40, 0),
        (40, 0.5),
        (40, 1),
    ]
    for point in points:
        for router in ("learned", "random_router"):
            outcome = point[router]
            assert 1 <= outcome["rank"] <= point["num_segments"]
            assert outcome["in_focus"] == (outcome["rank"] <= processor.num_focus_segments)
    assert (points[0]["needle_segment"], points[0]["needle_start_seconds"]) == (0, 0.0)  # depth 0: first
    assert points[2]["needle_segment"] == points[2]["num_segments"] - 1  # depth 1: last
    # The needle (3 s at 1 FPS) is spliced at the haystack's scene start nearest to its depth.
    assert points[4]["needle_start_seconds"] in range(10, 31)
    summary = report["summary"]["learned"]["overall"]
    assert summary["points"] == 6 and summary["in_focus"] == sum(p["learned"]["in_focus"] for p in points) / 6
    with Image.open(tmp_path / "out/niah.png") as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
