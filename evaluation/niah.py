"""V-NIAH: a needle scene spliced into a haystack video at the model's input, over a depth x length grid.

The haystack and the needle are decoded once, at the sampling rate and the vision tower's input size (an hour
at 1 FPS is 3600 small frames, never a frame at source resolution). For each haystack length (seconds of the
sampled video; a shorter haystack loops) and depth (0 = first, 1 = last), the needle's frames go in at the
haystack scene start nearest to that depth, and the segment boundaries handed to the processor are the
haystack's scene starts plus the needle's start and end, so the needle is a segment of its own. When that makes
more segments than the segment policy allows (`max_segments`, the router's position table), the haystack's
scenes are coarsened (every k-th scene start kept) rather than letting the policy merge the needle into a
neighbour; the grid point records k.

Each grid point reports whether the router put the needle's segment in focus, its rank among the segments
(recall@K for any K follows), and the greedy answer's exact match, for the learned router and for a random one
(`salova.evaluation.retrieval.random_router`) on the same inputs, answered through the answering core
(`salova.assistant.VideoAssistant`).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from salova.assistant import EncodedVideo, VideoAssistant
from salova.evaluation.heatmap import draw_heatmaps
from salova.evaluation.retrieval import normalise_answer, random_router
from tqdm.auto import tqdm

DEFAULT_LENGTHS = (60, 300, 900, 1800, 3600)
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_NEEDLE_SECONDS = 3.0
RECALL_KS = (1, 3, 5)


@dataclass
class Footage:
    """Sampled frames `(T, size, size, 3)` uint8 and the frame indices where its scenes start (0 first)."""

    frames: np.ndarray
    scene_starts: list[int]


@dataclass(frozen=True)
class NiahCase:
    """A haystack, a needle that is not in it, and a question only the needle answers."""

    haystack: Footage
    needle: Footage
    question: str
    answer: str


@dataclass
class SplicedVideo:
    frames: np.ndarray  # (T, size, size, 3)
    scene_starts: list[int]  # frame indices, 0 first
    needle_segment: int
    needle_start: int  # frame index
    coarsened_every: int  # 1: every haystack scene is a segment


def load_footage(processor, video, min_seconds: float = 0.0) -> Footage:
    """Decodes `video` (path or image) once at the processor's sampling rate and tower size; its scene starts are
    the processor's segments (detected scenes, merged only beyond `max_segments`). Looped to `min_seconds`."""
    decoded, segments = processor.video_processor.process_video(video)
    frames = decoded.frames[: sum(segment.num_frames for segment in segments)]
    starts = [segment.first_frame for segment in segments]
    needed = math.ceil(min_seconds * processor.video_processor.fps)
    if len(frames) < needed:
        frames = frames[np.arange(needed) % len(frames)]
        starts = [0]  # a looped needle is one scene
    return Footage(frames, starts)


