"""`salova eval videomme|longvideobench|mlvu`: the published annotation layouts, lmms-eval's prompts, letter
extraction, scores checked by hand, resuming, and missing videos or malformed rows counted."""

import json
import subprocess
import sys

import pyarrow
import pyarrow.parquet
import pytest
from conftest import colour_scenes
from salova.assistant import VideoAssistant
from salova.evaluation.benchmarks import extract_choice, run_benchmark

from salova.video_writer import write_video


class ScriptedAnswerer:
    """`VideoAssistant`'s `encode` and `ask`: answers each question (the router query) with a scripted response;
    counts the videos it encodes."""

    conversation = staticmethod(VideoAssistant.conversation)

    def __init__(self, responses: dict[str, str]):
        self.responses = responses
        self.encoded = []
        self.prompts = {}

    def encode(self, video):
        self.encoded.append(video)
        return video

    def ask(self, encoded, messages, max_new_tokens=64, query=None):
        self.prompts[query] = messages[-1]["content"][-1]["text"]
        if isinstance(self.responses[query], Exception):
            raise self.responses[query]
        return type("Answer", (), {"text": self.responses[query]})()


def _videos(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(folder / name, colour_scenes([(200, 40, 40)], 1.0, fps=4), fps=4)
    return folder


def _videomme(tmp_path):
    def row(question_id, video, duration, task, question, answer, options=("A. red", "B. blue", "C. green", "D. pink")):
        return {
            "video_id": video[-3:], "duration": duration, "domain": "Knowledge", "sub_category": "Humanity & History",
            "url": f"https://www.youtube.com/watch?v={video}", "videoID": video, "question_id": question_id,
            "task_type": task, "question": question, "options": list(options), "answer": answer,
        }  # fmt: skip

    rows = [
        row("001-1", "vidA", "short", "Counting Problem", "q1", "A"),
        row("001-2", "vidA", "short", "Object Recognition", "q2", "B"),
        row("002-1", "vidB", "medium", "Counting Problem", "q3", "D"),
        row("003-1", "vidC", "long", "Counting Problem", "q4", "C"),  # no vidC.mp4
        row("004-1", "vidA", "short", "Counting Problem", "q5", "E"),  # E is not an option
    ]
    annotations = tmp_path / "videomme.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), annotations)
    return annotations, _videos(tmp_path / "videos", "vidA.mp4", "vidB.mp4")


def test_videomme_layout_prompt_scores_and_problems(tmp_path):
    annotations, videos = _videomme(tmp_path)
    answerer = ScriptedAnswerer({"q1": "A.", "q2": "The best answer is C", "q3": "(D) pink", "q4": "A"})
    summary = run_benchmark("videomme", annotations, videos, answerer, tmp_path / "out", progress=False)

    # Hand-checked: q1 right, q2 wrong (C for B), q3 right; q4's video is missing, q5 is malformed.
    assert summary["overall"] == {"questions": 3, "accuracy": 2 / 3}
    assert summary["by_duration"] == {
        "medium": {"questions": 1, "accuracy": 1.0},
        "short": {"questions": 2, "accuracy": 0.5},
    }
    assert summary["by_task_type"]["Counting Problem"] == {"questions": 2, "accuracy": 1.0}
    assert summary["by_task_type"]["Object Recognition"] == {"questions": 1, "accuracy": 0.0}
    assert (summary["missing_video"], summary["malformed_rows"]) == (1, 1)
    assert "row 4" in summary["problems"]["malformed_rows"][0] and "'E'" in summary["problems"]["malformed_rows"][0]
    # Grouped by video: vidA's two questions decode it once.
    assert sorted(answerer.encoded) == [str(videos / "vidA.mp4"), str(videos / "vidB.mp4")]
    # lmms-eval's videomme prompt (default kwargs).
    assert answerer.prompts["q1"] == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\nq1\nA. red\nB. blue\nC. green\n"
        "D. pink\n\nAnswer with the option's letter from the given choices directly."
    )
    lines = [json.loads(line) for line in (tmp_path / "out/answers.jsonl").read_text().splitlines()]
    assert {line["question_id"]: line["prediction"] for line in lines} == {
        "001-1": "A",
        "001-2": "C",
        "002-1": "D",
        "003-1": "",
    }
    table = (tmp_path / "out/summary.md").read_text()
    assert "| duration: short | 2 | 50.0 |" in table and "| **overall** | 3 | 66.7 |" in table
    assert json.loads((tmp_path / "out/summary.json").read_text()) == summary


