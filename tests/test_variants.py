"""The published variants' shapes, offline: component architectures and tokenizer layouts as published, full-depth
parameter counts, pad tokens, and components from local folders, each alone or both."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from salova.hub_configs import (
    build_layout_tokenizer,
    build_salova,
    build_tiny_tokenizer,
    ensure_pad_token,
    load_component,
    load_variant,
)
from salova.hub_configs.builder import _config
from transformers import (
    AutoModelForCausalLM,
    AutoProcessor,
    CLIPConfig,
    CLIPModel,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    SiglipConfig,
    SiglipModel,
    SiglipVisionModel,
)

REPO_HUB_CONFIGS = Path(__file__).resolve().parents[1] / "hub_configs"
# Parameter counts the model cards publish, in billions: LLMs with their LM head, towers' vision halves.
PUBLISHED_PARAMETERS = {
    "Qwen/Qwen2.5-7B-Instruct": 7.62,
    "meta-llama/Llama-3.2-3B-Instruct": 3.21,
    "microsoft/Phi-3.5-mini-instruct": 3.82,
    "google/siglip-so400m-patch14-384": 0.43,
    "openai/clip-vit-large-patch14-336": 0.30,
}
VISION_CLASSES = {"siglip": SiglipVisionModel, "clip": CLIPVisionModel}
LLM_LAYOUT = {
    "vocab_size": 600,
    "special_tokens": {"<|begin_of_text|>": 512, "<|eot_id|>": 513, "<|finetune_right_pad_id|>": 514},
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "model_max_length": 4096,
}
# A template of the LLM folder's own, unlike any the package ships.
OWN_TEMPLATE = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}<|eot_id|>{% endfor %}"
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def _count(module_class, config) -> int:
    with torch.device("meta"):
        return sum(parameter.numel() for parameter in module_class(config).parameters())


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED_PARAMETERS))
def test_full_depth_parameter_counts_match_the_published(hub_id):
    """Built on the meta device from the kept architecture: a wrong width, depth, head count or vocabulary moves the
    count off the published one."""
    config = _config(load_component(hub_id)["config"], depth=None)
    if config.model_type in VISION_CLASSES:
        count = _count(VISION_CLASSES[config.model_type], config.vision_config)
    else:
        count = _count(AutoModelForCausalLM.from_config, config)
    published = PUBLISHED_PARAMETERS[hub_id]
    assert round(count / 1e9, 2) == published, count
    if hub_id != "openai/clip-vit-large-patch14-336":  # published to two digits only: 0.30 B stands for 0.3035 B
        assert abs(count / 1e9 - published) <= 0.005 * published, count


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED_PARAMETERS))
def test_twin_tokenizers_have_the_published_layouts(hub_id):
    layout = load_component(hub_id)["tokenizer"]
    tokenizer = build_layout_tokenizer(layout)
    assert len(tokenizer) == layout["vocab_size"]
    for token, token_id in layout["special_tokens"].items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id and tokenizer.decode([token_id]) == token
    assert tokenizer.pad_token == layout.get("pad_token")
    assert tokenizer.model_max_length == layout["model_max_length"]
    text = "what colour is the second scene?"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_the_variants_name_kept_components():
    for variant in ("3b", "3.8b", "7b"):
        spec = load_variant(variant)
        for hub_id in (spec["vision_tower"], spec["llm"]):
            assert load_component(hub_id)["hub_id"] == hub_id


def test_a_tokenizer_without_pad_token_gets_its_reserved_one_else_eos():
    tokenizer = build_layout_tokenizer(LLM_LAYOUT)
    assert tokenizer.pad_token is None
    assert ensure_pad_token(tokenizer) == "<|finetune_right_pad_id|>" and tokenizer.pad_token_id == 514
    plain = build_layout_tokenizer({**LLM_LAYOUT, "special_tokens": {"<|eot_id|>": 513}, "bos_token": None})
    assert ensure_pad_token(plain) == "<|eot_id|>"
    assert len(tokenizer) == 600  # nothing added


def _llm_folder(root, vocab_size: int = 600, layout: dict = LLM_LAYOUT):
    """A Llama-3.2-like LLM folder: tied head, a tokenizer without pad token, its own chat template."""
    folder = root / "llm"
    tokenizer = build_layout_tokenizer(layout, chat_template=OWN_TEMPLATE)
    llm = LlamaForCausalLM(
        LlamaConfig(**SMALL, num_key_value_heads=1, vocab_size=vocab_size, tie_word_embeddings=True, eos_token_id=513)
    )
    llm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tower_folder(root, **text):
    folder = root / "tower"
    tower = CLIPModel(
        CLIPConfig(
            vision_config={**SMALL, "image_size": 30, "patch_size": 6},
            text_config={**SMALL, "vocab_size": 512, "max_position_embeddings": 77, **text},
        )
    )
    tower.save_pretrained(folder)
    build_tiny_tokenizer(with_video_token=False).save_pretrained(folder)
    return folder


def test_cli_builds_the_tiny_variant_with_an_llm_folder_alone(tmp_path):
    llm = _llm_folder(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "salova.cli", "build", "--variant", "tiny", "--llm", str(llm), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert processor.tokenizer.pad_token == "<|finetune_right_pad_id|>"
    prompt = processor.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert prompt == "### user: hi<|eot_id|>"  # the LLM folder's own template
    # Prompts of different lengths pad (Llama-3.2's tokenizer, without a pad token, could not).
    batch = processor(text=["a", "what colour is it?"], segments_per_video=[1, 1], return_tensors="pt")
    assert batch["input_ids"].shape[0] == 2 and (batch["attention_mask"] == 0).any()


def test_a_tower_folder_alone_joins_the_tiny_llm(tmp_path):
    model, processor = build_salova("tiny", vision_tower=str(_tower_folder(tmp_path)))
    assert model.config.tower_config.model_type == "clip" and model.config.text_config.model_type == "qwen2"
    assert processor.image_size == 30


def test_components_that_cannot_fit_are_refused_by_folder_and_number(tmp_path):
    small_llm = _llm_folder(tmp_path / "a", vocab_size=512)
    with pytest.raises(ValueError, match=rf"LLM {small_llm}: its tokenizer has 600 tokens but .* only 512 rows"):
        build_salova("tiny", llm=str(small_llm))
    small_tower = _tower_folder(tmp_path / "b", vocab_size=256)
    refusal = rf"vision tower {small_tower}: its query tokenizer has 484 tokens .* 256 rows"
    with pytest.raises(ValueError, match=refusal):
        build_salova("tiny", vision_tower=str(small_tower))
    folder = tmp_path / "c" / "tower"
    SiglipModel(
        SiglipConfig(
            vision_config={**SMALL, "image_size": 28, "patch_size": 7}, text_config={**SMALL, "projection_size": 16}
        )
    ).save_pretrained(folder)
    build_tiny_tokenizer(with_video_token=False).save_pretrained(folder)
    with pytest.raises(ValueError, match=rf"vision tower {folder} .*projection_size must equal its hidden_size \(32\)"):
        build_salova("tiny", vision_tower=str(folder))


@pytest.mark.integration
def test_cli_builds_a_random_twin_offline(tmp_path):
    out = tmp_path / "twin"
    command = ["build", "--variant", "3.8b", "--random-weights", "--depth", "1", "--dtype", "bfloat16"]
    command += ["--out", str(out)]
    result = subprocess.run([sys.executable, "-m", "salova.cli", *command], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert len(processor.tokenizer) == 32012 and processor.tokenizer.pad_token == "<|endoftext|>"  # 32011 + <video>
    assert processor.query_tokenizer.convert_tokens_to_ids("<|endoftext|>") == 49407
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 3072 and config["text_config"]["num_hidden_layers"] == 1
    assert config["tower_config"]["vision_config"]["image_size"] == 336


def test_the_variant_list_is_the_spec_files(capsys):
    from salova.hub_configs import VARIANTS

    from salova.cli import main

    stems = sorted(path.stem.removeprefix("salova-") for path in REPO_HUB_CONFIGS.glob("salova-*.json"))
    assert sorted(VARIANTS) == stems == ["3.8b", "3b", "7b", "tiny"]
    with pytest.raises(SystemExit):
        main(["build", "--variant", "9b", "--out", "unused"])
    listed = capsys.readouterr().err
    assert sorted(re.findall(r"'([^']*)'", listed.split("choose from", 1)[1])) == stems
    with pytest.raises(ValueError, match=r"Unknown SALOVA variant '9b'; choose one of \('3.8b', '3b', '7b', 'tiny'\)"):
        load_variant("9b")