def splice(haystack: Footage, needle: Footage, num_frames: int, depth: float, max_segments: int) -> SplicedVideo:
    """`num_frames` haystack frames (looped) with the needle's frames inserted at the scene start nearest to
    `depth * num_frames`, the needle one segment, the haystack coarsened to fit `max_segments` segments."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}.")
    if max_segments < 3:
        raise ValueError(f"max_segments must be at least 3 (haystack, needle, haystack), got {max_segments}.")
    period = len(haystack.frames)
    starts = sorted({loop + start for loop in range(0, num_frames, period) for start in haystack.scene_starts})
    starts = [start for start in starts if start < num_frames]
    candidates = [*starts, num_frames]
    position = min(candidates, key=lambda start: (abs(start - depth * num_frames), start))
    needle_length = len(needle.frames)
    before = [start for start in starts if start < position]
    after = [start + needle_length for start in starts if start > position]
    needle_end = position + needle_length
    # The needle's start, and the haystack's resumption unless the needle comes last, are never dropped.
    fixed = {0, position} | ({needle_end} if position < num_frames else set())
    optional = [start for start in before + after if start not in fixed]
    allowed = max_segments - len(fixed)
    every = 1 if len(optional) <= allowed else (math.ceil(len(optional) / allowed) if allowed else len(optional) + 1)
    kept = set(optional[::every]) if allowed else set()
    scene_starts = sorted(kept | fixed)
    haystack_part = np.arange(num_frames) % period
    indices = np.concatenate([haystack_part[:position], period + np.arange(needle_length), haystack_part[position:]])
    frames = np.concatenate([haystack.frames, needle.frames])[indices]
    return SplicedVideo(frames, scene_starts, scene_starts.index(position), position, every)


def run_niah(
    assistant: VideoAssistant,
    cases: list[NiahCase],
    lengths=DEFAULT_LENGTHS,
    depths=DEFAULT_DEPTHS,
    output: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    max_new_tokens: int = 16,
) -> dict:
    """Runs the grid for every case (greedy answers of at most `max_new_tokens`); writes `niah.json` and
    `niah.png` into `output` when given."""
    processor = assistant.processor
    fps = processor.video_processor.fps
    max_segments = processor.video_processor.router_max_segments  # within the model's table (checked on load)
    points = []
    grid = [(length, depth, case) for length in lengths for depth in depths for case in cases]
    for index, (length, depth, case) in enumerate(tqdm(grid, desc="V-NIAH", disable=not progress)):
        video = splice(case.haystack, case.needle, round(length * fps), depth, max_segments)
        boundaries = [start / fps for start in video.scene_starts[1:]]
        encoded = assistant.encode(video.frames, video_fps=fps, segment_boundaries=boundaries)
        if encoded.num_segments != len(video.scene_starts):
            raise RuntimeError(
                f"The segment policy made {encoded.num_segments} segments of the {len(video.scene_starts)} given "
                f"boundaries at length {length}, depth {depth}; the needle is no longer a segment of its own."
            )
        point = {
            "length_seconds": length,
            "depth": depth,
            "question": case.question,
            "reference": case.answer,
            "num_segments": encoded.num_segments,
            "needle_segment": video.needle_segment,
            "needle_start_seconds": video.needle_start / fps,
            "coarsened_every": video.coarsened_every,
        }
        probe = (assistant, encoded, case, video.needle_segment, seed + index, max_new_tokens)
        point["learned"] = _probe(*probe)
        with random_router(assistant.model):
            point["random_router"] = _probe(*probe)
        points.append(point)
    report = {"lengths": list(lengths), "depths": list(depths), "points": points, "summary": summarise_niah(points)}
    if output is not None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "niah.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        draw_heatmaps(_panels(report), list(lengths), list(depths), output / "niah.png")
    return report


def summarise_niah(points: list[dict]) -> dict:
    """Per router: in-focus rate, recall@K of the needle's segment and exact match, overall and per length."""
    summary = {}
    for router in ("learned", "random_router"):
        per_length = {}
        for length in sorted({point["length_seconds"] for point in points}):
            per_length[str(length)] = _rates([p[router] for p in points if p["length_seconds"] == length])
        summary[router] = {"overall": _rates([point[router] for point in points]), "by_length": per_length}
    return summary


def _probe(
    assistant: VideoAssistant, encoded: EncodedVideo, case: NiahCase, needle_segment: int, seed: int, max_new_tokens
) -> dict:
    messages = assistant.conversation(None, [case.question], [])
    answer = assistant.ask(encoded, messages, max_new_tokens=max_new_tokens, seed=seed)
    scores = torch.tensor(answer.router_scores)
    rank = int((scores > scores[needle_segment]).sum()) + 1
    return {
        "in_focus": needle_segment in answer.selected_segments,
        "rank": rank,
        "answer": answer.text,
        "exact_match": normalise_answer(answer.text) == normalise_answer(case.answer),
    }


def _rates(results: list[dict]) -> dict:
    count = len(results)
    rates = {"in_focus": sum(r["in_focus"] for r in results) / count}
    rates.update({f"recall@{k}": sum(r["rank"] <= k for r in results) / count for k in RECALL_KS})
    rates["exact_match"] = sum(r["exact_match"] for r in results) / count
    rates["points"] = count
    return rates


def _panels(report: dict) -> dict[str, np.ndarray]:
    """`{title: (depths, lengths) mean}` for the heatmap: focus and exact match, learned and random router."""
    lengths, depths = report["lengths"], report["depths"]
    panels = {}
    for router, name in (("learned", "learned router"), ("random_router", "random router")):
        for metric, label in (("in_focus", "needle in focus"), ("exact_match", "exact match")):
            values = np.zeros((len(depths), len(lengths)))
            counts = np.zeros_like(values)
            for point in report["points"]:
                row, column = depths.index(point["depth"]), lengths.index(point["length_seconds"])
                values[row, column] += point[router][metric]
                counts[row, column] += 1
            panels[f"{label}, {name}"] = values / np.maximum(counts, 1)
    return panels


def needle_footage(processor, needle) -> Footage:
    """The needle as sampled frames of at least `MIN_NEEDLE_SECONDS`: an image is held, a short video loops."""
    footage = load_footage(processor, needle, MIN_NEEDLE_SECONDS)
    return Footage(footage.frames, [0])
