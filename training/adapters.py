"""Adapters from upstream annotation formats to this package's records (`training.data`), spec section 5.

- LLaVA JSON (a list, or JSONL) `{"id", "image"|"video", "conversations": [{"from": "human"|"gpt", "value"}]}`:
  stage 1 keeps the last `gpt` value as the caption; stage 2 keeps the conversation (roles `user`/`assistant`,
  `<image>`/`<video>` placeholders removed) and has no scenes, so it trains the LM only.
- SceneWalk Hub rows (`IVLLab/SceneWalk`, one row per clip) `{"id", "url", "time_stamp": {"start_time",
  "end_time", "start_frame", "end_frame", "start_fps", ...}, "v2t_score": [...], "t2t_score": [...],
  "conversations": [..., {"from": "gpt", "value": caption}]}`: consecutive rows of one `url` form one stage-1.5
  record; row `i`'s scores are row `i` of its video's `[captions x scenes]` matrices. The video file is
  `video_dir/<video id>.mp4`, the video id being the URL's `v=` parameter or its last path part. A row whose clip
  `id` repeats an earlier row of its video is dropped and counted. Rows stream through: only one video's rows are
  held at a time.

`salova convert` reads its input with `training.reading.read_records` (JSON, JSONL, parquet, Hub id) and writes
parquet or JSON Lines by the output's extension (`training.commands`).
"""

from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from salova.training.data import RecordError

_PLACEHOLDERS = ("<image>", "<video>")
_ROLES = {"human": "user", "gpt": "assistant"}


def from_llava(record: dict, stage: str) -> dict:
    media = {key: record[key] for key in ("video", "image") if key in record}
    turns = [
        {"role": _ROLES.get(turn.get("from"), turn.get("from")), "content": _strip_placeholders(turn.get("value", ""))}
        for turn in record.get("conversations", [])
    ]
    if stage == "1":
        replies = [turn["content"] for turn in turns if turn["role"] == "assistant"]
        return {"id": record.get("id"), **media, "caption": replies[-1] if replies else ""}
    if stage == "2":
        return {"id": record.get("id"), **media, "conversations": turns}
    raise ValueError(f"LLaVA records convert to stage 1 or 2, not {stage!r}.")


def from_scenewalk(rows: Iterable[dict], video_dir: str | Path, dropped: dict | None = None) -> Iterator[dict]:
    """One stage-1.5 record per run of consecutive rows with the same `url`, yielded as each run ends.

    `dropped`, when given, receives `{"duplicate clip id": {"count", "first"}}` for the rows left out, `first`
    naming the first such clip and its video.
    """
    for url, clips in groupby(rows, key=lambda row: row.get("url")):
        video_id = _video_id(url)
        clips = _distinct_clips(clips, video_id, dropped)
        scenes = [
            {
                "start": _seconds(clip["time_stamp"], "start"),
                "end": _seconds(clip["time_stamp"], "end"),
                "caption": _caption(clip),
            }
            for clip in clips
        ]
        yield {
            "id": video_id,
            "video": str(Path(video_dir) / f"{video_id}.mp4"),
            "scenes": scenes,
            "v2t": [clip["v2t_score"] for clip in clips],
            "t2t": [clip["t2t_score"] for clip in clips],
        }


def _distinct_clips(clips: Iterable[dict], video_id: str, dropped: dict | None) -> list[dict]:
    """The clips whose `id` no earlier clip of the video has (a clip without an `id` is always kept)."""
    seen, distinct = set(), []
    for clip in clips:
        clip_id = clip.get("id")
        if clip_id is not None and clip_id in seen:
            if dropped is not None:
                entry = dropped.setdefault("duplicate clip id", {"count": 0, "first": f"clip {clip_id} of {video_id}"})
                entry["count"] += 1
            continue
        seen.add(clip_id)
        distinct.append(clip)
    return distinct


def _strip_placeholders(text: str) -> str:
    for placeholder in _PLACEHOLDERS:
        text = text.replace(placeholder + "\n", "").replace(placeholder, "")
    return text.strip()


def _video_id(url: str | None) -> str:
    if not url:
        raise RecordError("SceneWalk row without a 'url'.")
    parsed = urlparse(url)
    return parse_qs(parsed.query).get("v", [Path(parsed.path).stem])[0]


def _seconds(time_stamp: dict, side: str) -> float:
    """`HH:MM:SS(.fff)` or seconds in `<side>_time`, else `<side>_frame / <side>_fps`."""
    value = time_stamp.get(f"{side}_time")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip():
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    frame, fps = time_stamp.get(f"{side}_frame"), time_stamp.get(f"{side}_fps")
    if frame is None or not fps:
        raise RecordError(f"time_stamp {time_stamp} has no usable {side}_time nor {side}_frame/{side}_fps.")
    return frame / fps


def _caption(clip: dict) -> str:
    replies = [turn.get("value", "") for turn in clip.get("conversations", []) if turn.get("from") == "gpt"]
    return _strip_placeholders(replies[-1]) if replies else ""
