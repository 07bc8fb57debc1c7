"""`salova` console command: `salova build` writes a Hub-format checkpoint, `salova convert` turns upstream
annotations into training records, `salova demo` trains the tiny model through the three stages and evaluates it.
`scenes`, `index`, `ask`, `chat` and `app` are the assistant's (`salova.assistant.cli`)."""

import argparse
import json

import torch

from salova.assistant.cli import add_commands as add_assistant_commands
from salova.evaluation.cli import add_eval_parser, run_eval

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="salova", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="assemble a stage-1 model from pretrained components")
    build.add_argument("--variant", required=True, choices=["tiny", "3b", "3.8b", "7b"])
    build.add_argument("--vision-tower", help="SigLIP/CLIP checkpoint (Hub id or folder); default: the variant's")
    build.add_argument("--llm", help="causal-LM checkpoint (Hub id or folder); default: the variant's")
    build.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    build.add_argument("--out", required=True, help="folder to write the Hub-format checkpoint to")

    convert = commands.add_parser("convert", help="LLaVA JSON or SceneWalk rows -> this package's JSONL records")
    convert.add_argument("--from", dest="source_format", required=True, choices=["llava", "scenewalk"])
    convert.add_argument("--stage", choices=["1", "1.5", "2"], help="LLaVA only: the stage the records are for")
    convert.add_argument("--video-dir", default=".", help="SceneWalk only: folder of the <video id>.mp4 files")
    convert.add_argument("input", help="JSON list or JSONL file")
    convert.add_argument("output", help="JSONL file to write")

    demo = commands.add_parser("demo", help="train the tiny model through stages 1 -> 1.5 -> 2 on CPU and evaluate it")
    demo.add_argument("--setting", default="default", choices=["smoke", "default", "full"])
    demo.add_argument("--workdir", default="outputs/demo", help="corpus, stage checkpoints and report.json go here")

    add_eval_parser(commands)
    add_assistant_commands(commands)

    args = parser.parse_args(argv)
    if hasattr(args, "run"):
        args.run(args)
    elif args.command == "build":
        from .hub_configs import build_salova

        model, processor = build_salova(args.variant, args.vision_tower, args.llm, dtype=DTYPES[args.dtype])
        model.save_pretrained(args.out)
        processor.save_pretrained(args.out)
        print(f"wrote SALOVA-{args.variant} ({sum(p.numel() for p in model.parameters()):,} parameters) to {args.out}")
    elif args.command == "convert":
        from .training.adapters import from_llava, from_scenewalk, read_records

        records = read_records(args.input)
        if args.source_format == "scenewalk":
            records = from_scenewalk(records, args.video_dir)
        elif args.stage is None:
            parser.error("convert --from llava needs --stage 1 or 2")
        else:
            records = [from_llava(record, args.stage) for record in records]
        with open(args.output, "w") as output:
            output.writelines(json.dumps(record) + "\n" for record in records)
        print(f"wrote {len(records)} records to {args.output}")
    elif args.command == "eval":
        run_eval(args)
    else:
        from .training.end_to_end import SETTINGS, run_end_to_end

        run_end_to_end(args.workdir, SETTINGS[args.setting])


if __name__ == "__main__":
    main()
