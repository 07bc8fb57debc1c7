"""The data check: every record of a source read, its video probed, its scenes mapped onto the processor's segments,
and the record kept, repaired or skipped with one reason, before a training step runs.

`salova data check` runs it on its own; `salova-train` runs it before training. Probing opens each video, reads its
packet index (times and count, no full decode) and decodes its first frame; records are checked in parallel with
`datasets.map(num_proc=...)`, in passes of `RECORDS_PER_PASS` records whose worker processes end with the pass, so
the check's resident memory does not grow with the source. A video file (however many records or linked paths
reach it) is probed once per worker while it stays among the last ones probed. The result (the training rows and
the report) is cached under the cache folder, keyed by the source's fingerprint and the row settings (stage,
thresholds, the processor's sampling and segment policy), so a second run reads it back at once.
A cache entry and the report are written beside their place and renamed into it, so processes or machines sharing
the folder read a whole entry or none, never one half-written or being written over.

The report: `{"records", "kept", "repaired", "skipped", "reasons": {status: {reason: {"count", "first"}}}}`, the
first example naming `file:line` (or `source#row N`) and the detail; printed, and written as JSON.
"""

import contextlib
import functools
import gc
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import av
import datasets
from salova.processing.frame_sampling import sampled_times
from salova.processing.video_frames import (
    is_truncated,
    presented_frames,
    pts_seconds,
    stream_frame_rate,
    time_origin,
)
from salova.training.data import RecordError, RowSettings, media_path, parse_record, record_row
from salova.training.reading import read_records
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

CHECK_VERSION = 4
# Each pass's worker processes read this many records and end, releasing the pages they read.
RECORDS_PER_PASS = 8192
ROW_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "origin": datasets.Value("string"),
        "video": datasets.Value("string"),
        "boundaries": datasets.Sequence(datasets.Value("float64")),
        "messages": datasets.Value("string"),
        "queries": datasets.Sequence(datasets.Value("string")),
        "query_labels": datasets.Value("string"),
        "focus_labels": datasets.Value("string"),
        "num_frames": datasets.Value("int64"),
    }
)


class DataCheckError(RecordError):
    """`strict_data`: the first record the check would repair or skip, named by `file:line`."""


