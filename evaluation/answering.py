"""Questions about one video, answered by a SALOVA checkpoint with the video encoded once.

`VideoAnswerer.encode` decodes and segments a video and runs the question-independent half of the model (vision
tower and connector, `get_video_features`) once; `VideoAnswerer.answer` renders each question through the
checkpoint's chat template and feeds the stored latents and routing tokens in place of the frames, so a
benchmark's questions grouped by video cost one decode and one encode per video. `EncodedVideo` holds what a
stored `salova.assistant.index.SalovaVideoIndex` gives (`EncodedVideo(index.model_inputs())`).
"""

from dataclasses import dataclass

import torch
from salova.assistant.index import encode_video
from transformers import AutoModelForImageTextToText, AutoProcessor, BatchFeature


@dataclass
class EncodedVideo:
    """`video_latents` `(S, num_latents, width)`, `video_routing_tokens` `(S, width)` and `segments_per_video`
    `(1,)`: the model inputs that replace one video's frames."""

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
        model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=dtype, trust_remote_code=True)
        return cls(model, AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True), max_new_tokens)

    @torch.no_grad()
    def encode(self, video, video_fps: float | None = None, segment_boundaries: list[float] | None = None):
        """Decodes, segments and encodes `video` (a path, frames with `video_fps`, or an image) once."""
        frames, features = encode_video(
            self.model, self.processor, video, video_fps=video_fps, segment_boundaries=[segment_boundaries]
        )
        return EncodedVideo(
            {
                "video_latents": features.last_hidden_state,
                "video_routing_tokens": features.pooler_output,
                "segments_per_video": frames["segments_per_video"].to(self.model.device),
            }
        )

    def inputs(self, video: EncodedVideo, question: str, query: str | None = None, response: str = "") -> BatchFeature:
        """Model inputs of one question: the chat template's user turn (video, then `question`) and the assistant
        prompt, followed by `response` when given (for scoring it). `query` (the router's) defaults to `question`."""
        messages = [{"role": "user", "content": f"{self.processor.video_token}\n{question}"}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(
            text=[prompt + response],
            queries=[query or question],
            segments_per_video=[video.num_segments],
            add_special_tokens=False,
            return_tensors="pt",
        ).to(self.model.device)
        inputs.update(video.tensors)
        return inputs

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
