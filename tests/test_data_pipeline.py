"""Real-shaped training data: a messy corpus (the synthetic one with injected faults) checked, repaired and trained
on; stage-1.5 queries on one video encoding; every stage-2 turn supervised; length bounds; SceneWalk parquet."""

import copy
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import av
import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import record_calls
from salova.hub_configs import build_salova
from salova.training.collator import SalovaCollator
from salova.training.data import RecordError, RowSettings
from salova.training.data_check import DataCheckError, check_data, probe_video
from salova.training.reading import stream_records
from salova.training.recipe import load_recipe
from salova.training.run import build_trainer, train_stage
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus
from transformers import AutoProcessor

# Lowered so that a synthetic video of ~25 one-second frames can hold a scene too long and too many scenes.
MAX_FRAMES_PER_SEGMENT = 8
MAX_SEGMENTS = 12
TRAINING_ARGS = {
    "use_cpu": True,
    "activation_checkpointing": False,
    "report_to": [],
    "disable_tqdm": True,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "dataloader_num_workers": 0,
    "save_strategy": "no",
    "logging_steps": 1,
    "seed": 0,
}
STAGE15_FAULTS = {
    "scene without a sampled frame": 1,
    "scene split at max_frames_per_segment": 1,
    "scenes merged to fit max_segments": 1,
    "unsorted scene starts": 1,
    "duplicate scene starts": 1,
    "scene starts past the video's end": 1,
}
STAGE15_SKIPS = {"no scene list": 1}
STAGE2_REPAIRS = {"gap or overlap between scenes": 1, "opening not covered by a scene": 1}
STAGE2_SKIPS = {
    "unreadable video": 2,
    "truncated video": 1,
    "'v2t' not a numeric matrix": 2,
    "not a JSON object": 1,
    "malformed JSON": 1,
}


def _scene_record(record: dict, order: list[int] | None = None) -> dict:
    """`record` with its scenes (and the score rows and columns that follow them) in `order`."""
    order = list(range(len(record["scenes"]))) if order is None else order
    scores = {key: np.asarray(record[key])[np.ix_(order, order)].tolist() for key in ("v2t", "t2t")}
    return {**record, "scenes": [record["scenes"][i] for i in order], **scores}


def _with_scene(record: dict, scene: dict) -> dict:
    """`record` with one more scene, captioned, scored low against everything."""
    count = len(record["scenes"]) + 1
    grown = {key: np.pad(np.asarray(record[key]), ((0, 1), (0, 1)), constant_values=0.01) for key in ("v2t", "t2t")}
    for matrix in grown.values():
        matrix[count - 1, count - 1] = 0.3
    return {**record, "scenes": [*record["scenes"], scene], **{k: v.tolist() for k, v in grown.items()}}


def _stage15_lines(good: list[dict]) -> list[str]:
    base = good[0]
    scenes = base["scenes"]
    end = scenes[-1]["end"]
    # A 0.25 s scene between the first two, holding no 1 FPS frame.
    flash = _with_scene(base, {"start": 1.25, "end": 1.5, "caption": "a flash"})
    short = _scene_record(flash, [0, len(scenes), *range(1, len(scenes))])
    short["scenes"][0] = {**short["scenes"][0], "end": 1.25}
    short["scenes"][2] = {**short["scenes"][2], "start": 1.5}
    # One scene over MAX_FRAMES_PER_SEGMENT frames: the first three merged.
    long_scenes = [{**scenes[0], "end": scenes[2]["end"]}, *scenes[3:]]
    keep = [0, *range(3, len(scenes))]
    long = {
        **base,
        "scenes": long_scenes,
        **{key: np.asarray(base[key])[np.ix_(keep, keep)].tolist() for key in ("v2t", "t2t")},
    }
    # More than MAX_SEGMENTS scenes: one every 1.5 s.
    starts = np.arange(0.0, end, 1.5)
    many = {
        **base,
        "scenes": [
            {"start": float(s), "end": float(min(s + 1.5, end)), "caption": f"part {i}"} for i, s in enumerate(starts)
        ],
        "v2t": (np.eye(len(starts)) * 0.3).tolist(),
        "t2t": np.eye(len(starts)).tolist(),
    }
    unsorted = _scene_record(base, [1, 0, *range(2, len(scenes))])
    duplicate = _with_scene(base, dict(scenes[2]))
    duplicate = _scene_record(duplicate, [0, 1, 2, len(scenes), *range(3, len(scenes))])
    past_end = _with_scene(base, {"start": end + 5.0, "end": end + 8.0, "caption": "after the end"})
    no_scenes = {key: value for key, value in base.items() if key != "scenes"}
    records = [short, long, many, unsorted, duplicate, past_end, no_scenes]
    return [json.dumps(record) for record in [*good, *records]]


