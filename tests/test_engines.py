"""The training engines: what each needs of the model, and the shipped accelerate configs run as a user runs them."""

import copy
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import salova.training
import torch
from conftest import make_batch, run_without_repo
from safetensors.torch import load_file, save_file
from salova.hub_configs import build_salova
from salova.modeling import SalovaForConditionalGeneration
from salova.training.data import RowSettings
from salova.training.data_check import check_data
from salova.training.recipe import load_recipe
from salova.training.run import FINISHED_FILE
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus
from transformers import AutoModel, AutoProcessor

SEGMENTS = [[3, 1, 2, 4, 2, 1, 2], [2, 5]]


def test_every_parameter_can_be_broadcast_as_bytes(tiny):
    """DeepSpeed's start-up broadcast sends each parameter as `p.data.view(torch.uint8)`, which a 0-dim tensor
    cannot give."""
    model, _ = tiny
    for name, parameter in model.named_parameters():
        assert parameter.dim() >= 1, f"{name} is 0-dim"
        parameter.data.view(torch.uint8)


def test_a_checkpoint_with_a_0_dim_logit_scale_loads_and_answers_the_same(tiny, tmp_path):
    model = copy.deepcopy(tiny[0])
    with torch.no_grad():
        model.model.router.logit_scale.fill_(2.5)  # not the initial value, so a re-initialised scale shows
    batch = make_batch(model.config, SEGMENTS, seed=0)
    with torch.no_grad():
        expected = model(**batch).router_scores
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.router.logit_scale"] = weights["model.router.logit_scale"].reshape(())
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    loaded, loading = SalovaForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(loading.values()), loading  # no missing, unexpected or mismatched weights
    assert loaded.model.router.logit_scale.tolist() == [2.5]
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**batch).router_scores, expected)
    base = AutoModel.from_pretrained(tmp_path)  # the same key without the `model.` prefix
    assert base.router.logit_scale.tolist() == [2.5]

    state = model.state_dict()
    state["model.router.logit_scale"] = torch.tensor(1.5)
    model.load_state_dict(state)  # the Trainer's way into a checkpoint
    assert model.model.router.logit_scale.tolist() == [1.5]

    loaded.save_pretrained(tmp_path / "resaved")
    assert load_file(tmp_path / "resaved" / "model.safetensors")["model.router.logit_scale"].shape == (1,)


# --- The shipped accelerate configs, 2 CPU processes each, as `accelerate launch` runs them ----------------------
#
# Each run uses the shipped recipe's settings that matter to an engine: activation checkpointing on, gradient
# accumulation derived from `global_batch_size`. Rows are drawn in order (`train_sampling_strategy=sequential`) so
# that the hard micro-batches land where they matter: the accelerate sampler deals micro-batches to the processes in
# turn, so with 2 processes and 2 accumulation steps, micro-batch 3 of 4 is process 0's synchronising one.
# Stage 2 keeps the recipe's global batch shape but drops the two random parts of its loss (token drop, margin pairs)
# and the router's dropout, so that every engine must end where one process ends.

ENGINES = ("ddp", "fsdp", "zero2")
ACCELERATE_CONFIGS = Path(salova.training.__file__).parent / "accelerate"
RUN_ARGS = {
    "report_to": [],
    "disable_tqdm": True,
    "logging_steps": 1,
    "seed": 0,
    "train_sampling_strategy": "sequential",
    "dataloader_num_workers": 0,
    "save_strategy": "steps",
    "save_steps": 1,
    "max_steps": 2,
}
STAGE_SETTINGS = {
    # stage 2: 2 processes x 2 rows x 2 accumulation steps = 8; rows 4-5 (process 0, micro-batch 2) have no scenes,
    # row 12 (process 0, micro-batch 2 of step 2) reads a video damaged after the data check.
    "2": {
        "global_batch_size": 8,
        "max_token_drop": 0.0,
        "similarity_margin_loss": False,
        "training_args": {**RUN_ARGS, "per_device_train_batch_size": 2},
    },
    # stage 1.5: 2 processes x 1 row (the recipe's) x 2 accumulation steps = 4; row 2 (process 0, micro-batch 2)
    # reads the damaged video, so its batch is a masked stand-in row, and process 0 has no router labels.
    "1.5": {"global_batch_size": 4, "training_args": {**RUN_ARGS, "per_device_train_batch_size": 1}},
}
UNLABELLED_ROWS = {"2": (4, 5), "1.5": ()}
DAMAGED_ROW = {"2": 12, "1.5": 2}
# Equal results within float32 reduction-order noise: an Adam step moves a weight by about the learning rate
# (2e-5 here), and a different summation order of the same gradients changes weights by a few 1e-8.
WEIGHT_ATOL = 1e-6


