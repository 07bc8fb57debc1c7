"""The README's main job: `salova demo` trains the tiny model through the three stages and evaluates it."""

import json
import re
import subprocess
import sys


def test_demo_trains_three_stages_and_reports_retrieval_and_answers(tmp_path):
    workdir = tmp_path / "demo"
    command = [sys.executable, "-m", "salova.cli", "demo", "--setting", "smoke", "--workdir", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("1", "1.5", "2"):
        assert f"stage {stage}: wrote" in result.stdout
    report = json.loads((workdir / "report.json").read_text())
    assert set(report) >= {"learned", "random_router", "seconds", "checkpoint"}
    for metrics in (report["learned"], report["random_router"]):
        assert {"recall@1", "recall@3", "exact_match"} <= set(metrics) and metrics["questions"] == 4
        assert all(0.0 <= value <= 1.0 for name, value in metrics.items() if name != "questions")
    # A held-out video of 12-14 scenes, each printed with its HH:MM:SS span and router score; one in focus.
    scenes = re.findall(r"scene +\d+ (\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d) +score [+-]\d+\.\d\d", result.stdout)
    assert len(scenes) >= 12 and scenes[0][0] == "00:00:00"
    assert "Q: " in result.stdout and "A: " in result.stdout
