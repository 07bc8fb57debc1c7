"""The segment policy: which sampled frames form each of a video's segments.

Boundaries come from one of three segmenters, or are given (a dataset's own scene list):

- `"scenes"`: the scene cuts of the decode pass (PySceneDetect's AdaptiveDetector semantics). A video with no
  cut is one segment, or fixed windows when `split_uncut_videos` is set.
- `"fixed_windows"`: one segment every `window_seconds`.
- `"scene_tiling"`: TextTiling over adjacent-frame similarity of the sampled frames, in the manner of
  VideoLLaMB's SceneTilling: a boundary where the similarity dips deeper than `mean + tiling_threshold_std · std`
  of all dips.

Then, whatever the segmenter:

1. a scene that holds no sampled frame (shorter than the sampling step) joins the scene before it (the first
   one joins the next), so every segment has at least one frame;
2. a segment with more than `max_frames_per_segment` frames (the connector's temporal table) is split into
   equal parts;
3. while there are more than `max_segments` segments (the router's position table), the adjacent pair with the
   fewest frames together is merged, never above `max_frames_per_segment`; should that corner itself (only near
   `max_segments · max_frames_per_segment` frames), the video is cut into `max_segments` equal parts instead.
"""

import math
from dataclasses import dataclass

import numpy as np

SEGMENTERS = ("scenes", "fixed_windows", "scene_tiling")


