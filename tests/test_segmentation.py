"""The segment policy: scenes to segments, empty scenes, splitting, merging to the router's limit, segmenters."""

import inspect

import numpy as np
import pytest
from salova.processing import (
    SalovaVideoProcessor,
    SceneCutDetector,
    Segment,
    SegmentationPolicy,
    plan_segments,
    scene_tiling_boundaries,
)


def _frames_per_segment(segments):
    return [segment.num_frames for segment in segments]


def _plan(num_frames, cut_times, duration=None, **policy):
    timestamps = np.arange(float(num_frames))
    return plan_segments(timestamps, duration or float(num_frames), SegmentationPolicy(**policy), cut_times)


def test_scenes_become_segments_with_their_times():
    segments = _plan(10, [3.0, 7.5])
    assert segments == [Segment(0, 3, 0.0, 3.0), Segment(3, 5, 3.0, 7.5), Segment(8, 2, 7.5, 10.0)]


def test_video_without_cut_is_one_segment_or_windows_when_asked():
    assert _plan(70, []) == [Segment(0, 70, 0.0, 70.0)]
    windows = _plan(70, [], split_uncut_videos=True, window_seconds=30)
    assert _frames_per_segment(windows) == [30, 30, 10]
    assert [(s.start, s.end) for s in windows] == [(0.0, 30.0), (30.0, 60.0), (60.0, 70.0)]
    # A video with cuts keeps its scenes even when uncut videos are split.
    assert _frames_per_segment(_plan(70, [50.0], split_uncut_videos=True, window_seconds=30)) == [50, 20]


def test_scene_without_a_sampled_frame_joins_its_neighbour():
    # Scene [3.2, 3.7) holds no 1 FPS frame: it joins the scene before it, which now ends at 3.7.
    segments = _plan(6, [3.2, 3.7])
    assert segments == [Segment(0, 4, 0.0, 3.7), Segment(4, 2, 3.7, 6.0)]
    # A first scene without frames joins the next one, which then starts at 0.
    assert _plan(4, [0.3, 2.0], duration=4.0, max_segments=256)[0].start == 0.0
    timestamps = np.array([0.5, 1.5, 2.5, 3.5])
    first_empty = plan_segments(timestamps, 4.0, SegmentationPolicy(), [0.2, 2.0])
    assert first_empty == [Segment(0, 2, 0.0, 2.0), Segment(2, 2, 2.0, 4.0)]


def test_every_segment_has_at_least_one_frame():
    rng = np.random.default_rng(0)
    for _ in range(50):
        cuts = sorted(rng.uniform(0, 40, size=rng.integers(0, 60)).tolist())
        segments = _plan(40, cuts, max_segments=8, max_frames_per_segment=12)
        assert all(s.num_frames >= 1 for s in segments)
        assert sum(_frames_per_segment(segments)) == 40
        assert [s.first_frame for s in segments] == list(np.cumsum([0, *_frames_per_segment(segments)[:-1]]))
        assert segments[0].start == 0.0 and segments[-1].end == 40.0
        assert all(a.end == b.start for a, b in zip(segments, segments[1:], strict=False))


def test_long_scenes_are_split_into_equal_parts_under_the_temporal_table():
    segments = _plan(10, [], max_frames_per_segment=4)
    assert _frames_per_segment(segments) == [4, 3, 3]
    assert [(s.start, s.end) for s in segments] == [(0.0, 4.0), (4.0, 7.0), (7.0, 10.0)]
    # The paper's table: 2160 frames at 1 FPS.
    assert _frames_per_segment(_plan(5000, [])) == [1667, 1667, 1666]


def test_too_many_scenes_merge_the_shortest_neighbours():
    # Scenes of 5, 1, 1, 4, 2, 6 frames and a limit of 4: (1, 1) merge first, then the new 2 with its 4.
    cuts = [5.0, 6.0, 7.0, 11.0, 13.0]
    segments = _plan(19, cuts, max_segments=4)
    assert _frames_per_segment(segments) == [5, 6, 2, 6]
    assert [(s.start, s.end) for s in segments] == [(0.0, 5.0), (5.0, 11.0), (11.0, 13.0), (13.0, 19.0)]
    many = _plan(1000, list(np.arange(1.0, 1000.0)))
    assert len(many) == 256 and sum(_frames_per_segment(many)) == 1000
    assert max(_frames_per_segment(many)) - min(_frames_per_segment(many)) <= 2


