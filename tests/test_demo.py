"""The README's main job: `salova demo` builds the tiny model, writes a video, retrieves and answers."""

import re
import subprocess
import sys


def test_demo_command_prints_detected_scenes_and_an_answer():
    result = subprocess.run([sys.executable, "-m", "salova.cli", "demo"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    spans = re.findall(r"segment \d+: (\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d)\s+score [+-]\d\.\d+\s*(focus)?", result.stdout)
    # Six colour scenes of 4 s each, found by scene detection.
    assert [start for start, *_ in spans] == ["00:00:00", "00:00:04", "00:00:08", "00:00:12", "00:00:16", "00:00:20"]
    assert spans[-1][1] == "00:00:24" and sum(1 for *_, focus in spans if focus) == 5
    assert "LLM visual tokens: 166 = 32 x min(5, 6) + 6" in result.stdout and "answer" in result.stdout
