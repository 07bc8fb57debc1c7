"""Stage recipes: config files, freezing, learning rates per group, checkpoints that load and pushes that are whole."""

import json

import pytest
import torch
from conftest import run_without_repo
from huggingface_hub.utils import filter_repo_objects
from salova.hub_configs import build_salova
from salova.training.data import STAGES
from salova.training.recipe import load_recipe
from salova.training.run import build_trainer, last_complete_checkpoint, train_stage
from salova.training.synthetic_corpus import CorpusSettings, generate_corpus
from trl import SFTTrainer

CPU_ARGS = {
    "use_cpu": True,
    "bf16": False,
    "activation_checkpointing": False,
    "report_to": [],
    "disable_tqdm": True,
    "save_strategy": "no",
    "gradient_accumulation_steps": 1,
}
SMALL_CORPUS = CorpusSettings(stage1_clips=8, stage15_videos=2, stage2_videos=4, eval_videos=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("corpus"), SMALL_CORPUS)


@pytest.fixture(scope="module")
def stage0(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage0")
    model, processor = build_salova("tiny", seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _recipe(stage, stage0, corpus, output_dir, **training_args):
    data = {"1": corpus["stage1"], "1.5": corpus["stage1_5"], "2": corpus["stage2"]}[stage]
    return load_recipe(
        stage,
        {
            "model": str(stage0),
            "train_data": str(data),
            "output_dir": str(output_dir),
            "training_args": {**CPU_ARGS, "per_device_train_batch_size": 2, **training_args},
        },
    )


def test_recipe_files_merge_and_refuse_mistakes(tmp_path):
    config = tmp_path / "stage.json"
    config.write_text(json.dumps({"model": "m", "train_data": "d.jsonl", "training_args": {"save_steps": 7}}))
    recipe = load_recipe("1.5", config, output_dir="out", learning_rate=1e-4)
    assert (recipe.learning_rate, recipe.tower_learning_rate, recipe.max_token_drop) == (1e-4, 2e-6, 0.7)
    assert recipe.training_args["save_steps"] == 7 and recipe.training_args["lr_scheduler_type"] == "cosine"
    assert recipe.frozen == ["model.vision_tower"] and recipe.chat_template == "plain"
    stage1 = load_recipe("1", config, output_dir="out")
    assert (stage1.similarity_loss_weight, stage1.similarity_margin_loss, stage1.router_in_batch_negatives) == (
        5.0,
        False,
        True,
    )
    with pytest.raises(ValueError, match=r"unknown recipe keys \['learning_rte'\]"):
        load_recipe("2", config, output_dir="out", learning_rte=1.0)
    with pytest.raises(ValueError, match="is a stage 1 config, but stage 2 was asked for"):
        load_recipe("2", {"stage": "1", "model": "m", "train_data": "d", "output_dir": "o"})
    with pytest.raises(ValueError, match=r"must name \['output_dir'\]"):
        load_recipe("2", config)
    with pytest.raises(ValueError, match="may not set"):
        load_recipe("2", config, output_dir="o", training_args={"remove_unused_columns": True}).sft_config()


def test_a_prefix_that_names_nothing_is_an_error(stage0, corpus, tmp_path):
    recipe = _recipe("2", stage0, corpus, tmp_path)
    recipe.frozen = ["model.vison_tower"]
    with pytest.raises(ValueError, match="'model.vison_tower' names no parameter"):
        build_trainer(recipe)


def test_stage1_trains_only_connector_router_projector_and_query_positions(stage0, corpus, tmp_path):
    trainer = build_trainer(_recipe("1", stage0, corpus, tmp_path, max_steps=3))
    model = trainer.model
    assert model.config.router_in_batch_negatives and model.config.similarity_loss_weight == 5.0
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    trainer.train()
    trained_prefixes = ("model.connector", "model.router", "model.projector", "model.query_projection")
    position_table = "model.query_encoder.embeddings.position_embedding.weight"
    for name, parameter in model.named_parameters():
        if name.startswith(trained_prefixes) or name == position_table:
            assert parameter.requires_grad, name
        else:
            assert not parameter.requires_grad and torch.equal(parameter, before[name]), name
    changed = {name.split(".")[1] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"connector", "router", "projector", "query_projection", "query_encoder"} <= changed
    # The query encoder moved only in its position table.
    assert all(
        torch.equal(p, before[name])
        for name, p in model.named_parameters()
        if name.startswith("model.query_encoder") and name != position_table
    )
    assert any("similarity_loss" in entry for entry in trainer.state.log_history)


def test_learning_rate_per_group_as_configured(stage0, corpus, tmp_path):
    recipe = _recipe("1.5", stage0, corpus, tmp_path, lr_scheduler_type="constant", warmup_steps=0)
    recipe.learning_rate, recipe.tower_learning_rate = 3e-4, 7e-6
    trainer = build_trainer(recipe)
    optimizer = trainer.create_optimizer()
    rates = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            rates[id(parameter)] = group["lr"]
    for name, parameter in trainer.model.named_parameters():
        if name.startswith("model.vision_tower"):
            assert id(parameter) not in rates and not parameter.requires_grad, name
        elif name.startswith("model.query_encoder"):
            assert rates[id(parameter)] == 7e-6, name
        else:
            assert rates[id(parameter)] == 3e-4, name
    trainer.args.max_steps = 2
    trainer.train()
    assert sorted({group["lr"] for group in trainer.optimizer.param_groups}) == [7e-6, 3e-4]


FRESH_LOAD = """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    folder, video = sys.argv[1], sys.argv[2]
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert type(processor).__module__.startswith("transformers_modules."), type(processor).__module__
    inputs = processor(videos=video, text="what shape is in the red scene?")
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    print("loaded", type(model).__name__, type(processor).__name__, model.config.max_token_drop, output.shape[1])
    """


def _a_video(corpus):
    return next((corpus["stage2"].parent / "videos").glob("*.mp4"))


def test_periodic_push_uploads_a_folder_that_loads_with_remote_code(stage0, corpus, tmp_path, monkeypatch):
    """`_push_from_checkpoint` runs for real (the upload itself fails: no network); what it would upload, the
    output folder filtered by the Trainer's ignore patterns, must load in a fresh process."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    recipe = _recipe("2", stage0, corpus, tmp_path / "run", max_steps=2, save_strategy="steps", save_steps=2)
    recipe.training_args["hub_strategy"] = "every_save"
    trainer = build_trainer(recipe)
    trainer.train()
    checkpoint = last_complete_checkpoint(recipe.output_dir)
    assert {"modeling_salova.py", "processing_salova.py", "trainer_state.json"} <= {
        path.name for path in (tmp_path / "run" / "checkpoint-2").iterdir()
    }
    # What `Trainer.__init__` sets up under `push_to_hub=True` (creating the repository needs the network).
    trainer.hub_model_id, trainer.push_in_progress = "salova-org/salova-tiny-stage2", None

    def uploaded(folder):
        files = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
        return set(filter_repo_objects(files, ignore_patterns=["_*", "checkpoint-*"]))

    # Upstream's copy leaves the model's remote code out of the pushed folder.
    upstream_dir = tmp_path / "upstream"
    upstream_dir.mkdir()
    trainer.args.output_dir = str(upstream_dir)
    SFTTrainer._push_from_checkpoint(trainer, checkpoint)
    trainer.push_in_progress.wait_until_done()
    assert "config.json" in uploaded(upstream_dir) and "modeling_salova.py" not in uploaded(upstream_dir)

    trainer.args.output_dir = recipe.output_dir
    trainer._push_from_checkpoint(checkpoint)
    trainer.push_in_progress.wait_until_done()
    pushed = uploaded(tmp_path / "run")
    assert {"model.safetensors", "config.json", "modeling_salova.py", "router.py", "processing_salova.py"} <= pushed
    repo_copy = tmp_path / "what-the-hub-receives"
    for name in pushed:
        (repo_copy / name).parent.mkdir(parents=True, exist_ok=True)
        (repo_copy / name).write_bytes((tmp_path / "run" / name).read_bytes())
    assert "loaded SalovaForConditionalGeneration SalovaProcessor 0.4" in run_without_repo(
        FRESH_LOAD, repo_copy, _a_video(corpus), tmp_path=tmp_path
    )


def test_stages_chain_through_hub_format_checkpoints(stage0, corpus, tmp_path):
    checkpoint = stage0
    for stage in STAGES:
        recipe = _recipe(stage, checkpoint, corpus, tmp_path / f"stage{stage}", max_steps=2)
        checkpoint = train_stage(recipe)
        assert json.loads((checkpoint / "config.json").read_text())["max_token_drop"] == recipe.max_token_drop
    assert "loaded SalovaForConditionalGeneration SalovaProcessor 0.4" in run_without_repo(
        FRESH_LOAD, checkpoint, _a_video(corpus), tmp_path=tmp_path
    )


def test_accumulation_follows_the_stage_global_batch(capsys):
    inputs = {"model": "m", "train_data": "d.jsonl", "output_dir": "out"}
    recipes = {stage: load_recipe(stage, inputs) for stage in STAGES}
    assert {stage: recipe.global_batch_size for stage, recipe in recipes.items()} == {"1": 256, "1.5": 8, "2": 64}
    assert recipes["2"].sft_config(world_size=8).gradient_accumulation_steps == 2  # 8 x 4 x 2 = 64
    assert recipes["1.5"].sft_config(world_size=2).gradient_accumulation_steps == 4
    explicit = load_recipe("2", inputs, training_args={"gradient_accumulation_steps": 3})
    assert explicit.sft_config(world_size=8).gradient_accumulation_steps == 3
    with pytest.raises(ValueError, match=r"global_batch_size=64 is not a multiple of 3 processes x "):
        recipes["2"].sft_config(world_size=3)
    # No CUDA here: the recipes' bf16 is switched off with one line.
    assert not torch.cuda.is_available() and not recipes["2"].sft_config(world_size=1).bf16
    assert "no CUDA device, bf16 switched off" in capsys.readouterr().out


def test_an_unknown_training_arg_names_the_closest_valid_one():
    recipe = load_recipe("2", {"model": "m", "train_data": "d", "output_dir": "o"}, training_args={"per_device_bs": 2})
    with pytest.raises(ValueError, match=r"unknown key 'per_device_bs'; did you mean 'per_device_\w+_batch_size'"):
        recipe.sft_config()
    recipe.training_args = {"num_train_epoch": 2}
    with pytest.raises(ValueError, match="did you mean 'num_train_epochs'"):
        recipe.sft_config()


def test_resume_names_its_checkpoint_and_a_finished_run_does_nothing(stage0, corpus, tmp_path, capsys):
    recipe = _recipe("2", stage0, corpus, tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    train_stage(recipe)
    weights = tmp_path / "model.safetensors"
    written = weights.stat().st_mtime_ns
    capsys.readouterr()
    train_stage(recipe, resume=True)
    assert "holds a finished run; nothing to resume" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == written

    (tmp_path / "training_finished.json").unlink()
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()  # as if killed while saving
    train_stage(recipe, resume=True)
    output = capsys.readouterr().out
    assert f"--resume: from {tmp_path / 'checkpoint-2'}, passing over the incomplete checkpoint-4" in output
    assert json.loads((tmp_path / "training_finished.json").read_text())["global_step"] == 4


def test_without_cuda_a_launch_trains_in_float32_on_cpu(monkeypatch, capsys):
    """The shipped accelerate configs ask for bf16 and name no CPU: without CUDA each process would train alone
    (no process group) and autocast in bf16."""
    recipe = load_recipe("2", {"model": "m", "train_data": "d.jsonl", "output_dir": "out"})
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` of ddp.yaml sets
    config = recipe.sft_config(world_size=2)
    assert not torch.cuda.is_available() and config.use_cpu and config.mixed_precision == "no" and not config.bf16
    output = capsys.readouterr().out
    assert "the 2 processes train on CPU (gloo)" in output and "bf16 mixed precision switched off" in output
    assert not recipe.sft_config(world_size=1).use_cpu
