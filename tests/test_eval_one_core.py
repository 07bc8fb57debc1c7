"""One answering core for every caller: `salova ask`, the benchmark runners, the lmms-eval model and the main
job's evaluation answer one question about one video with the same tokens and router scores as the model's own
frame path (`processor(videos=...)`, `generate`), each through `VideoAssistant.ask`."""

import importlib
import json
import sys
import types
from dataclasses import dataclass

import pytest
import torch
from salova.assistant import VideoAssistant
from salova.evaluation.benchmarks import run_benchmark
from salova.evaluation.retrieval import evaluate

from salova.cli import main

QUESTION = "what moves in the blue scene?"
MAX_NEW_TOKENS = 8
SCENE_SECONDS = 3.0  # conftest's scene_video: 5 scenes of 3 s


@pytest.fixture
def answers(monkeypatch) -> list:
    """Every `Answer` that `VideoAssistant.ask` returns during the test."""
    seen = []
    original = VideoAssistant.ask

    def recording(self, *args, **kwargs):
        seen.append(original(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(VideoAssistant, "ask", recording)
    return seen


def _frame_path(tiny, video, prompt: str) -> tuple[list[int], torch.Tensor]:
    """Greedy tokens and router scores of the model's own path: frames decoded by the processor, `generate`."""
    model, processor = tiny
    messages = VideoAssistant.conversation(video, [prompt], [])
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(videos=str(video), text=text, queries=QUESTION, add_special_tokens=False)
    with torch.no_grad():
        tokens = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        scores = model(**inputs).router_scores[0]
    return tokens[0, inputs["input_ids"].shape[1] :].tolist(), scores


def test_every_caller_answers_through_the_core_with_the_frame_paths_tokens_and_scores(
    tiny, tiny_checkpoint, scene_video, tmp_path, monkeypatch, answers, capsys
):
    tokens, scores = _frame_path(tiny, scene_video, QUESTION)

    # The assistant: `salova ask`.
    main(["ask", "--model", str(tiny_checkpoint), str(scene_video), QUESTION, "--json",
          "--max-new-tokens", str(MAX_NEW_TOKENS), "--index-dir", str(tmp_path / "indexes")])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)

    # A benchmark runner: its multiple-choice prompt to the LLM, the bare question to the router.
    item = {"id": "q0", "video_path": scene_video.name, "question": QUESTION, "candidates": ["a star", "a ring"],
            "correct_choice": 0, "duration_group": 15, "question_category": "objects"}  # fmt: skip
    (tmp_path / "lvb_val.json").write_text(json.dumps([item]))
    assistant = VideoAssistant.from_pretrained(tiny_checkpoint)
    run_benchmark("longvideobench", tmp_path / "lvb_val.json", scene_video.parent, assistant, tmp_path / "bench",
                  max_new_tokens=MAX_NEW_TOKENS, progress=False)  # fmt: skip
    benchmark_prompt = (tmp_path / "bench/answers.jsonl").read_text()
    benchmark_prompt = json.loads(benchmark_prompt)["prompt"]

    # The lmms-eval model, its `lmms_eval` imports stood in for.
    lmms = _lmms_eval_model(monkeypatch).Salova(pretrained=str(tiny_checkpoint), max_new_tokens=MAX_NEW_TOKENS)
    lmms.task_dict = {"task": {"test": [{"video": str(scene_video), "question": QUESTION}]}}
    gen_kwargs = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0, "do_sample": False, "until": []}
    request = _Instance((QUESTION, gen_kwargs, lambda doc: [doc["video"]], 0, "task", "test"))
    [lmms_text] = lmms.generate_until([request])

    # The main job's evaluation, on a stage-2 record whose scenes are the video's.
    record = {
        "id": "ev-q0",
        "video": str(scene_video),
        "scenes": [{"start": SCENE_SECONDS * i, "end": SCENE_SECONDS * (i + 1)} for i in range(5)],
        "conversations": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "a star"}],
        "v2t": [[0.1, 0.1, 0.9, 0.1, 0.1]],
    }
    (tmp_path / "eval.jsonl").write_text(json.dumps(record) + "\n")
    [result] = evaluate(VideoAssistant.from_pretrained(tiny_checkpoint), tmp_path / "eval.jsonl", MAX_NEW_TOKENS)

    assistant_answer, benchmark_answer, lmms_answer, evaluation_answer = answers
    for answer in (assistant_answer, lmms_answer, evaluation_answer):
        assert answer.token_ids == tokens
    assert benchmark_answer.token_ids == _frame_path(tiny, scene_video, benchmark_prompt)[0]
    for answer in answers:
        torch.testing.assert_close(torch.tensor(answer.router_scores), scores.float(), atol=1e-6, rtol=0)
    assert [scene["score"] for scene in printed["scenes"]] == assistant_answer.router_scores
    assert lmms_text == lmms_answer.text == assistant_answer.text == result.answer
    assert result.scores == assistant_answer.router_scores


