"""transformers' own `ModelTesterMixin` and `ConfigTester` run against SALOVA (fetched from the installed
transformers' sdist at test time, see transformers_common.py).

The tester follows llava_next_video's: 3 videos of 3 segments, K = 2, tiny towers and LLM. SALOVA is put in
transformers' auto-mapping name tables for the duration of the module, because several common tests silently do
nothing for a model that is not in them.
"""

import unittest

import pytest
import torch
from salova.modeling import SalovaConfig, SalovaForConditionalGeneration, SalovaModel
from transformers.models.auto import modeling_auto
from transformers_common import import_common

common = import_common("test_modeling_common")
configuration_common = import_common("test_configuration_common")
GenerationTesterMixin = import_common("generation.test_utils").GenerationTesterMixin

AUTO_NAME_TABLES = {
    "MODEL_MAPPING_NAMES": "SalovaModel",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES": "SalovaForConditionalGeneration",
}


@pytest.fixture(scope="module", autouse=True)
def salova_in_the_auto_name_tables():
    for table, name in AUTO_NAME_TABLES.items():
        getattr(modeling_auto, table)["salova"] = name
    yield
    for table in AUTO_NAME_TABLES:
        getattr(modeling_auto, table).pop("salova", None)


def test_salova_is_in_the_auto_name_tables():
    """The common tests read these tables through `get_values`; without SALOVA in them they skip it silently."""
    for table, name in AUTO_NAME_TABLES.items():
        assert name in common.get_values(getattr(modeling_auto, table))


class SalovaModelTester:
    def __init__(self, parent, batch_size=3, segments=(1, 2, 1), num_focus_segments=2, text_length=5):
        self.parent = parent
        self.batch_size = batch_size
        self.segments = list(segments)
        self.num_focus_segments = num_focus_segments
        self.num_latents = 2
        self.image_size = 16
        self.vocab_size = 99
        self.video_token_id = 3  # low, so that resizing the vocabulary down keeps it
        self.pad_token_id = 0
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.is_training = True
        self.placeholders = self.num_latents * min(num_focus_segments, len(segments)) + len(segments)
        self.seq_length = 2 + self.placeholders + text_length
        self.text_config = {
            "model_type": "qwen2",
            "hidden_size": self.hidden_size,
            "intermediate_size": 37,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": 2,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": 512,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": self.pad_token_id,
            "tie_word_embeddings": False,
        }
        tower_layers = 2
        self.tower_config = {
            "model_type": "siglip",
            "vision_config": {
                "hidden_size": 16,
                "intermediate_size": 24,
                "num_hidden_layers": tower_layers,
                "num_attention_heads": 2,
                "image_size": self.image_size,
                "patch_size": 8,
                "vision_use_head": False,
            },
            "text_config": {
                "hidden_size": 16,
                "intermediate_size": 24,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "vocab_size": 50,
                "max_position_embeddings": 64,
                "projection_size": 16,
                "bos_token_id": None,
                "eos_token_id": 0,
                "pad_token_id": 0,
            },
        }
        # get_video_features reports the tower it runs: the layers up to `vision_feature_layer` (-2) are kept.
        self.video_config = {"num_hidden_layers": tower_layers - 1}

    def get_config(self):
        return SalovaConfig(
            tower_config=self.tower_config,
            text_config=self.text_config,
            video_token_id=self.video_token_id,
            vision_pooling_stride=1,
            vision_chunk_size=4,
            connector_num_latents=self.num_latents,
            connector_num_heads=2,
            connector_head_dim=8,
            max_frames_per_segment=8,
            router_max_segments=8,
            router_max_query_tokens=64,
            num_focus_segments=self.num_focus_segments,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        frames_per_segment = torch.tensor(self.segments * self.batch_size)
        input_ids = common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 4) + 4
        input_ids[:, 2 : 2 + self.placeholders] = self.video_token_id
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values_videos": common.floats_tensor(
                [int(frames_per_segment.sum()), 3, self.image_size, self.image_size]
            ),
            "frames_per_segment": frames_per_segment,
            "segments_per_video": torch.tensor([len(self.segments)] * self.batch_size),
            "query_input_ids": common.ids_tensor([self.batch_size, 6], 40) + 1,
            "query_attention_mask": torch.ones(self.batch_size, 6, dtype=torch.long),
            # Retrieval targets: training then optimises L_sim too, which is what trains the router and the query
            # encoder (every parameter gets a gradient, as the gradient-checkpointing tests require).
            "segment_labels": (torch.arange(len(frames_per_segment)) % 2).float(),
        }
        return config, inputs


