"""`salova convert` (upstream annotations -> this package's records) and `salova data check` (the data check of
`training.data_check`, on its own), registered on the `salova` command by `add_data_commands`."""

import argparse
import json
from functools import partial
from pathlib import Path

from salova.training.data import STAGES, THRESHOLDS, RowSettings

from salova.cli_options import DeprecatedOption

STATUSES = ("kept", "repaired", "skipped")


def add_data_commands(commands) -> None:
    """Adds `convert` and `data` to the `salova` sub-command parser."""
    convert = commands.add_parser("convert", help="LLaVA JSON or SceneWalk rows -> this package's records")
    convert.add_argument("--from", dest="source_format", required=True, choices=["llava", "scenewalk"])
    convert.add_argument("--stage", choices=STAGES, help="LLaVA only: the stage the records are for")
    convert.add_argument("--video-dir", default=".", help="SceneWalk only: folder of the <video id>.mp4 files")
    convert.add_argument("input", help="JSON list, JSONL, parquet, save_to_disk folder or Hub dataset id")
    convert.add_argument("output", help="file to write: parquet for *.parquet, JSON Lines otherwise")
    convert.set_defaults(run=partial(convert_command, parser=convert))

    data = commands.add_parser("data", help="check training data before a run")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser(
        "check", help="probe every video, map scenes onto segments, report kept/repaired/skipped records"
    )
    check.add_argument("--stage", required=True, choices=STAGES)
    check.add_argument("--model", required=True, help="checkpoint whose processor settings the check follows")
    check.add_argument("--video-dir", help="folder relative video paths resolve against (default: the file's)")
    check.add_argument("--report-dir", default=".", help="where data_check.json (and the cached result) go")
    check.add_argument("--label-thresholds", default=RowSettings.label_thresholds, choices=sorted(THRESHOLDS))
    check.add_argument("--max-queries-per-video", type=int, default=RowSettings.max_queries_per_video)
    check.add_argument("--max-sampled-frames", type=int, help="skip videos with more sampled frames (authors: 1800)")
    check.add_argument("--data-check-num-proc", type=int, help="parallel workers (default: the machine's cores)")
    check.add_argument("--num-proc", dest="data_check_num_proc", type=int, action=DeprecatedOption)
    check.add_argument("--seed", type=int, default=RowSettings.seed, help="seed of the stage-1.5 query sampling")
    check.add_argument("--strict-data", action="store_true", help="any repair or skip is an error naming file:line")
    check.add_argument("--strict", dest="strict_data", action=DeprecatedOption, nargs=0, const=True)
    check.add_argument("input", help="JSON list, JSONL, parquet, save_to_disk folder or Hub dataset id")
    check.set_defaults(run=partial(check_command, parser=check))


def convert_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from salova.training.adapters import from_llava, from_scenewalk
    from salova.training.reading import read_records, write_records

    if args.source_format == "llava" and args.stage is None:
        parser.error("convert --from llava needs --stage 1 or 2")
    raw = read_records(args.input)
    records = (_parsed(example) for example in raw.select_columns(["origin", "record"]))
    if args.source_format == "scenewalk":
        records = from_scenewalk(records, args.video_dir)
    else:
        records = (from_llava(record, args.stage) for record in records)
    count = write_records(records, args.output)
    print(f"wrote {count} records to {args.output}")


def _parsed(example: dict) -> dict:
    from salova.training.data import RecordError, parse_record

    try:
        return parse_record(example["record"])
    except RecordError as error:
        raise SystemExit(f"salova convert: {example['origin']}: {error}") from error


def check_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    from salova.training.data_check import DataCheckError, check_data
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(args.model)
    settings = RowSettings(
        args.stage,
        processor.video_processor,
        label_thresholds=args.label_thresholds,
        max_queries_per_video=args.max_queries_per_video,
        seed=args.seed,
        max_sampled_frames=args.max_sampled_frames,
    )
    Path(args.report_dir).mkdir(parents=True, exist_ok=True)
    try:
        _, report = check_data(
            args.input, settings, args.video_dir, args.report_dir, args.data_check_num_proc, args.strict_data
        )
    except DataCheckError as error:
        raise SystemExit(f"salova data check: {error}") from error
    print(f"report: {Path(args.report_dir) / 'data_check.json'} ({json.dumps({k: report[k] for k in STATUSES})})")