def test_merging_never_exceeds_the_temporal_table_and_says_when_it_cannot_fit():
    segments = _plan(30, list(np.arange(1.0, 30.0)), max_segments=8, max_frames_per_segment=5)
    assert len(segments) == 8 and max(_frames_per_segment(segments)) <= 5
    # At full capacity greedy pairs corner themselves (2 + 4 > 5): equal parts of the video instead.
    full = _plan(30, list(np.arange(1.0, 30.0)), max_segments=6, max_frames_per_segment=5)
    assert _frames_per_segment(full) == [5] * 6
    with pytest.raises(
        ValueError,
        match=r"clip\.mp4: 30 sampled frames do not fit in max_segments=5 .* max_frames_per_segment=5 frames",
    ):
        plan_segments(
            np.arange(30.0), 30.0, SegmentationPolicy(max_segments=5, max_frames_per_segment=5), [], name="clip.mp4"
        )


def test_fixed_windows_segmenter_ignores_cuts():
    segments = _plan(25, [3.0], segmenter="fixed_windows", window_seconds=10)
    assert _frames_per_segment(segments) == [10, 10, 5]


def test_given_boundaries_replace_the_segmenter():
    segments = plan_segments(np.arange(12.0), 12.0, SegmentationPolicy(), cut_times=[6.0], boundaries=[2.0, 9.0])
    assert _frames_per_segment(segments) == [2, 7, 3]
    # Boundaries outside the video are ignored.
    out_of_range = plan_segments(np.arange(12.0), 12.0, SegmentationPolicy(), boundaries=[0.0, 4.0, 50.0])
    assert _frames_per_segment(out_of_range) == [4, 8]


def test_scene_tiling_finds_colour_changes():
    frames = np.zeros((30, 16, 16, 3), np.uint8)
    rng = np.random.default_rng(0)
    for start, colour in zip((0, 10, 22), ((200, 20, 20), (20, 200, 20), (20, 20, 200)), strict=True):
        frames[start:] = colour
    frames = np.clip(frames.astype(int) + rng.integers(-8, 8, frames.shape), 0, 255).astype(np.uint8)
    frames[:, 4:8, 4:8] = 255  # a shared white patch keeps scenes from being trivially orthogonal
    assert scene_tiling_boundaries(frames) == [10, 22]
    segments = plan_segments(np.arange(30.0), 30.0, SegmentationPolicy("scene_tiling"), frames=frames)
    assert _frames_per_segment(segments) == [10, 12, 8]


def test_policy_and_inputs_are_checked():
    with pytest.raises(ValueError, match="segmenter must be one of"):
        SegmentationPolicy("shots")
    with pytest.raises(ValueError, match="max_segments must be at least 1"):
        SegmentationPolicy(max_segments=0)
    with pytest.raises(ValueError, match="no sampled frame"):
        plan_segments(np.zeros(0), 1.0, SegmentationPolicy(), [])
    with pytest.raises(ValueError, match="needs the cut times"):
        plan_segments(np.arange(3.0), 3.0, SegmentationPolicy())


def test_video_processor_takes_its_segment_and_detector_defaults_from_their_classes():
    video_processor = SalovaVideoProcessor()
    assert video_processor.segmentation_policy() == SegmentationPolicy()
    detector = inspect.signature(SceneCutDetector.__init__).parameters
    assert video_processor.detector_threshold == detector["adaptive_threshold"].default
    assert video_processor.detector_min_content == detector["min_content_val"].default
    assert video_processor.detector_min_scene_len == detector["min_scene_len"].default
    changed = SalovaVideoProcessor(router_max_segments=4, segmenter="fixed_windows")
    assert changed.segmentation_policy() == SegmentationPolicy(segmenter="fixed_windows", max_segments=4)
    assert changed.segmentation_policy(window_seconds=5).window_seconds == 5  # a call's override
