"""The README's main job: `salova demo` trains the tiny model through the three stages and evaluates it; its
final checkpoint then goes through `salova eval retrieval` and `salova eval niah-synthetic`."""

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _salova(*args, timeout=900):
    result = subprocess.run(
        [sys.executable, "-m", "salova.cli", *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def smoke_demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, _salova("demo", "--setting", "smoke", "--workdir", str(workdir))


def test_demo_trains_three_stages_and_reports_retrieval_and_answers(smoke_demo):
    workdir, stdout = smoke_demo
    for stage in ("1", "1.5", "2"):
        assert f"stage {stage}: wrote" in stdout
    report = json.loads((workdir / "report.json").read_text())
    assert set(report) >= {"learned", "random_router", "seconds", "checkpoint"}
    for metrics in (report["learned"], report["random_router"]):
        assert {"recall@1", "recall@3", "exact_match"} <= set(metrics) and metrics["questions"] == 4
        assert all(0.0 <= value <= 1.0 for name, value in metrics.items() if name != "questions")
    # Through the scenes the processor detects, as `salova ask` segments a video: it finds every cut of the corpus,
    # so the figures are those of the annotated scenes.
    assert report["detected_scenes"] == {"learned": report["learned"], "random_router": report["random_router"]}
    phases = ["corpus", "stage 1", "stage 1.5", "stage 2", "evaluation (annotated scenes)"]
    phases += ["evaluation (detected scenes)", "asking through the video index", "total"]
    assert list(report["seconds"]) == phases
    summary = re.findall(r"^  (\S.*?) +\d\d:\d\d:\d\d\.\d\d\d$", stdout.split("time per phase:")[1], re.MULTILINE)
    assert summary == phases
    # A held-out video of 12-14 scenes, each printed with its HH:MM:SS span and router score; one in focus.
    span = r"(\d\d:\d\d:\d\d(?:\.\d\d\d)?)"
    scenes = re.findall(rf"scene +\d+ {span}-{span} +score [+-]\d+\.\d\d", stdout)
    assert len(scenes) >= 12 and scenes[0][0].startswith("00:00:00")
    assert "Q: " in stdout and "A: " in stdout


def test_eval_retrieval_reproduces_the_demo_report(smoke_demo, tmp_path):
    workdir, _ = smoke_demo
    report = json.loads((workdir / "report.json").read_text())
    records = workdir / "corpus" / "eval.jsonl"
    _salova("eval", "retrieval", "--model", report["checkpoint"], "--records", str(records), "--output", str(tmp_path),
            "--max-new-tokens", "8")  # fmt: skip
    retrieval = json.loads((tmp_path / "retrieval.json").read_text())
    assert retrieval == {"learned": report["learned"], "random_router": report["random_router"]}


def test_eval_niah_synthetic_on_the_trained_checkpoint(smoke_demo, tmp_path):
    workdir, _ = smoke_demo
    checkpoint = json.loads((workdir / "report.json").read_text())["checkpoint"]
    _salova("eval", "niah-synthetic", "--model", checkpoint, "--colours", "red,cyan", "--haystack-scenes", "12",
            "--lengths", "30,60", "--depths", "0,0.5,1", "--output", str(tmp_path),
            "--max-new-tokens", "4")  # fmt: skip
    report = json.loads((tmp_path / "niah.json").read_text())
    assert len(report["points"]) == 2 * 3 * 2
    for point in report["points"]:
        assert point["question"] in ("what shape is in the red scene?", "what shape is in the cyan scene?")
        # The demo's model focuses on one segment: in focus means ranked first.
        for router in ("learned", "random_router"):
            assert point[router]["in_focus"] == (point[router]["rank"] == 1)
    for router in ("learned", "random_router"):
        assert set(report["summary"][router]["by_length"]) == {"30", "60"}
    assert (tmp_path / "niah.png").stat().st_size > 0
