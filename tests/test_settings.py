"""One home and one name per setting: lists derived from their files, defaults written once, the names the model
config uses in every layer, and old names still loading with a warning."""

import argparse
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
from salova.processing import SalovaVideoProcessor
from salova.training.collator import SalovaCollator
from salova.training.data import STAGES, RowSettings
from salova.training.recipe import SFT_FIELDS, load_recipe

REPO = Path(__file__).resolve().parents[1]
INPUTS = {"model": "m", "train_data": "d.jsonl", "output_dir": "out"}


def _choices(main, argv: list[str], capsys) -> list[str]:
    """The choices argparse lists when `argv` ends with an invalid one."""
    with pytest.raises(SystemExit):
        main(argv)
    listed = re.search(r"invalid choice: .*\(choose from (.*)\)", capsys.readouterr().err).group(1)
    return re.findall(r"'([^']*)'", listed)


def test_the_stage_list_is_the_stage_files(capsys):
    from salova.training.cli import main as train_main
    from salova.training.end_to_end import STAGES as DEMO_STAGES

    from salova.cli import main as salova_main

    files = sorted((REPO / "training" / "stages").glob("*.json"))
    named = [json.loads(path.read_text())["stage"] for path in files]
    assert list(STAGES) == named == ["1", "1.5", "2"] and DEMO_STAGES == STAGES
    assert _choices(train_main, ["--stage", "9"], capsys) == named
    assert _choices(salova_main, ["data", "check", "--model", "m", "--stage", "9", "in.jsonl"], capsys) == named
    assert _choices(salova_main, ["convert", "--from", "llava", "--stage", "9", "a", "b"], capsys) == named
    with pytest.raises(ValueError, match=r"stage must be one of \['1', '1.5', '2'\], got '9'"):
        load_recipe("9", INPUTS)


def test_row_settings_take_sampling_and_segments_from_the_video_processor():
    video_processor = SalovaVideoProcessor(fps=2.0, router_max_segments=4, max_frames_per_segment=30)
    settings = RowSettings("1.5", video_processor, seed=3)
    assert settings.fps == 2.0 and settings.seed == 3
    assert settings.policy == video_processor.segmentation_policy()
    assert (settings.policy.max_segments, settings.policy.max_frames_per_segment) == (4, 30)
    with pytest.raises(TypeError, match="video_processor"):
        RowSettings("2")
    with pytest.raises(TypeError, match=r"the SalovaVideoProcessor that cuts the videos .*got a dict"):
        RowSettings("2", {"fps": 1.0})


def test_row_settings_defaults_are_the_recipes_and_the_data_checks():
    """Queries per video, label thresholds and seed are written once, in `RowSettings`."""
    from salova.training.commands import add_data_commands

    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers())
    check = parser.parse_args(["data", "check", "--stage", "1.5", "--model", "m", "in.jsonl"])
    recipe = load_recipe("1.5", INPUTS)
    settings = RowSettings("1.5", SalovaVideoProcessor())
    assert recipe.max_queries_per_video == check.max_queries_per_video == settings.max_queries_per_video == 16
    assert recipe.label_thresholds == check.label_thresholds == settings.label_thresholds == "code"
    assert check.seed == settings.seed == 0
    stage_files = (REPO / "training" / "stages").glob("*.json")
    assert not any("max_queries_per_video" in json.loads(path.read_text()) for path in stage_files)


def test_max_length_belongs_to_the_recipe():
    """The collator holds no length of its own: it gets the recipe's (the paper's 8192), or none (unbounded)."""
    assert load_recipe("2", INPUTS).max_length == 8192
    assert {field.name: field.default for field in fields(SalovaCollator)}["max_length"] is None


def test_accumulation_without_a_batch_size_uses_the_training_args_default():
    """`global_batch_size` over world size x the batch size SFTConfig itself defaults to, not a copy of it."""
    recipe = load_recipe("1.5", INPUTS, training_args={}, global_batch_size=64)
    recipe.training_args.pop("per_device_train_batch_size")
    default = SFT_FIELDS["per_device_train_batch_size"].default
    config = recipe.sft_config(world_size=2)
    assert config.per_device_train_batch_size == default
    assert config.gradient_accumulation_steps == 64 // (2 * default)


def test_ask_takes_num_focus_segments_and_the_old_option_still_works(capsys):
    from salova.assistant.cli import _add_answer_arguments

    parser = argparse.ArgumentParser(prog="salova ask")
    _add_answer_arguments(parser)
    assert parser.parse_args(["--num-focus-segments", "3"]).num_focus_segments == 3
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["--top-k", "2"]).num_focus_segments == 2
    assert "salova ask: --top-k is deprecated; use --num-focus-segments." in capsys.readouterr().err
    assert "--top-k" not in parser.format_help()


def test_label_thresholds_go_by_their_recipe_name():
    from salova.training.data import THRESHOLDS

    assert RowSettings("2", SalovaVideoProcessor(), label_thresholds="paper").thresholds == THRESHOLDS["paper"]
    with pytest.raises(ValueError, match=r"label_thresholds must be one of \['code', 'paper'\], got 'papers'"):
        RowSettings("2", SalovaVideoProcessor(), label_thresholds="papers")


def test_data_check_options_go_by_the_recipe_names_and_the_old_ones_still_work(capsys):
    """`strict_data` and `data_check_num_proc` in a recipe are `--strict-data` and `--data-check-num-proc` here."""
    from salova.training.commands import add_data_commands

    parser = argparse.ArgumentParser(prog="salova")
    add_data_commands(parser.add_subparsers())
    start = ["data", "check", "--stage", "2", "--model", "m", "in.jsonl"]
    default = parser.parse_args(start)
    assert (default.strict_data, default.data_check_num_proc) == (False, None)
    current = parser.parse_args([*start, "--strict-data", "--data-check-num-proc", "3"])
    assert (current.strict_data, current.data_check_num_proc) == (True, 3) and capsys.readouterr().err == ""
    old = parser.parse_args([*start, "--strict", "--num-proc", "2"])
    assert (old.strict_data, old.data_check_num_proc) == (True, 2)
    err = capsys.readouterr().err
    assert "--strict is deprecated; use --strict-data." in err
    assert "--num-proc is deprecated; use --data-check-num-proc." in err
    recipe_keys = set(load_recipe("2", INPUTS).__dataclass_fields__)
    assert {"strict_data", "data_check_num_proc"} <= recipe_keys


def test_demo_setting_choices_are_the_main_jobs_settings(capsys):
    from salova.training.end_to_end import SETTINGS

    from salova.cli import main as salova_main

    assert _choices(salova_main, ["demo", "--setting", "huge"], capsys) == list(SETTINGS)
