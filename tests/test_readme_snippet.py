"""The README's "Using a checkpoint" snippet runs as written (on the tiny checkpoint and a test video), silently."""

import re
import warnings

from conftest import REPO


def readme_snippet() -> str:
    section = (REPO / "README.md").read_text().split("## Using a checkpoint", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs_without_warnings(tiny_checkpoint, scene_video, capsys):
    code = readme_snippet().replace("path/or/org/salova-7b", str(tiny_checkpoint))
    code = code.replace("talk.mp4", str(scene_video))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), {})
    grad_warnings = [str(w.message) for w in caught if "requires_grad" in str(w.message)]
    assert grad_warnings == []
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if re.match(r"\d\d:\d\d:\d\d\.\d\d\d \d\d:\d\d:\d\d\.\d\d\d [+-]", line)]) == 5


def test_readme_answering_core_snippet_runs(tiny_checkpoint, scene_video, tmp_path, monkeypatch, capsys):
    """The "One answering core" example: open, conversation, ask with its options, and the answer's fields."""
    monkeypatch.setenv("SALOVA_INDEX_DIR", str(tmp_path / "indexes"))
    section = (REPO / "README.md").read_text().split("**One answering core.**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"CKPT"', repr(str(tiny_checkpoint))).replace('"talk.mp4"', repr(str(scene_video)))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    answer = namespace["answer"]
    assert answer.finish_reason in ("stop", "length") and answer.usage.completion_tokens >= 1
    *streamed, summary = capsys.readouterr().out.rstrip("\n").split("\n")
    assert "".join(streamed).strip() == answer.text and answer.finish_reason in summary
    assert namespace["status"] == "built" and len(answer.scenes) == namespace["index"].num_segments == 5
