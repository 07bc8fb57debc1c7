"""Where `salova serve` takes a video from, and what it lets in.

A `video_url` names a file id from the Files API (`file-…`), a `file://` URL or a plain path (resolved, symlinks
and `..` included, and served only inside an allowed folder), a `data:video/…;base64,` URL (size-limited), or an
`http(s)://` URL (only with `--allow-remote-media`, size- and time-limited). Every video is probed before it is
queued: a readable video stream whose first frame decodes, no longer than `max_video_seconds`. Videos the server
writes (data URLs, downloads, uploads) live in its own temporary folder and are removed when done or on failure.
"""

import base64
import binascii
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import anyio
import av
import httpx
from salova.assistant.serve_protocol import ApiError
from salova.processing import format_timestamp
from starlette.concurrency import run_in_threadpool

FILE_ID = re.compile(r"file-[0-9a-f]{32}")
DATA_URL = re.compile(
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<base64>;base64)?,", re.ASCII
)
DOWNLOAD_CHUNK_BYTES = 1 << 16
MEBIBYTE = 1 << 20


@dataclass(frozen=True)
class MediaPolicy:
    """What the server accepts as a video (see the module docstring). Sizes in bytes, times in seconds; a
    `max_video_seconds` of 0 means no limit on the video's duration."""

    allowed_folders: tuple[Path, ...] = ()
    allow_remote: bool = False
    max_video_seconds: float = 3 * 3600
    max_upload_bytes: int = 2048 * MEBIBYTE
    max_data_url_bytes: int = 64 * MEBIBYTE
    max_remote_bytes: int = 512 * MEBIBYTE
    remote_timeout: float = 60.0

    def __post_init__(self):
        folders = []
        for folder in self.allowed_folders:
            resolved = Path(folder).expanduser().resolve()
            if not resolved.is_dir():
                raise NotADirectoryError(f"--allowed-media-path {folder}: not a folder.")
            folders.append(resolved)
        object.__setattr__(self, "allowed_folders", tuple(folders))


@dataclass
class LocalVideo:
    """A video on this machine: `path`, the `name` shown in responses, and whether the server owns the file
    (`temporary`: removed by `release`)."""

    path: Path
    name: str
    temporary: bool = False

    def release(self) -> None:
        if self.temporary:
            self.path.unlink(missing_ok=True)


@dataclass
class StoredFile:
    id: str
    filename: str
    bytes: int
    purpose: str
    path: Path
    created_at: int = field(default_factory=lambda: int(time.time()))

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


