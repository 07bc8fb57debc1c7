"""Held-out evaluation of retrieval and answers on stage-2-format records, against a random-router ablation.

For each question: the router's scores over the video's scenes (the record's scenes are the segments), recall@k
of the asked scene (the scenes labelled positive, `training.data.question_labels`), and the greedy answer compared
with the reference after lower-casing and stripping punctuation (exact match). The ablation runs the same model
with the router's scores replaced by random ones, so the focus segments are a random choice.
"""

import contextlib
import json
import string
from dataclasses import dataclass, field

import torch
from salova.training.data import RowSettings
from salova.training.data_check import check_data
from tqdm.auto import tqdm


@dataclass
class QuestionResult:
    id: str
    question: str
    reference: str
    answer: str
    asked_scenes: list[int]
    ranking: list[int]  # scenes by router score, best first
    scores: list[float]
    segments: list[dict] = field(default_factory=list)  # `SalovaProcessor.describe_segments` of the video

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
    which `evaluate` seeds per question so that scoring and answering see the same draw)."""

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


@torch.no_grad()
def evaluate(
    model, processor, records_path, max_new_tokens: int = 8, seed: int = 0, progress: bool = False
) -> list[QuestionResult]:
    """Answers every question of a stage-2-format JSONL file (one video and one question per row)."""
    model.eval()
    results = []
    settings = RowSettings.for_processor("2", processor)
    rows, _ = check_data(records_path, settings, strict=True, show=False)
    for index, row in enumerate(tqdm(rows, desc="evaluating", disable=not progress)):
        *messages, answer_turn = json.loads(row["messages"])
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(
            videos=row["video"],
            text=prompt,
            queries=row["queries"][-1],
            segment_boundaries=[row["boundaries"]],
            add_special_tokens=False,
        )
        torch.manual_seed(seed + index)
        outputs = model(**inputs)
        torch.manual_seed(seed + index)
        generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answer = processor.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        scores = outputs.router_scores[0].float()
        results.append(
            QuestionResult(
                id=row["id"],
                question=row["queries"][-1],
                reference=answer_turn["content"],
                answer=answer,
                asked_scenes=[i for i, label in enumerate(json.loads(row["query_labels"])[-1]) if label > 0],
                ranking=scores.argsort(descending=True).tolist(),
                scores=scores.tolist(),
                segments=processor.describe_segments(inputs, outputs.router_scores, outputs.selected_segments)[0],
            )
        )
    return results
