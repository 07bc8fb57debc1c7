"""transformers' own `ProcessorTesterMixin` (from the installed transformers' sdist) run against SalovaProcessor.

Components are built here (the tiny tokenizers, a 56-pixel video processor); the processor is saved and reloaded
as the mixin does. Each skipped test names why it does not apply to SALOVA.
"""

import unittest

from conftest import REPO  # noqa: F401  (puts tests/ first on sys.path for transformers_common)
from salova.hub_configs import build_tiny_tokenizer, load_chat_template
from salova.processing import SalovaProcessor, SalovaVideoProcessor
from transformers_common import import_common

processing_common = import_common("test_processing_common")

# `AutoVideoProcessor` is declared `@requires(backends=("vision", "torchvision"))` in transformers 5.x, and
# torchvision cannot be installed next to this package's torch: loading a video processor through it fails
# before reading any file, whatever the class.
NO_AUTO_VIDEO_PROCESSOR = "AutoVideoProcessor requires torchvision, which this CPU stack cannot install"
# SALOVA samples frames by time (1 FPS) and groups them into scene segments: a fixed frame count (`num_frames`)
# contradicts the segment policy, and its output concatenates frames of all videos along one axis with
# `frames_per_segment`/`segments_per_video`, not one entry per video.
TIME_SAMPLING = (
    "SALOVA samples by time (fps) into scene segments; `num_frames` and one pixel entry per video do not apply"
)


class SalovaProcessorTest(processing_common.ProcessorTesterMixin, unittest.TestCase):
    processor_class = SalovaProcessor

    @classmethod
    def _setup_video_processor(cls):
        return SalovaVideoProcessor(size={"height": 56, "width": 56})

    @classmethod
    def _setup_tokenizer(cls):
        return build_tiny_tokenizer()

    @classmethod
    def _setup_query_tokenizer(cls):
        return build_tiny_tokenizer(with_video_token=False)

    @staticmethod
    def prepare_processor_dict():
        return {"chat_template": load_chat_template("qwen2.5"), "connector_num_latents": 8, "num_focus_segments": 2}

    def get_component(self, attribute, use_tiny_ckpt=True, **kwargs):
        if attribute == "video_processor":  # what AutoVideoProcessor would load, without its torchvision gate
            return SalovaVideoProcessor.from_pretrained(self.tmpdirname, **kwargs)
        return super().get_component(attribute, use_tiny_ckpt=use_tiny_ckpt, **kwargs)

    @unittest.skip(NO_AUTO_VIDEO_PROCESSOR)
    def test_processor_from_and_save_pretrained_as_nested_dict(self):
        pass

    @unittest.skip(TIME_SAMPLING)
    def test_apply_chat_template_decoded_video_0(self):
        pass

    @unittest.skip(TIME_SAMPLING)
    def test_apply_chat_template_video_0(self):
        pass

    @unittest.skip(TIME_SAMPLING)
    def test_apply_chat_template_video_1(self):
        pass

    @unittest.skip(TIME_SAMPLING)
    def test_apply_chat_template_video_frame_sampling(self):
        pass


def test_video_chat_template_runs_through_the_video_path(tmp_path):
    """What the skipped chat-template video tests check, in SALOVA's layout: a conversation's video goes through
    the video processor, one `<video>` per conversation, frames of all videos along one axis."""
    from conftest import real_video

    processor = SalovaProcessor(
        SalovaVideoProcessor(size={"height": 56, "width": 56}),
        build_tiny_tokenizer(),
        build_tiny_tokenizer(with_video_token=False),
        **SalovaProcessorTest.prepare_processor_dict(),
    )
    clips = [str(real_video("bikes.mp4")), str(real_video("carphone_pristine.mp4"))]
    conversations = [
        [{"role": "user", "content": [{"type": "video", "url": clip}, {"type": "text", "text": "What happens?"}]}]
        for clip in clips
    ]
    out = processor.apply_chat_template(
        conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    alone = [processor.video_processor(clip) for clip in clips]
    assert out["segments_per_video"].tolist() == [int(a["segments_per_video"]) for a in alone]
    assert out["pixel_values_videos"].shape[0] == sum(int(a["frames_per_segment"].sum()) for a in alone)
    assert out["input_ids"].shape[0] == 2 and out["attention_mask"].shape == out["input_ids"].shape
