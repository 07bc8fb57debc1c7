"""Held-out evaluation of retrieval and answers on stage-2-format records, against a random-router ablation.

For each question, answered through the answering core (`salova.assistant.VideoAssistant`, each video encoded
once): the router's scores over the video's scenes (the record's scenes are the segments), recall@k of the asked
scene (the scenes labelled positive, `training.data.question_labels`), and the greedy answer compared with the
reference after lower-casing and stripping punctuation (exact match). The ablation runs the same model with the
router's scores replaced by random ones, so the focus segments are a random choice.

With `scenes="detected"` each video is segmented as `salova ask` segments it, at the scene cuts the processor
detects, and a segment counts as the asked scene's where it overlaps that scene for more than half a sampling step.
"""

import contextlib
import json
import string
from dataclasses import dataclass, field

import torch
from salova.assistant.answering import Scene, VideoAssistant
from salova.training.data import RowSettings
from salova.training.data_check import check_data
from tqdm.auto import tqdm

SCENE_SOURCES = ("annotated", "detected")


@dataclass
class QuestionResult:
    id: str
    question: str
    reference: str
    answer: str
    asked_scenes: list[int]
    ranking: list[int]  # scenes by router score, best first
    scores: list[float]
    scenes: list[Scene] = field(default_factory=list)  # the video's segments, with router scores and focus

    @property
    def exact_match(self) -> bool:
        return normalise_answer(self.answer) == normalise_answer(self.reference)

    def recall_at(self, k: int) -> bool:
        return bool(set(self.ranking[:k]) & set(self.asked_scenes))


def normalise_answer(text: str) -> str:
    return text.strip().lower().strip(string.punctuation + string.whitespace)


def summarise(results: list[QuestionResult], recall_ks: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    count = len(results)
    summary = {f"recall@{k}": sum(r.recall_at(k) for r in results) / count for k in recall_ks}
    summary["exact_match"] = sum(r.exact_match for r in results) / count
    summary["questions"] = count
    return summary


class RandomRouter(torch.nn.Module):
    """Stands in for `SegmentRetrievalRouter`: uniform random scores on the real segments (torch's global RNG,
    which `VideoAssistant.ask` seeds once per question with `seed`)."""

    def forward(self, routing_tokens, segment_mask, text_states, text_mask):
        scores = torch.rand(segment_mask.shape).to(routing_tokens)
        return scores.masked_fill(~segment_mask, float("-inf"))


@contextlib.contextmanager
def random_router(model):
    """Swaps the model's router for `RandomRouter` inside the block."""
    learned = model.model.router
    model.model.router = RandomRouter()
    try:
        yield model
    finally:
        model.model.router = learned


def evaluate(
    assistant: VideoAssistant,
    records_path,
    max_new_tokens: int = 8,
    seed: int = 0,
    progress: bool = False,
    scenes: str = "annotated",
) -> list[QuestionResult]:
    """Answers every question of a stage-2-format JSONL file (one video and one question per row), each video
    encoded once: segmented at its record's scenes (`scenes="annotated"`) or at the processor's (`"detected"`)."""
    if scenes not in SCENE_SOURCES:
        raise ValueError(f"scenes must be one of {SCENE_SOURCES}, got {scenes!r}.")
    rows, _ = check_data(records_path, RowSettings("2", assistant.processor.video_processor), strict=True, show=False)
    encoded, results = {}, []
    for index, row in enumerate(tqdm(rows, desc=f"evaluating ({scenes} scenes)", disable=not progress)):
        boundaries = row["boundaries"] if scenes == "annotated" else None
        key = (row["video"], None if boundaries is None else tuple(boundaries))
        if key not in encoded:
            encoded[key] = assistant.encode(row["video"], segment_boundaries=boundaries)
        *messages, answer_turn = json.loads(row["messages"])
        answer = assistant.ask(encoded[key], messages, max_new_tokens=max_new_tokens, seed=seed + index)
        scores = torch.tensor(answer.router_scores)
        asked = [i for i, label in enumerate(json.loads(row["query_labels"])[-1]) if label > 0]
        if boundaries is None:
            step = 1.0 / assistant.processor.video_processor.fps
            asked = _overlapping_segments(encoded[key].segment_times, row["boundaries"], asked, step / 2)
        results.append(
            QuestionResult(
                id=row["id"],
                question=row["queries"][-1],
                reference=answer_turn["content"],
                answer=answer.text,
                asked_scenes=asked,
                ranking=scores.argsort(descending=True).tolist(),
                scores=answer.router_scores,
                scenes=answer.scenes,
            )
        )
    return results


def _overlapping_segments(
    segment_times: torch.Tensor, scene_starts: list[float], scenes: list[int], min_overlap: float
) -> list[int]:
    """The segments (`(S, 2)` start and end seconds) that overlap any of `scenes` by more than `min_overlap`
    seconds; scene `i` spans from its start (0 for the first, then `scene_starts[i - 1]`) to the next one's."""
    starts = [0.0, *scene_starts]
    ends = [*scene_starts, float("inf")]
    return [
        segment
        for segment, (start, end) in enumerate(segment_times.tolist())
        if any(min(end, ends[scene]) - max(start, starts[scene]) > min_overlap for scene in scenes)
    ]
