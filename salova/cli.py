"""`salova` console command: `salova build` writes a Hub-format checkpoint, `salova convert` turns upstream
annotations into training records, `salova data check` checks them, `salova demo` trains the tiny model through
the three stages and evaluates it. `scenes`, `index`, `ask`, `chat` and `app` are the assistant's
(`salova.assistant.cli`), `eval` the benchmark runners (`salova.evaluation.cli`)."""

import argparse

import torch

from salova.assistant.cli import add_commands as add_assistant_commands
from salova.evaluation.cli import add_eval_parser
from salova.hub_configs.builder import VARIANTS
from salova.training.commands import add_data_commands
from salova.training.end_to_end import SETTINGS, run_end_to_end

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="salova", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="assemble a stage-1 model from pretrained components")
    build.add_argument("--variant", required=True, choices=VARIANTS)
    build.add_argument("--vision-tower", help="SigLIP/CLIP checkpoint (Hub id or folder); default: the variant's")
    build.add_argument("--llm", help="causal-LM checkpoint (Hub id or folder); default: the variant's")
    build.add_argument(
        "--random-weights",
        action="store_true",
        help="the variant's published architectures with random weights and tokenizers of the published layouts, "
        "built offline (components given with --vision-tower/--llm still load)",
    )
    build.add_argument("--depth", type=int, help="layers kept in each random stack (towers and LLM), for tests")
    build.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    build.add_argument("--out", required=True, help="folder to write the Hub-format checkpoint to")

    add_data_commands(commands)

    demo = commands.add_parser("demo", help="train the tiny model through stages 1 -> 1.5 -> 2 on CPU and evaluate it")
    demo.add_argument("--setting", default="default", choices=SETTINGS)
    demo.add_argument("--workdir", default="outputs/demo", help="corpus, stage checkpoints and report.json go here")

    add_eval_parser(commands)
    add_assistant_commands(commands)

    args = parser.parse_args(argv)
    if hasattr(args, "run"):
        args.run(args)
    elif args.command == "build":
        from salova.hub_configs import build_salova

        if args.depth is not None and args.depth < 1:
            parser.error(f"--depth must be at least 1, got {args.depth}")
        model, processor = build_salova(
            args.variant,
            args.vision_tower,
            args.llm,
            dtype=DTYPES[args.dtype],
            random_weights=args.random_weights,
            depth=args.depth,
        )
        model.save_pretrained(args.out)
        processor.save_pretrained(args.out)
        print(f"wrote SALOVA-{args.variant} ({sum(p.numel() for p in model.parameters()):,} parameters) to {args.out}")
    else:
        run_end_to_end(args.workdir, SETTINGS[args.setting])


if __name__ == "__main__":
    main()
