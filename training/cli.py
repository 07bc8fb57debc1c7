"""`salova-train --stage STAGE --config stage.json`: runs one training stage (one process, or under
`accelerate launch` for many).

Options override the config file: `--model`, `--train-data`, `--output-dir`, and `--set key=value` for any recipe
key (`--set learning_rate=1e-4`, `--set training_args.max_steps=100`; values are JSON, or strings).
"""

import argparse
import json

from .data import STAGES
from .recipe import load_recipe
from .run import train_stage


def parse_assignments(assignments: list[str]) -> dict:
    overrides: dict = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key:
            raise SystemExit(f"--set expects key=value, got {assignment!r}.")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key.startswith("training_args."):
            overrides.setdefault("training_args", {})[key.removeprefix("training_args.")] = value
        else:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="salova-train", description=__doc__)
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--config", help="JSON stage config (see salova.training.recipe); default: the stage's own")
    parser.add_argument("--model", help="checkpoint to start from (folder or Hub id)")
    parser.add_argument("--train-data", help="records of the stage's schema: JSON, JSONL, parquet, folder or Hub id")
    parser.add_argument("--output-dir", help="where checkpoints and the final model go")
    parser.add_argument(
        "--resume", nargs="?", const=True, default=False, help="resume from the last checkpoint (or the one named)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    args = parser.parse_args(argv)
    overrides = {"model": args.model, "train_data": args.train_data, "output_dir": args.output_dir}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    recipe = load_recipe(args.stage, args.config, **overrides, **parse_assignments(args.set))
    train_stage(recipe, resume=args.resume)


if __name__ == "__main__":
    main()
