"""`salova serve`: the official `openai` client against the server on 127.0.0.1 (tiny checkpoint, real clips).

Answers equal `salova ask`'s; a streamed answer equals the plain one; bad requests are refused with the documented
status and message, each followed by a good request that still succeeds; the index of a video is built once when
its first questions arrive together (threads of one server, and two server processes on one index folder).
"""

import base64
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from conftest import real_video, record_calls
from salova.assistant import IndexCache, SalovaVideoIndex, VideoAssistant, serve_jobs
from salova.assistant import serve as serve_module
from salova.assistant.serve import ServeSettings, build_app
from salova.assistant.serve_media import MEBIBYTE, MediaPolicy

from salova.cli import main

API_KEY = "test-key"
MODEL = "salova-tiny"
QUESTION = "what happens in this video?"
TIMESTAMP = r"\d\d:\d\d:\d\d\.\d\d\d"


@contextlib.contextmanager
def running_server(assistant, **settings):
    """The app served by uvicorn on a free 127.0.0.1 port in this process; yields `(base_url, app)`."""
    app = build_app(assistant, ServeSettings(model_name=MODEL, **settings))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def client_for(base_url: str, api_key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=120)


def video_message(url: str, question: str = QUESTION) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": question}],
        }
    ]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """An allowed folder with the real clips, an empty, a truncated and a text file named .mp4, and a symlink to a
    clip outside it."""
    folder = tmp_path_factory.mktemp("media")
    for name in ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"):
        shutil.copy(real_video(name), folder / name)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(real_video("bikes.mp4").read_bytes()[:300_000])
    (folder / "notes.mp4").write_text("not a video\n")
    outside = tmp_path_factory.mktemp("outside")
    shutil.copy(real_video("carphone_pristine.mp4"), outside / "secret.mp4")
    (folder / "escape.mp4").symlink_to(outside / "secret.mp4")
    return folder


@pytest.fixture(scope="module")
def assistant(tiny_checkpoint, tmp_path_factory) -> VideoAssistant:
    return VideoAssistant.from_pretrained(tiny_checkpoint, tmp_path_factory.mktemp("indexes"))


def media_policy(media: Path, **limits) -> MediaPolicy:
    # bikes.mp4 (10 s) is over the duration limit; bigbuckbunny.mp4 (1.01 MiB) over the size limits.
    return MediaPolicy(
        allowed_folders=(media,),
        **{"max_video_seconds": 6, "max_upload_bytes": MEBIBYTE, "max_data_url_bytes": MEBIBYTE, **limits},
    )


@pytest.fixture(scope="module")
def server(assistant, media):
    with running_server(assistant, api_key=API_KEY, media=media_policy(media)) as (base_url, app):
        yield base_url, app


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return client_for(server[0])


def ask(client, url: str, question: str = QUESTION, **options):
    return client.chat.completions.create(model=MODEL, messages=video_message(url, question), **options)


