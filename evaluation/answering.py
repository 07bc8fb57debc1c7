"""Questions about one video, answered by a SALOVA checkpoint with the video decoded once.

`VideoAnswerer.encode` decodes a video, cuts it into segments and normalises its frames once (`EncodedVideo`);
`VideoAnswerer.answer` then renders each question through the checkpoint's chat template and reuses those
tensors, so a benchmark's questions grouped by video cost one decode per video. The model still runs its vision
tower per question: a per-video index of segment latents would replace `EncodedVideo` here and nowhere else.
"""

from dataclasses import dataclass

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, BatchFeature

VIDEO_KEYS = ("pixel_values_videos", "frames_per_segment", "segments_per_video", "segment_times")


@dataclass
class EncodedVideo:
    """The processor's video tensors of one video (`VIDEO_KEYS`, shapes in `SalovaProcessor.__call__`)."""

    tensors: dict

    @property
    def num_segments(self) -> int:
        return int(self.tensors["segments_per_video"][0])


@dataclass
class Answer:
    text: str
    router_scores: list[float]  # one per segment, temporal order
    selected_segments: list[int]  # the focus segments, ascending


class VideoAnswerer:
    """Greedy answers of `model` to questions about videos; `max_new_tokens` bounds each answer."""

    def __init__(self, model, processor, max_new_tokens: int = 16):
        self.model = model.eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, checkpoint: str, max_new_tokens: int = 16, dtype: torch.dtype = torch.float32):
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=dtype)
        return cls(model, AutoProcessor.from_pretrained(checkpoint), max_new_tokens)

    def encode(self, video, video_fps: float | None = None, segment_boundaries: list[float] | None = None):
        """Decodes and segments `video` (a path, frames with `video_fps`, or an image) once."""
        inputs = self.processor(
            videos=[video],
            text=[self.processor.video_token],
            queries=["video"],
            video_fps=video_fps,
            segment_boundaries=[segment_boundaries],
            dtype=self.model.dtype,
        )
        return EncodedVideo({key: inputs[key] for key in VIDEO_KEYS})

    def inputs(self, video: EncodedVideo, question: str, query: str | None = None, response: str = "") -> BatchFeature:
        """Model inputs of one question: the chat template's user turn (video, then `question`) and the assistant
        prompt, followed by `response` when given (for scoring it). `query` (the router's) defaults to `question`."""
        messages = [
            {"role": "user", "content": [{"type": "video", "video": "encoded"}, {"type": "text", "text": question}]}
        ]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True) + response
        processor = self.processor
        expanded = prompt.replace(
            processor.video_token, processor.video_token * processor.num_video_tokens(video.num_segments)
        )
        text = processor.tokenizer([expanded], add_special_tokens=False, return_tensors="pt")
        found = int((text["input_ids"] == processor.video_token_id).sum())
        if found != processor.num_video_tokens(video.num_segments):
            raise ValueError(f"The question or response holds {processor.video_token!r}; remove it: {question!r}")
        router_query = processor.query_tokenizer(
            [query or question], truncation=True, max_length=processor.query_max_length, return_tensors="pt"
        )
        return BatchFeature(
            {
                **video.tensors,
                "input_ids": text["input_ids"],
                "attention_mask": text["attention_mask"],
                "query_input_ids": router_query["input_ids"],
                "query_attention_mask": router_query["attention_mask"],
            }
        )

    @torch.no_grad()
    def answer(
        self, video: EncodedVideo, question: str, query: str | None = None, seed: int | None = None, **generate_kwargs
    ) -> Answer:
        """The greedy answer (unless `generate_kwargs` say otherwise) and the router's view of the segments.

        `seed` reseeds torch's RNG before routing and again before generating, so that a random router
        (`salova.training.evaluation.RandomRouter`) makes the same draw for the scores reported and the answer.
        """
        inputs = self.inputs(video, question, query)
        if seed is not None:
            torch.manual_seed(seed)
        # The full forward, not the video half alone: its router outputs are the same whichever way the model
        # splits encoding from routing.
        outputs = self.model(**inputs)
        options = {"max_new_tokens": self.max_new_tokens, "do_sample": False, **generate_kwargs}
        if seed is not None:
            torch.manual_seed(seed)
        generated = self.model.generate(**inputs, **options)
        text = self.processor.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        selected = [index for index in outputs.selected_segments[0].tolist() if index >= 0]
        return Answer(text.strip(), outputs.router_scores[0].float().tolist(), selected)

    @torch.no_grad()
    def loglikelihood(self, video: EncodedVideo, question: str, continuation: str) -> "ContinuationScore":
        """How likely `continuation` is as the answer to `question` (teacher-forced, one forward pass)."""
        context = self.inputs(video, question)
        inputs = self.inputs(video, question, query=question, response=continuation)
        start = context["input_ids"].shape[1]
        if inputs["input_ids"].shape[1] <= start:
            raise ValueError(f"The continuation {continuation!r} adds no token to the prompt.")
        logits = self.model(**inputs).logits[0, start - 1 : -1].float()
        targets = inputs["input_ids"][0, start:]
        log_probs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        return ContinuationScore(float(log_probs.sum()), len(targets), bool((logits.argmax(-1) == targets).all()))


@dataclass
class ContinuationScore:
    log_prob: float  # summed over the continuation's tokens
    num_tokens: int
    is_greedy: bool  # greedy decoding would produce the continuation