def test_a_question_the_model_refuses_is_counted_not_fatal(tmp_path):
    annotations, videos = _videomme(tmp_path)
    too_long = ValueError("The prompt has 40000 tokens but the LLM takes 32768 (tokenizer.model_max_length).")
    answerer = ScriptedAnswerer({"q1": too_long, "q2": "B", "q3": "D", "q4": "A"})
    summary = run_benchmark("videomme", annotations, videos, answerer, tmp_path / "out", progress=False)
    assert summary["overall"] == {"questions": 2, "accuracy": 1.0}
    assert summary["unanswerable"] == 1 and summary["problems"]["unanswerable"] == ["001-1"]


def test_rerun_skips_answered_questions_and_recovers_a_cut_line(tmp_path):
    annotations, videos = _videomme(tmp_path)
    responses = {"q1": "A", "q2": "B", "q3": "D", "q4": "A"}
    run_benchmark("videomme", annotations, videos, ScriptedAnswerer(responses), tmp_path / "out", progress=False)
    answers = tmp_path / "out/answers.jsonl"
    lines = answers.read_text().splitlines()
    # An interrupted run: the line of vidB's question was cut mid-write.
    answers.write_text("\n".join([*[line for line in lines if "002-1" not in line], '{"question_id": "002']))
    rerun = ScriptedAnswerer(responses)
    summary = run_benchmark("videomme", annotations, videos, rerun, tmp_path / "out", progress=False)
    assert rerun.encoded == [str(videos / "vidB.mp4")]  # vidA's questions were answered; vidC is still missing
    assert summary["overall"] == {"questions": 3, "accuracy": 1.0}
    assert len(answers.read_text().splitlines()) == 4
    # --limit keeps the first questions only.
    limited = run_benchmark("videomme", annotations, videos, rerun, tmp_path / "out", limit=2, progress=False)
    assert limited["overall"]["questions"] == 2


def test_longvideobench_layout(tmp_path):
    def item(index, video, duration_group, category, candidates, correct):
        return {
            "id": f"lvb-{index}", "video_id": video, "video_path": f"{video}.mp4", "question": f"q{index}",
            "candidates": candidates, "correct_choice": correct, "duration_group": duration_group,
            "duration": 12.5, "question_category": category, "subtitle_path": f"{video}_en.json",
            "starting_timestamp_for_subtitles": 0, "position": [1, 2], "topic_category": "NP-News-Programs",
            "level": "L1-Perception",
        }  # fmt: skip

    items = [
        item(0, "v1", 15, "S2E", ["a cat", "a dog", "a bird", "a fish", "a cow"], 1),
        item(1, "v1", 15, "E2O", ["red", "blue"], 0),
        item(2, "v2", 600, "S2E", ["up", "down", "left", "right"], 3),
        {"id": "lvb-3", "video_path": "v2.mp4", "question": "q3"},  # no candidates
    ]
    annotations = tmp_path / "lvb_val.json"
    annotations.write_text(json.dumps(items))
    videos = _videos(tmp_path / "videos", "v1.mp4", "v2.mp4")
    answerer = ScriptedAnswerer({"q0": "B", "q1": "The correct answer is B. blue", "q2": "D"})
    summary = run_benchmark("longvideobench", annotations, videos, answerer, tmp_path / "out", progress=False)
    assert summary["overall"] == {"questions": 3, "accuracy": 2 / 3}
    assert summary["by_duration"] == {"15": {"questions": 2, "accuracy": 0.5}, "600": {"questions": 1, "accuracy": 1.0}}
    assert summary["by_task_type"]["S2E"] == {"questions": 2, "accuracy": 1.0}
    assert summary["malformed_rows"] == 1 and "candidates" in summary["problems"]["malformed_rows"][0]
    assert (
        answerer.prompts["q1"]
        == "q1\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly.\n"
    )


