"""The video index, the assistant commands (`salova scenes/index/ask/chat`), the timeline and `ask_with_index`."""

import copy
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import real_video
from matplotlib.offsetbox import AnnotationBbox
from PIL import Image
from salova.assistant import (
    CorruptIndexError,
    IndexCache,
    IndexMismatchError,
    SalovaVideoIndex,
    VideoAssistant,
    answering,
    ask_with_index,
)
from salova.assistant import index as index_module
from salova.assistant.timeline import FOCUS_COLOUR, draw_timeline

from salova.cli import main
from salova.video_writer import write_video

QUESTION = "what moves in the blue scene?"
TIMESTAMP = r"\d\d:\d\d:\d\d\.\d\d\d"


@pytest.fixture
def checkpoint(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture
def assistant(tiny, tmp_path) -> VideoAssistant:
    model, processor = tiny
    return VideoAssistant(model, processor, IndexCache(tmp_path / "indexes"))


def test_index_path_equals_direct_path(assistant, scene_video):
    """Greedy tokens, router scores and focus segments from the index equal those from the frames."""
    model, processor = assistant.model, assistant.processor
    messages = assistant.conversation(scene_video, [QUESTION], [])
    processor = copy.copy(processor)
    processor.num_focus_segments = 2
    direct = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    with torch.no_grad():
        direct_tokens = model.generate(**direct, num_focus_segments=2, max_new_tokens=12, do_sample=False)
        direct_out = model(**direct, num_focus_segments=2)
    direct_text = processor.decode(direct_tokens[0, direct["input_ids"].shape[1] :], skip_special_tokens=True)

    index, status, _ = assistant.open(scene_video)
    assert status == "built" and index.num_segments == 5
    answer = assistant.ask(index, messages, num_focus_segments=2, max_new_tokens=12)
    with torch.no_grad():
        text_only = processor(
            text=processor.apply_chat_template(messages, add_generation_prompt=True),
            queries=QUESTION,
            segments_per_video=[index.num_segments],
            add_special_tokens=False,
            return_tensors="pt",
        )
        assert torch.equal(text_only["input_ids"], direct["input_ids"])
        index_tokens = model.generate(
            **text_only, **index.model_inputs(), num_focus_segments=2, max_new_tokens=12, do_sample=False
        )
    assert torch.equal(index_tokens, direct_tokens)
    assert answer.text == direct_text.strip()
    scores = torch.tensor([scene.score for scene in answer.scenes])
    torch.testing.assert_close(scores, direct_out.router_scores[0].float(), atol=1e-6, rtol=0)
    assert [scene.index for scene in answer.focus_scenes] == direct_out.selected_segments[0].tolist()


def test_index_holds_segments_thumbnails_and_provenance(assistant, scene_video):
    index, _, _ = assistant.open(scene_video)
    config = assistant.model.config
    assert index.latents.shape == (5, config.connector_num_latents, config.hidden_width)
    assert index.routing_tokens.shape == (5, config.hidden_width)
    assert index.frames_per_segment.tolist() == [3, 3, 3, 3, 3]
    torch.testing.assert_close(index.segment_times[:, 0], torch.tensor([0.0, 3, 6, 9, 12], dtype=torch.float64))
    # Thumbnails come from the 64x48 source frames (aspect kept), not the tower's square input.
    assert index.thumbnails.dtype == torch.uint8
    assert index.thumbnails.shape == (5, index_module.THUMBNAIL_HEIGHT, 160, 3)
    red, green = index.thumbnails[0, 10, 10].int(), index.thumbnails[1, 10, 10].int()
    assert red[0] > 150 > red[1] and green[1] > 150 > green[0]
    assert index.provenance.video_sha256 == index_module.file_sha256(scene_video)
    assert index.provenance.dtype == "float32"
    assert index.video_settings["detector_threshold"] == assistant.processor.video_processor.detector_threshold


def test_second_open_reuses_the_stored_index(assistant, scene_video):
    first, status, _ = assistant.open(scene_video)
    second, again, _ = assistant.open(scene_video)
    rebuilt, forced, _ = assistant.open(scene_video, reindex=True)
    assert (status, again, forced) == ("built", "reused", "built")
    assert torch.equal(first.latents, second.latents) and torch.equal(first.latents, rebuilt.latents)
    assert [path.suffix for path in assistant.cache.folder.iterdir() if not path.name.startswith(".")] == [
        ".safetensors"
    ]


def test_concurrent_first_questions_build_the_index_once(assistant, scene_video, monkeypatch):
    built, started = [], threading.Barrier(2)
    original = index_module.build_index

    def slow_build(*args, **kwargs):
        built.append(1)
        time.sleep(0.5)  # the other caller arrives while this one builds
        return original(*args, **kwargs)

    monkeypatch.setattr(index_module, "build_index", slow_build)
    statuses = []

    def first_question():
        started.wait()
        statuses.append(assistant.open(scene_video, progress=False)[1])

    workers = [threading.Thread(target=first_question) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(built) == 1 and sorted(statuses) == ["built", "reused"]


def test_save_keeps_the_dtype_and_is_atomic(assistant, scene_video, tmp_path, monkeypatch):
    index, _, _ = assistant.open(scene_video)
    half = dataclasses.replace(index, latents=index.latents.bfloat16(), routing_tokens=index.routing_tokens.bfloat16())
    path = half.save(tmp_path / "half.safetensors")
    loaded = SalovaVideoIndex.load(path)
    assert loaded.latents.dtype == torch.bfloat16 and torch.equal(loaded.latents, half.latents)
    assert torch.equal(loaded.thumbnails, index.thumbnails) and loaded.provenance == index.provenance

    def interrupted(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(index_module, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        index.save(tmp_path / "half.safetensors")
    assert SalovaVideoIndex.load(path).latents.dtype == torch.bfloat16  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.safetensors", "indexes"]


def test_index_from_another_file_weights_dtype_or_settings_is_refused(assistant, scene_video, tmp_path):
    index, _, _ = assistant.open(scene_video)
    path = index.save(tmp_path / "scenes.safetensors")
    model, processor = assistant.model, assistant.processor

    changed = tmp_path / "changed.mp4"
    shutil.copy(scene_video, changed)
    with open(changed, "ab") as handle:
        handle.write(b"\0")
    expected = index_module.current_provenance(model, processor, changed)
    with pytest.raises(IndexMismatchError, match="video content sha256") as error:
        SalovaVideoIndex.load(path, expected)
    assert index.provenance.video_sha256 in str(error.value) and expected.video_sha256 in str(error.value)

    other_weights = copy.deepcopy(model)
    with torch.no_grad():
        other_weights.model.connector.latents.add_(1e-3)
    other_weights._salova_index_fingerprint = None
    expected = index_module.current_provenance(other_weights, processor, scene_video)
    with pytest.raises(IndexMismatchError, match="connector weights fingerprint") as error:
        SalovaVideoIndex.load(path, expected)
    assert index.provenance.weights_fingerprint in str(error.value)
    assert expected.weights_fingerprint in str(error.value)

    expected = dataclasses.replace(index.provenance, dtype="bfloat16")
    with pytest.raises(IndexMismatchError, match="dtype: index float32 != current bfloat16"):
        SalovaVideoIndex.load(path, expected)

    other_settings = copy.copy(processor)
    other_settings.video_processor = copy.copy(processor.video_processor)
    other_settings.video_processor.detector_threshold += 1
    expected = index_module.current_provenance(model, other_settings, scene_video)
    with pytest.raises(IndexMismatchError, match="video processor settings fingerprint"):
        SalovaVideoIndex.load(path, expected)


def test_truncated_or_corrupt_index_is_refused_and_reindex_rebuilds(checkpoint, scene_video, tmp_path, capsys):
    path = tmp_path / "scenes.safetensors"
    ask = ["ask", "--model", str(checkpoint), str(scene_video), QUESTION, "--max-new-tokens", "2", "--index", str(path)]
    main(ask)
    assert "index built" in capsys.readouterr().out
    data = path.read_bytes()

    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match=f"{path}.*truncated or corrupt.*--reindex"):
        main(ask)
    damaged = bytearray(data)
    damaged[-100] ^= 0xFF  # inside the thumbnails' bytes: the header still parses
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptIndexError, match="checksum"):
        main(ask)
    main([*ask, "--reindex"])
    assert "index built" in capsys.readouterr().out
    main(ask)
    assert "index reused" in capsys.readouterr().out


def test_cache_folder_from_variable_or_flag(checkpoint, scene_video, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SALOVA_INDEX_DIR", str(tmp_path / "from-variable"))
    main(["index", "--model", str(checkpoint), str(scene_video)])
    assert f"-> {tmp_path / 'from-variable'}" in capsys.readouterr().out
    main(["index", "--model", str(checkpoint), str(scene_video), "--index-dir", str(tmp_path / "from-flag")])
    out = capsys.readouterr().out
    assert "index built" in out and f"-> {tmp_path / 'from-flag'}" in out
    monkeypatch.delenv("SALOVA_INDEX_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    assert IndexCache().folder == tmp_path / "user-cache" / "salova" / "indexes"


def test_scenes_command_prints_spans_and_json(scene_video, capsys):
    main(["scenes", str(scene_video)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and "5 scenes" in lines[0]
    assert re.search(r"00:00:03\.000 - 00:00:06\.000 .*3\.000 s - +6\.000 s\)  3 frames", lines[2])
    main(["scenes", str(scene_video), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["video", "duration", "scenes"] and report["video"] == str(scene_video)
    assert report["duration"] == pytest.approx(15.0)
    assert report["scenes"][1] == {"start": 3.0, "end": 6.0, "frames": 3}


def test_scenes_command_shows_milliseconds_of_a_real_clip(capsys):
    main(["scenes", str(real_video("bikes.mp4"))])
    out = capsys.readouterr().out
    assert re.search(r"00:00:01\.200 - 00:00:03\.040", out), out


def test_ask_streams_lists_focus_scenes_and_draws_the_timeline(checkpoint, scene_video, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SALOVA_INDEX_DIR", str(tmp_path / "indexes"))
    timeline = tmp_path / "timeline.png"
    ask = ["ask", "--model", str(checkpoint), str(scene_video), QUESTION, "--num-focus-segments", "2"]
    ask += ["--max-new-tokens", "6"]
    main([*ask, "--timeline", str(timeline)])
    out = capsys.readouterr().out
    assert len(re.findall(rf"focus scene \d: {TIMESTAMP}-{TIMESTAMP}  score [+-]\d\.\d\d\d", out)) == 2
    assert re.search(r"index built \(\d+\.\d\d s\), first token \d+\.\d\d s, total \d+\.\d\d s", out)
    assert Image.open(timeline).size == (1100, 420)

    main([*ask, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["answer", "scenes", "index", "seconds"] and report["index"] == "reused"
    assert list(report["scenes"][0]) == ["index", "start", "end", "score", "focus"]
    assert sum(scene["focus"] for scene in report["scenes"]) == 2
    assert set(report["seconds"]) == {"index", "first_token", "total"}


def test_ask_streams_pieces_as_they_are_generated(assistant, scene_video):
    index, _, _ = assistant.open(scene_video)
    pieces = []
    answer = assistant.ask(index, assistant.conversation(scene_video, [QUESTION], []), 2, 40, pieces.append)
    assert len([piece for piece in pieces if piece]) > 1
    assert "".join(pieces).strip() == answer.text


def test_ask_routes_once_in_the_prefill_and_continues_from_its_cache(assistant, scene_video):
    """One router pass per question, and one prompt pass: generation starts from the prefill's KV cache."""
    index, _, _ = assistant.open(scene_video)
    routed, prompt_lengths = [], []
    hooks = [
        assistant.model.model.router.register_forward_hook(lambda *args: routed.append(1)),
        assistant.model.model.language_model.register_forward_hook(
            lambda module, args, kwargs, output: prompt_lengths.append(kwargs["inputs_embeds"].shape[1]),
            with_kwargs=True,
        ),
    ]
    try:
        answer = assistant.ask(index, assistant.conversation(scene_video, [QUESTION], []), 2, 5)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(routed) == 1
    assert prompt_lengths[0] == answer.usage.prompt_tokens - 1 and set(prompt_lengths[1:]) == {1}
    assert len(prompt_lengths) == 1 + len(answer.token_ids)


def test_ask_reports_usage_and_finish_reason_and_stops_at_stop_strings(assistant, scene_video):
    index, _, _ = assistant.open(scene_video)
    messages = assistant.conversation(scene_video, [QUESTION], [])
    full = assistant.ask(index, messages, 2, 12)
    prompt = assistant.inputs(index, messages, num_focus_segments=2)["input_ids"]
    assert full.finish_reason == "length" and full.usage.completion_tokens == len(full.token_ids) == 12
    assert full.usage.prompt_tokens == prompt.shape[1] and full.usage.total_tokens == prompt.shape[1] + 12

    text = assistant.processor.tokenizer.decode(full.token_ids, skip_special_tokens=True)
    stop = re.search(r"[A-Za-z]{2}", text[2:]).group()
    pieces = []
    stopped = assistant.ask(index, messages, 2, 12, pieces.append, stop=["@@never@@", stop])
    assert stopped.text == text[: text.find(stop)].strip() and stopped.finish_reason == "stop"
    assert "".join(pieces) == text[: text.find(stop)] and len(stopped.token_ids) <= 12
    assert stopped.token_ids == full.token_ids[: len(stopped.token_ids)]


def test_ask_samples_reproducibly_with_a_seed_and_stops_when_cancelled(assistant, scene_video):
    index, _, _ = assistant.open(scene_video)
    messages = assistant.conversation(scene_video, [QUESTION], [])
    sampled = [assistant.ask(index, messages, 2, 10, temperature=1.5, top_p=0.95, seed=seed) for seed in (1, 1, 2)]
    assert sampled[0].token_ids == sampled[1].token_ids != sampled[2].token_ids
    assert (
        assistant.ask(index, messages, 2, 10, temperature=0.0, seed=1).token_ids
        == assistant.ask(index, messages, 2, 10).token_ids
    )

    cancel = threading.Event()
    cancelled = assistant.ask(index, messages, 2, 40, lambda piece: cancel.set(), cancel=cancel)
    assert cancelled.finish_reason == "cancelled" and len(cancelled.token_ids) < 40
    for bad, message in (
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"stop": [""]}, "stop strings"),
    ):
        with pytest.raises(ValueError, match=message):
            assistant.ask(index, messages, **bad)


def test_text_that_may_begin_a_stop_string_is_held_back():
    assert answering._before_stop("the end. And", ("END", "And so"), final=False) == "the end. "
    assert answering._before_stop("the end. An", ("And so",), final=False) == "the end. "
    assert answering._before_stop("the end. An", ("And so",), final=True) == "the end. An"
    assert answering._before_stop("ab STOP cd STOP", ("STOP",), final=False) == "ab "


def test_query_is_the_processors_stripped_last_user_turn(assistant, scene_video):
    """The router reads the text the processor extracts from the conversation, surrounding spaces stripped."""
    index, _, _ = assistant.open(scene_video)
    padded = assistant.ask(index, assistant.conversation(scene_video, [f"  {QUESTION}\n"], []), 2, 1)
    plain = assistant.ask(index, assistant.conversation(scene_video, [QUESTION], []), 2, 1)
    assert [s.score for s in padded.scenes] == [s.score for s in plain.scenes]
    query = assistant.inputs(index, assistant.conversation(scene_video, [f"  {QUESTION}\n"], []))["query_input_ids"]
    assert query.tolist() == assistant.processor.query_tokenizer([QUESTION])["input_ids"]


def test_chat_keeps_history_through_standard_input(checkpoint, scene_video, tmp_path):
    env = {**os.environ, "SALOVA_INDEX_DIR": str(tmp_path / "indexes"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "salova.cli", "chat", "--model", str(checkpoint), str(scene_video)]
    questions = f"{QUESTION}\nand in the red one?\nexit\n"
    result = subprocess.run(
        [*command, "--max-new-tokens", "4"], input=questions, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("salova> ") == 2
    assert "index built" in result.stdout.splitlines()[0]
    assert result.stdout.count("index reused (0.00 s)") == 1


def test_chat_prompt_holds_the_earlier_turns(checkpoint, scene_video, tmp_path, monkeypatch):
    monkeypatch.setenv("SALOVA_INDEX_DIR", str(tmp_path / "indexes"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("first question?\nsecond question?\n"))
    seen = []
    original = VideoAssistant.ask

    def spy(self, index, messages, *args, **kwargs):
        seen.append(self.processor.apply_chat_template(messages, add_generation_prompt=True))
        return original(self, index, messages, *args, **kwargs)

    monkeypatch.setattr(VideoAssistant, "ask", spy)
    main(["chat", "--model", str(checkpoint), str(scene_video), "--max-new-tokens", "3"])
    assert len(seen) == 2 and seen[1].startswith(seen[0])
    assert seen[0].count("<video>") == seen[1].count("<video>") == 1
    assert "first question?" in seen[1] and "second question?" in seen[1]


def test_timeline_highlights_focus_scenes_with_thumbnails(assistant, scene_video):
    index, _, _ = assistant.open(scene_video)
    answer = assistant.ask(index, assistant.conversation(scene_video, [QUESTION], []), 2, 2)
    figure = draw_timeline(answer, index, QUESTION)
    pictures, scores = figure.axes
    colours = [patch.get_facecolor() for patch in scores.patches]
    focus = [scene.focus for scene in answer.scenes]
    assert [
        colour[:3] == tuple(int(FOCUS_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)) for colour in colours
    ] == focus
    assert [patch.get_height() for patch in scores.patches] == pytest.approx([s.score for s in answer.scenes])
    assert len([artist for artist in pictures.artists if isinstance(artist, AnnotationBbox)]) == 2


def test_ask_with_index_prints_answers_focus_scenes_and_both_times(checkpoint, scene_video, tmp_path):
    lines = ask_with_index(checkpoint, scene_video, [QUESTION, "what is red?"], index_dir=tmp_path)
    assert lines[0] == f"Q1: {QUESTION}" and any(line.startswith("Q2: what is red?") for line in lines)
    times = [line for line in lines if "first token" in line]
    assert len(times) == 2 and "index built" in times[0] and "index reused" in times[1]
    assert any(re.search(rf"focus {TIMESTAMP}-{TIMESTAMP}", line) for line in lines)


def test_bad_arguments_are_named(checkpoint, scene_video, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        main(["ask", "--model", str(tmp_path / "nothing"), str(scene_video), QUESTION])
    with pytest.raises(FileNotFoundError, match="it is a directory"):
        main(["index", "--model", str(checkpoint), str(tmp_path), "--index-dir", str(tmp_path / "i")])
    with pytest.raises(ValueError, match="num_focus_segments must be at least 1"):
        ask = ["ask", "--model", str(checkpoint), str(scene_video), QUESTION, "--num-focus-segments", "0"]
        main([*ask, "--index-dir", str(tmp_path / "i")])


def test_index_thumbnails_are_shown_as_displayed(assistant, tmp_path):
    """A video stored sideways with a display rotation gets upright thumbnails in its index, as the processor's
    frames are (taken in the decode pass, `THUMBNAIL_HEIGHT` high)."""
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :16] = 255  # a white band on the left of the stored frame
    rotated = write_video(tmp_path / "rotated.mp4", [frame] * 3, fps=3, rotation=90)
    index = index_module.build_index(assistant.model, assistant.processor, rotated, progress=False)
    (thumbnail,) = index.thumbnails.numpy()
    height = index_module.THUMBNAIL_HEIGHT
    assert thumbnail.shape[:2] == (height, height // 2)  # 64 wide, 32 tall stored: 32 wide, 64 tall displayed
    # Rotated 90 degrees counter-clockwise for display, the left band becomes the bottom rows.
    assert thumbnail[-8:].mean() > 200 and thumbnail[:8].mean() < 60
