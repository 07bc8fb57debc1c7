"""Training records: one JSONL schema per stage, validation with skip counts, and retrieval labels.

Paths in a record are relative to the JSONL file's folder (or absolute); times are seconds.

Stage 1 (alignment, plain prompt `<video>\\n` + caption, in-batch retrieval targets)::

    {"id": "s1-000001", "video": "videos/a.mp4", "caption": "a white circle moves left in the red scene"}
    {"id": "img-1", "image": "images/b.png", "caption": "..."}

Stage 1.5 (long-video knowledge; one caption per scene, scores are [captions x scenes])::

    {"id", "video", "scenes": [{"start": 0.0, "end": 3.0, "caption": "..."}, ...], "v2t": [[...]], "t2t": [[...]]}

Stage 2 (instruction tuning; scores are [user turns x scenes], the last user turn is the router query)::

    {"id", "video", "scenes": [{"start", "end"}, ...],
     "conversations": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}], "v2t": [[...]]}

A stage-2 record without `scenes` (e.g. converted LLaVA-Video data) trains the LM only: the processor segments
the video and no retrieval label exists.

Retrieval labels follow the paper: in stage 1.5 a scene is positive for a caption where `t2t > tau_t2t` or
`v2t > tau_v2t` (paper 0.8 / 0.18, authors' code 0.83 / 0.21); in stage 2 where `v2t > 0.20`, else the arg-max
scene. A query left without any positive falls back to its arg-max scene too, so no row trains on all-negative
targets. A stage-1.5 video yields one row per caption (at most `max_queries_per_video`), each caption being the
router query and the LLM target of its row.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

STAGES = ("1", "1.5", "2")


@dataclass(frozen=True)
class LabelThresholds:
    t2t: float = 0.83
    v2t: float = 0.21
    qa_v2t: float = 0.20


THRESHOLDS = {"code": LabelThresholds(), "paper": LabelThresholds(t2t=0.8, v2t=0.18)}


class RecordError(ValueError):
    """A record that cannot be trained on; the message names the record and the problem."""


def dense_caption_labels(v2t: np.ndarray, t2t: np.ndarray, thresholds: LabelThresholds) -> np.ndarray:
    """`(captions, scenes)` scores -> `(captions, scenes)` 0/1 labels (stage 1.5)."""
    positive = (t2t > thresholds.t2t) | (v2t > thresholds.v2t)
    return _with_argmax_fallback(positive, v2t)


def question_labels(v2t: np.ndarray, thresholds: LabelThresholds) -> np.ndarray:
    """`(turns, scenes)` scores -> `(turns, scenes)` 0/1 labels (stage 2)."""
    return _with_argmax_fallback(v2t > thresholds.qa_v2t, v2t)


def _with_argmax_fallback(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    labels = positive.astype(np.float32)
    empty = ~positive.any(axis=1)
    labels[empty, scores[empty].argmax(axis=1)] = 1.0
    return labels


def training_rows(
    record: dict, stage: str, root: Path, thresholds: LabelThresholds, max_queries_per_video: int = 16
) -> list[dict]:
    """Rows the collator consumes, from one record. Raises `RecordError` for a record that cannot be used.

    A row: `{"id", "video", "boundaries" (segment starts; `[]`: one segment; None: the processor's segmenter),
    "messages" (the prompt turns, JSON-encoded since an Arrow column holds one type), "response", "query",
    "segment_labels" (one per scene, or None)}`.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}.")
    record_id = record.get("id", "<no id>")
    video = _media_path(record, root, record_id)
    if stage == "1":
        caption = _text(record.get("caption"), record_id, "caption")
        prompt = [{"role": "user", "content": [{"type": "video", "path": video}]}]
        return [_row(record_id, video, [], prompt, caption, caption, None)]

    scenes = record.get("scenes")
    if stage == "2" and scenes is None:
        return _conversation_row(record, record_id, video, None, None)
    if not isinstance(scenes, list) or not scenes:
        raise RecordError(f"record {record_id}: needs a non-empty 'scenes' list.")
    boundaries = [float(scene["start"]) for scene in scenes[1:]]
    if stage == "1.5":
        captions = [_text(scene.get("caption"), record_id, "scene caption") for scene in scenes]
        v2t = _scores(record, "v2t", (len(captions), len(scenes)), record_id)
        t2t = _scores(record, "t2t", (len(captions), len(scenes)), record_id)
        labels = dense_caption_labels(v2t, t2t, thresholds)
        prompt = [{"role": "user", "content": [{"type": "video", "path": video}]}]
        return [
            _row(f"{record_id}#{index}", video, boundaries, prompt, caption, caption, labels[index].tolist())
            for index, caption in enumerate(captions[:max_queries_per_video])
        ]

    num_user_turns = sum(turn.get("role") == "user" for turn in _conversation(record, record_id))
    v2t = _scores(record, "v2t", (num_user_turns, len(scenes)), record_id)
    return _conversation_row(record, record_id, video, boundaries, question_labels(v2t, thresholds)[-1].tolist())


