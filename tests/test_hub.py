"""Hub-native round trips: builder from local component checkpoints, save, fresh-process remote-code load, CLI."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import make_batch, run_without_repo
from salova.hub_configs import VIDEO_TOKEN, assemble_from_components, build_tiny_tokenizer, load_variant
from transformers import (
    CLIPConfig,
    CLIPModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipConfig,
    SiglipModel,
)

REMOTE_FILES = {"configuration_salova.py", "modeling_salova.py", "connector.py", "router.py", "losses.py"}


ENCODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
TOKEN_IDS = {"bos_token_id": None, "eos_token_id": 0, "pad_token_id": 0}
DECODER = {**ENCODER, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
# (tower config class, tower class, vision settings, text settings, LLM config class, LLM class, tied head)
COMPONENTS = {
    "siglip": (
        SiglipConfig,
        SiglipModel,
        {"image_size": 56, "patch_size": 8},
        {"max_position_embeddings": 64, "projection_size": 32},
        Qwen2Config,
        Qwen2ForCausalLM,
        False,
    ),
    "clip": (
        CLIPConfig,
        CLIPModel,
        {"image_size": 30, "patch_size": 6},
        {"max_position_embeddings": 77},
        LlamaConfig,
        LlamaForCausalLM,
        True,
    ),
}


def _save_components(root, tower="siglip"):
    """Saves a tiny SigLIP/CLIP dual encoder and a tiny Qwen2/Llama (tied head) with a tokenizer lacking <video>."""
    torch.manual_seed(1)
    tokenizer = build_tiny_tokenizer(with_video_token=False)
    tower_config_class, tower_class, vision, text, llm_config_class, llm_class, tied = COMPONENTS[tower]
    tower_model = tower_class(
        tower_config_class(
            vision_config={**ENCODER, **vision},
            text_config={**ENCODER, **text, **TOKEN_IDS, "vocab_size": 512},
        )
    )
    llm = llm_class(llm_config_class(**DECODER, **TOKEN_IDS, vocab_size=len(tokenizer), tie_word_embeddings=tied))
    tower_model.save_pretrained(root / "tower")
    build_tiny_tokenizer(with_video_token=False).save_pretrained(root / "tower")  # the query tokenizer
    llm.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return tower_model, llm, tokenizer


@pytest.mark.parametrize("tower", ["siglip", "clip"])
def test_builder_copies_components_and_extends_positions(tmp_path, tower):
    tower_model, llm, llm_tokenizer = _save_components(tmp_path, tower)
    settings = {**load_variant("tiny")["settings"], "vision_pooling_stride": 2}  # the real variants' pooling
    model, processor = assemble_from_components(
        str(tmp_path / "tower"), str(tmp_path / "llm"), settings, chat_template="llama-3.2"
    )
    tokenizer = processor.tokenizer
    inner = model.model

    pretrained_vision = tower_model.vision_model.state_dict()
    for name, value in inner.vision_tower.state_dict().items():  # SigLIP's pooling head is left out
        assert torch.equal(pretrained_vision[name], value), name
    assert not any(name.startswith("head.") for name in inner.vision_tower.state_dict())
    pretrained_text = tower_model.text_model.state_dict()
    positions = inner.query_encoder.embeddings.position_embedding.weight
    rows = pretrained_text["embeddings.position_embedding.weight"].shape[0]
    assert positions.shape[0] == 2048 == model.config.query_encoder_config.max_position_embeddings
    assert torch.equal(positions[:rows], pretrained_text["embeddings.position_embedding.weight"])
    assert positions[rows:].std() > 0 and torch.isfinite(positions).all()
    for name, value in pretrained_text.items():
        if "position" not in name:
            assert torch.equal(inner.query_encoder.state_dict()[name], value), name

    assert tokenizer.convert_tokens_to_ids(VIDEO_TOKEN) == len(llm_tokenizer) == model.config.video_token_id
    assert model.get_input_embeddings().num_embeddings == len(llm_tokenizer) + 1  # resized for <video>
    llm_embeddings = llm.get_input_embeddings().weight
    assert torch.equal(model.get_input_embeddings().weight[: len(llm_tokenizer)], llm_embeddings)
    assert torch.equal(inner.language_model.layers[1].mlp.up_proj.weight, llm.model.layers[1].mlp.up_proj.weight)
    if tower == "clip":  # Llama-3.2 style tied head
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    else:
        assert torch.equal(model.lm_head.weight[: len(llm_tokenizer)], llm.lm_head.weight)
    assert not any(t.is_meta for t in model.state_dict().values())

    # The processor matches the tower's input and the model's placeholder layout.
    assert processor.image_size == model.config.vision_config.image_size
    assert processor.video_processor.do_center_crop == (tower == "clip")  # CLIP: shortest edge, centre crop
    assert processor.connector_num_latents == model.config.connector_num_latents
    assert processor.video_token_id == model.config.video_token_id
    # The LLM folder brings its own template (the tiny tokenizer's), which wins over the variant's Llama-3.2 one.
    assert "<|im_start|>" in processor.chat_template and "start_header_id" not in processor.chat_template

    # 7x7 SigLIP patches pool to 4x4; CLIP's 5x5 patches (+ class token, dropped) pool to 3x3.
    assert model.config.tokens_per_frame == {"siglip": 16, "clip": 9}[tower]
    batch = make_batch(model.config, [[2, 1], [3]])
    with torch.no_grad():
        out = model.eval()(**batch)
    assert torch.isfinite(out.logits).all()


FRESH_PROCESS = """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText
    folder, inputs_path = sys.argv[1], sys.argv[2]
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    assert type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__name__ == "SalovaConfig"
    assert type(AutoModel.from_pretrained(folder, trust_remote_code=True)).__name__ == "SalovaModel"
    saved = torch.load(inputs_path)
    with torch.no_grad():
        out = model(**saved["inputs"])
    print("max_abs_diff", (out.logits - saved["logits"]).abs().max().item())
    print("same_selection", torch.equal(out.selected_segments, saved["selected"]))
    """


def test_saved_folder_loads_with_remote_code_in_a_fresh_process(tiny, tmp_path):
    model, processor = tiny
    tokenizer = processor.tokenizer
    folder = tmp_path / "salova-tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert REMOTE_FILES <= {p.name for p in folder.iterdir()}
    assert any(p.suffix == ".safetensors" for p in folder.iterdir())
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_salova.SalovaConfig",
        "AutoModel": "modeling_salova.SalovaModel",
        "AutoModelForImageTextToText": "modeling_salova.SalovaForConditionalGeneration",
    }
    for name in REMOTE_FILES:  # flat files, relative imports only
        source = (folder / name).read_text()
        assert "from salova" not in source and "import salova" not in source

    batch = make_batch(model.config, [[2, 3, 1, 1, 2, 2], [4]])
    batch.pop("labels")
    with torch.no_grad():
        out = model(**batch)
    torch.save({"inputs": batch, "logits": out.logits, "selected": out.selected_segments}, tmp_path / "inputs.pt")
    loaded = run_without_repo(FRESH_PROCESS, folder, tmp_path / "inputs.pt", tmp_path=tmp_path)
    diff = float(loaded.split("max_abs_diff")[1].split()[0])
    assert diff < 1e-5 and "same_selection True" in loaded


def test_cli_builds_the_tiny_variant(tmp_path):
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, "-m", "salova.cli", "build", "--variant", "tiny", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote SALOVA-tiny" in result.stdout
    written = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "query_tokenizer"} <= written
