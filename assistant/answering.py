"""The answering core: questions about a video answered from its encoding, streamed, with the router's view.

Every caller answers through `VideoAssistant`: the `salova ask/chat/app` commands, the benchmark runners, V-NIAH,
the lmms-eval model, the main job's evaluation and the OpenAI-compatible server.

1. `open(video)` (a file, through the index cache) or `encode(video)` (frames in memory, or fixed segment
   boundaries) runs the question-independent half of the model once per video (`EncodedVideo`,
   `SalovaVideoIndex`); no question decodes the video again.
2. `inputs(video, messages)` renders the conversation through the processor's chat template, its video item
   standing for the encoded video, and takes the router query the processor extracts from it (the text of the
   last user turn).
3. `ask(video, messages, ...)` runs one forward pass over the prompt (all but its last token) with the video's
   latents: the router scores and focus segments come from it, and generation continues from the KV cache it
   filled, greedy unless a temperature is given, streamed piece by piece to `on_text`, stopped by a stop string,
   `max_new_tokens` or a cancel event.
"""

import copy
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from salova.assistant.index import EncodedVideo, IndexCache, encode_video
from salova.processing import format_timestamp
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    BatchFeature,
    DynamicCache,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)

# Why generation ended: an end of turn or a stop string, `max_new_tokens`, or the caller's cancel event.
FINISH_REASONS = ("stop", "length", "cancelled")
VIDEO_ITEM_TYPES = ("video", "image")


@dataclass
class Scene:
    index: int
    start: float
    end: float
    score: float
    focus: bool

    @property
    def span(self) -> str:
        return f"{format_timestamp(self.start)}-{format_timestamp(self.end)}"


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int  # the whole prompt, video placeholders included
    completion_tokens: int  # generated tokens, an end-of-turn token included

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Answer:
    """text: the generated answer, cut before the first stop string and stripped. scenes: every segment with its
    router score, focus ones flagged. index: `"built"` or `"reused"`. seconds: `index`, `first_token` and `total`,
    each from the question's start. finish_reason: one of `FINISH_REASONS`. usage: prompt and completion tokens.
    token_ids: the generated tokens."""

    text: str
    scenes: list[Scene]
    index: str = "reused"
    seconds: dict[str, float] = field(default_factory=dict)
    finish_reason: str = "stop"
    usage: Usage = Usage(0, 0)
    token_ids: list[int] = field(default_factory=list)

    @property
    def focus_scenes(self) -> list[Scene]:
        return [scene for scene in self.scenes if scene.focus]

    @property
    def router_scores(self) -> list[float]:
        return [scene.score for scene in self.scenes]

    @property
    def selected_segments(self) -> list[int]:
        return [scene.index for scene in self.focus_scenes]

    def as_json(self) -> dict:
        return {
            "answer": self.text,
            "scenes": [
                {"index": s.index, "start": s.start, "end": s.end, "score": s.score, "focus": s.focus}
                for s in self.scenes
            ],
            "index": self.index,
            "seconds": self.seconds,
        }


@dataclass
class ContinuationScore:
    log_prob: float  # summed over the continuation's tokens
    num_tokens: int
    is_greedy: bool  # greedy decoding would produce the continuation


