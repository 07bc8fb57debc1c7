"""`salova-train` as a user runs it: killed and resumed, and on two processes under `accelerate launch`."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import salova.training
from salova.hub_configs import build_salova
from salova.training.data import RowSettings
from salova.training.data_check import check_data
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus
from transformers import AutoProcessor

pytestmark = pytest.mark.integration

TRAINING_ARGS = {
    "use_cpu": True,
    "bf16": False,
    "activation_checkpointing": False,
    "report_to": [],
    "disable_tqdm": True,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "logging_steps": 1,
    "seed": 0,
}
TRAIN = [sys.executable, "-m", "salova.training.cli"]


@pytest.fixture(scope="module")
def stage2_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    corpus = generate_corpus(root / "corpus", CorpusSettings(stage1_clips=2, stage15_videos=1, stage2_videos=8))
    model, processor = build_salova("tiny", seed=0)
    model.save_pretrained(root / "stage1_5")
    processor.save_pretrained(root / "stage1_5")
    config = root / "stage2.json"
    config.write_text(
        json.dumps(
            {"model": str(root / "stage1_5"), "train_data": str(corpus["stage2"]), "training_args": TRAINING_ARGS}
        )
    )
    return config


def _step_losses(checkpoint) -> dict[int, float]:
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_killed_run_resumes_with_the_same_losses(stage2_config, tmp_path):
    schedule = ["--set", "training_args.max_steps=24", "--set", "training_args.save_steps=4"]
    reference = subprocess.run(
        [*TRAIN, "--stage", "2", "--config", str(stage2_config), "--output-dir", str(tmp_path / "ref"), *schedule],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    run = tmp_path / "run"
    command = [*TRAIN, "--stage", "2", "--config", str(stage2_config), "--output-dir", str(run), *schedule]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (run / "checkpoint-8" / "trainer_state.json").is_file():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run / "checkpoint-24").exists() and not (run / "model.safetensors").exists()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = _step_losses(tmp_path / "ref" / "checkpoint-24"), _step_losses(run / "checkpoint-24")
    assert sorted(got) == list(range(1, 25))
    assert got == pytest.approx(expected, rel=1e-5)
    assert (run / "model.safetensors").is_file() and (run / "modeling_salova.py").is_file()


def test_two_cpu_processes_under_accelerate_launch_step_over_a_video_broken_after_the_check(stage2_config, tmp_path):
    """A video the data check read well is damaged before training: its rows are left out of their batches on
    whichever process draws them, and both processes take the same steps to the end."""
    config = json.loads(stage2_config.read_text())
    corpus = Path(config["train_data"])
    broken = tmp_path / "broken.mp4"
    records = [json.loads(line) for line in corpus.read_text().splitlines()[:8]]
    shutil.copy(corpus.parent / records[0]["video"], broken)
    for index, record in enumerate(records):
        record["video"] = str(broken if index < 2 else corpus.parent / record["video"])
    train_data = tmp_path / "stage2.jsonl"
    train_data.write_text("".join(json.dumps(record) + "\n" for record in records))
    output_dir = tmp_path / "ddp"
    processor = AutoProcessor.from_pretrained(config["model"])
    settings = RowSettings.for_processor("2", processor)
    _, report = check_data(train_data, settings, cache_dir=output_dir, num_proc=1, show=False)
    assert report["kept"] == 8
    broken.write_bytes(broken.read_bytes()[:1000])

    accelerate_config = Path(salova.training.__file__).parent / "accelerate" / "ddp.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    launch += ["--num_processes", "2", "--mixed_precision", "no"]
    result = subprocess.run(
        [
            *launch,
            "-m",
            "salova.training.cli",
            "--stage",
            "2",
            "--config",
            str(stage2_config),
            "--train-data",
            str(train_data),
            "--output-dir",
            str(output_dir),
            "--set",
            "training_args.max_steps=3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("stage 2: wrote") == 1 and "trained on 2 processes" in result.stdout
    assert (output_dir / "model.safetensors").is_file()
    assert f"{train_data}:1: row left out of its batch" in result.stderr
    replaced = json.loads((output_dir / "data_check.json").read_text())["training"]["replaced_rows"]
    assert replaced >= 2 and f"'replaced_rows': {replaced}" in result.stdout