def _start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """A training process in a session of its own (so that `kill_tree` reaches every worker it starts), its output
    piped, one OpenMP thread per process, with `env` added to the environment."""
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def launch(
    arguments: list[str], timeout: float, engine: str | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """`salova-train` under `accelerate launch` of a shipped config with 2 processes (`engine` None: one plain
    process), killed as a whole at `timeout` (a collective left waiting hangs). Returns the result and seconds."""
    command = [sys.executable, "-m", "salova.training.cli", *arguments]
    if engine is not None:
        command = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(ACCELERATE_CONFIGS / f"{engine}.yaml"),
            "--num_processes",
            "2",
            *command[1:],
        ]
    started = time.monotonic()
    process = _start(command, env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"{engine or 'one process'} did not finish in {timeout} s (a process left waiting?):\n{stderr[-3000:]}"
        )
    seconds = time.monotonic() - started
    print(f"{engine or 'one process'} {' '.join(arguments[:2])}: {seconds:.1f} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), seconds


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL to a launcher and every process under it: torch's elastic agent starts each worker in a session of
    its own, out of reach of the launcher's process group, and a worker left alive keeps the output pipes open."""
    for child in psutil.Process(process.pid).children(recursive=True):
        child.kill()
    os.killpg(process.pid, signal.SIGKILL)


# Every process of a run that pushes starts with this `sitecustomize`: the Hub's network calls are replaced by records
# of what each would have sent (the process's rank, the commit message, each file's path in the repository and
# content hash); `upload_folder` itself still picks the files.
HUB_RECORDER = textwrap.dedent(
    """
    import json, os
    from huggingface_hub import HfApi, _upload_pipeline
    from huggingface_hub.hf_api import CommitInfo, RepoUrl

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"{self.endpoint}/{repo_id}", endpoint=self.endpoint)

    def create_commit(self, repo_id, operations, commit_message, **kwargs):
        files = {op.path_in_repo: op.upload_info.sha256.hex() for op in operations if hasattr(op, "upload_info")}
        record = {"rank": os.environ.get("RANK", "0"), "message": commit_message, "files": files}
        record["deleted"] = sorted(op.path_in_repo for op in operations if not hasattr(op, "upload_info"))
        with open(os.environ["SALOVA_HUB_RECORD"], "a") as out:
            out.write(json.dumps(record) + "\\n")
        url = f"{self.endpoint}/{repo_id}/commit/{'0' * 40}"
        return CommitInfo(commit_url=url, commit_message=commit_message, commit_description="", oid="0" * 40)

    def pipelined_upload(api, *, repo_id, add_operations, delete_operations, commit_message, **kwargs):
        return create_commit(api, repo_id, delete_operations + add_operations, commit_message)

    HfApi.create_repo = create_repo
    HfApi.create_commit = create_commit
    HfApi._validate_yaml = lambda self, content, **kwargs: None
    _upload_pipeline.pipelined_upload = pipelined_upload
    """
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start checkpoint, per-stage configs and data, and the output folders, each with the data check already
    cached from the intact videos; the damaged video is damaged afterwards."""
    root = tmp_path_factory.mktemp("engines")
    corpus = generate_corpus(
        root / "corpus", CorpusSettings(stage1_clips=1, stage15_videos=4, stage2_videos=2, eval_videos=0)
    )
    model, processor = build_salova("tiny", seed=0)
    model.config.router_dropout = 0.0
    model.save_pretrained(root / "start")
    processor.save_pretrained(root / "start")
    processor = AutoProcessor.from_pretrained(root / "start")
    damaged = {stage: root / f"damaged-stage{stage}.mp4" for stage in STAGE_SETTINGS}
    configs, outputs = {}, {}
    for stage, split in (("2", "stage2"), ("1.5", "stage1_5")):
        records = [json.loads(line) for line in corpus[split].read_text().splitlines()]
        for row in UNLABELLED_ROWS[stage]:
            records[row].pop("scenes")
            records[row].pop("v2t")
        shutil.copy(corpus[split].parent / records[DAMAGED_ROW[stage]]["video"], damaged[stage])
        records[DAMAGED_ROW[stage]]["video"] = str(damaged[stage])
        train_data = corpus[split].with_name(f"{split}_engines.jsonl")
        train_data.write_text("".join(json.dumps(record) + "\n" for record in records))
        config = {"model": str(root / "start"), "train_data": str(train_data), **STAGE_SETTINGS[stage]}
        configs[stage] = root / f"stage{stage}.json"
        configs[stage].write_text(json.dumps(config))
        recipe = load_recipe(stage, config, output_dir="unused")
        settings = RowSettings(
            stage,
            processor.video_processor,
            label_thresholds=recipe.label_thresholds,
            max_queries_per_video=recipe.max_queries_per_video,
            seed=0,
            max_sampled_frames=recipe.max_sampled_frames,
        )
        for name in (*ENGINES, "single", "zero2-two-machines", *(f"{engine}-resumed" for engine in ENGINES)):
            outputs[stage, name] = root / f"stage{stage}-{name}"
            _, report = check_data(train_data, settings, cache_dir=outputs[stage, name], num_proc=1, show=False)
            assert report["kept"] == len(records)
    for path in damaged.values():
        path.write_bytes(path.read_bytes()[:1000])
    video = corpus["stage2"].parent / json.loads(corpus["stage2"].read_text().splitlines()[0])["video"]
    (root / "hub-recorder").mkdir()
    (root / "hub-recorder" / "sitecustomize.py").write_text(HUB_RECORDER)
    return {"root": root, "configs": configs, "outputs": outputs, "video": video, "results": {}}


def _arguments(runs, stage, name, *extra) -> list[str]:
    return [
        "--stage",
        stage,
        "--config",
        str(runs["configs"][stage]),
        "--output-dir",
        str(runs["outputs"][stage, name]),
        *extra,
    ]


def _trained(runs, stage, engine) -> subprocess.CompletedProcess:
    """The run of `engine` (or "single": one process) on `stage`, made once per module. DDP runs with
    `find_unused_parameters=False` (what the Trainer picks under activation checkpointing unless TRL turns the
    search on): every trainable parameter must then take part in every micro-batch, as FSDP and ZeRO-2 need
    whatever the DDP setting. Each run pushes to the Hub (at every save and at the end), recorded in
    `_hub_record(runs, stage, engine)` instead of sent."""
    if (stage, engine) not in runs["results"]:
        extra = ["--set", "training_args.ddp_find_unused_parameters=false"] if engine == "ddp" else []
        extra += ["--set", "training_args.push_to_hub=true", "--set", f"training_args.hub_model_id=test/{engine}"]
        env = {
            "PYTHONPATH": os.pathsep.join([str(runs["root"] / "hub-recorder"), os.environ.get("PYTHONPATH", "")]),
            "SALOVA_HUB_RECORD": str(_hub_record(runs, stage, engine)),
            "HF_HUB_OFFLINE": "1",  # any other Hub call fails at once
        }
        result, _ = launch(_arguments(runs, stage, engine, *extra), 180, None if engine == "single" else engine, env)
        assert result.returncode == 0, result.stderr[-4000:]
        runs["results"][stage, engine] = result
    return runs["results"][stage, engine]


def _hub_record(runs, stage, engine) -> Path:
    return runs["root"] / f"hub-stage{stage}-{engine}.jsonl"


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "model.safetensors")


@pytest.mark.integration
@pytest.mark.parametrize("stage", ["1.5", "2"])
@pytest.mark.parametrize("engine", ENGINES)
def test_each_shipped_engine_trains_on_two_processes(runs, engine, stage):
    """The shipped config as is, with a micro-batch without router labels on one process only and a row whose
    video broke after the data check; the output folder is a Hub-format checkpoint."""
    result = _trained(runs, stage, engine)
    assert result.stdout.count(f"stage {stage}: wrote") == 1 and "trained on 2 processes" in result.stdout
    output = runs["outputs"][stage, engine]
    assert "row left out of its batch" in result.stderr
    assert json.loads((output / "data_check.json").read_text())["training"]["replaced_rows"] >= 1
    start, trained = _weights(runs["root"] / "start"), _weights(output)
    assert {name: tensor.shape for name, tensor in trained.items()} == {n: t.shape for n, t in start.items()}
    moved = [name for name in start if "router" in name and not torch.equal(start[name], trained[name])]
    assert "model.router.logit_scale" in moved and len(moved) > 10, moved
    # Hub format: full weights in one safetensors file, config with auto_map, remote code, processor.
    config = json.loads((output / "config.json").read_text())
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForImageTextToText"}
    names = {path.name for path in output.iterdir()}
    assert {"modeling_salova.py", "router.py", "processing_salova.py", "processor_config.json"} <= names
    assert not any(name.startswith("pytorch_model") for name in names)  # no engine-specific weight files


@pytest.mark.integration
def test_every_engine_ends_where_one_process_ends(runs):
    """Same global batch (8 rows: 2 processes x 2 rows x 2 steps, or 1 process x 2 rows x 4 steps), same seed."""
    _trained(runs, "2", "single")
    single, start = _weights(runs["outputs"]["2", "single"]), _weights(runs["root"] / "start")
    for engine in ENGINES:
        _trained(runs, "2", engine)
        weights = _weights(runs["outputs"]["2", engine])
        differences = {name: (weights[name] - single[name]).abs().max().item() for name in single}
        worst = max(differences, key=differences.get)
        assert differences[worst] <= WEIGHT_ATOL, (engine, worst, differences[worst])
        moved = max((single[name] - start[name]).abs().max().item() for name in single if "router" in name)
        assert moved > 10 * WEIGHT_ATOL  # the router took its step


# What engines write into checkpoints besides the model: optimizer and scheduler states, per-rank RNG states and
# shards (ZeRO's `global_step*/`, `zero_pp_rank_*`, `latest`; FSDP's `pytorch_model_fsdp_*`, `optimizer_0`).
ENGINE_STATE_FILES = ("optimizer", "scheduler", "rng_state", "global_step", "rank", "latest", "fsdp", "trainer_state")


@pytest.mark.integration
@pytest.mark.parametrize("engine", ENGINES)
def test_push_to_hub_from_two_processes_uploads_exactly_the_output_folder(runs, engine):
    """The first process alone uploads; the final push, once, holds the stage's Hub folder as the run leaves it,
    byte for byte, and nothing else; every push on the way is a Hub-format checkpoint without optimizer states or
    shards."""
    _trained(runs, "2", engine)
    commits = [json.loads(line) for line in _hub_record(runs, "2", engine).read_text().splitlines()]
    assert [commit["rank"] for commit in commits] == ["0"] * len(commits)
    after_training = [commit["message"] for commit in commits if not commit["message"].startswith("Training in")]
    assert after_training == ["SALOVA stage 2"]
    assert commits[-1]["message"] == "SALOVA stage 2"
    # The folder but the checkpoints, the data check's cache (`_*`: the Trainer's own exclusions) and the marker
    # that the stage, push included, finished.
    output = runs["outputs"]["2", engine]
    folder = {
        path.relative_to(output).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in output.rglob("*")
        if path.is_file()
        and not path.relative_to(output).parts[0].startswith(("checkpoint-", "_"))
        and path.name != FINISHED_FILE
    }
    assert commits[-1]["files"] == folder
    hub_files = {"model.safetensors", "config.json", "modeling_salova.py", "router.py", "processor_config.json"}
    for commit in commits:
        names = set(commit["files"])
        assert hub_files <= names and {"processing_salova.py", "tokenizer.json"} <= names, commit["message"]
        engine_state = [name for name in names if any(part in name for part in ENGINE_STATE_FILES)]
        assert engine_state == [], (commit["message"], engine_state)
        assert commit["deleted"] == []


FRESH_ANSWERS = """
    import json
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    video, folders = sys.argv[1], sys.argv[2:]
    answers = {}
    for folder in folders:
        model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        inputs = processor(videos=video, text="what shape is in the red scene?")
        with torch.no_grad():
            scores = model(**inputs).router_scores
        tokens = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        answers[folder] = {"scores": scores.tolist(), "tokens": tokens[0, inputs["input_ids"].shape[1]:].tolist()}
    print(json.dumps(answers))
    """


@pytest.mark.integration
def test_every_engine_writes_a_folder_that_answers_as_one_process_does(runs, tmp_path):
    folders = [runs["outputs"]["2", name] for name in ("single", *ENGINES)]
    for name in ("single", *ENGINES):
        _trained(runs, "2", name)
    answers = json.loads(run_without_repo(FRESH_ANSWERS, runs["video"], *folders, tmp_path=tmp_path).splitlines()[-1])
    expected = answers[str(folders[0])]
    for folder in folders[1:]:
        assert answers[str(folder)]["tokens"] == expected["tokens"], folder.name
        assert torch.allclose(torch.tensor(answers[str(folder)]["scores"]), torch.tensor(expected["scores"]), atol=1e-4)


@pytest.mark.integration
@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_with_a_process_killed_resumes_from_its_last_complete_checkpoint(runs, engine):
    """`kill -9` of process 1 once checkpoint-1 is complete; a half-written checkpoint-2 is left as a kill while
    saving leaves it; `--resume` passes it over, continues from checkpoint-1 and ends where the whole run ends."""
    name = f"{engine}-resumed"
    output = runs["outputs"]["2", name]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [str(ACCELERATE_CONFIGS / f"{engine}.yaml"), "--num_processes", "2"]
    command += ["-m", "salova.training.cli", *_arguments(runs, "2", name)]
    launcher = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 240
        while not (output / "checkpoint-1" / "trainer_state.json").is_file():
            assert launcher.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.02)
        workers = [
            process
            for process in psutil.Process(launcher.pid).children(recursive=True)
            if process.environ().get("LOCAL_RANK") == "1" and "salova.training.cli" in process.cmdline()
        ]
        assert len(workers) == 1, workers
        workers[0].send_signal(signal.SIGKILL)
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            kill_tree(launcher)
            launcher.wait()
    assert launcher.returncode != 0
    assert (
        not (output / "checkpoint-2" / "trainer_state.json").is_file() and not (output / "model.safetensors").exists()
    )
    shutil.rmtree(output / "checkpoint-2", ignore_errors=True)
    shutil.copytree(output / "checkpoint-1", output / "checkpoint-2")
    (output / "checkpoint-2" / "trainer_state.json").unlink()

    resumed, _ = launch(_arguments(runs, "2", name, "--resume"), 300, engine)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"--resume: from {output / 'checkpoint-1'}, passing over the incomplete checkpoint-2" in resumed.stdout
    _trained(runs, "2", engine)
    whole, weights = _weights(runs["outputs"]["2", engine]), _weights(output)
    assert max((weights[name] - whole[name]).abs().max().item() for name in whole) <= WEIGHT_ATOL


@pytest.mark.integration
def test_zero2_on_two_machines_with_a_static_rendezvous_on_loopback(runs):
    """The README's multi-node launch, one process per machine: two `accelerate launch --num_machines 2
    --machine_rank R` on 127.0.0.1 (the config's static rendezvous), ending where the 2-process run ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = runs["outputs"]["2", "zero2-two-machines"]
    machines = []
    for rank in range(2):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
        command += [str(ACCELERATE_CONFIGS / "zero2.yaml"), "--num_machines", "2", "--num_processes", "2"]
        command += ["--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        command += ["-m", "salova.training.cli", *_arguments(runs, "2", "zero2-two-machines")]
        machines.append(_start(command))
    try:
        outputs = [machine.communicate(timeout=180) for machine in machines]
    finally:
        for machine in machines:
            if machine.poll() is None:
                kill_tree(machine)
                machine.communicate()
    for machine, (_, stderr) in zip(machines, outputs, strict=True):
        assert machine.returncode == 0, stderr[-4000:]
    assert sum(stdout.count("stage 2: wrote") for stdout, _ in outputs) == 1
    _trained(runs, "2", "zero2")
    whole, weights = _weights(runs["outputs"]["2", "zero2"]), _weights(output)
    assert max((weights[name] - whole[name]).abs().max().item() for name in whole) <= WEIGHT_ATOL
