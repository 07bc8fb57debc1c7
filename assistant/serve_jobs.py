"""How `salova serve` runs model work: worker threads behind a bounded queue, each video's index opened once.

Every request that needs the model takes a `Ticket` first; when `workers + max_queue` tickets are out the next
request is refused at once (503 with `Retry-After`, from the recent jobs' times). A worker runs one job at a time
(open an index, or answer a question), so it never holds more than one decoded video. The index cache locks each
index file while it loads or builds it, across threads and across server processes sharing the folder: the first
question about a video builds its index while the others wait, then load it. The last few indexes opened
stay in memory, keyed by their file's identity (device, inode, size, modification time), so a later question about
the same file neither hashes it nor reads its index again.
"""

import asyncio
import logging
import math
import statistics
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from salova.assistant.index import CorruptIndexError
from salova.assistant.serve_protocol import ApiError

logger = logging.getLogger("salova.serve")
RECENT_JOBS = 32


class Ticket:
    """A place in the queue, given back once (`release`)."""

    def __init__(self, scheduler: "Scheduler"):
        self._scheduler, self._released = scheduler, False

    def release(self) -> None:
        with self._scheduler._lock:
            if not self._released:
                self._released = True
                self._scheduler.admitted -= 1


class Scheduler:
    """`workers` threads running the assistant's jobs; at most `workers + max_queue` requests admitted at once."""

    def __init__(self, assistant, workers: int = 1, max_queue: int = 16, indexes_in_memory: int = 4):
        if workers < 1 or max_queue < 0 or indexes_in_memory < 0:
            raise ValueError(
                f"--workers must be at least 1, --max-queue and --indexes-in-memory at least 0; got {workers}, "
                f"{max_queue}, {indexes_in_memory}."
            )
        self.assistant, self.workers, self.max_queue = assistant, workers, max_queue
        self.indexes_in_memory = indexes_in_memory
        self._opened = OrderedDict()  # file identity -> index, the most recently used last
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="salova-worker")
        self.admitted = 0
        self.counts = Counter()  # "built", "reused", "answered", "cancelled", "refused"
        self._job_seconds = deque(maxlen=RECENT_JOBS)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def admit(self) -> Ticket:
        with self._lock:
            if self.admitted >= self.workers + self.max_queue:
                self.counts["refused"] += 1
                retry_after = self._retry_after()
                raise ApiError(
                    503,
                    f"The server is busy ({self.admitted} requests running or queued, --max-queue {self.max_queue}); "
                    f"retry in {retry_after} s.",
                    code="queue_full",
                    headers={"Retry-After": str(retry_after)},
                )
            self.admitted += 1
        return Ticket(self)

    def _retry_after(self) -> int:
        """Seconds until a place is likely free: the median recent job time for each job queued per worker."""
        per_job = statistics.median(self._job_seconds) if self._job_seconds else 1.0
        return max(1, min(600, math.ceil(per_job * (self.admitted - self.workers + 1) / self.workers)))

    def submit(self, function, *args) -> Future:
        def timed():
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                with self._lock:
                    self._job_seconds.append(time.perf_counter() - started)

        return self.executor.submit(timed)

    async def run(self, function, *args):
        return await asyncio.wrap_future(self.submit(function, *args))

    def status(self) -> dict:
        with self._lock:
            running = min(self.admitted, self.workers)
            return {"running": running, "queued": self.admitted - running, "capacity": self.workers + self.max_queue}

    def open_index(self, path: Path, name: str, param: str, remember: bool = True):
        """`(index, "built" | "reused", seconds)` of the video at `path`, built once across threads and processes.
        `remember`: keep the index in memory for this file (not for a temporary file, whose inode a later one
        may take)."""
        started, identity = time.perf_counter(), _file_identity(path)
        with self._lock:
            index = self._opened.get(identity) if remember else None
            if index is not None:
                self._opened.move_to_end(identity)
                self.counts["reused"] += 1
                return index, "reused", time.perf_counter() - started
        try:
            try:
                index, status, seconds = self.assistant.open(path, progress=False)
            except CorruptIndexError as error:
                logger.warning("rebuilding a damaged index: %s", error)
                index, status, seconds = self.assistant.open(path, reindex=True, progress=False)
        except (ValueError, FileNotFoundError) as error:  # the video, not the server, is at fault
            raise ApiError(400, f"'{param}': {name} could not be indexed: {error}", param, "invalid_video") from error
        with self._lock:
            self.counts[status] += 1
            if remember and self.indexes_in_memory:
                self._opened[identity] = index
                while len(self._opened) > self.indexes_in_memory:
                    self._opened.popitem(last=False)
        logger.info("index of %s %s in %.2f s (%d scenes)", name, status, seconds, index.num_segments)
        return index, status, time.perf_counter() - started

    def answer(self, index, chat, index_status: str, index_seconds: float, on_text, cancel: threading.Event):
        """The assistant's answer to `chat`'s last question from `index`, streamed through `on_text`; `None` when
        the client left before the job started. Generation stops at the next token once `cancel` is set."""
        if cancel.is_set():
            with self._lock:
                self.counts["cancelled"] += 1
            return None
        generation = dict(chat.generation)
        answer = self.assistant.ask(
            index,
            chat.messages,
            max_new_tokens=generation.pop("max_new_tokens"),
            on_text=on_text,
            index_status=index_status,
            index_seconds=index_seconds,
            cancel=cancel,
            **generation,  # temperature, top_p, seed, stop: where the request set them
        )
        with self._lock:
            self.counts["answered" if answer.finish_reason != "cancelled" else "cancelled"] += 1
        return answer


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
