"""The OpenAI chat-completions protocol as `salova serve` speaks it: requests checked into a `ChatRequest`, and
the response, stream chunk and error JSON shapes.

A request is checked field by field so that a refusal names the parameter (`param`, as OpenAI's errors do): what
SALOVA cannot honour (`n` > 1, tools, images, audio, log-probabilities, ...) is refused, never ignored.
"""

import time
import uuid
from dataclasses import dataclass, field

# Parameters a client may send that change nothing in SALOVA's answer.
NEUTRAL_PARAMETERS = {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"}
SAMPLING_PARAMETERS = {"temperature", "top_p", "seed", "stop"}
SUPPORTED_PARAMETERS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "n",
    *SAMPLING_PARAMETERS,
    *NEUTRAL_PARAMETERS,
}
# Parameters OpenAI's API has that SALOVA cannot honour, with why; a value that asks for nothing passes.
UNSUPPORTED_PARAMETERS = {
    "tools": "tool calling is not supported",
    "tool_choice": "tool calling is not supported",
    "functions": "function calling is not supported",
    "function_call": "function calling is not supported",
    "parallel_tool_calls": "tool calling is not supported",
    "audio": "audio output is not supported",
    "modalities": "only text output is supported",
    "logprobs": "log-probabilities are not returned",
    "top_logprobs": "log-probabilities are not returned",
    "logit_bias": "logit_bias is not supported",
    "frequency_penalty": "frequency_penalty is not supported",
    "presence_penalty": "presence_penalty is not supported",
    "response_format": "only plain text responses are supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "reasoning_effort": "reasoning effort is not supported",
    "verbosity": "verbosity is not supported",
}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_STRINGS = 4
EXTENSION_FIELD = "salova"


class ApiError(Exception):
    """An error answered as OpenAI's error JSON `{"error": {"message", "type", "param", "code"}}`."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        500: "server_error",
        503: "server_overloaded",
    }

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        error_type = self.TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": error_type, "param": self.param, "code": self.code}}


@dataclass
class VideoReference:
    """A video part of the conversation: `url` as the client sent it, `param` where it sits in the request."""

    url: str
    param: str


@dataclass
class ChatRequest:
    """messages: the conversation as the processor's chat template reads it (the video as a `{"type": "video"}`
    item: its index, not the file, feeds the model). video: the one video the conversation is about.
    generation: `max_new_tokens`, and `temperature`, `top_p`, `seed`, `stop` where the client set them."""

    model: str
    messages: list[dict]
    video: VideoReference
    generation: dict
    stream: bool = False
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def parse_chat_request(body, model_name: str, default_max_tokens: int, max_tokens_limit: int) -> ChatRequest:
    """Checks a decoded JSON body; raises `ApiError` naming the first parameter that is wrong or unsupported."""
    if not isinstance(body, dict):
        raise ApiError(400, f"The request body must be a JSON object, got {type(body).__name__}.")
    for name, value in body.items():
        if name in UNSUPPORTED_PARAMETERS and not _asks_nothing(name, value):
            raise ApiError(
                400, f"Unsupported parameter '{name}': {UNSUPPORTED_PARAMETERS[name]}.", name, "unsupported_parameter"
            )
        if name not in SUPPORTED_PARAMETERS and name not in UNSUPPORTED_PARAMETERS:
            raise ApiError(400, f"Unknown parameter '{name}'.", name, "unknown_parameter")
    if "model" not in body:
        raise ApiError(400, "Missing required parameter 'model'.", "model", "missing_required_parameter")
    if body["model"] != model_name:
        raise ApiError(
            404,
            f"The model '{body['model']}' does not exist; this server serves '{model_name}'.",
            "model",
            "model_not_found",
        )
    n = body.get("n", 1)
    if n is not None and (not _is_int(n) or n != 1):
        raise ApiError(
            400,
            f"Unsupported value for 'n': {n!r}; one choice per request (n=1) is supported.",
            "n",
            "unsupported_value",
        )
    messages, video = _parse_messages(body.get("messages"))
    stream = _optional(body, "stream", bool, "a boolean") or False
    stream_options = _optional(body, "stream_options", dict, "an object") or {}
    if stream_options and not stream:
        raise ApiError(400, "'stream_options' is only allowed with 'stream': true.", "stream_options")
    include_usage = stream_options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise ApiError(400, "'stream_options.include_usage' must be a boolean.", "stream_options.include_usage")
    return ChatRequest(
        model=model_name,
        messages=messages,
        video=video,
        generation=_parse_generation(body, default_max_tokens, max_tokens_limit),
        stream=stream,
        include_usage=include_usage,
    )


def _asks_nothing(name: str, value) -> bool:
    """Whether an unsupported parameter's value is its "off" value (e.g. `tools: []`, `logprobs: false`)."""
    if value is None or value is False or value == [] or value == {}:
        return True
    if name in ("frequency_penalty", "presence_penalty"):
        return value == 0
    if name == "modalities":
        return value == ["text"]
    if name == "response_format":
        return value == {"type": "text"}
    if name == "tool_choice":
        return value == "none"
    return False