def _truncated_copy(source, target) -> None:
    """The first two thirds of `source` remuxed with its index first (`faststart`), as a download cut short."""
    remuxed = target.with_suffix(".faststart.mp4")
    with (
        av.open(str(source)) as video,
        av.open(str(remuxed), "w", format="mp4", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(video.streams.video[0])
        for packet in video.demux(video.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = remuxed.read_bytes()
    target.write_bytes(data[: len(data) * 2 // 3])


def _stage2_lines(good: list[dict], root) -> list[str]:
    base = good[0]
    scenes = base["scenes"]
    (root / "videos" / "zero.mp4").write_bytes(b"")
    (root / "videos" / "text.mp4").write_text("not a video\n")
    _truncated_copy(root / base["video"], root / "videos" / "truncated.mp4")
    three_turns = {
        **base,
        "id": "three-turns",
        "conversations": [
            {"role": "user", "content": "first question?"},
            {"role": "assistant", "content": "alpha"},
            {"role": "user", "content": "second question?"},
            {"role": "assistant", "content": "beta"},
            {"role": "user", "content": "third question?"},
            {"role": "assistant", "content": "gamma"},
        ],
        "v2t": [base["v2t"][0]] * 3,
    }
    no_scenes = {key: value for key, value in base.items() if key not in ("scenes", "v2t")}
    gap = {**base, "scenes": [{**scenes[0], "end": scenes[0]["end"] - 2.0}, *scenes[1:]]}
    opening = {**base, "scenes": [{**scenes[0], "start": 2.0}, *scenes[1:]]}
    faults = [
        {**base, "video": "videos/zero.mp4"},
        {**base, "video": "videos/text.mp4"},
        {**base, "video": "videos/truncated.mp4"},
        {**base, "v2t": [base["v2t"][0][:-1] + [[0.1]]]},
        {**base, "v2t": "0.3, 0.1"},
    ]
    lines = [json.dumps(record) for record in [*good, three_turns, no_scenes, gap, opening, *faults]]
    return [*lines, "[1, 2, 3]", '{"id": "cut-off", "video": ']


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    corpus = generate_corpus(root, CorpusSettings(stage1_clips=2, stage15_videos=2, stage2_videos=1, eval_videos=1))
    good15 = [json.loads(line) for line in corpus["stage1_5"].read_text().splitlines()]
    good2 = [json.loads(line) for line in corpus["stage2"].read_text().splitlines()][:4]
    (root / "messy1_5.jsonl").write_text("\n".join(_stage15_lines(good15)) + "\n")
    (root / "messy2.jsonl").write_text("\n".join(_stage2_lines(good2, root)) + "\n")
    model, processor = build_salova("tiny", seed=0)
    processor.video_processor.max_frames_per_segment = MAX_FRAMES_PER_SEGMENT
    processor.video_processor.router_max_segments = MAX_SEGMENTS
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root


def _settings(root, stage: str, **kwargs) -> RowSettings:
    processor = AutoProcessor.from_pretrained(root / "model")
    return RowSettings(stage, processor.video_processor, **kwargs)


def _counts(report: dict, status: str) -> dict:
    return {reason: entry["count"] for reason, entry in report["reasons"].get(status, {}).items()}


def test_the_check_counts_each_injected_fault_once(messy, tmp_path):
    rows, report = check_data(messy / "messy1_5.jsonl", _settings(messy, "1.5"), cache_dir=tmp_path, num_proc=2)
    assert _counts(report, "repaired") == STAGE15_FAULTS and _counts(report, "skipped") == STAGE15_SKIPS
    assert report["kept"] == 2 and len(rows) == 2 + sum(STAGE15_FAULTS.values())
    first = report["reasons"]["repaired"]["scene without a sampled frame"]["first"]
    assert first["origin"] == f"{messy / 'messy1_5.jsonl'}:3"
    # Every row's labels match the segments its boundaries make; the merged record fits MAX_SEGMENTS.
    for row in rows:
        labels = json.loads(row["query_labels"])
        assert all(len(query) == len(row["boundaries"]) + 1 for query in labels)
    assert max(len(row["boundaries"]) + 1 for row in rows) == MAX_SEGMENTS

    rows, report = check_data(messy / "messy2.jsonl", _settings(messy, "2"), cache_dir=tmp_path, num_proc=2)
    assert _counts(report, "repaired") == STAGE2_REPAIRS and _counts(report, "skipped") == STAGE2_SKIPS
    assert report["kept"] == 6
    on_disk = json.loads((tmp_path / "data_check.json").read_text())
    assert on_disk["skipped"] == sum(STAGE2_SKIPS.values())
    assert on_disk["reasons"]["skipped"]["malformed JSON"]["first"]["origin"].endswith("messy2.jsonl:15")


def test_a_second_check_reads_the_cache_without_probing(messy, tmp_path, monkeypatch):
    settings = _settings(messy, "2")
    _, first = check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=1)

    def no_probe(*args):
        raise AssertionError("the cached check probed a video")

    monkeypatch.setattr("salova.training.data_check.probe_video", no_probe)
    _, second = check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=1)
    assert second == first
    other = _settings(messy, "2", max_queries_per_video=3)
    with pytest.raises(AssertionError, match="probed"):
        check_data(messy / "messy2.jsonl", other, cache_dir=tmp_path, num_proc=1)


def test_a_check_killed_while_writing_leaves_no_half_written_file(messy, tmp_path, monkeypatch):
    """Processes sharing the cache folder read a whole file or none: a check killed halfway through writing its
    cache entry leaves nothing a later check reads back, and one killed while writing `data_check.json` leaves
    the previous report whole."""
    real_write_text = pathlib.Path.write_text

    def killed_halfway(path, text, *args, **kwargs):
        if path.suffix in {".json", ".tmp"}:
            real_write_text(path, text[: len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt(f"killed while writing {path.name}")
        return real_write_text(path, text, *args, **kwargs)

    settings = _settings(messy, "2")
    monkeypatch.setattr(pathlib.Path, "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=1)
    monkeypatch.undo()
    _, report = check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=1)
    assert report["kept"] == 6 and json.loads((tmp_path / "data_check.json").read_text()) == report

    monkeypatch.setattr(pathlib.Path, "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=1)
    monkeypatch.undo()
    assert json.loads((tmp_path / "data_check.json").read_text()) == report
    assert not [path.name for path in tmp_path.rglob("*.tmp")]


def test_a_check_in_several_passes_gives_the_rows_and_report_of_one(messy, tmp_path):
    settings = _settings(messy, "2")
    rows, report = check_data(messy / "messy2.jsonl", settings, num_proc=2, show=False)
    assert report["records"] > 12 and report["reasons"]["skipped"]["malformed JSON"]["first"]["index"] > 8
    in_passes = check_data(messy / "messy2.jsonl", settings, num_proc=2, show=False, records_per_pass=4)
    assert in_passes[1] == report and in_passes[0].to_list() == rows.to_list()
    stored = check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=2, records_per_pass=4)
    assert len(list(tmp_path.glob("_data_check/*/rows/rows-*.arrow"))) > 1
    read_back = check_data(messy / "messy2.jsonl", settings, cache_dir=tmp_path, num_proc=2, records_per_pass=4)
    for rows_and_report in (stored, read_back):
        assert rows_and_report[1] == report and rows_and_report[0].to_list() == rows.to_list()


def test_no_check_worker_holds_more_of_the_source_than_one_pass(messy, tmp_path):
    """A worker's memory-mapped pages of the records it read stay resident while it lives, so workers live one
    pass each: the resident share of the source's Arrow file in any worker stays near one pass's records."""
    good = (messy / "messy1_5.jsonl").read_text().splitlines()[0]
    # Missing videos make the records quick to check; the unused field makes each one 50 kB.
    records = [{"id": f"big-{index}", "video": "missing.mp4", "notes": "x" * 50_000} for index in range(800)]
    source = tmp_path / "large.jsonl"
    source.write_text("\n".join([good, *map(json.dumps, records)]) + "\n")
    settings = _settings(messy, "1.5")
    source_mib = source.stat().st_size / 2**20
    peak, done = [0.0], threading.Event()

    def watch_workers():
        while not done.is_set():
            peak[0] = max([peak[0], *map(_resident_arrow_mib, _children())])
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_workers)
    watcher.start()
    try:
        _, report = check_data(source, settings, video_dir=messy, num_proc=1, show=False, records_per_pass=80)
    finally:
        done.set()
        watcher.join()
    assert report["skipped"] == 800 and report["kept"] == 1
    assert 0 < peak[0] < source_mib / 4, f"a worker held {peak[0]:.0f} MiB of a {source_mib:.0f} MiB source"


def _children() -> list[int]:
    return [int(pid) for pid in pathlib.Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()]


def _resident_arrow_mib(pid: int) -> float:
    """MiB of `pid`'s memory-mapped Arrow files resident in its memory."""
    try:
        lines = pathlib.Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:  # the worker ended meanwhile
        return 0.0
    resident, in_arrow_file = 0, False
    for line in lines:
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: address, permissions, offset, device, inode, path
            in_arrow_file = fields[-1].endswith(".arrow")
        elif fields[0] == "Rss:" and in_arrow_file:
            resident += int(fields[1])
    return resident / 1024


def test_many_paths_to_one_video_probe_it_once(messy, tmp_path, monkeypatch):
    video = messy / "videos" / sorted(path.name for path in (messy / "videos").glob("*.mp4"))[0]
    links = [tmp_path / f"link_{index}.mp4" for index in range(3)]
    for link in links:
        link.symlink_to(video)
    opened = record_calls(monkeypatch, av, "open")
    probes = [probe_video(str(link), 1.0) for link in links]
    assert len(opened) == 1 and probes[0]["error"] is None and probes[1:] == probes[:-1]
    missing = probe_video(str(tmp_path / "missing.mp4"), 1.0)
    assert missing["reason"] == "unreadable video" and missing["error"].startswith(str(tmp_path / "missing.mp4"))


def test_strict_data_names_the_first_fault_with_file_and_line(messy):
    with pytest.raises(DataCheckError, match=r"messy1_5\.jsonl:3: scene without a sampled frame"):
        check_data(messy / "messy1_5.jsonl", _settings(messy, "1.5"), num_proc=1, strict=True, show=False)
    with pytest.raises(DataCheckError, match=r"messy2\.jsonl:7: gap or overlap between scenes"):
        check_data(messy / "messy2.jsonl", _settings(messy, "2"), num_proc=1, strict=True, show=False)


@pytest.mark.parametrize(("stage", "source"), [("1.5", "messy1_5.jsonl"), ("2", "messy2.jsonl")])
def test_the_messy_corpus_trains_to_the_end(messy, tmp_path, stage, source):
    recipe = load_recipe(
        stage,
        {
            "model": str(messy / "model"),
            "train_data": str(messy / source),
            "output_dir": str(tmp_path / "out"),
            "training_args": {**TRAINING_ARGS, "num_train_epochs": 1},
        },
    )
    train_stage(recipe)
    report = json.loads((tmp_path / "out" / "data_check.json").read_text())
    state = json.loads((tmp_path / "out" / "training_finished.json").read_text())
    assert state["global_step"] == -(-(report["kept"] + report["repaired"]) // 2)
    assert report["training"] == {"replaced_rows": 0, "trimmed_rows": 0}


def _rows(messy, source: str, stage: str):
    rows, _ = check_data(messy / source, _settings(messy, stage), num_proc=1, show=False)
    return rows


def test_stage_1_5_routes_many_queries_on_one_encoding_of_each_video(messy, tmp_path):
    rows = _rows(messy, "messy1_5.jsonl", "1.5").select([0, 1])
    assert all(len(row["queries"]) == len(row["boundaries"]) + 1 > 1 for row in rows)
    recipe = load_recipe(
        "1.5",
        {
            "model": str(messy / "model"),
            "train_data": str(messy / "messy1_5.jsonl"),
            "output_dir": str(tmp_path),
            "training_args": TRAINING_ARGS,
        },
    )
    trainer = build_trainer(recipe)
    batch = trainer.data_collator(rows.to_list())
    frames = []
    handle = trainer.model.model.vision_tower.register_forward_hook(
        lambda module, args, output: frames.append(len(output.last_hidden_state))
    )
    routed = []
    router = trainer.model.model.router.register_forward_hook(lambda module, args, output: routed.append(len(output)))
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.train()
    trainer.training_step(trainer.model, dict(batch))
    handle.remove()
    router.remove()
    assert sum(frames) == len(batch["pixel_values_videos"])  # every frame through the tower once
    assert sum(routed) == sum(len(row["queries"]) for row in rows)  # every sampled caption routed
    assert batch["extra_query_labels"].shape[0] == sum(len(row["queries"]) - 1 for row in rows)


def test_stage_1_5_samples_queries_from_the_whole_video_with_a_seed(messy):
    settings = _settings(messy, "1.5", max_queries_per_video=3)
    first = check_data(messy / "messy1_5.jsonl", settings, num_proc=1, show=False)[0][0]
    again = check_data(messy / "messy1_5.jsonl", settings, num_proc=1, show=False)[0][0]
    other = _settings(messy, "1.5", max_queries_per_video=3, seed=1)
    reseeded = check_data(messy / "messy1_5.jsonl", other, num_proc=1, show=False)[0][0]
    assert len(first["queries"]) == 3 and first["queries"] == again["queries"] != reseeded["queries"]
    messages = json.loads(first["messages"])
    assert messages[-1]["content"] == first["queries"][0]


def test_every_assistant_turn_is_labelled_and_every_user_turn_routed(messy):
    processor = AutoProcessor.from_pretrained(messy / "model")
    rows = _rows(messy, "messy2.jsonl", "2").to_list()
    three = next(row for row in rows if row["id"] == "three-turns")
    no_scenes = next(row for row in rows if json.loads(row["query_labels"]) is None)
    batch = SalovaCollator(processor)([three, no_scenes])
    supervised = batch["labels"][0] != -100
    edges = torch.diff(
        supervised.int(), prepend=torch.zeros(1, dtype=torch.int), append=torch.zeros(1, dtype=torch.int)
    )
    spans = [
        processor.decode(batch["input_ids"][0][start:end])
        for start, end in zip((edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten(), strict=True)
    ]
    assert [span.split("<|im_end|>")[0] for span in spans] == ["alpha", "beta", "gamma"]
    # The three user turns are router queries; only the labelled row has targets.
    assert batch["query_label_mask"].tolist() == [True, False]
    assert batch["extra_query_rows"].tolist() == [0, 0]
    assert (batch["labels"][1] != -100).any()


def test_max_length_drops_the_oldest_turns_then_replaces_the_row(messy, caplog):
    processor = AutoProcessor.from_pretrained(messy / "model")
    rows = _rows(messy, "messy2.jsonl", "2").to_list()
    three = next(row for row in rows if row["id"] == "three-turns")
    full = SalovaCollator(processor, max_length=None)([three])
    length = int(full["attention_mask"].sum())
    video_tokens = int((full["input_ids"] == processor.video_token_id).sum())
    trimmed = SalovaCollator(processor, max_length=length - 1)([three])
    assert trimmed["data_trimmed_rows"].item() == 1
    assert int((trimmed["input_ids"] == processor.video_token_id).sum()) == video_tokens
    answers = processor.decode(trimmed["input_ids"][0][trimmed["labels"][0] != -100])
    assert "alpha" in answers and "beta" not in answers and "gamma" in answers

    # A first question too long to fit even alone: the row is left out of its batch.
    messages = json.loads(three["messages"])
    messages[0]["content"][1]["text"] = "first question? " + "and more " * 60
    long_first = {**three, "messages": json.dumps(messages)}
    good = rows[0]
    good_length = int(SalovaCollator(processor, max_length=None)([good])["attention_mask"].sum())
    collator = SalovaCollator(processor, max_length=good_length)
    batch = collator([long_first, good])
    assert batch["data_replaced_rows"].item() == 1 and collator.failures == {"row over max_length": 1}
    assert len(batch["labels"]) == 1 and (batch["labels"][0] != -100).any()
    assert batch["query_label_mask"].tolist() == [True] and "over max_length" in caplog.text
    with pytest.raises(RecordError, match="no row of the batch nor of the fallback rows"):
        SalovaCollator(processor, max_length=video_tokens, fallback_rows=[good])([long_first])
    fallback = SalovaCollator(processor, max_length=good_length, fallback_rows=[long_first, good])([long_first])
    assert fallback["data_replaced_rows"].item() == 1 and (fallback["labels"] == -100).all()


def test_videos_over_max_sampled_frames_are_skipped_and_counted(messy):
    frames = sorted(set(_rows(messy, "messy1_5.jsonl", "1.5")["num_frames"]))
    settings = _settings(messy, "1.5", max_sampled_frames=frames[0])
    rows, report = check_data(messy / "messy1_5.jsonl", settings, num_proc=1)
    assert len(frames) > 1 and set(rows["num_frames"]) == {frames[0]}
    assert _counts(report, "skipped")["video over max_sampled_frames"] == report["records"] - len(rows)


def _scenewalk_rows(record: dict) -> list[dict]:
    url = f"https://www.youtube.com/watch?v={record['id']}"
    return [
        {
            "id": f"{record['id']}_{index}",
            "url": url,
            "time_stamp": {
                "start_time": f"00:00:{scene['start']:06.3f}",
                "end_time": f"00:00:{scene['end']:06.3f}",
                "start_frame": int(scene["start"] * 4),
                "end_frame": int(scene["end"] * 4),
                "start_fps": 4.0,
                "end_fps": 4.0,
                "duration": scene["end"] - scene["start"],
            },
            "v2t_score": record["v2t"][index],
            "t2t_score": record["t2t"][index],
            "conversations": [
                {"from": "human", "value": "<video>\nDescribe the clip."},
                {"from": "gpt", "value": scene["caption"]},
            ],
        }
        for index, scene in enumerate(record["scenes"])
    ]


def test_scenewalk_parquet_converts_and_trains(messy, tmp_path):
    records = [json.loads(line) for line in (messy / "stage1_5.jsonl").read_text().splitlines()]
    clips = [row for record in records for row in _scenewalk_rows(record)]
    pq.write_table(pa.Table.from_pylist(clips), tmp_path / "scenewalk.parquet")
    command = [sys.executable, "-m", "salova.cli", "convert", "--from", "scenewalk", "--video-dir"]
    command += [str(messy / "videos"), str(tmp_path / "scenewalk.parquet"), str(tmp_path / "stage1_5.parquet")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {len(records)} records" in result.stdout
    converted = datasets.load_dataset("parquet", data_files=str(tmp_path / "stage1_5.parquet"), split="train")
    assert converted["id"] == [record["id"] for record in records]
    recipe = load_recipe(
        "1.5",
        {
            "model": str(messy / "model"),
            "train_data": str(tmp_path / "stage1_5.parquet"),
            "output_dir": str(tmp_path / "out"),
            "strict_data": True,
            "training_args": TRAINING_ARGS,
        },
    )
    train_stage(copy.deepcopy(recipe))
    report = json.loads((tmp_path / "out" / "data_check.json").read_text())
    assert report["kept"] == len(records) and report["source"].endswith("stage1_5.parquet")


def test_data_check_command_reports_and_refuses_when_strict(messy, tmp_path):
    command = [sys.executable, "-m", "salova.cli", "data", "check", "--stage", "2", "--model", str(messy / "model")]
    command += ["--report-dir", str(tmp_path), "--data-check-num-proc", "2", str(messy / "messy2.jsonl")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "15 records, 6 kept, 2 repaired, 7 skipped" in result.stdout
    assert f"unreadable video  (first: {messy / 'messy2.jsonl'}:9" in result.stdout
    assert json.loads((tmp_path / "data_check.json").read_text())["reasons"]["skipped"]["malformed JSON"]["count"] == 1
    strict = subprocess.run([*command, "--strict-data"], capture_output=True, text=True, timeout=300)
    assert strict.returncode != 0 and f"{messy / 'messy2.jsonl'}:7: gap or overlap between scenes" in strict.stderr


def test_a_parquet_source_streams_with_bounded_arrow_memory(tmp_path):
    """Rows of a parquet file come a batch at a time: the Arrow memory held stays far below the file's size."""
    rng = np.random.default_rng(0)
    path = tmp_path / "large.parquet"
    with pq.ParquetWriter(str(path), pa.schema([("id", pa.int64()), ("text", pa.string())])) as writer:
        for group in range(48):
            # Random text, which the file cannot compress: 1 MB a row group.
            texts = [rng.bytes(500).hex() for _ in range(1000)]
            writer.write_table(pa.table({"id": range(group * 1000, (group + 1) * 1000), "text": texts}))
    held, rows = 0, []
    for row in stream_records(path):
        held = max(held, pa.total_allocated_bytes())
        rows.append(row["origin"])
    assert rows[-1] == f"{path.resolve()}#row 47999" and len(rows) == 48_000
    assert held < 12 * 2**20, f"{held / 2**20:.0f} MiB of Arrow memory held for a 48 MB file"