def test_mlvu_task_folder_layout_skips_open_ended_tasks(tmp_path):
    annotations = tmp_path / "json"
    annotations.mkdir()
    plot = [
        {"video": "movie1.mp4", "duration": 420.0, "question": "Who?", "candidates": ["Tom", "Ann", "Bob", "Sue"],
         "answer": "Bob", "question_type": "plotQA"},
        {"video": "movie2.mp4", "duration": 2400.0, "question": "Where?", "candidates": ["home", "park"],
         "answer": "park", "question_type": "plotQA"},
        {"video": "movie2.mp4", "duration": 2400.0, "question": "When?", "candidates": ["day", "night"],
         "answer": "dusk", "question_type": "plotQA"},  # the answer is no candidate
    ]  # fmt: skip
    (annotations / "1_plotQA.json").write_text(json.dumps(plot))
    (annotations / "8_sub_scene.json").write_text(
        json.dumps([{"video": "movie3.mp4", "duration": 600.0, "question": "Describe it.", "answer": "a long text"}])
    )
    videos = _videos(tmp_path / "video", "1_plotQA/movie1.mp4", "1_plotQA/movie2.mp4")
    answerer = ScriptedAnswerer({"Who?": "C) Bob", "Where?": "A"})
    summary = run_benchmark("mlvu", annotations, videos, answerer, tmp_path / "out", progress=False)
    assert summary["overall"] == {"questions": 2, "accuracy": 0.5}
    assert summary["by_duration"] == {
        "3-10 min": {"questions": 1, "accuracy": 1.0},
        ">30 min": {"questions": 1, "accuracy": 0.0},
    }
    assert (summary["malformed_rows"], summary["skipped_rows"], summary["missing_video"]) == (1, 1, 0)
    assert answerer.prompts["Who?"] == (
        "Question: Who?\nOptions:\n(A) Tom\n(B) Ann\n(C) Bob\n(D) Sue\nOnly give the best option.\nBest option: ("
    )


@pytest.mark.parametrize(
    ("response", "letter"),
    [("B", "B"), ("(C) green", "C"), ("The best answer is D.", "D"), ("A. red", "A"), ("And", ""), ("Both", ""),
     ("answer: b", ""), ("The answer is (E)", "")],
)  # fmt: skip
def test_extract_choice(response, letter):
    assert extract_choice(response, "ABCD") == letter


def test_cli_runs_a_real_checkpoint(tmp_path, tiny):
    model, processor = tiny
    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    annotations, videos = _videomme(tmp_path)
    (videos / "vidC.mp4").write_bytes(b"not a video")
    command = [
        sys.executable, "-m", "salova.cli", "eval", "videomme", "--annotations", str(annotations), "--videos",
        str(videos), "--model", str(tmp_path / "checkpoint"), "--output", str(tmp_path / "out"), "--limit", "4",
        "--max-new-tokens", "2",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "out/answers.jsonl").read_text().splitlines()]
    assert [line["status"] for line in lines] == ["answered"] * 3 + ["unreadable_video"]
    assert all(line["response"] for line in lines[:3]) and "vidC.mp4" in lines[3]["error"]
    assert "| **overall** | 3 |" in result.stdout and "unreadable video: 1" in result.stdout


def test_missing_annotations_name_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="--annotations"):
        run_benchmark("videomme", tmp_path / "nope.parquet", tmp_path, ScriptedAnswerer({}), tmp_path / "out")