class MediaStore:
    """The server's temporary folder: uploaded files (by id) and the videos of data URLs and downloads.

    `close()` removes the folder and everything in it.
    """

    def __init__(self, policy: MediaPolicy, folder: str | Path | None = None):
        self.policy = policy
        self.folder = Path(tempfile.mkdtemp(prefix="salova-serve-", dir=folder))
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def temporary_path(self, suffix: str = ".video") -> Path:
        return self.folder / f"{uuid.uuid4().hex}{suffix}"

    # Files API

    def add_file(self, source, filename: str, purpose: str) -> StoredFile:
        """Copies an uploaded file object into the store, probes it and records it; removed again if it fails."""
        file_id = f"file-{uuid.uuid4().hex}"
        path = self.folder / file_id
        try:
            with open(path, "wb") as target:
                size = _copy_limited(source, target, self.policy.max_upload_bytes, "the uploaded file", "file")
            probe_video(path, filename or file_id, "file", self.policy.max_video_seconds)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        stored = StoredFile(file_id, filename or file_id, size, purpose, path)
        with self._lock:
            self._files[file_id] = stored
        return stored

    def files(self) -> list[StoredFile]:
        with self._lock:
            return list(self._files.values())

    def file(self, file_id: str, param: str = "file_id") -> StoredFile:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise ApiError(
                404, f"No file with id '{file_id}' (upload it with POST /v1/files).", param, "file_not_found"
            )
        return stored

    def delete_file(self, file_id: str) -> StoredFile:
        stored = self.file(file_id)
        with self._lock:
            self._files.pop(file_id, None)
        stored.path.unlink(missing_ok=True)
        return stored

    # Resolving a video reference

    async def resolve(self, url: str, param: str) -> LocalVideo:
        """The local video `url` names, probed; a temporary copy (data URL, download) is removed on failure."""
        scheme = urlparse(url).scheme.lower() if "://" in url or url.startswith("data:") else ""
        if FILE_ID.fullmatch(url):
            stored = self.file(url, param)
            video = LocalVideo(stored.path, stored.filename)
        elif scheme == "data":
            video = await run_in_threadpool(self._from_data_url, url, param)
        elif scheme in ("http", "https"):
            video = await self._download(url, param)
        elif scheme == "file":
            parsed = urlparse(url)
            if parsed.netloc not in ("", "localhost"):
                raise ApiError(
                    400,
                    f"'{param}': a file:// URL must name a local path (file:///path), got host {parsed.netloc!r}.",
                    param,
                    "invalid_video_url",
                )
            video = self._local(unquote(parsed.path), param)
        elif scheme:
            raise ApiError(
                400,
                f"'{param}': unsupported URL scheme '{scheme}' (supported: file id, file://, a path, "
                "data:video/…;base64, http(s):// with --allow-remote-media).",
                param,
                "invalid_video_url",
            )
        else:
            video = self._local(url, param)
        try:
            await run_in_threadpool(probe_video, video.path, video.name, param, self.policy.max_video_seconds)
        except BaseException:
            video.release()
            raise
        return video

    def _local(self, given: str, param: str) -> LocalVideo:
        if not self.policy.allowed_folders:
            raise ApiError(
                403,
                f"'{param}': local paths are off on this server (start it with --allowed-media-path "
                "DIR to serve the videos in DIR); upload the video with POST /v1/files instead.",
                param,
                "local_media_disabled",
            )
        path = Path(given).expanduser()
        candidates = [path] if path.is_absolute() else [folder / path for folder in self.policy.allowed_folders]
        # Symlinks and '..' are followed before the check: what counts is where the file really is.
        inside = [resolved for resolved in (candidate.resolve() for candidate in candidates) if self._allowed(resolved)]
        if not inside:
            raise ApiError(
                403,
                f"'{param}': {given} is not inside an allowed media folder (--allowed-media-path); "
                "symlinks and '..' are resolved before the check.",
                param,
                "path_not_allowed",
            )
        for resolved in inside:
            if resolved.is_file():
                return LocalVideo(resolved, path.name)
        raise ApiError(400, f"'{param}': video file not found: {given}", param, "video_not_found")

    def _allowed(self, resolved: Path) -> bool:
        return any(resolved.is_relative_to(folder) for folder in self.policy.allowed_folders)

    def _from_data_url(self, url: str, param: str) -> LocalVideo:
        header = DATA_URL.match(url)
        if header is None or not header.group("base64"):
            raise ApiError(
                400, f"'{param}': a data URL must read data:video/<type>;base64,<data>.", param, "invalid_video_url"
            )
        mime = (header.group("mime") or "").lower()
        if not mime.startswith("video/"):
            raise ApiError(
                400,
                f"'{param}': data URL of type {mime or 'none'!r}; expected a video/* type.",
                param,
                "invalid_video_url",
            )
        payload = url[header.end() :]
        limit = self.policy.max_data_url_bytes
        if len(payload) * 3 // 4 > limit:
            raise ApiError(
                413,
                f"'{param}': the data URL holds {_mebibytes(len(payload) * 3 // 4)}, over this "
                f"server's limit of {_mebibytes(limit)}; upload it with POST /v1/files.",
                param,
                "video_too_large",
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ApiError(
                400, f"'{param}': the data URL is not valid base64 ({error}).", param, "invalid_video_url"
            ) from error
        path = self.temporary_path("." + re.sub(r"\W", "", mime.split("/", 1)[1])[:8])
        path.write_bytes(data)
        return LocalVideo(path, f"data-url{path.suffix}", temporary=True)

    async def _download(self, url: str, param: str) -> LocalVideo:
        if not self.policy.allow_remote:
            raise ApiError(
                403,
                f"'{param}': remote media is off on this server (start it with --allow-remote-media); "
                "upload the video with POST /v1/files or send it as a data URL.",
                param,
                "remote_media_disabled",
            )
        limit, seconds = self.policy.max_remote_bytes, self.policy.remote_timeout
        path = self.temporary_path(Path(urlparse(url).path).suffix[:8] or ".video")
        try:
            with anyio.fail_after(seconds):
                async with httpx.AsyncClient(follow_redirects=True, max_redirects=3, timeout=seconds) as client:
                    async with client.stream("GET", url) as response:
                        if response.status_code != 200:
                            raise ApiError(
                                400,
                                f"'{param}': fetching {url} answered HTTP {response.status_code}.",
                                param,
                                "remote_media_error",
                            )
                        declared = int(response.headers.get("content-length") or 0)
                        if declared > limit:
                            raise _remote_too_large(param, url, declared, limit)
                        received = 0
                        with open(path, "wb") as target:
                            async for piece in response.aiter_bytes(DOWNLOAD_CHUNK_BYTES):
                                received += len(piece)
                                if received > limit:
                                    raise _remote_too_large(param, url, received, limit)
                                target.write(piece)
        except TimeoutError as error:
            path.unlink(missing_ok=True)
            raise ApiError(
                400,
                f"'{param}': fetching {url} took over {seconds:g} s, this server's limit.",
                param,
                "remote_media_timeout",
            ) from error
        except httpx.HTTPError as error:
            path.unlink(missing_ok=True)
            raise ApiError(
                400, f"'{param}': fetching {url} failed ({type(error).__name__}: {error}).", param, "remote_media_error"
            ) from error
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return LocalVideo(path, Path(urlparse(url).path).name or "remote-video", temporary=True)


def probe_video(path: Path, name: str, param: str, max_seconds: float) -> float:
    """The video's duration in seconds, after checking that it opens, holds a video stream whose first frame
    decodes, and lasts at most `max_seconds` (0: no limit). Raises `ApiError` naming the problem."""
    if path.stat().st_size == 0:
        raise ApiError(400, f"'{param}': {name} is empty.", param, "invalid_video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                kinds = sorted({stream.type for stream in container.streams}) or ["none"]
                raise ApiError(
                    400, f"'{param}': {name} has no video stream (streams: {', '.join(kinds)}).", param, "invalid_video"
                )
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = (container.duration or 0) / av.time_base
            next(container.decode(stream))
    except (av.error.FFmpegError, StopIteration, UnicodeDecodeError, ValueError) as error:
        reason = "no frame decodes" if isinstance(error, StopIteration) else str(error)
        raise ApiError(400, f"'{param}': {name} is not a readable video ({reason}).", param, "invalid_video") from error
    if max_seconds and duration > max_seconds:
        raise ApiError(
            400,
            f"'{param}': {name} lasts {format_timestamp(duration)}, over this server's limit of "
            f"{format_timestamp(max_seconds)} (--max-video-seconds).",
            param,
            "video_too_long",
        )
    if max_seconds and duration <= 0:
        raise ApiError(
            400,
            f"'{param}': {name} does not tell its duration, so the --max-video-seconds limit cannot be checked.",
            param,
            "invalid_video",
        )
    return duration


def _copy_limited(source, target, limit: int, what: str, param: str) -> int:
    size = 0
    while piece := source.read(DOWNLOAD_CHUNK_BYTES):
        size += len(piece)
        if size > limit:
            raise ApiError(413, f"{what} is over this server's limit of {_mebibytes(limit)}.", param, "file_too_large")
        target.write(piece)
    return size


def _remote_too_large(param: str, url: str, size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"'{param}': {url} holds {_mebibytes(size)} or more, over this server's limit of {_mebibytes(limit)}.",
        param,
        "video_too_large",
    )


def _mebibytes(size: int) -> str:
    return f"{size / MEBIBYTE:.1f} MiB"
