"""`salova-train` as a user runs it: killed and resumed (multi-process launches: `test_engines.py`)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from salova.hub_configs import build_salova
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus

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
