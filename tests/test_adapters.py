"""Upstream formats -> this package's records."""

import json
import subprocess
import sys

import pytest
from salova.training.adapters import from_llava, from_scenewalk

LLAVA = {
    "id": "v1",
    "video": "clips/v1.mp4",
    "conversations": [
        {"from": "human", "value": "<video>\nWhat happens?"},
        {"from": "gpt", "value": "A dog runs."},
    ],
}


def test_llava_records_become_captions_or_conversations():
    assert from_llava(LLAVA, "1") == {"id": "v1", "video": "clips/v1.mp4", "caption": "A dog runs."}
    assert from_llava(LLAVA, "2")["conversations"] == [
        {"role": "user", "content": "What happens?"},
        {"role": "assistant", "content": "A dog runs."},
    ]
    with pytest.raises(ValueError, match="stage 1 or 2"):
        from_llava(LLAVA, "1.5")


def _clip(url, start, end, v2t, caption):
    return {
        "id": f"{url}-{start}",
        "url": url,
        "time_stamp": {"start_time": start, "end_time": end, "start_frame": 0, "end_frame": 0, "start_fps": 30},
        "v2t_score": v2t,
        "t2t_score": [1.0 if i == j else 0.1 for j in range(len(v2t)) for i in [v2t.index(max(v2t))]],
        "conversations": [{"from": "human", "value": "<video>\nDescribe."}, {"from": "gpt", "value": caption}],
    }


def test_scenewalk_rows_group_into_one_record_per_video(tmp_path):
    url = "https://www.youtube.com/watch?v=abc123"
    rows = [
        _clip(url, "00:00:00.000", "00:00:12.500", [0.3, 0.1], "a kitchen"),
        _clip(url, "00:00:12.500", "00:01:03", [0.05, 0.25], "a street"),
        _clip("https://example.org/movies/film_7.mp4", "0:00:00", "0:00:05", [0.4], "a title card"),
    ]
    records = list(from_scenewalk(iter(rows), tmp_path))
    assert [record["id"] for record in records] == ["abc123", "film_7"]
    first = records[0]
    assert first["video"] == str(tmp_path / "abc123.mp4")
    assert [(s["start"], s["end"], s["caption"]) for s in first["scenes"]] == [
        (0.0, 12.5, "a kitchen"),
        (12.5, 63.0, "a street"),
    ]
    assert first["v2t"] == [[0.3, 0.1], [0.05, 0.25]] and len(first["t2t"]) == 2


def test_convert_command_writes_records_the_loader_reads(tmp_path):
    source = tmp_path / "llava.json"
    source.write_text(json.dumps([LLAVA, {**LLAVA, "id": "v2"}]))
    output = tmp_path / "stage1.jsonl"
    command = [sys.executable, "-m", "salova.cli", "convert", "--from", "llava", "--stage", "1", source, output]
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == ["v1", "v2"]


def test_scenewalk_rows_repeating_a_clip_id_are_dropped_and_counted(tmp_path):
    url = "https://www.youtube.com/watch?v=abc123"
    kitchen, street = _clip(url, 0, 12.5, [0.3, 0.1], "a kitchen"), _clip(url, 12.5, 63, [0.05, 0.25], "a street")
    other = _clip("https://www.youtube.com/watch?v=xyz", 0, 5, [0.4], "a title card")
    dropped = {}
    records = list(from_scenewalk(iter([kitchen, street, dict(kitchen), other, dict(other)]), tmp_path, dropped))
    assert [len(record["scenes"]) for record in records] == [2, 1]
    assert records[0]["v2t"] == [[0.3, 0.1], [0.05, 0.25]]
    assert dropped == {"duplicate clip id": {"count": 2, "first": f"clip {kitchen['id']} of abc123"}}