class VideoAssistant:
    """A model, its processor and an index cache. One question at a time: `ask` holds a lock, as the model, its
    KV cache and torch's random generator are shared."""

    def __init__(self, model, processor, cache: IndexCache | None = None):
        self.model = model.eval()
        self.processor = processor
        self.cache = cache or IndexCache()
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, index_dir: str | Path | None = None, dtype: torch.dtype | None = None
    ) -> "VideoAssistant":
        """`dtype`: the weights' dtype (default: as saved)."""
        if not Path(model_dir).is_dir() or not (Path(model_dir) / "config.json").is_file():
            raise FileNotFoundError(f"--model {model_dir}: not a checkpoint folder (no config.json in it).")
        options = {} if dtype is None else {"dtype": dtype}
        model = AutoModelForImageTextToText.from_pretrained(model_dir, trust_remote_code=True, **options)
        processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
        return cls(model, processor, IndexCache(index_dir))

    def open(self, video: str | Path, reindex: bool = False, index_file: str | Path | None = None, progress=True):
        """`(index, "built" | "reused", seconds)` of the file `video` for this model."""
        return self.cache.get_or_build(self.model, self.processor, video, reindex, index_file, progress)

    def encode(
        self, video, video_fps: float | None = None, segment_boundaries: list[float] | None = None, progress=False
    ) -> EncodedVideo:
        """`video` (a path, decoded frames with `video_fps`, or an image) encoded once, outside the index cache:
        for frames in memory and for given segment boundaries (starts in seconds after the first segment's)."""
        return encode_video(
            self.model, self.processor, video, progress, video_fps=video_fps, segment_boundaries=[segment_boundaries]
        )

    @staticmethod
    def conversation(video: str | Path | None, questions: list[str], answers: list[str]) -> list[dict]:
        """Chat messages: the video with the first question, then alternating answers and questions. `video` may be
        None: the video item then stands for an encoded video alone."""
        if len(questions) != len(answers) + 1:
            raise ValueError(
                f"{len(questions)} questions for {len(answers)} answers: the last turn must be a question."
            )
        video_item = {"type": "video"} if video is None else {"type": "video", "path": str(video)}
        messages = [{"role": "user", "content": [video_item, {"type": "text", "text": questions[0]}]}]
        for answer, question in zip(answers, questions[1:], strict=True):
            messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
        return messages

    def inputs(
        self,
        video: EncodedVideo,
        messages: list[dict],
        num_focus_segments: int | None = None,
        query: str | None = None,
        continue_final_message: bool = False,
    ) -> BatchFeature:
        """Model inputs of `messages` about `video`: the processor's chat template with the assistant prompt (or,
        with `continue_final_message`, the last assistant turn left open), the router query the processor takes
        from the last user turn (or `query`), `num_focus_segments` focus segments (K), and the video's latents in place of frames.
        """
        num_focus_segments = self._num_focus_segments(num_focus_segments)
        processor = self.processor
        if num_focus_segments != processor.num_focus_segments:
            processor = copy.copy(processor)  # K sets the prompt's placeholder count
            processor.num_focus_segments = num_focus_segments
        inputs = processor.apply_chat_template(
            _without_video_sources(messages),
            add_generation_prompt=not continue_final_message,
            continue_final_message=continue_final_message,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"segments_per_video": [video.num_segments]},
        )
        if query is not None:
            # The router reads another text than the turn (a benchmark's bare question, without its options).
            encoded_query = processor(text=query, return_tensors="pt")
            inputs.update({name: encoded_query[name] for name in ("query_input_ids", "query_attention_mask")})
        inputs = inputs.to(self.model.device)
        inputs.update(video.model_inputs(self.model.device, self.model.dtype), num_focus_segments=num_focus_segments)
        return inputs

    @torch.no_grad()
    def ask(
        self,
        index: EncodedVideo,
        messages: list[dict],
        num_focus_segments: int | None = None,
        max_new_tokens: int = 64,
        on_text: Callable[[str], None] | None = None,
        index_status: str = "reused",
        index_seconds: float = 0.0,
        *,
        query: str | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = (),
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answers the last user turn of `messages` about `index` (a `SalovaVideoIndex` or an `EncodedVideo`).

        num_focus_segments: K, the focus segments (default: the model's). query: the router's query in place of the last user turn.
        max_new_tokens: the answer's limit in tokens. temperature: 0 is greedy (the default); above 0 samples, with
        nucleus `top_p`. seed: seeds torch's generator once, before routing (a `RandomRouter` draws there) and
        sampling. stop: strings that end the answer (left out of it; None: none). cancel: an event that, once set, stops
        generation at the next token (finish reason `"cancelled"`). on_text: called with each piece of the answer
        as it is decoded (in this thread); text that may begin a stop string is held back until it does not.
        index_status, index_seconds: how the index was had, reported in `Answer.index` and `Answer.seconds`.
        """
        started = time.perf_counter() - index_seconds
        stop = (stop,) if isinstance(stop, str) else tuple(stop or ())
        options = _generation_options(max_new_tokens, temperature, top_p, stop)
        inputs = self.inputs(index, messages, num_focus_segments, query)
        prompt_ids, attention_mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
        tokenizer = self.processor.tokenizer
        stream = _Stream(tokenizer, stop, on_text, started)
        criteria = StoppingCriteriaList([_Cancelled(cancel)] if cancel is not None else [])
        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
            cache = DynamicCache(config=self.model.config.get_text_config())
            # The prefill: routing, the focus latents spliced in, and the prompt's KV cache, all but the last
            # token, which `generate` feeds to start the answer.
            prefill = self.model(
                input_ids=prompt_ids[:, :-1],
                attention_mask=attention_mask[:, :-1],
                **inputs,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            generated = self.model.generate(
                input_ids=prompt_ids,
                attention_mask=attention_mask,
                cache=cache,
                streamer=stream,
                stopping_criteria=criteria,
                **({"stop_strings": list(stop), "tokenizer": tokenizer} if stop else {}),
                **options,
            )
        total = time.perf_counter() - started
        token_ids = generated[0, prompt_ids.shape[1] :].tolist()
        text = tokenizer.decode(token_ids, skip_special_tokens=True)
        clipped = _before_stop(text, stop, final=True)
        scores, selected = prefill.router_scores[0], prefill.selected_segments[0]
        focus = set(selected[selected >= 0].tolist())
        times = index.segment_times.tolist()
        scenes = [Scene(i, times[i][0], times[i][1], float(scores[i]), i in focus) for i in range(index.num_segments)]
        seconds = {"index": index_seconds, "first_token": stream.first_token or total, "total": total}
        return Answer(
            text=clipped.strip(),
            scenes=scenes,
            index=index_status,
            seconds={name: round(value, 3) for name, value in seconds.items()},
            finish_reason=self._finish_reason(token_ids, max_new_tokens, clipped != text, cancel),
            usage=Usage(prompt_ids.shape[1], len(token_ids)),
            token_ids=token_ids,
        )

    @torch.no_grad()
    def score(
        self, video: EncodedVideo, messages: list[dict], continuation: str, query: str | None = None
    ) -> ContinuationScore:
        """How likely `continuation` is as the answer to the last user turn of `messages` (teacher-forced, one
        forward pass)."""
        context = self.inputs(video, messages, query=query)["input_ids"]
        answered = [*messages, {"role": "assistant", "content": continuation}]
        inputs = self.inputs(video, answered, query=query, continue_final_message=True)
        start = context.shape[1]
        if inputs["input_ids"].shape[1] <= start:
            raise ValueError(f"The continuation {continuation!r} adds no token to the prompt.")
        logits = self.model(**inputs).logits[0, start - 1 : -1].float()
        targets = inputs["input_ids"][0, start:]
        log_probs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        return ContinuationScore(float(log_probs.sum()), len(targets), bool((logits.argmax(-1) == targets).all()))

    def _num_focus_segments(self, num_focus_segments: int | None) -> int:
        if num_focus_segments is None:
            return self.model.config.num_focus_segments
        if num_focus_segments < 1:
            raise ValueError(f"num_focus_segments must be at least 1, got {num_focus_segments}.")
        return num_focus_segments

    def _finish_reason(self, token_ids: list[int], max_new_tokens: int, stopped: bool, cancel) -> str:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        end_of_turn = self.model.generation_config.eos_token_id
        end_of_turn = {end_of_turn} if isinstance(end_of_turn, int) else set(end_of_turn or ())
        if stopped or (token_ids and token_ids[-1] in end_of_turn) or len(token_ids) < max_new_tokens:
            return "stop"
        return "length"


def _generation_options(max_new_tokens: int, temperature: float, top_p: float, stop: tuple[str, ...]) -> dict:
    """`generate` keywords: greedy at temperature 0, else sampling with `temperature` and `top_p`."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
    if temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or more, got {temperature}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
    if not all(isinstance(text, str) and text for text in stop):
        raise ValueError(f"stop strings must be non-empty strings, got {list(stop)}.")
    if temperature == 0:
        return {"max_new_tokens": max_new_tokens, "do_sample": False}
    return {"max_new_tokens": max_new_tokens, "do_sample": True, "temperature": temperature, "top_p": top_p}


def _without_video_sources(messages: list[dict]) -> list[dict]:
    """`messages` with each video (or image) item reduced to its type: the placeholder of the encoded video, which
    the chat template renders as before and the processor does not decode."""
    stripped = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {"type": item["type"]} if isinstance(item, dict) and item.get("type") in VIDEO_ITEM_TYPES else item
                for item in content
            ]
        stripped.append({**message, "content": content})
    return stripped


def _before_stop(text: str, stop: tuple[str, ...], final: bool) -> str:
    """`text` up to the first stop string; while more may follow (`final` False), without its longest ending that
    could begin one."""
    cuts = [text.find(word) for word in stop if word in text]
    if cuts:
        return text[: min(cuts)]
    if final:
        return text
    held = max((n for word in stop for n in range(1, len(word)) if text.endswith(word[:n])), default=0)
    return text[: len(text) - held]


class _Stream(TextStreamer):
    """Passes the answer to `on_text` as it is decoded (word by word, as `TextStreamer` flushes), up to the first
    stop string, and notes when the first token came."""

    def __init__(self, tokenizer, stop: tuple[str, ...], on_text: Callable[[str], None] | None, started: float):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stop, self.on_text, self.started = stop, on_text, started
        self.text, self.sent, self.first_token = "", 0, None

    def put(self, value):
        if self.first_token is None and not self.next_tokens_are_prompt:
            self.first_token = time.perf_counter() - self.started
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False):
        self.text += text
        ready = _before_stop(self.text, self.stop, final=stream_end)
        if len(ready) > self.sent and self.on_text is not None:
            self.on_text(ready[self.sent :])
        self.sent = max(self.sent, len(ready))