@dataclass
class _Instance:
    args: tuple


def _lmms_eval_model(monkeypatch):
    """`salova.evaluation.lmms_eval_model` imported against stand-ins for the `lmms_eval` names it uses."""

    class Lmms:
        rank = 0
        cache_hook = types.SimpleNamespace(add_partial=lambda *args: None)

    modules = {
        "lmms_eval": types.ModuleType("lmms_eval"),
        "lmms_eval.api": types.ModuleType("lmms_eval.api"),
        "lmms_eval.api.instance": types.SimpleNamespace(GenerationResult=dict, Instance=_Instance),
        "lmms_eval.api.model": types.SimpleNamespace(lmms=Lmms),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "salova.evaluation.lmms_eval_model", raising=False)
    return importlib.import_module("salova.evaluation.lmms_eval_model")


def test_main_job_evaluation_decodes_each_video_once(tiny, scene_video, tmp_path, monkeypatch):
    model, processor = tiny
    video_processor = type(processor.video_processor)
    decoded = []
    original = video_processor.__call__

    def counting(self, *args, **kwargs):
        decoded.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(video_processor, "__call__", counting)
    scenes = [{"start": SCENE_SECONDS * i, "end": SCENE_SECONDS * (i + 1)} for i in range(5)]
    records = [
        {"id": f"ev-q{number}", "video": str(scene_video), "scenes": scenes, "v2t": [[0.9, 0.1, 0.1, 0.1, 0.1]],
         "conversations": [{"role": "user", "content": question}, {"role": "assistant", "content": "red"}]}
        for number, question in enumerate([QUESTION, "what colour is the first scene?"])
    ]  # fmt: skip
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    results = evaluate(VideoAssistant(model, processor), tmp_path / "eval.jsonl", max_new_tokens=2)
    assert [result.asked_scenes for result in results] == [[0], [0]] and len(decoded) == 1


def test_evaluation_through_detected_scenes_asks_the_segments_over_the_asked_scene(tiny, scene_video, tmp_path):
    """As `salova ask` cuts it, the video gives 5 segments of 3 s; annotated as 3 scenes, the second (6-12 s) is
    asked, which the detected segments 2 and 3 cover."""
    model, processor = tiny
    scenes = [{"start": 0.0, "end": 6.0}, {"start": 6.0, "end": 12.0}, {"start": 12.0, "end": 15.0}]
    conversation = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "red"}]
    record = {"id": "ev-q1", "video": str(scene_video), "scenes": scenes, "v2t": [[0.1, 0.9, 0.1]]}
    record["conversations"] = conversation
    (tmp_path / "eval.jsonl").write_text(json.dumps(record) + "\n")
    assistant = VideoAssistant(model, processor)
    [annotated] = evaluate(assistant, tmp_path / "eval.jsonl", max_new_tokens=2)
    [detected] = evaluate(assistant, tmp_path / "eval.jsonl", max_new_tokens=2, scenes="detected")
    assert annotated.asked_scenes == [1] and len(annotated.scores) == 3
    assert detected.asked_scenes == [2, 3] and len(detected.scores) == 5
    with pytest.raises(ValueError, match="scenes must be one of"):
        evaluate(assistant, tmp_path / "eval.jsonl", scenes="guessed")


def test_lmms_generation_kwargs_become_the_cores_options(tiny_checkpoint, monkeypatch):
    lmms = _lmms_eval_model(monkeypatch).Salova(pretrained=str(tiny_checkpoint), max_new_tokens=5)
    greedy = lmms._generation_options({"until": "\n\n", "temperature": 0.7, "do_sample": False})
    assert greedy == {"max_new_tokens": 5, "temperature": 0.0, "top_p": 1.0, "stop": ["\n\n"]}
    sampled = lmms._generation_options(
        {"max_new_tokens": 9, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "until": ["Q:", ""]}
    )
    assert sampled == {"max_new_tokens": 9, "temperature": 0.7, "top_p": 0.9, "stop": ["Q:"]}
    with pytest.raises(ValueError, match="num_beams=4"):
        lmms._generation_options({"num_beams": 4})
