"""Annotation sources -> one `datasets.Dataset` of raw records, memory-mapped Arrow, each record with its origin.

A source is a JSON list, a JSONL file, a parquet file, a `save_to_disk` folder or a Hub dataset id. Whatever the
source, the dataset has three string columns:

- `origin`: where a person finds the record, `file:line` for JSON Lines, `file#item N` for a JSON list, `source#row
  N` for parquet and Hub rows;
- `record`: the record as JSON text, kept raw so that a malformed line, a line that is not an object or a field of
  an unexpected type stays a record the data check can name, rather than an Arrow schema error for the whole file;
- `root`: the folder relative video paths resolve against: the annotation file's folder, or `video_dir` (parquet,
  `save_to_disk` folders and Hub ids, whose rows have no folder of their own).

JSON Lines and parquet files are read a line or a batch of rows at a time into an Arrow cache file, so a large source
never sits in memory; `save_to_disk` folders and Hub sources are memory-mapped by `datasets` as they are.
`stream_records` hands the same rows out one at a time without the cache file, for a single pass.
"""

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

RAW_FEATURES = datasets.Features(
    {"origin": datasets.Value("string"), "record": datasets.Value("string"), "root": datasets.Value("string")}
)


def read_records(source: str | Path, video_dir: str | Path | None = None) -> datasets.Dataset:
    """The raw records of `source` (see the module docstring). A missing local path that is not a Hub id raises."""
    path = Path(source)
    if path.is_dir():
        table = datasets.load_from_disk(str(path))
        if isinstance(table, datasets.DatasetDict):
            table = table["train"]
        return _from_table(table, str(path), video_dir or path)
    if path.is_file():
        reader, kwargs = _file_reader(path, video_dir)
        return datasets.Dataset.from_generator(reader, features=RAW_FEATURES, gen_kwargs=kwargs)
    if path.suffix in {".json", ".jsonl", ".parquet"} or os.sep in str(source) and path.parts[0] in {".", ".."}:
        raise FileNotFoundError(f"Training data not found: {source}")
    try:
        table = datasets.load_dataset(str(source), split="train")
    except Exception as error:  # noqa: BLE001 - the Hub's errors are many; the user needs the source named
        raise FileNotFoundError(
            f"Training data {source!r} is neither a local file or folder nor a Hub dataset "
            f"({type(error).__name__}: {error})."
        ) from error
    return _from_table(table, str(source), video_dir or ".")


def stream_records(source: str | Path, video_dir: str | Path | None = None) -> Iterator[dict]:
    """The rows of `read_records(source, video_dir)`, one at a time, for a single pass (`salova convert`): a local
    file is read as it goes, with no Arrow copy of it written to the cache."""
    path = Path(source)
    if path.is_file():
        reader, kwargs = _file_reader(path, video_dir)
        yield from reader(**kwargs)
    else:
        yield from read_records(source, video_dir)


def _file_reader(path: Path, video_dir: str | Path | None) -> tuple:
    """The generator of a local file's rows and its arguments; the file's size and time make the cache fingerprint
    follow its content."""
    stat = path.stat()
    kwargs = {
        "path": str(path.resolve()),
        "version": f"{stat.st_size}-{stat.st_mtime_ns}",
        "root": str(Path(video_dir or path.parent).resolve()),
    }
    return (_parquet_records if path.suffix == ".parquet" else _json_records), kwargs


def _parquet_records(path: str, version: str, root: str, batch_size: int = 1024) -> Iterator[dict]:
    # A batch of rows at a time. Without `pre_buffer=False` the reader keeps every column chunk it has read until
    # it is closed, so its memory would grow with the file.
    index = 0
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield _raw_row(row, index, path, root)
            index += 1


def _json_records(path: str, version: str, root: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as file:
        head = file.read(1024).lstrip()
        file.seek(0)
        if head.startswith("["):
            # A JSON list has no line structure to stream; LLaVA-style lists are read whole.
            for index, item in enumerate(json.load(file)):
                yield {"origin": f"{path}#item {index}", "record": json.dumps(item), "root": root}
            return
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield {"origin": f"{path}:{number}", "record": line.strip(), "root": root}


def _from_table(table: datasets.Dataset, name: str, root) -> datasets.Dataset:
    root = str(Path(root).resolve())
    return table.map(
        _raw_row,
        with_indices=True,
        fn_kwargs={"name": name, "root": root},
        remove_columns=table.column_names,
        features=RAW_FEATURES,
        desc=f"reading {name}",
    )


def _raw_row(row: dict, index: int, name: str, root: str) -> dict:
    # `map` hands a lazy row; its values are plain Python (dates and the like become strings).
    return {"origin": f"{name}#row {index}", "record": json.dumps(dict(row), default=str), "root": root}


def write_records(records: Iterable[dict], path: str | Path) -> int:
    """Writes records to `path`: parquet for `*.parquet`, JSON Lines otherwise. Records stream through an Arrow
    cache, never all in memory. Returns how many were written."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _write_parquet(records, path)
    count = 0
    with path.open("w", encoding="utf-8") as output:
        for record in records:
            output.write(json.dumps(record) + "\n")
            count += 1
    return count


def _write_parquet(records: Iterator[dict], path: Path, chunk_size: int = 1024) -> int:
    writer, count, chunk = None, 0, []
    for record in _with_end(iter(records)):
        if record is not None:
            chunk.append(record)
        if chunk and (record is None or len(chunk) == chunk_size):
            table = pa.Table.from_pylist(chunk, schema=writer.schema if writer else None)
            writer = writer or pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table)
            count, chunk = count + len(chunk), []
    if writer is None:
        raise ValueError(f"{path}: no record to write.")
    writer.close()
    return count


def _with_end(records: Iterator[dict]) -> Iterator[dict | None]:
    yield from records
    yield None
