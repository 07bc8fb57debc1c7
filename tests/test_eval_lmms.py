"""The lmms-eval plugin: a real `python -m lmms_eval --model salova` run, in the environment
`scripts/setup_lmms_eval.sh` makes, on local tasks (a task YAML over a JSONL dataset of real mp4 files)."""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, colour_scenes, real_video
from salova.hub_configs import build_salova

from salova.video_writer import write_video

pytestmark = pytest.mark.integration

TASK_UTILS = """
def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def doc_to_choice(doc):
    return doc["choices"]


def doc_to_choice_target(doc):
    return doc["choices"].index(doc["answer"])


def process_results(doc, results):
    return {"answered": float(bool(results[0].strip())), "exact_match": float(results[0].strip() == doc["answer"])}
"""

VIDEO_TASK = """
task: salova_local_video
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: answered
    aggregation: mean
    higher_is_better: true
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

CHOICE_TASK = """
task: salova_local_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: multiple_choice
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_choice: !function utils.doc_to_choice
doc_to_target: !function utils.doc_to_choice_target
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def lmms_eval_python() -> str:
    """The lmms-eval environment's python (made on first use, then reused: the script is stamped)."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts/setup_lmms_eval.sh")], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, f"scripts/setup_lmms_eval.sh failed:\n{result.stderr[-3000:]}"
    return str(REPO / result.stdout.strip().splitlines()[-1])


def test_lmms_eval_runs_salova_on_a_local_video_task(lmms_eval_python, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    model, processor = build_salova("tiny", seed=0)
    model.save_pretrained(checkpoint)
    processor.save_pretrained(checkpoint)

    colours = write_video(
        tmp_path / "colours.mp4", colour_scenes([(220, 40, 40), (40, 70, 220), (40, 200, 60)], 2.0), fps=10
    )
    bikes = real_video("bikes.mp4")
    docs = [
        {
            "video": str(colours),
            "question": "what colour is the first scene?",
            "answer": "red",
            "choices": ["red", "blue"],
        },
        {
            "video": str(colours),
            "question": "what colour is the last scene?",
            "answer": "green",
            "choices": ["blue", "green"],
        },
        {"video": str(bikes), "question": "what moves?", "answer": "bikes", "choices": ["bikes", "cars", "boats"]},
    ]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text(TASK_UTILS)
    for name, template in (("video", VIDEO_TASK), ("choice", CHOICE_TASK)):
        (tasks / f"salova_local_{name}.yaml").write_text(textwrap.dedent(template).format(docs=tmp_path / "docs.jsonl"))

    output = tmp_path / "results"
    command = [
        lmms_eval_python, "-m", "lmms_eval", "--model", "salova",
        "--model_args", f"pretrained={checkpoint},max_new_tokens=3",
        "--tasks", "salova_local_video,salova_local_choice", "--include_path", str(tasks),
        "--output_path", str(output), "--log_samples", "--batch_size", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    results_files = list(output.rglob("*results.json"))
    assert len(results_files) == 1, f"expected one results file under {output}, found {results_files}"
    results = json.loads(results_files[0].read_text())["results"]
    video, choice = results["salova_local_video"], results["salova_local_choice"]
    # Every question got a non-empty answer from the model; exact match is whatever the random model says.
    assert video["answered,none"] == 1.0
    assert 0.0 <= video["exact_match,none"] <= 1.0
    assert 0.0 <= choice["acc,none"] <= 1.0

    samples = {path.name: path for path in output.rglob("*.jsonl")}
    video_samples = [json.loads(line) for name, path in samples.items() if "salova_local_video" in name
                     for line in path.read_text().splitlines()]  # fmt: skip
    assert len(video_samples) == 3
    choice_samples = [json.loads(line) for name, path in samples.items() if "salova_local_choice" in name
                      for line in path.read_text().splitlines()]  # fmt: skip
    # Per choice, the model's loss (mean negative log-likelihood of the choice's tokens, positive) and whether
    # it is the greedy answer; lmms-eval credits the choice of lowest loss.
    assert [len(sample["filtered_resps"]) for sample in choice_samples] == [2, 2, 3]
    for sample in choice_samples:
        losses = [float(response[0]) for response in sample["filtered_resps"]]
        assert all(loss > 0.0 for loss in losses)
        assert sample["acc"] == float(losses.index(min(losses)) == int(sample["target"]))


def test_lmms_eval_finds_salova_through_its_entry_point(lmms_eval_python):
    script = (
        "from lmms_eval.models import get_model\nmodel = get_model('salova')\nprint(model.__module__, model.__name__)\n"
    )
    result = subprocess.run([lmms_eval_python, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["salova.evaluation.lmms_eval_model", "Salova"]
    assert Path(lmms_eval_python).is_file()