def _conversation(record: dict, record_id: str) -> list[dict]:
    conversation = record.get("conversations")
    if (
        not isinstance(conversation, list)
        or len(conversation) < 2
        or not all(isinstance(turn, dict) for turn in conversation)
        or conversation[-1].get("role") != "assistant"
        or not any(turn.get("role") == "user" for turn in conversation)
    ):
        raise RecordError(f"record {record_id}: 'conversations' must hold user turns and end with an assistant turn.")
    return conversation


def _conversation_row(record: dict, record_id: str, video: str, boundaries, labels) -> list[dict]:
    conversation = _conversation(record, record_id)
    user_turns = [turn for turn in conversation if turn.get("role") == "user"]
    messages = [dict(turn) for turn in conversation[:-1]]
    first_user = next(index for index, turn in enumerate(messages) if turn["role"] == "user")
    text = _text(messages[first_user].get("content"), record_id, "user turn")
    messages[first_user]["content"] = [{"type": "video", "path": video}, {"type": "text", "text": text}]
    query = _text(user_turns[-1].get("content"), record_id, "last user turn")
    response = _text(conversation[-1].get("content"), record_id, "assistant turn")
    return [_row(record_id, video, boundaries, messages, response, query, labels)]


def load_rows(
    path: str | Path,
    stage: str,
    thresholds: LabelThresholds = THRESHOLDS["code"],
    strict: bool = False,
    max_queries_per_video: int = 16,
) -> list[dict]:
    """All training rows of a JSONL file. Unusable records are skipped with a logged count per reason, or raise
    with `strict=True`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Training data not found: {path}")
    rows, skipped = [], Counter()
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            rows += training_rows(record, stage, path.parent, thresholds, max_queries_per_video)
        except (RecordError, json.JSONDecodeError, KeyError, TypeError) as error:
            if strict:
                raise RecordError(f"{path}:{line_number}: {error}") from error
            skipped[type(error).__name__ if not isinstance(error, RecordError) else str(error).split(": ", 1)[1]] += 1
    if skipped:
        logger.warning("%s: skipped %d records: %s", path, sum(skipped.values()), dict(skipped))
    if not rows:
        raise RecordError(f"{path}: no usable record for stage {stage}.")
    return rows


def _row(record_id, video, boundaries, messages, response, query, segment_labels) -> dict:
    return {
        "id": record_id,
        "video": video,
        "boundaries": boundaries,
        "messages": json.dumps(messages),
        "response": response,
        "query": query,
        "segment_labels": segment_labels,
    }


def _media_path(record: dict, root: Path, record_id: str) -> str:
    relative = record.get("video") or record.get("image")
    if not isinstance(relative, str):
        raise RecordError(f"record {record_id}: needs a 'video' or 'image' path.")
    path = Path(relative) if Path(relative).is_absolute() else root / relative
    if not path.is_file():
        raise RecordError(f"record {record_id}: video file missing: {path}")
    return str(path)


def _text(value, record_id: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"record {record_id}: empty {what}.")
    return value


def _scores(record: dict, key: str, shape: tuple[int, int], record_id: str) -> np.ndarray:
    scores = np.asarray(record.get(key), dtype=np.float64)
    if scores.shape != shape:
        raise RecordError(f"record {record_id}: '{key}' must be {shape[0]} x {shape[1]}, got {scores.shape}.")
    return scores