class SalovaModelTest(common.ModelTesterMixin, GenerationTesterMixin, unittest.TestCase):
    all_model_classes = (SalovaModel, SalovaForConditionalGeneration)
    pipeline_model_mapping = {}
    _is_composite = True
    # get_video_features returns one row per segment (S), while pixel_values_videos has one row per frame (F):
    # the common shape check compares the two.
    skip_test_video_features_output_shape = True

    def test_reverse_loading_mapping(self):
        # SALOVA's one conversion (a 0-dim router logit scale loaded as `(1,)`) changes a shape, never a key.
        super().test_reverse_loading_mapping(check_keys_were_modified=False)

    def setUp(self):
        self.model_tester = SalovaModelTester(self)
        self.config_tester = configuration_common.ConfigTester(
            self, config_class=SalovaConfig, has_text_modality=False, common_properties=[]
        )

    def _video_features_prepare_config_and_inputs(self):
        """The common helper keeps keys naming "video"; SALOVA's frames also need `frames_per_segment`."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        return config, {name: inputs[name] for name in ("pixel_values_videos", "frames_per_segment")}

    def prepare_config_and_inputs_for_generate(self, batch_size=2):
        """The mixin's own cuts every tensor to `[:batch_size]`; SALOVA's frame and segment rows belong to whole
        videos, so the first `batch_size` videos are kept with their segments and frames. Segment labels (a
        training target, like `labels`) are left out."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        segments_per_video = inputs["segments_per_video"][:batch_size]
        frames_per_segment = inputs["frames_per_segment"][: int(segments_per_video.sum())]
        per_row = ("input_ids", "attention_mask", "query_input_ids", "query_attention_mask")
        generate_inputs = {name: inputs[name][:batch_size] for name in per_row}
        generate_inputs.update(
            pixel_values_videos=inputs["pixel_values_videos"][: int(frames_per_segment.sum())],
            frames_per_segment=frames_per_segment,
            segments_per_video=segments_per_video,
        )
        text_config = config.get_text_config(decoder=True)
        if text_config.eos_token_id is not None and text_config.pad_token_id is None:
            eos = text_config.eos_token_id
            text_config.pad_token_id = eos if isinstance(eos, int) else eos[0]
        text_config.eos_token_id = None
        text_config.forced_eos_token_id = None
        return config, generate_inputs

    def test_generate_from_random_inputs_embeds(self):
        self.skipTest(
            "the prompt holds video placeholders without its video, which SALOVA's generate() refuses by design "
            "(test_generate_without_the_video_is_refused); the mixin's other inputs_embeds tests run with the video"
        )

    def test_generate_compile_model_forward_fullgraph(self):
        self.skipTest(
            "the test halves every input tensor by rows (`value[:half, :]`), which cuts SALOVA's per-frame and "
            "per-segment tensors apart from their videos; the fullgraph compile of a decoding step is "
            "test_decoding_without_a_video_compiles_to_one_graph (slow tier), and the static-cache tests run here"
        )

    def test_get_video_features_pooler_output(self):
        self.skipTest(
            "pooler_output holds one routing token per segment (S rows, not one per video): SALOVA overrides "
            "`_expand_inputs_for_generation` to repeat each video's segments and frames as a block, checked by "
            "test_modeling.py::test_beam_search_repeats_whole_videos and ..._stored_video_features_by_whole_video."
        )

    def test_multimodal_outputs_are_returned(self):
        """The common test asserts `image_outputs`; SALOVA takes an image as a one-frame video, so its encoder
        output is `video_outputs`: the same check (attentions and hidden states asked for), on the video."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.return_dict = True
        num_segments = len(inputs["frames_per_segment"])
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            model.set_attn_implementation("eager")
            with torch.no_grad():
                outputs = model(**inputs, output_hidden_states=True, output_attentions=True)
                features = model.get_video_features(inputs["pixel_values_videos"], inputs["frames_per_segment"])
            self.assertIsNone(outputs.image_outputs)
            self.assertTrue(hasattr(outputs.video_outputs, "attentions"))
            self.assertTrue(hasattr(outputs.video_outputs, "hidden_states"))
            self.assertEqual(len(outputs.video_outputs.pooler_output), num_segments)
            torch.testing.assert_close(outputs.video_outputs.pooler_output, features.pooler_output)
            torch.testing.assert_close(outputs.video_outputs.last_hidden_state, features.last_hidden_state)

    def test_config(self):
        self.config_tester.run_common_tests()