@dataclass(frozen=True)
class SegmentationPolicy:
    segmenter: str = "scenes"
    max_frames_per_segment: int = 2160
    max_segments: int = 256
    window_seconds: float = 30.0
    split_uncut_videos: bool = False
    tiling_threshold_std: float = 1.0

    def __post_init__(self):
        if self.segmenter not in SEGMENTERS:
            raise ValueError(f"segmenter must be one of {SEGMENTERS}, got {self.segmenter!r}.")
        for name in ("max_frames_per_segment", "max_segments"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {self.window_seconds}.")


@dataclass(frozen=True)
class Segment:
    """Frames `[first_frame, first_frame + num_frames)` of the sampled video, covering `[start, end)` seconds."""

    first_frame: int
    num_frames: int
    start: float
    end: float


def plan_segments(
    timestamps: np.ndarray,
    duration: float,
    policy: SegmentationPolicy,
    cut_times: list[float] | None = None,
    frames: np.ndarray | None = None,
    boundaries: list[float] | None = None,
    name: str = "video",
) -> list[Segment]:
    """Segments of one video.

    timestamps: `(T,)` seconds of the sampled frames, increasing. cut_times: detected scene starts (`"scenes"`).
    frames: `(T, H, W, 3)` sampled frames (`"scene_tiling"`). boundaries: segment starts in seconds that replace
    the segmenter (e.g. a dataset's scene list).
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.size == 0:
        raise ValueError(f"{name}: no sampled frame to segment.")
    if boundaries is None:
        boundaries = _segmenter_boundaries(timestamps, duration, policy, cut_times, frames)
    starts = np.unique(np.asarray([b for b in boundaries if 0.0 < b < duration], dtype=np.float64))
    segments = _scenes_with_frames(timestamps, duration, starts)
    segments = [part for segment in segments for part in _split(segment, timestamps, policy.max_frames_per_segment)]
    return _merge_to_limit(segments, policy, name, timestamps)


def _segmenter_boundaries(timestamps, duration, policy, cut_times, frames) -> list[float]:
    if policy.segmenter == "scenes":
        if cut_times is None:
            raise ValueError('segmenter="scenes" needs the cut times of the decode pass.')
        if cut_times or not policy.split_uncut_videos:
            return list(cut_times)
    if policy.segmenter == "scene_tiling":
        if frames is None:
            raise ValueError('segmenter="scene_tiling" needs the sampled frames.')
        return [float(timestamps[index]) for index in scene_tiling_boundaries(frames, policy.tiling_threshold_std)]
    return list(np.arange(policy.window_seconds, duration, policy.window_seconds))


def scene_tiling_boundaries(frames: np.ndarray, threshold_std: float = 1.0) -> list[int]:
    """Indices of the frames that start a new scene, by TextTiling over adjacent-frame cosine similarity.

    frames: `(T, H, W, 3)`. Each frame is described by its 8×8 colour thumbnail, centred; the depth of the
    similarity dip between frames `i - 1` and `i` is measured against the highest similarity on each side.
    """
    if len(frames) < 3:
        return []
    features = _thumbnails(frames)
    features -= features.mean(axis=1, keepdims=True)
    features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-6
    similarity = (features[1:] * features[:-1]).sum(axis=1)
    left_peaks = np.maximum.accumulate(similarity)
    right_peaks = np.maximum.accumulate(similarity[::-1])[::-1]
    depth = (left_peaks - similarity) + (right_peaks - similarity)
    threshold = depth.mean() + threshold_std * depth.std()
    is_dip = np.r_[True, similarity[1:] <= similarity[:-1]] & np.r_[similarity[:-1] <= similarity[1:], True]
    return [int(gap) + 1 for gap in np.flatnonzero(is_dip & (depth > threshold) & (depth > 1e-3))]


def _thumbnails(frames: np.ndarray, side: int = 8) -> np.ndarray:
    height, width = frames.shape[1:3]
    rows, columns = height // side, width // side
    cropped = frames[:, : rows * side, : columns * side].astype(np.float64)
    return cropped.reshape(len(frames), side, rows, side, columns, 3).mean(axis=(2, 4)).reshape(len(frames), -1)


def _scenes_with_frames(timestamps: np.ndarray, duration: float, starts: np.ndarray) -> list[Segment]:
    scene_of_frame = np.searchsorted(starts, timestamps, side="right")
    counts = np.bincount(scene_of_frame, minlength=len(starts) + 1)
    scene_starts = np.r_[0.0, starts]
    scene_ends = np.r_[starts, max(duration, timestamps[-1])]
    segments, first_frame, pending_start = [], 0, None
    for count, start, end in zip(counts.tolist(), scene_starts.tolist(), scene_ends.tolist(), strict=True):
        if count == 0:
            if segments:
                last = segments[-1]
                segments[-1] = Segment(last.first_frame, last.num_frames, last.start, end)
            elif pending_start is None:
                pending_start = start
            continue
        segments.append(Segment(first_frame, count, start if pending_start is None else pending_start, end))
        first_frame += count
        pending_start = None
    return segments


def _split(segment: Segment, timestamps: np.ndarray, max_frames: int) -> list[Segment]:
    parts = math.ceil(segment.num_frames / max_frames)
    if parts == 1:
        return [segment]
    sizes = [len(chunk) for chunk in np.array_split(np.arange(segment.num_frames), parts)]
    firsts = segment.first_frame + np.cumsum([0, *sizes[:-1]])
    starts = [segment.start] + [float(timestamps[first]) for first in firsts[1:]]
    ends = starts[1:] + [segment.end]
    return [Segment(int(f), n, s, e) for f, n, s, e in zip(firsts, sizes, starts, ends, strict=True)]


def _merge_to_limit(segments: list[Segment], policy: SegmentationPolicy, name: str, timestamps: np.ndarray):
    num_frames = len(timestamps)
    if num_frames > policy.max_segments * policy.max_frames_per_segment:
        raise ValueError(
            f"{name}: {num_frames} sampled frames do not fit in max_segments={policy.max_segments} segments of "
            f"at most max_frames_per_segment={policy.max_frames_per_segment} frames; lower the sampling rate."
        )
    counts = np.array([segment.num_frames for segment in segments], dtype=np.float64)
    while len(segments) > policy.max_segments:
        pair_sizes = counts[:-1] + counts[1:]
        pair_sizes[pair_sizes > policy.max_frames_per_segment] = np.inf
        index = int(np.argmin(pair_sizes))
        if not np.isfinite(pair_sizes[index]):
            # Greedy merging can corner itself near full capacity: fall back to equal parts of the whole video.
            whole = Segment(0, num_frames, 0.0, segments[-1].end)
            return _split(whole, timestamps, math.ceil(num_frames / policy.max_segments))
        left, right = segments[index], segments[index + 1]
        segments[index : index + 2] = [
            Segment(left.first_frame, left.num_frames + right.num_frames, left.start, right.end)
        ]
        counts[index] += counts[index + 1]
        counts = np.delete(counts, index + 1)
    return segments