class _Cancelled(StoppingCriteria):
    """Stops every row once `event` is set (a streaming client gone, a user's stop button)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def ask_with_index(model_dir: str | Path, video: str | Path, questions: list[str], index_dir=None) -> list[str]:
    """Printable lines: each question answered through the video's index, its focus scenes and both times.

    The first question builds (or reuses) the index; the later ones reuse it.
    """
    assistant = VideoAssistant.from_pretrained(model_dir, index_dir)
    lines = []
    for number, question in enumerate(questions):
        index, status, index_seconds = assistant.open(video, progress=False)
        answer = assistant.ask(
            index, assistant.conversation(video, [question], []), index_status=status, index_seconds=index_seconds
        )
        lines.append(f"Q{number + 1}: {question}")
        lines.append(f"A{number + 1}: {answer.text}")
        lines += [f"    focus {scene.span}  score {scene.score:+.3f}" for scene in answer.focus_scenes]
        seconds = answer.seconds
        lines.append(
            f"    index {answer.index} in {seconds['index']:.2f} s, first token {seconds['first_token']:.2f} s, "
            f"total {seconds['total']:.2f} s"
        )
    return lines


__all__ = [
    "FINISH_REASONS",
    "Answer",
    "ContinuationScore",
    "Scene",
    "Usage",
    "VideoAssistant",
    "ask_with_index",
]
