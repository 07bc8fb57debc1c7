"""`salova serve`: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over the assistant's answering code.

Routes: `GET /health` (open), and behind `--api-key` when one is set: `GET /v1/models`, `POST /v1/chat/completions`
(plain or streamed as server-sent events), and the Files API (`POST/GET /v1/files`, `GET/DELETE /v1/files/{id}`).
A chat request is checked (`serve_protocol`), its video resolved and probed (`serve_media`), then its index opened
and its question answered on a worker (`serve_jobs`) by `VideoAssistant`, as `salova ask` answers it. The scenes,
router scores and index status travel in the response's `salova` field.
"""

import asyncio
import hmac
import ipaddress
import json
import logging
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from salova.assistant.serve_jobs import Scheduler
from salova.assistant.serve_media import MEBIBYTE, MediaPolicy, MediaStore
from salova.assistant.serve_protocol import (
    EXTENSION_FIELD,
    ApiError,
    chunk,
    completion,
    extension,
    parse_chat_request,
    usage,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

logger = logging.getLogger("salova.serve")
OPEN_PATHS = {"/health"}
JSON_OVERHEAD_BYTES = MEBIBYTE  # room for the conversation around a data URL, and multipart headers
DISCONNECT_POLL_SECONDS = 0.25


@dataclass
class ServeSettings:
    """model_name: the id clients send as `model`. api_key: the Bearer token every route but /health needs.
    workers: threads running model jobs; max_queue: requests that may wait beyond them. indexes_in_memory: indexes
    kept open for later questions. default_max_tokens: the answer length when the request sets none. temp_folder:
    parent of the server's temporary folder."""

    model_name: str
    api_key: str | None = None
    media: MediaPolicy = field(default_factory=MediaPolicy)
    workers: int = 1
    max_queue: int = 16
    indexes_in_memory: int = 4
    default_max_tokens: int = 256
    temp_folder: str | None = None


def build_app(assistant, settings: ServeSettings) -> FastAPI:
    """The FastAPI app serving `assistant` (a `VideoAssistant`) with `settings`."""
    scheduler = Scheduler(assistant, settings.workers, settings.max_queue, settings.indexes_in_memory)
    media = MediaStore(settings.media, settings.temp_folder)
    max_tokens_limit = assistant.model.config.text_config.max_position_embeddings
    chat_body_limit = settings.media.max_data_url_bytes * 4 // 3 + JSON_OVERHEAD_BYTES

    @asynccontextmanager
    async def lifespan(app):
        yield
        scheduler.close()
        media.close()

    app = FastAPI(title="SALOVA", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler, app.state.media = scheduler, media
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return error_response(ApiError(error.status_code, str(error.detail)))

    @app.exception_handler(Exception)
    async def unexpected_error(request, error: Exception):
        return error_response(_internal_error(error, request.url.path))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model_name, "queue": scheduler.status()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(settings.model_name)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != settings.model_name:
            raise ApiError(
                404,
                f"The model '{model_id}' does not exist; this server serves '{settings.model_name}'.",
                "model",
                "model_not_found",
            )
        return _model_card(model_id)

    @app.post("/v1/files")
    async def upload_file(request: Request):
        limit = settings.media.max_upload_bytes + JSON_OVERHEAD_BYTES
        _check_declared_length(request, limit, "the upload")
        limited = Request(request.scope, _limited_receive(request.receive, limit, "the upload"))
        async with limited.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(
                    400,
                    "Missing the 'file' part of the multipart/form-data upload.",
                    "file",
                    "missing_required_parameter",
                )
            purpose = form.get("purpose") or "user_data"
            stored = await run_in_threadpool(media.add_file, upload.file, upload.filename or "", str(purpose))
        logger.info("stored %s (%s, %d bytes)", stored.id, stored.filename, stored.bytes)
        return stored.as_json()

    @app.get("/v1/files")
    async def list_files():
        return {"object": "list", "data": [stored.as_json() for stored in media.files()], "has_more": False}

    @app.get("/v1/files/{file_id}")
    async def file_info(file_id: str):
        return media.file(file_id).as_json()

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str):
        return {"id": media.delete_file(file_id).id, "object": "file", "deleted": True}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _read_json(request, chat_body_limit)
        chat = parse_chat_request(body, settings.model_name, settings.default_max_tokens, max_tokens_limit)
        ticket = scheduler.admit()
        try:
            video = await media.resolve(chat.video.url, chat.video.param)
            try:
                index, status, seconds = await scheduler.run(
                    scheduler.open_index, video.path, video.name, chat.video.param, not video.temporary
                )
            finally:
                video.release()  # the index holds what the answer needs
        except BaseException:
            ticket.release()
            raise
        cancel = threading.Event()
        if chat.stream:
            return _stream(chat, scheduler, ticket, cancel, index, status, seconds, video.name)
        try:
            job = scheduler.submit(scheduler.answer, index, chat, status, seconds, None, cancel)
            answer = await _unless_client_leaves(request, job, cancel)
        finally:
            ticket.release()
        if answer is None:  # the client left before its job started: nobody reads this
            return Response(status_code=204)
        return completion(chat, answer.text, answer.finish_reason, usage(answer.usage), extension(answer, video.name))

    return app


def _stream(chat, scheduler: Scheduler, ticket, cancel: threading.Event, index, status, seconds, video_name):
    """The answer as server-sent events: a role chunk, one chunk per piece of text, a last chunk with the finish
    reason and the `salova` field, a usage chunk when asked for, then `data: [DONE]`. A client that leaves sets
    `cancel`, which stops the generation."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    finished = object()

    def on_text(piece: str) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    job = scheduler.submit(scheduler.answer, index, chat, status, seconds, on_text, cancel)
    job.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, finished))
    # Given back when the job ends, even where the response never starts (a client gone before its first byte).
    job.add_done_callback(lambda _: ticket.release())

    async def events():
        try:
            yield _event(chunk(chat, {"role": "assistant", "content": ""}))
            while (piece := await pieces.get()) is not finished:
                if piece:
                    yield _event(chunk(chat, {"content": piece}))
            try:
                answer = job.result()
            except ApiError as error:
                yield _event(error.body())
                return
            except Exception as error:  # the status line is sent already: the error goes as the last event
                yield _event(_internal_error(error, chat.id).body())
                return
            last = {EXTENSION_FIELD: extension(answer, video_name)}
            yield _event(chunk(chat, {}, answer.finish_reason, **last))
            if chat.include_usage:
                yield _event(chunk(chat, None, usage=usage(answer.usage)))
            yield "data: [DONE]\n\n"
        finally:
            if not job.done():
                cancel.set()
                logger.info("client left %s mid-stream: generation cancelled", chat.id)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def _unless_client_leaves(request: Request, job, cancel: threading.Event):
    """The job's result; a client that disconnects first sets `cancel` (the job then stops early)."""
    waiting = asyncio.wrap_future(job)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            cancel.set()
            logger.info("client left %s before its answer: generation cancelled", request.url.path)
            return await waiting


def _internal_error(error: Exception, where: str) -> ApiError:
    """A 500 whose message points at the server log's entry (with the stack trace) and tells nothing more."""
    reference = uuid.uuid4().hex[:12]
    logger.error("%s failed (reference %s)", where, reference, exc_info=error)
    return ApiError(500, f"Internal server error (reference {reference}); the server log has the details.")


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _model_card(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "salova"}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _check_declared_length(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            413,
            f"{what} is {int(declared) / MEBIBYTE:.1f} MiB, over this server's limit of {limit / MEBIBYTE:.1f} MiB.",
            code="request_too_large",
        )


def _limited_receive(receive, limit: int, what: str):
    """`receive` that refuses a body growing past `limit` bytes, whatever its Content-Length said."""
    received = 0

    async def limited():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(
                    413, f"{what} is over this server's limit of {limit / MEBIBYTE:.1f} MiB.", code="request_too_large"
                )
        return message

    return limited


async def _read_json(request: Request, limit: int):
    _check_declared_length(request, limit, "the request body")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise ApiError(
                413,
                f"the request body is over this server's limit of {limit / MEBIBYTE:.1f} MiB.",
                code="request_too_large",
            )
    try:
        return json.loads(body)
    except ValueError as error:
        raise ApiError(400, f"The request body is not valid JSON ({error}).", code="invalid_json") from error


class ApiKeyMiddleware:
    """Answers 401 to every request but those of `OPEN_PATHS` without `Authorization: Bearer <api_key>`."""

    def __init__(self, app, api_key: str):
        self.app, self.expected = app, f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization")
            if given is None or not hmac.compare_digest(given, self.expected):
                message = (
                    "Missing API key: send the header 'Authorization: Bearer <key>'."
                    if given is None
                    else "Incorrect API key."
                )
                response = error_response(ApiError(401, message, code="invalid_api_key"))
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may well reach other machines
        return False


def serve(assistant, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Runs the server until interrupted; warns when it listens beyond this machine without an API key."""
    import uvicorn

    if not settings.api_key and not is_loopback(host):
        print(
            f"WARNING: salova serve listens on {host}, reachable from other machines, without an API key: anyone "
            "who can reach it may use the model and read the videos of the allowed folders. Set --api-key (or "
            "$SALOVA_API_KEY).",
            file=sys.stderr,
            flush=True,
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(assistant, settings)
    started = time.perf_counter()
    logger.info("serving %s on http://%s:%d", settings.model_name, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    logger.info("stopped after %.0f s", time.perf_counter() - started)
