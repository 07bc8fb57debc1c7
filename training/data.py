"""Training records: one schema per stage, retrieval labels, and the mapping of a record's scenes onto the segments
the processor will cut.

Paths in a record are relative to the annotation file's folder (or `video_dir`), or absolute; times are seconds.

Stage 1 (alignment, plain prompt `<video>\\n` + caption, in-batch retrieval targets)::

    {"id": "s1-000001", "video": "videos/a.mp4", "caption": "a white circle moves left in the red scene"}
    {"id": "img-1", "image": "images/b.png", "caption": "..."}

Stage 1.5 (long-video knowledge; one caption per scene, scores are [captions x scenes])::

    {"id", "video", "scenes": [{"start": 0.0, "end": 3.0, "caption": "..."}, ...], "v2t": [[...]], "t2t": [[...]]}

Stage 2 (instruction tuning; scores are [user turns x scenes], every user turn a router query)::

    {"id", "video", "scenes": [{"start", "end"}, ...],
     "conversations": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}, ...],
     "v2t": [[...]]}

A stage-2 record without `scenes` (e.g. converted LLaVA-Video data) trains the LM only: the processor segments
the video, no retrieval label exists, and the router picks the focus segments for its first user turn.

Retrieval labels follow the paper: in stage 1.5 a scene is positive for a caption where `t2t > tau_t2t` or
`v2t > tau_v2t` (paper 0.8 / 0.18, authors' code 0.83 / 0.21); in stage 2 where `v2t > 0.20`, else the arg-max
scene. A query left without any positive falls back to its arg-max scene too, so no query trains on all-negative
targets.

One row per record. A stage-1.5 row samples up to `max_queries_per_video` of the video's captions (seeded by the
record id) as router queries against one encoding of the video, the first sampled caption being the LLM target
(spec section 3). A stage-2 row supervises every assistant turn and routes every user turn as its own query. The
focus segments the LLM sees in training are the labelled positives: of the first query in stage 1.5, of any turn
in stage 2 (the per-segment maximum over turns); the model keeps the top K of those labels.

Scenes become segments through the processor's own policy (`processing.segmentation.plan_segments`) on the
sampled-frame times the data check probed: scenes are sorted, scenes starting at or past the video's end are
dropped, a scene without a sampled frame merges into its neighbour and segments merged to fit `max_segments` take
the maximum label of their scenes, a scene split at `max_frames_per_segment` copies its label to every part. Each
repair is counted under one reason per record (the first in `REPAIRS`).
"""

import json
import zlib
from dataclasses import InitVar, dataclass, field
from pathlib import Path

import numpy as np
from salova.processing import SalovaVideoProcessor
from salova.processing.segmentation import SegmentationPolicy, plan_segments

# The training stages are the recipes shipped in `stages/`: one JSON file each, naming its stage, in stage order.
STAGE_FILES = dict(
    sorted(
        ((json.loads(path.read_text())["stage"], path) for path in Path(__file__).parent.glob("stages/*.json")),
        key=lambda item: float(item[0]),
    )
)
STAGES = tuple(STAGE_FILES)
# Repairs in the order a record's single reason is chosen.
REPAIRS = (
    "unsorted scene starts",
    "duplicate scene starts",
    "scene starts past the video's end",
    "opening not covered by a scene",
    "gap or overlap between scenes",
    "scene without a sampled frame",
    "scene split at max_frames_per_segment",
    "scenes merged to fit max_segments",
)


@dataclass(frozen=True)
class LabelThresholds:
    t2t: float = 0.83
    v2t: float = 0.21
    qa_v2t: float = 0.20


THRESHOLDS = {"code": LabelThresholds(), "paper": LabelThresholds(t2t=0.8, v2t=0.18)}


