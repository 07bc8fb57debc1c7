import re

import pytest
from salova.modeling import SalovaConfig, SalovaForConditionalGeneration
from transformers import CLIPConfig


def test_defaults_match_the_7b_recipe():
    config = SalovaConfig()
    assert config.tower_config.model_type == "siglip"
    assert config.patch_grid_size == 27 and config.tokens_per_frame == 196
    assert config.hidden_width == 1152  # the authors' code: connector width = vision width
    assert config.query_encoder_config.max_position_embeddings == 2048
    assert (config.num_focus_segments, config.router_max_segments, config.router_max_query_tokens) == (5, 256, 2048)
    assert config.max_frames_per_segment == 2160 and config.connector_num_latents == 256


def test_clip_336_pools_24x24_patches_to_144_tokens():
    clip = CLIPConfig(vision_config={"image_size": 336, "patch_size": 14})
    config = SalovaConfig(tower_config=clip.to_dict())
    assert config.patch_grid_size == 24 and config.tokens_per_frame == 144


def test_paper_connector_width_is_one_setting_away(tiny):
    model, _ = tiny
    config = SalovaConfig.from_dict({**model.config.to_dict(), "connector_hidden_size": 48})
    paper_model = SalovaForConditionalGeneration(config)
    assert config.hidden_width == 48
    assert paper_model.model.connector.input_projection.weight.shape == (48, config.vision_hidden_size)
    assert paper_model.model.router.segment_positions.weight.shape[1] == 48


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("num_focus_segments", 0, "[1, 256]"),
        ("num_focus_segments", 257, "[1, 256]"),
        ("max_token_drop", 1.0, "[0.0, 1.0)"),
        ("max_token_drop", -0.1, "[0.0, 1.0)"),
        ("router_dropout", 1.0, "[0.0, 1.0)"),
        ("vision_chunk_size", 0, ">= 1"),
        ("connector_num_latents", 0, ">= 1"),
        ("connector_position_init_std", -0.5, ">= 0.0"),
        ("connector_attention_init_gain", 0.0, "> 0.0"),
        ("similarity_loss_weight", -1.0, ">= 0.0"),
        ("vision_feature_layer", 40, "[-28, 27]"),
    ],
)
def test_invalid_settings_name_the_field_and_range(field, value, allowed):
    with pytest.raises(ValueError, match=re.escape(f"SalovaConfig.{field} must be") + ".*" + re.escape(allowed)):
        SalovaConfig(**{field: value})


def test_unsupported_tower_is_rejected():
    with pytest.raises(ValueError, match="tower_config must be a SigLIP or CLIP"):
        SalovaConfig(tower_config={"model_type": "vit"})


def test_placeholder_arithmetic():
    config = SalovaConfig()
    assert config.num_video_tokens(1) == 256 + 1
    assert config.num_video_tokens(3) == 256 * 3 + 3
    assert config.num_video_tokens(12) == 256 * 5 + 12
    assert config.num_video_tokens(12, num_focus_segments=9) == 256 * 9 + 12


def test_tied_llm_embeddings_propagate():
    config = SalovaConfig(text_config={"model_type": "llama", "tie_word_embeddings": True})
    assert config.tie_word_embeddings


def test_dict_round_trip_keeps_sub_configs():
    config = SalovaConfig(num_focus_segments=9, max_token_drop=0.4, connector_hidden_size=1024)
    again = SalovaConfig.from_dict(config.to_dict())
    assert again.num_focus_segments == 9 and again.max_token_drop == 0.4 and again.hidden_width == 1024
    assert again.tower_config.vision_config.vision_use_head is False
    assert type(again.text_config).__name__ == "Qwen2Config"