def _parse_generation(body: dict, default_max_tokens: int, max_tokens_limit: int) -> dict:
    generation = {"max_new_tokens": default_max_tokens}
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins where both are set
        value = body.get(name)
        if value is None:
            continue
        if not _is_int(value) or not 1 <= value <= max_tokens_limit:
            raise ApiError(
                400, f"'{name}' must be an integer from 1 to {max_tokens_limit}, got {value!r}.", name, "invalid_value"
            )
        generation["max_new_tokens"] = value
    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise ApiError(
                400, f"'temperature' must be a number from 0 to 2, got {temperature!r}.", "temperature", "invalid_value"
            )
        generation["temperature"] = float(temperature)
    top_p = body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise ApiError(
                400, f"'top_p' must be a number above 0 and at most 1, got {top_p!r}.", "top_p", "invalid_value"
            )
        generation["top_p"] = float(top_p)
    seed = body.get("seed")
    if seed is not None:
        if not _is_int(seed) or not 0 <= seed < 2**63:
            raise ApiError(400, f"'seed' must be a non-negative integer, got {seed!r}.", "seed", "invalid_value")
        generation["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if (
            not isinstance(stop, list)
            or not 1 <= len(stop) <= MAX_STOP_STRINGS
            or not all(isinstance(s, str) and s for s in stop)
        ):
            raise ApiError(
                400,
                f"'stop' must be a non-empty string or a list of 1 to {MAX_STOP_STRINGS} of them.",
                "stop",
                "invalid_value",
            )
        generation["stop"] = stop
    return generation


def _parse_messages(messages) -> tuple[list[dict], VideoReference]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(
            400,
            "'messages' must be a non-empty list of chat messages.",
            "messages",
            "missing_required_parameter" if messages is None else "invalid_value",
        )
    parsed, videos = [], []
    for number, message in enumerate(messages):
        where = f"messages[{number}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"'{where}' must be an object with 'role' and 'content'.", where)
        role = message.get("role")
        if role not in ROLES:
            known = ", ".join(sorted(ROLES))
            why = "tool calling is not supported" if role in ("tool", "function") else f"expected one of {known}"
            raise ApiError(400, f"'{where}.role' {role!r}: {why}.", f"{where}.role", "invalid_value")
        for name in message:
            if name not in ("role", "content", "name"):
                raise ApiError(400, f"Unsupported field '{where}.{name}'.", f"{where}.{name}", "unsupported_parameter")
        content = message.get("content")
        if isinstance(content, str):
            parsed.append({"role": ROLES[role], "content": content})
            continue
        if not isinstance(content, list) or not content:
            raise ApiError(
                400,
                f"'{where}.content' must be a string or a non-empty list of content parts.",
                f"{where}.content",
                "invalid_value",
            )
        items = []
        for part_number, part in enumerate(content):
            item, video = _parse_part(part, f"{where}.content[{part_number}]", role)
            items.append(item)
            if video is not None:
                videos.append(video)
        parsed.append({"role": ROLES[role], "content": items})
    if len(videos) != 1:
        found = ", ".join(video.param for video in videos) or "none"
        raise ApiError(
            400,
            f"A conversation must hold exactly one video (a 'video_url' or 'file' part); found "
            f"{len(videos)} ({found}).",
            "messages",
            "invalid_value",
        )
    if parsed[-1]["role"] != "user":
        raise ApiError(
            400, "The last message must be the user's question.", f"messages[{len(messages) - 1}].role", "invalid_value"
        )
    return parsed, videos[0]


def _parse_part(part, where: str, role: str) -> tuple[dict, VideoReference | None]:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ApiError(400, f"'{where}' must be an object with a 'type'.", where, "invalid_value")
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ApiError(400, f"'{where}.text' must be a string.", f"{where}.text", "invalid_value")
        return {"type": "text", "text": part["text"]}, None
    if kind in ("image_url", "input_image", "image"):
        raise ApiError(
            400,
            f"'{where}': image input is not supported; SALOVA answers about one video (send a 'video_url' part).",
            where,
            "unsupported_content",
        )
    if kind in ("input_audio", "audio"):
        raise ApiError(400, f"'{where}': audio input is not supported.", where, "unsupported_content")
    if kind not in ("video_url", "file"):
        raise ApiError(
            400,
            f"'{where}': unknown content part type {kind!r} (supported: text, video_url, file).",
            where,
            "unsupported_content",
        )
    if role != "user":
        raise ApiError(400, f"'{where}': only a user message may hold the video.", where, "invalid_value")
    if kind == "video_url":
        url = part.get("video_url")
        url = url.get("url") if isinstance(url, dict) else url
        param = f"{where}.video_url.url"
    else:
        url = part.get("file", {}).get("file_id") if isinstance(part.get("file"), dict) else None
        param = f"{where}.file.file_id"
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"'{param}' must be a non-empty string.", param, "invalid_value")
    return {"type": "video"}, VideoReference(url, param)


def _optional(body: dict, name: str, kind: type, description: str):
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise ApiError(400, f"'{name}' must be {description}, got {value!r}.", name, "invalid_value")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def extension(answer, video_name: str) -> dict:
    """The response's `salova` field: every scene with its span, router score and focus flag, the index status."""
    return {
        "video": video_name,
        "index": answer.index,
        "scenes": [
            {"index": s.index, "start": s.start, "end": s.end, "span": s.span, "score": s.score, "focus": s.focus}
            for s in answer.scenes
        ],
        "seconds": answer.seconds,
    }


def usage(counts) -> dict:
    """OpenAI's `usage` from the answer's `Usage`."""
    return {
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.total_tokens,
    }


def completion(request: ChatRequest, text: str, finish_reason: str, usage_counts: dict, extra: dict) -> dict:
    return {
        "id": request.id,
        "object": "chat.completion",
        "created": request.created,
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage_counts,
        EXTENSION_FIELD: extra,
    }


def chunk(request: ChatRequest, delta: dict, finish_reason: str | None = None, **fields) -> dict:
    """A `chat.completion.chunk`; `fields` adds `usage` or the extension field (on the last chunk)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    return {
        "id": request.id,
        "object": "chat.completion.chunk",
        "created": request.created,
        "model": request.model,
        "choices": choices,
        **fields,
    }