class RecordError(ValueError):
    """A record that cannot be trained on. `reason` is the short category the data check counts; the message
    names the record and the problem."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class RowSettings:
    """How records become rows: the stage, the label thresholds (a name of `THRESHOLDS`: the authors' code's, or
    the paper's), the router queries per stage-1.5 video (the paper's 16) and their sampling seed, the optional skip
    of long videos (`max_sampled_frames`, the authors' 1800; None: no skip), and the sampling rate (`fps`) and
    segment policy of `video_processor`, the `SalovaVideoProcessor` that will cut the rows' videos. The recipe and
    `salova data check` take their defaults from here."""

    stage: str
    video_processor: InitVar[SalovaVideoProcessor]
    label_thresholds: str = "code"
    max_queries_per_video: int = 16
    seed: int = 0
    max_sampled_frames: int | None = None
    fps: float = field(init=False)
    policy: SegmentationPolicy = field(init=False)

    def __post_init__(self, video_processor):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}.")
        if self.label_thresholds not in THRESHOLDS:
            raise ValueError(f"label_thresholds must be one of {sorted(THRESHOLDS)}, got {self.label_thresholds!r}.")
        if self.max_queries_per_video < 1:
            raise ValueError(f"max_queries_per_video must be at least 1, got {self.max_queries_per_video}.")
        # Duck-typed: a checkpoint loaded with trust_remote_code holds its own copy of the class.
        if not hasattr(video_processor, "segmentation_policy"):
            raise TypeError(
                "RowSettings needs the SalovaVideoProcessor that cuts the videos (processor.video_processor), "
                f"got a {type(video_processor).__name__}."
            )
        object.__setattr__(self, "fps", video_processor.fps)
        object.__setattr__(self, "policy", video_processor.segmentation_policy())

    @property
    def thresholds(self) -> LabelThresholds:
        return THRESHOLDS[self.label_thresholds]


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


def parse_record(text: str) -> dict:
    """One raw record (JSON text) -> a dict, or `RecordError` for malformed JSON and non-object values."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"malformed JSON ({error.msg} at column {error.colno})", "malformed JSON") from error
    if not isinstance(record, dict):
        raise RecordError(f"a JSON {type(record).__name__}, not an object", "not a JSON object")
    return record


def media_path(record: dict, root: str | Path) -> str:
    """The record's video (or image) path, resolved against `root`; `RecordError` when absent or missing."""
    relative = record.get("video") or record.get("image")
    if not isinstance(relative, str) or not relative:
        raise RecordError("needs a 'video' or 'image' path", "no video path")
    path = Path(relative) if Path(relative).is_absolute() else Path(root) / relative
    if not path.is_file():
        raise RecordError(f"video file missing: {path}", "video file missing")
    return str(path)


def record_row(record: dict, video: str, probe: dict | None, settings: RowSettings) -> tuple[dict, str | None]:
    """The training row of one record, and the repair made (one of `REPAIRS`) or None. Raises `RecordError`.

    `probe`: `{"duration", "timestamps"}` of the video as the data check measured it (sampled-frame times in
    seconds); None for an image. The row: `{"id", "video", "boundaries" (segment starts after the first; `[]`: one
    segment; None: the processor's segmenter), "messages" (the whole conversation, JSON), "queries" (router
    queries, the first being the LLM row's), "query_labels" (JSON `[queries][segments]` or null), "focus_labels"
    (JSON `[segments]` or null), "num_frames" (sampled frames)}`.
    """
    record_id = str(record.get("id", "<no id>"))
    num_frames = len(probe["timestamps"]) if probe else 1
    if settings.max_sampled_frames is not None and num_frames > settings.max_sampled_frames:
        raise RecordError(
            f"{num_frames} sampled frames, over max_sampled_frames={settings.max_sampled_frames}",
            "video over max_sampled_frames",
        )
    row = {"id": record_id, "video": video, "num_frames": num_frames, "query_labels": "null", "focus_labels": "null"}
    if settings.stage == "1":
        caption = _text(record.get("caption"), "caption")
        return {**row, "boundaries": [], "messages": _plain(video, caption), "queries": [caption]}, None

    scenes = record.get("scenes")
    if settings.stage == "2" and scenes is None:
        messages, user_turns = _conversation(record, video)
        return {**row, "boundaries": None, "messages": messages, "queries": user_turns[:1]}, None
    if probe is None:
        raise RecordError("scenes need a video, not an image", "scenes on an image")
    starts, ends = _scene_times(scenes)
    if settings.stage == "1.5":
        captions = [_text(scene.get("caption"), "scene caption") for scene in scenes]
        v2t = _scores(record, "v2t", (len(captions), len(scenes)))
        t2t = _scores(record, "t2t", (len(captions), len(scenes)))
        scene_labels = dense_caption_labels(v2t, t2t, settings.thresholds)
    else:
        messages, user_turns = _conversation(record, video)
        scene_labels = question_labels(_scores(record, "v2t", (len(user_turns), len(scenes))), settings.thresholds)
    mapping = map_scenes(starts, ends, probe["timestamps"], probe["duration"], settings)
    segment_labels = mapping.segment_labels(scene_labels)
    if settings.stage == "1.5":
        # A caption whose scene was dropped (past the end) has no segment to describe.
        kept = [index for index in range(len(captions)) if mapping.kept_scenes[index]]
        rng = np.random.default_rng([settings.seed, zlib.crc32(record_id.encode())])
        chosen = rng.permutation(kept)[: settings.max_queries_per_video].tolist()
        queries = [captions[index] for index in chosen]
        query_labels = segment_labels[chosen]
        row.update(
            messages=_plain(video, queries[0]), queries=queries, focus_labels=json.dumps(query_labels[0].tolist())
        )
    else:
        query_labels = segment_labels
        row.update(messages=messages, queries=user_turns, focus_labels=json.dumps(query_labels.max(axis=0).tolist()))
    row.update(boundaries=mapping.boundaries, query_labels=json.dumps(query_labels.tolist()))
    return row, mapping.repair


@dataclass
class SceneMapping:
    """Scenes (sorted) -> segments. `membership`: `(segments, scenes)` bool, scene `j` overlapping segment `i`;
    `order`: the sorted position of each original scene; `kept_scenes`: per original scene, not past the end."""

    boundaries: list[float]
    membership: np.ndarray
    order: np.ndarray
    kept_scenes: np.ndarray
    repair: str | None

    def segment_labels(self, scene_labels: np.ndarray) -> np.ndarray:
        """`(queries, scenes)` labels in the record's scene order -> `(queries, segments)`: max over the scenes of
        each segment."""
        sorted_labels = scene_labels[:, self.order][:, self.kept_scenes[self.order]]
        return (sorted_labels[:, None, :] * self.membership[None]).max(axis=2)


def map_scenes(
    starts: np.ndarray, ends: np.ndarray | None, timestamps, duration: float, settings: RowSettings
) -> SceneMapping:
    """Maps a record's scene list onto the segments `plan_segments` cuts from the given boundaries (see the module
    docstring); raises `RecordError` when no scene starts inside the video."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    step = 1.0 / settings.fps
    repairs = set()
    order = np.argsort(starts, kind="stable")
    if (np.diff(starts) < 0).any():
        repairs.add("unsorted scene starts")
    sorted_starts = starts[order]
    if (np.diff(sorted_starts) == 0).any():
        repairs.add("duplicate scene starts")
    kept = starts < duration
    if not kept.any():
        raise RecordError(f"every scene starts at or past the video's end ({duration:.2f} s)", "scenes past the end")
    if not kept.all():
        repairs.add("scene starts past the video's end")
    kept_starts = sorted_starts[kept[order]]
    if kept_starts[0] >= step:
        repairs.add("opening not covered by a scene")
    if ends is not None:
        kept_ends = ends[order][kept[order]]
        if (np.abs(kept_ends[:-1] - kept_starts[1:]) >= step).any():
            repairs.add("gap or overlap between scenes")
    boundaries = [float(start) for start in np.unique(kept_starts)[1:] if start > 0]
    segments = plan_segments(timestamps, duration, settings.policy, boundaries=boundaries)
    # Scene j spans [start_j, next start); the first from 0, as the processor's first segment does.
    span_starts = np.r_[0.0, kept_starts[1:]]
    span_ends = np.r_[kept_starts[1:], np.inf]
    membership = np.array(
        [
            (np.minimum(segment.end, span_ends) > np.maximum(segment.start, span_starts))
            | ((span_starts == span_ends) & (span_starts >= segment.start) & (span_starts < segment.end))
            for segment in segments
        ]
    )
    scene_of_frame = np.searchsorted(span_starts, timestamps, side="right") - 1
    frames_per_scene = np.bincount(scene_of_frame, minlength=len(span_starts))
    if (frames_per_scene[span_ends > span_starts] == 0).any():
        repairs.add("scene without a sampled frame")
    if (membership.sum(axis=0) > 1).any():
        repairs.add("scene split at max_frames_per_segment")
    if ((membership & (frames_per_scene > 0)[None]).sum(axis=1) > 1).any():
        repairs.add("scenes merged to fit max_segments")
    segment_starts = [segment.start for segment in segments[1:]]
    repair = next((reason for reason in REPAIRS if reason in repairs), None)
    return SceneMapping(segment_starts, membership, order, kept, repair)


def _scene_times(scenes) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(scenes, list) or not scenes or not all(isinstance(scene, dict) for scene in scenes):
        raise RecordError("'scenes' must be a non-empty list of objects", "no scene list")
    try:
        starts = np.array([float(scene["start"]) for scene in scenes])
        has_ends = all(scene.get("end") is not None for scene in scenes)
        ends = np.array([float(scene["end"]) for scene in scenes]) if has_ends else None
    except (KeyError, TypeError, ValueError) as error:
        raise RecordError(f"a scene without a numeric start or end ({error})", "scene times not numeric") from error
    if not np.isfinite(starts).all() or (starts < 0).any():
        raise RecordError("scene starts must be finite and non-negative", "scene times not numeric")
    return starts, ends


def _conversation(record: dict, video: str) -> tuple[str, list[str]]:
    """The conversation as JSON messages with the video in the first user turn, and the user turns' texts."""
    conversation = record.get("conversations")
    if (
        not isinstance(conversation, list)
        or len(conversation) < 2
        or not all(isinstance(turn, dict) and turn.get("role") in ("user", "assistant") for turn in conversation)
        or conversation[0].get("role") != "user"
        or conversation[-1].get("role") != "assistant"
    ):
        raise RecordError(
            "'conversations' must be user/assistant turns, starting with a user turn and ending with an assistant turn",
            "malformed conversation",
        )
    texts = [_text(turn.get("content"), f"{turn['role']} turn") for turn in conversation]
    messages = [{"role": turn["role"], "content": text} for turn, text in zip(conversation, texts, strict=True)]
    messages[0]["content"] = [{"type": "video", "path": video}, {"type": "text", "text": texts[0]}]
    user_turns = [text for turn, text in zip(conversation, texts, strict=True) if turn["role"] == "user"]
    return json.dumps(messages), user_turns


def _plain(video: str, caption: str) -> str:
    return json.dumps(
        [{"role": "user", "content": [{"type": "video", "path": video}]}, {"role": "assistant", "content": caption}]
    )


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"empty or non-text {what}", f"empty {what}")
    return value


def _scores(record: dict, key: str, shape: tuple[int, int]) -> np.ndarray:
    try:
        scores = np.asarray(record.get(key), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise RecordError(f"'{key}' is not a numeric matrix ({error})", f"'{key}' not a numeric matrix") from error
    if scores.shape != shape:
        raise RecordError(f"'{key}' must be {shape[0]} x {shape[1]}, got {scores.shape}", f"'{key}' of the wrong shape")
    if not np.isfinite(scores).all():
        raise RecordError(f"'{key}' holds non-finite values", f"'{key}' not a numeric matrix")
    return scores