def default_num_proc() -> int:
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def check_data(
    source: str | Path,
    settings: RowSettings,
    video_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    strict: bool = False,
    show: bool = True,
    records_per_pass: int = RECORDS_PER_PASS,
) -> tuple[datasets.Dataset, dict]:
    """The training rows of `source` and the check's report (see the module docstring).

    `cache_dir`: where the rows are cached and `data_check.json` written (None: neither). `show`: print and write
    the report (one process of a distributed run). `strict`: any repair or skip raises `DataCheckError` naming the
    first such record. `records_per_pass`: how many records one pass of worker processes checks.
    """
    raw = read_records(source, video_dir)
    key = hashlib.sha256(
        json.dumps([CHECK_VERSION, raw._fingerprint, asdict(settings)], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    # A leading underscore keeps the cache out of what a push of the output folder uploads.
    cached = Path(cache_dir, "_data_check", key) if cache_dir else None
    check = functools.partial(_check, raw, str(source), settings, num_proc or default_num_proc(), records_per_pass)
    if cached is None:
        rows, report = check(rows_dir=None)
    else:
        if (cached / "report.json").is_file():
            logger.info("data check of %s read back from %s", source, cached)
        else:
            _store(check, cached)
        report = json.loads((cached / "report.json").read_text())
        rows = _stored_rows(cached / "rows")
    if show:
        print(format_report(report), flush=True)
        if cache_dir:
            write_json(Path(cache_dir, "data_check.json"), report)
    if strict:
        firsts = [entry["first"] for group in report["reasons"].values() for entry in group.values()]
        if firsts:
            first = min(firsts, key=lambda example: example["index"])
            raise DataCheckError(f"{first['origin']}: {first['detail']} (strict_data: fix the record or turn it off)")
    if len(rows) == 0:
        raise RecordError(f"{source}: no usable record for stage {settings.stage}; see the data check report.")
    return rows, report


def _check(
    raw: datasets.Dataset,
    source: str,
    settings: RowSettings,
    num_proc: int,
    records_per_pass: int,
    rows_dir: Path | None,
) -> tuple[datasets.Dataset, dict]:
    """Checks `raw` a pass of `records_per_pass` records at a time. A pass's worker processes end with it and its
    checked records are dropped before the next one, so the memory-mapped pages each pass reads are released and
    the check's resident memory does not grow with the source. The rows are written as `rows-NNNNN.arrow` files
    into `rows_dir` (None: the `datasets` cache)."""
    report = {"source": source, "records": len(raw), "kept": 0, "repaired": 0, "skipped": 0, "reasons": {}}
    parts = []
    with (
        _datasets_progress_bars_off(),
        tqdm(total=len(raw), unit=" records", desc=f"checking {Path(source).name}") as progress,
    ):
        for start in range(0, len(raw), records_per_pass):
            checked = _check_pass(raw.select(range(start, min(start + records_per_pass, len(raw)))), settings, num_proc)
            _count(report, checked, first_index=start)
            usable = checked.filter(lambda status: status != "skipped", input_columns="status")
            if len(usable):
                name = rows_dir and str(rows_dir / f"rows-{len(parts):05d}.arrow")
                parts.append(
                    usable.map(
                        _expand_row, remove_columns=checked.column_names, features=ROW_FEATURES, cache_file_name=name
                    )
                )
            progress.update(len(checked))
    return _concatenate(parts), report


def _check_pass(records: datasets.Dataset, settings: RowSettings, num_proc: int) -> datasets.Dataset:
    """`records` checked by worker processes that end with the pass."""
    # Frozen, this process's objects are left out of the workers' garbage collections, which would otherwise write
    # to (and so copy) every page of the heap the workers share with it.
    gc.freeze()
    try:
        return records.map(
            _check_record,
            fn_kwargs={"settings": settings},
            remove_columns=["record", "root"],
            num_proc=min(num_proc, len(records)) if len(records) > 1 else None,
        )
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _datasets_progress_bars_off():
    """datasets' bars off (the check shows its own), back on afterwards where they were on."""
    were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if were_on:
            datasets.enable_progress_bars()


def _concatenate(parts: list[datasets.Dataset]) -> datasets.Dataset:
    if not parts:
        return datasets.Dataset.from_dict({name: [] for name in ROW_FEATURES}, features=ROW_FEATURES)
    return datasets.concatenate_datasets(parts)


def _stored_rows(folder: Path) -> datasets.Dataset:
    return _concatenate([datasets.Dataset.from_file(str(path)) for path in sorted(folder.glob("rows-*.arrow"))])


def _store(check, cached: Path) -> None:
    """Runs `check` into a new folder beside `cached` and renames it to `cached`. Where another process stored the
    same entry first, its entry stays (both hold the same rows)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}.", suffix=".tmp"))
    try:
        (temporary / "rows").mkdir()
        _, report = check(rows_dir=temporary / "rows")
        (temporary / "report.json").write_text(json.dumps(report, indent=2))
        os.rename(temporary, cached)
    except OSError:
        if not (cached / "report.json").is_file():
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_json(path: Path, value) -> None:
    """Writes `value` as JSON to a temporary file beside `path` and renames it over `path`: a reader sees the old
    file or the new one, never a part."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        Path(temporary).write_text(json.dumps(value, indent=2))
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _check_record(example: dict, settings: RowSettings) -> dict:
    origin = example["origin"]
    try:
        record = parse_record(example["record"])
        video = media_path(record, example["root"])
        probe = None if "video" not in record else probe_video(video, settings.fps)
        if probe is not None and probe["error"]:
            raise RecordError(probe["error"], probe["reason"])
        row, repair = record_row(record, video, probe, settings)
    except RecordError as error:
        return {"origin": origin, "status": "skipped", "reason": error.reason, "detail": str(error), "row": ""}
    status = "repaired" if repair else "kept"
    return {"origin": origin, "status": status, "reason": repair or "", "detail": repair or "", "row": json.dumps(row)}


def _expand_row(example: dict) -> dict:
    return {**json.loads(example["row"]), "origin": example["origin"]}


def _count(report: dict, checked: datasets.Dataset, first_index: int) -> None:
    """Adds `checked`, the records from index `first_index` on, to `report`."""
    columns = checked.select_columns(["status", "reason", "origin", "detail"])
    for index, example in enumerate(columns, start=first_index):
        status = example["status"]
        report[status] += 1
        if status == "kept":
            continue
        entry = report["reasons"].setdefault(status, {}).setdefault(example["reason"], {"count": 0})
        entry["count"] += 1
        entry.setdefault("first", {"origin": example["origin"], "detail": example["detail"], "index": index})


def format_report(report: dict) -> str:
    lines = [
        f"data check of {report['source']}: {report['records']} records, {report['kept']} kept, "
        f"{report['repaired']} repaired, {report['skipped']} skipped"
    ]
    for status in ("repaired", "skipped"):
        for reason, entry in sorted(report["reasons"].get(status, {}).items(), key=lambda item: -item[1]["count"]):
            first = entry["first"]
            lines.append(f"  {status} {entry['count']:6d}  {reason}  (first: {first['origin']}: {first['detail']})")
    return "\n".join(lines)


_PROBE_FAILURE = {"duration": 0.0, "num_frames": 0, "timestamps": []}


def probe_video(path: str, fps: float) -> dict:
    """Opens the video, reads its packet index and decodes its first frame.

    Returns `{"error", "reason", "duration", "num_frames", "timestamps"}`: `timestamps` are the times of the frames
    the processor samples at `fps`, counted from the first frame shown as the decoder counts them,
    `error` a message for an unreadable video (None otherwise). Probes are cached per file (links resolved, with
    its size and modification time), so the many paths of one file are probed once per process.
    """
    try:
        stat = os.stat(path)
    except OSError as error:
        return {**_PROBE_FAILURE, "error": f"{path}: not a readable video ({error})", "reason": "unreadable video"}
    probe = _probe_file(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, fps)
    return {**probe, "error": f"{path}: {probe['error']}"} if probe["error"] else probe


@functools.lru_cache(maxsize=64)
def _probe_file(path: str, size: int, modified_ns: int, fps: float) -> dict:
    """`probe_video` of one file, `error` without the path; `size` and `modified_ns` key the cache only."""
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return {**_PROBE_FAILURE, "error": "no video stream", "reason": "no video stream"}
            return _probe_stream(container, container.streams.video[0], fps)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        return {**_PROBE_FAILURE, "error": f"not a readable video ({error})", "reason": "unreadable video"}


def _probe_stream(container, stream, fps: float) -> dict:
    presented, first_frame = [], None
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if first_frame is None:
            first_frame = next(iter(packet.decode()), None)
        # A packet an edit list leaves out is decoded for the frames after it, never shown.
        if packet.pts is not None and not packet.is_discard:
            presented.append(packet.pts)
    if not presented or first_frame is None:
        return {**_PROBE_FAILURE, "error": "no decodable frame", "reason": "unreadable video"}
    expected = presented_frames(stream)
    if is_truncated(len(presented), expected):
        return {
            **_PROBE_FAILURE,
            "error": f"{len(presented)} of the {expected} frames the file shows; truncated or corrupt",
            "reason": "truncated video",
        }
    origin, time_base = time_origin(stream, first_frame), Fraction(stream.time_base)
    times = [pts_seconds(pts - origin, time_base) for pts in sorted(presented)]
    return {
        "error": None,
        "reason": None,
        "duration": times[-1] + 1.0 / float(stream_frame_rate(stream)),
        "num_frames": len(times),
        "timestamps": sampled_times(times, fps),
    }
