"""`benchmarks/scenewalk_scale.py` at a small size: a SceneWalk parquet with planted faults goes through `salova
convert` and the data check, whose counts equal the faults planted (the benchmark's own comparison)."""

import importlib.util
import os
from pathlib import Path

import pytest
from salova.training.data import RowSettings
from salova.training.data_check import check_data
from transformers import AutoProcessor

from salova.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scenewalk_scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scenewalk_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plan_has_the_rows_asked_for_and_its_prefixes_keep_their_faults(scale):
    plan = scale.ScenewalkPlan.draw(scale.SCENEWALK_ROWS, scale.SCENEWALK_VIDEOS, seed=0)
    assert plan.num_rows == scale.SCENEWALK_ROWS and len(plan.clips) == scale.SCENEWALK_VIDEOS
    tenth = plan.prefix(0.1)
    assert len(tenth.clips) == round(0.1 * scale.SCENEWALK_VIDEOS)
    assert all(0 < tenth.planted()[name] < plan.planted()[name] for name in scale.FAULT_SHARES)
    assert scale.ScenewalkPlan.draw(2000, 137, seed=0).planted() == scale.ScenewalkPlan.draw(2000, 137, 0).planted()


def test_a_small_scenewalk_reports_exactly_its_planted_faults(scale, tmp_path, capsys):
    plan = scale.ScenewalkPlan.draw(2000, 137, seed=0)
    assert plan.num_rows == 2000 and all(count > 0 for count in plan.planted().values())
    parquet, videos, converted = tmp_path / "scenewalk.parquet", tmp_path / "videos", tmp_path / "stage1_5.parquet"
    scale.write_scenewalk(plan, parquet, videos, scale.source_videos(tmp_path / "sources"))
    main(["convert", "--from", "scenewalk", "--video-dir", str(videos), str(parquet), str(converted)])
    converted_output = capsys.readouterr().out
    processor = AutoProcessor.from_pretrained(scale.checkpoint_folder(tmp_path / "model"))
    _, report = check_data(converted, RowSettings("1.5", processor.video_processor), num_proc=1, show=False)
    scale.compare_with_plan(plan, converted_output, report)
    with pytest.raises(SystemExit, match="disagree"):
        scale.compare_with_plan(plan.prefix(0.5), converted_output, report)


def test_a_memory_sample_taken_across_a_fork_is_dropped(scale, monkeypatch):
    """A page shared across a fork counts whole in a parent read before it and again in a child read after it, so a
    sample during which the process tree changed is left out."""
    trees = iter([[os.getpid()], [os.getpid()], [os.getpid()], [os.getpid(), os.getppid()]])
    monkeypatch.setattr(scale, "_process_tree", lambda pid: next(trees))
    steady = scale._tree_memory(os.getpid())
    assert steady["largest_process_mib"] > 0 and steady["tree_pss_mib"] >= steady["tree_anon_pss_mib"] > 0
    assert scale._tree_memory(os.getpid()) is None