def test_health_and_models(server, client):
    base_url, _ = server
    health = httpx.get(f"{base_url}/health")  # no key needed
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert [model.id for model in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_answer_equals_salova_ask(client, media, tiny_checkpoint, tmp_path, capsys):
    video = media / "carphone_pristine.mp4"
    response = ask(client, video.as_uri(), max_tokens=24)
    main(
        [
            "ask",
            "--model",
            str(tiny_checkpoint),
            str(video),
            QUESTION,
            "--json",
            "--max-new-tokens",
            "24",
            "--index-dir",
            str(tmp_path),
        ]
    )
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert response.choices[0].message.content == expected["answer"]
    extra = response.model_extra["salova"]
    assert [(s["start"], s["end"], s["focus"]) for s in extra["scenes"]] == [
        (s["start"], s["end"], s["focus"]) for s in expected["scenes"]
    ]
    for served, asked in zip(extra["scenes"], expected["scenes"], strict=True):
        assert served["score"] == pytest.approx(asked["score"], abs=1e-6)
        assert served["span"].count(":") == 4 and len(served["span"]) == 25
    assert extra["index"] in ("built", "reused") and extra["video"] == "carphone_pristine.mp4"
    # A plain path answers the same, from the index the first request left.
    again = ask(client, str(video), max_tokens=24)
    assert again.choices[0].message.content == expected["answer"]
    assert again.model_extra["salova"]["index"] == "reused"
    assert response.usage.prompt_tokens > 0 and 0 < response.usage.completion_tokens <= 24
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.choices[0].finish_reason in ("stop", "length")


def test_streamed_answer_equals_the_plain_one(client, media):
    url = (media / "carphone_pristine.mp4").as_uri()
    plain = ask(client, url, max_tokens=20)
    chunks = list(ask(client, url, max_tokens=20, stream=True, stream_options={"include_usage": True}))
    assert all(chunk.object == "chat.completion.chunk" and chunk.id == chunks[0].id for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip() == plain.choices[0].message.content
    last = [chunk for chunk in chunks if chunk.choices][-1]
    assert last.choices[0].finish_reason == plain.choices[0].finish_reason
    assert last.model_extra["salova"]["scenes"] == plain.model_extra["salova"]["scenes"]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_stream_ends_with_done(server, media):
    body = {
        "model": MODEL,
        "messages": video_message((media / "carphone_pristine.mp4").as_uri()),
        "stream": True,
        "max_tokens": 4,
    }
    response = httpx.post(f"{server[0]}/v1/chat/completions", json=body, headers=_key(), timeout=60)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert all(event.startswith("data: ") for event in events) and events[-1] == "data: [DONE]"


def test_multi_turn_follow_up(client, assistant, media):
    video = media / "bigbuckbunny.mp4"
    first = ask(client, video.as_uri(), max_tokens=12).choices[0].message.content
    follow_up = "and what happens next?"
    messages = [
        {"role": "system", "content": "You answer questions about videos."},
        *video_message(video.as_uri()),
        {"role": "assistant", "content": first},
        {"role": "user", "content": follow_up},
    ]
    served = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
    index, _, _ = assistant.open(video, progress=False)
    expected = assistant.conversation(video, [QUESTION, follow_up], [first])
    expected.insert(0, {"role": "system", "content": "You answer questions about videos."})
    assert served.choices[0].message.content == assistant.ask(index, expected, max_new_tokens=12).text


def test_uploaded_file_is_referenced_by_id(server, client, media):
    app = server[1]
    video = media / "carphone_pristine.mp4"
    with open(video, "rb") as handle:
        uploaded = client.files.create(file=handle, purpose="user_data")
    assert uploaded.bytes == video.stat().st_size and uploaded.filename == "carphone_pristine.mp4"
    assert uploaded.id in [stored.id for stored in client.files.list()]
    by_path = ask(client, str(video), max_tokens=12).choices[0].message.content
    assert ask(client, uploaded.id, max_tokens=12).choices[0].message.content == by_path
    file_part = [
        {
            "role": "user",
            "content": [{"type": "file", "file": {"file_id": uploaded.id}}, {"type": "text", "text": QUESTION}],
        }
    ]
    answer = client.chat.completions.create(model=MODEL, messages=file_part, max_tokens=12)
    assert answer.choices[0].message.content == by_path
    assert client.files.delete(uploaded.id).deleted
    assert list(app.state.media.folder.iterdir()) == []  # the upload is gone from disk
    with pytest.raises(openai.NotFoundError, match="No file with id"):
        ask(client, uploaded.id)


def test_data_url_video(client, server, media, monkeypatch):
    video = media / "carphone_pristine.mp4"
    data_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    assert (
        ask(client, data_url, max_tokens=12).choices[0].message.content
        == ask(client, str(video), max_tokens=12).choices[0].message.content
    )
    assert list(server[1].state.media.folder.iterdir()) == []  # its temporary file is removed
    # A later temporary file may take a deleted one's inode: its index is found by content, never kept in memory.
    monkeypatch.setattr(serve_jobs, "_file_identity", lambda path: (1, 1, 1, 1))
    opened = record_calls(monkeypatch, server[1].state.scheduler.assistant, "open")
    ask(client, data_url, max_tokens=2)
    ask(client, data_url, max_tokens=2)
    assert len(opened) == 2


class _ClipHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/slow.mp4":  # headers, then nothing for longer than the server waits
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            time.sleep(3)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def clip_host(media):
    """An HTTP server on 127.0.0.1 serving the media folder."""
    handler = functools.partial(_ClipHandler, directory=str(media))
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{host.server_address[1]}"
    host.shutdown()
    host.server_close()


def test_remote_media_only_when_allowed_and_within_limits(assistant, media, client, clip_host):
    with pytest.raises(openai.PermissionDeniedError, match="remote media is off"):
        ask(client, f"{clip_host}/carphone_pristine.mp4")
    policy = media_policy(media, allow_remote=True, max_remote_bytes=MEBIBYTE, remote_timeout=1)
    with running_server(assistant, media=policy) as (base_url, app):
        remote = client_for(base_url)
        answer = ask(remote, f"{clip_host}/carphone_pristine.mp4", max_tokens=12).choices[0].message.content
        assert answer == ask(client, str(media / "carphone_pristine.mp4"), max_tokens=12).choices[0].message.content
        with pytest.raises(openai.APIStatusError, match="over this server's limit of 1.0 MiB") as error:
            ask(remote, f"{clip_host}/bigbuckbunny.mp4")
        assert error.value.status_code == 413
        with pytest.raises(openai.BadRequestError, match="took over 1 s"):
            ask(remote, f"{clip_host}/slow.mp4")
        with pytest.raises(openai.BadRequestError, match="answered HTTP 404"):
            ask(remote, f"{clip_host}/missing.mp4")
        assert list(app.state.media.folder.iterdir()) == []
    assert not app.state.media.folder.exists()  # the server's temporary folder goes when it stops


def _key(key: str = API_KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _chat(media: Path, **changes) -> dict:
    body = {"model": MODEL, "messages": video_message(str(media / "carphone_pristine.mp4")), "max_tokens": 2}
    return {**body, **changes}


def _with_part(media: Path, part: dict) -> dict:
    return _chat(media, messages=[{"role": "user", "content": [part, {"type": "text", "text": QUESTION}]}])


def _video(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


# (name, request: media folder -> (headers, raw body), status, error code, words of the message)
BAD_REQUESTS = [
    (
        "malformed JSON",
        lambda m: (_key(), b'{"model": "salova-tiny", "messages": ['),
        400,
        "invalid_json",
        "not valid JSON",
    ),
    ("body not an object", lambda m: (_key(), b"[1, 2]"), 400, None, "must be a JSON object"),
    ("unknown model", lambda m: (_key(), _chat(m, model="gpt-4o")), 404, "model_not_found", "'gpt-4o' does not exist"),
    ("n > 1", lambda m: (_key(), _chat(m, n=2)), 400, "unsupported_value", "'n'"),
    (
        "tools",
        lambda m: (_key(), _chat(m, tools=[{"type": "function", "function": {"name": "f"}}])),
        400,
        "unsupported_parameter",
        "'tools'",
    ),
    (
        "image part",
        lambda m: (_key(), _with_part(m, {"type": "image_url", "image_url": {"url": "a.png"}})),
        400,
        "unsupported_content",
        "image input is not supported",
    ),
    (
        "audio part",
        lambda m: (_key(), _with_part(m, {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}})),
        400,
        "unsupported_content",
        "audio input is not supported",
    ),
    (
        "audio output",
        lambda m: (_key(), _chat(m, modalities=["text", "audio"], audio={"voice": "alloy"})),
        400,
        "unsupported_parameter",
        "'modalities'",
    ),
    ("max_tokens 0", lambda m: (_key(), _chat(m, max_tokens=0)), 400, "invalid_value", "'max_tokens'"),
    ("temperature 5", lambda m: (_key(), _chat(m, temperature=5)), 400, "invalid_value", "'temperature'"),
    (
        "no video",
        lambda m: (_key(), _chat(m, messages=[{"role": "user", "content": QUESTION}])),
        400,
        "invalid_value",
        "exactly one video",
    ),
    (
        "missing file",
        lambda m: (_key(), _with_part(m, _video(str(m / "missing.mp4")))),
        400,
        "video_not_found",
        "missing.mp4",
    ),
    (
        "empty file",
        lambda m: (_key(), _with_part(m, _video(str(m / "empty.mp4")))),
        400,
        "invalid_video",
        "empty.mp4 is empty",
    ),
    (
        "truncated file",
        lambda m: (_key(), _with_part(m, _video(str(m / "truncated.mp4")))),
        400,
        "invalid_video",
        "truncated.mp4 is not a readable video",
    ),
    (
        "not a video",
        lambda m: (_key(), _with_part(m, _video(str(m / "notes.mp4")))),
        400,
        "invalid_video",
        "notes.mp4 is not a readable video",
    ),
    (
        "symlink escape",
        lambda m: (_key(), _with_part(m, _video(str(m / "escape.mp4")))),
        403,
        "path_not_allowed",
        "not inside an allowed media folder",
    ),
    (
        "dot-dot escape",
        lambda m: (_key(), _with_part(m, _video(f"{m}/../{m.name}x/../../etc/passwd"))),
        403,
        "path_not_allowed",
        "not inside an allowed media folder",
    ),
    (
        "relative escape",
        lambda m: (_key(), _with_part(m, _video("../../etc/passwd"))),
        403,
        "path_not_allowed",
        "not inside an allowed media folder",
    ),
    (
        "too long",
        lambda m: (_key(), _with_part(m, _video((m / "bikes.mp4").as_uri()))),
        400,
        "video_too_long",
        "lasts 00:00:10.000, over this server's limit of 00:00:06.000",
    ),
    (
        "remote when off",
        lambda m: (_key(), _with_part(m, _video("http://127.0.0.1:9/a.mp4"))),
        403,
        "remote_media_disabled",
        "--allow-remote-media",
    ),
    (
        "unknown file id",
        lambda m: (_key(), _with_part(m, _video("file-" + "0" * 32))),
        404,
        "file_not_found",
        "No file with id",
    ),
    (
        "data URL not base64",
        lambda m: (_key(), _with_part(m, _video("data:video/mp4;base64,@@@@"))),
        400,
        "invalid_video_url",
        "not valid base64",
    ),
    (
        "data URL not a video",
        lambda m: (_key(), _with_part(m, _video("data:image/png;base64,AAAA"))),
        400,
        "invalid_video_url",
        "expected a video/* type",
    ),
    (
        "data URL too large",
        lambda m: (
            _key(),
            _with_part(
                m, _video("data:video/mp4;base64," + base64.b64encode((m / "bigbuckbunny.mp4").read_bytes()).decode())
            ),
        ),
        413,
        "video_too_large",
        "over this server's limit",
    ),
    (
        "last turn not the user's",
        lambda m: (
            _key(),
            _chat(m, messages=[*video_message(str(m / "bikes.mp4")), {"role": "assistant", "content": "hi"}]),
        ),
        400,
        "invalid_value",
        "last message must be the user's",
    ),
    ("wrong key", lambda m: (_key("nope"), _chat(m)), 401, "invalid_api_key", "Incorrect API key"),
    ("missing key", lambda m: ({}, _chat(m)), 401, "invalid_api_key", "Missing API key"),
]


@pytest.mark.parametrize(
    ("name", "request_for", "status", "code", "words"), BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_request_is_refused_and_the_server_keeps_serving(
    server, client, media, name, request_for, status, code, words
):
    headers, body = request_for(media)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        f"{server[0]}/v1/chat/completions",
        content=content,
        timeout=60,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["code"] == code
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert ask(client, str(media / "carphone_pristine.mp4"), max_tokens=2).choices[0].message.content is not None


BAD_UPLOADS = [
    ("empty", b"", 400, "is empty"),
    ("not a video", b"plain text, not a video\n", 400, "is not a readable video"),
    ("too large", b"\0" * (MEBIBYTE + 10), 413, "over this server's limit"),
]


@pytest.mark.parametrize(("name", "content", "status", "words"), BAD_UPLOADS, ids=[case[0] for case in BAD_UPLOADS])
def test_bad_upload_is_refused_and_removed(server, client, media, name, content, status, words):
    with pytest.raises(openai.APIStatusError, match=words) as error:
        client.files.create(file=("clip.mp4", content), purpose="user_data")
    assert error.value.status_code == status
    assert list(server[1].state.media.folder.iterdir()) == [] and client.files.list().data == []
    assert ask(client, str(media / "carphone_pristine.mp4"), max_tokens=2).choices[0].message.content is not None


def test_unexpected_failure_answers_500_without_details(server, client, media, monkeypatch):
    scheduler = server[1].state.scheduler

    def broken(*args):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(scheduler, "answer", broken)
    url = str(media / "carphone_pristine.mp4")
    with pytest.raises(openai.InternalServerError, match="Internal server error \\(reference") as error:
        ask(client, url, max_tokens=2)
    assert "secret" not in error.value.response.text and "Traceback" not in error.value.response.text
    body = {"model": MODEL, "messages": video_message(url), "stream": True, "max_tokens": 2}
    streamed = httpx.post(f"{server[0]}/v1/chat/completions", json=body, headers=_key(), timeout=60)
    last = json.loads(streamed.text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert last["error"]["type"] == "server_error" and "secret" not in streamed.text
    monkeypatch.undo()
    assert ask(client, url, max_tokens=2).choices[0].message.content is not None


def test_damaged_index_is_rebuilt(assistant, media):
    video = media / "bigbuckbunny.mp4"
    index, _, _ = assistant.open(video, progress=False)
    path = assistant.cache.path_for(index.provenance)
    path.write_bytes(path.read_bytes()[:100])
    with running_server(assistant, media=media_policy(media)) as (base_url, _):
        client = client_for(base_url)
        assert ask(client, str(video), max_tokens=2).model_extra["salova"]["index"] == "built"
    assert SalovaVideoIndex.load(path).num_segments == index.num_segments


def test_later_questions_take_the_index_from_memory(assistant, media, tmp_path, monkeypatch):
    video, other = tmp_path / "clip.mp4", tmp_path / "other.mp4"
    shutil.copy(media / "carphone_pristine.mp4", video)
    shutil.copy(media / "bigbuckbunny.mp4", other)
    with running_server(assistant, media=media_policy(tmp_path), indexes_in_memory=1) as (base_url, app):
        client = client_for(base_url)
        ask(client, str(video), max_tokens=2)
        opened = record_calls(monkeypatch, assistant, "open")
        assert ask(client, str(video), max_tokens=2).model_extra["salova"]["index"] == "reused"
        assert opened == []  # neither hashed nor read again
        with open(video, "ab") as handle:  # a changed file is a new video
            handle.write(b"\0")
        assert ask(client, str(video), max_tokens=2).model_extra["salova"]["index"] == "built"
        ask(client, str(other), max_tokens=2)  # evicts clip.mp4 (one index in memory)
        ask(client, str(video), max_tokens=2)
        assert len(opened) == 3


def test_client_gone_mid_stream_stops_its_generation(server, client, media):
    scheduler = server[1].state.scheduler
    cancelled = scheduler.counts["cancelled"]
    body = {
        "model": MODEL,
        "messages": video_message(str(media / "carphone_pristine.mp4")),
        "stream": True,
        "max_tokens": 4000,
    }
    started = time.perf_counter()
    with httpx.stream("POST", f"{server[0]}/v1/chat/completions", json=body, headers=_key(), timeout=60) as stream:
        lines = stream.iter_lines()
        while '"content": ""' in (line := next(lines)) or not line.startswith("data: {"):
            pass  # up to the first piece of the answer: the generation is under way
    while scheduler.status()["running"]:  # the worker is free again once the generation has stopped
        assert time.perf_counter() - started < 20, "the generation went on after its client left"
        time.sleep(0.05)
    assert scheduler.counts["cancelled"] == cancelled + 1
    assert ask(client, str(media / "carphone_pristine.mp4"), max_tokens=2).choices[0].message.content is not None


def test_client_gone_before_a_plain_answer_stops_its_generation(server, client, media):
    scheduler = server[1].state.scheduler
    cancelled = scheduler.counts["cancelled"]
    body = {"model": MODEL, "messages": video_message(str(media / "carphone_pristine.mp4")), "max_tokens": 4000}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server[0]}/v1/chat/completions", json=body, headers=_key(), timeout=1.5)
    started = time.perf_counter()
    while scheduler.status()["running"]:
        assert time.perf_counter() - started < 20, "the generation went on after its client left"
        time.sleep(0.05)
    assert scheduler.counts["cancelled"] == cancelled + 1
    assert ask(client, str(media / "carphone_pristine.mp4"), max_tokens=2).choices[0].message.content is not None


def test_full_queue_answers_503_with_retry_after(assistant, media):
    with running_server(assistant, media=media_policy(media), workers=1, max_queue=1) as (base_url, app):
        scheduler, release = app.state.scheduler, threading.Event()
        tickets = [scheduler.admit(), scheduler.admit()]  # the worker busy, one request waiting
        scheduler.submit(release.wait)
        body = {"model": MODEL, "messages": video_message(str(media / "carphone_pristine.mp4")), "max_tokens": 2}
        refused = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
        assert scheduler.status() == {"running": 1, "queued": 1, "capacity": 2}
        release.set()
        for ticket in tickets:
            ticket.release()
        assert ask(client_for(base_url), str(media / "carphone_pristine.mp4"), max_tokens=2).choices


def test_first_questions_arriving_together_build_the_index_once(tiny, media, tmp_path):
    model, processor = tiny
    fresh = VideoAssistant(model, processor, IndexCache(tmp_path / "indexes"))
    with running_server(fresh, media=media_policy(media), workers=3) as (base_url, app):
        client = client_for(base_url)
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda _: ask(client, str(media / "carphone_pristine.mp4"), max_tokens=4), range(4))
            )
    statuses = sorted(answer.model_extra["salova"]["index"] for answer in answers)
    assert statuses == ["built", "reused", "reused", "reused"]
    assert len({answer.choices[0].message.content for answer in answers}) == 1
    assert app.state.scheduler.counts["built"] == 1


def test_api_key_guards_every_route_but_health(server):
    base_url = server[0]
    assert httpx.get(f"{base_url}/health").status_code == 200
    for method, path in [
        ("GET", "/v1/models"),
        ("GET", "/v1/files"),
        ("POST", "/v1/files"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/nowhere"),
    ]:
        response = httpx.request(method, f"{base_url}{path}", headers=_key("wrong"))
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer", path
    assert httpx.get(f"{base_url}/v1/nowhere", headers=_key()).json()["error"]["message"] == "Not Found"


def test_non_loopback_address_without_key_warns(assistant, monkeypatch, capsys):
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    for host, key, warned in [
        ("0.0.0.0", None, True),
        ("192.168.1.20", None, True),
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", "k", False),
    ]:
        serve_module.serve(assistant, ServeSettings(MODEL, api_key=key), host, 8000)
        assert ("WARNING" in capsys.readouterr().err) is warned, host


def test_readme_serving_snippet_runs(server, media, capsys):
    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## Serving", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("http://127.0.0.1:8000/v1", f"{server[0]}/v1").replace('"KEY"', f'"{API_KEY}"')
    code = code.replace("file:///videos/talk.mp4", (media / "carphone_pristine.mp4").as_uri())
    exec(compile(code.replace("CKPT-folder-name", MODEL), "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if re.match(rf"{TIMESTAMP}-{TIMESTAMP} [+-]", line)]) >= 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.integration
def test_two_server_processes_on_one_index_folder_build_once(tiny_checkpoint, media, tmp_path):
    """Two `salova serve` processes, one --index-dir: the first questions about one video, sent to both at once,
    build its index once; later questions reuse it."""
    salova = Path(sys.executable).parent / "salova"
    ports = [_free_port(), _free_port()]
    servers = [
        subprocess.Popen(
            [
                str(salova),
                "serve",
                "--model",
                str(tiny_checkpoint),
                "--port",
                str(port),
                "--index-dir",
                str(tmp_path / "indexes"),
                "--allowed-media-path",
                str(media),
                "--served-model-name",
                MODEL,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SALOVA_API_KEY": ""},
        )
        for port in ports
    ]
    try:
        for process, port in zip(servers, ports, strict=True):
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, process.stderr.read()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                assert time.monotonic() < deadline, "salova serve did not start"
                time.sleep(0.2)
        clients = [client_for(f"http://127.0.0.1:{port}", "unused") for port in ports]
        video = str(media / "bigbuckbunny.mp4")
        with ThreadPoolExecutor(2) as pool:
            first = list(pool.map(lambda c: ask(c, video, max_tokens=4), clients))
        later = [ask(c, video, max_tokens=4) for c in clients]
        assert sorted(a.model_extra["salova"]["index"] for a in first) == ["built", "reused"]
        assert [a.model_extra["salova"]["index"] for a in later] == ["reused", "reused"]
        assert len({a.choices[0].message.content for a in first + later}) == 1
        assert len(list((tmp_path / "indexes").glob("*.safetensors"))) == 1
    finally:
        for process in servers:
            process.send_signal(signal.SIGINT)
        for process in servers:
            process.wait(30)


def test_sampling_options_and_stop_strings_reach_the_answering_core(client, assistant, media):
    video = media / "carphone_pristine.mp4"
    index, _, _ = assistant.open(video, progress=False)
    messages = assistant.conversation(video, [QUESTION], [])
    sampled = ask(client, str(video), max_tokens=12, temperature=1.2, top_p=0.9, seed=7)
    expected = assistant.ask(index, messages, max_new_tokens=12, temperature=1.2, top_p=0.9, seed=7)
    assert sampled.choices[0].message.content == expected.text
    assert ask(client, str(video), max_tokens=12, temperature=1.2, top_p=0.9, seed=7).choices[0].message.content == (
        expected.text
    )
    greedy = ask(client, str(video), max_tokens=12).choices[0].message.content
    stop = greedy[len(greedy) // 2 :][:3]
    stopped = ask(client, str(video), max_tokens=12, stop=[stop, "never in it"])
    assert stopped.choices[0].message.content == greedy[: greedy.index(stop)].strip()
    assert stopped.choices[0].finish_reason == "stop"
    assert ask(client, str(video), max_tokens=3).choices[0].finish_reason == "length"


def test_serve_command_builds_the_settings(tiny_checkpoint, media, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(serve_module, "serve", lambda *args: calls.append(args))
    monkeypatch.setenv("SALOVA_API_KEY", "from-env")
    main(
        [
            "serve",
            "--model",
            str(tiny_checkpoint),
            "--index-dir",
            str(tmp_path),
            "--allowed-media-path",
            str(media),
            "--allowed-media-path",
            str(tmp_path),
            "--max-upload-mb",
            "3",
            "--max-video-seconds",
            "60",
            "--max-queue",
            "5",
            "--port",
            "8123",
        ]
    )
    ((served, settings, host, port),) = calls
    assert (host, port, settings.model_name, settings.api_key) == ("127.0.0.1", 8123, tiny_checkpoint.name, "from-env")
    assert settings.media.allowed_folders == (media.resolve(), tmp_path.resolve())
    assert settings.media.max_upload_bytes == 3 * MEBIBYTE and settings.media.max_video_seconds == 60
    assert settings.max_queue == 5 and not settings.media.allow_remote
    assert served.cache.folder == tmp_path
    with pytest.raises(NotADirectoryError, match="--allowed-media-path"):
        main(["serve", "--model", str(tiny_checkpoint), "--allowed-media-path", str(media / "bikes.mp4")])


@pytest.mark.integration
def test_load_benchmark_loses_nothing(tmp_path):
    """`benchmarks/serve_load.py` with a queue too short for its clients: refused requests come back after
    `Retry-After`, every answer equals the sequential one, each index is built once (the script checks all three
    and exits non-zero otherwise)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    command = [
        sys.executable,
        str(script),
        "--clients",
        "4",
        "--questions",
        "2",
        "--max-tokens",
        "4",
        "--settings",
        "short-queue",
        "--json",
        str(tmp_path / "load.json"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    sequential, served = json.loads((tmp_path / "load.json").read_text())
    assert sequential["requests"] == served["requests"] == 8
    assert served["indexes_built"] == 3 and served["refusals_503"] >= 1 and served["requests_per_second"] > 0
