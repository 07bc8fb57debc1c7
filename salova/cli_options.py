"""Command-line options shared by the `salova` subcommands."""

import argparse
import sys


class DeprecatedOption(argparse.Action):
    """An option's old name, hidden from `--help`: stores into the current option's destination and says which name
    to use. `salova ask --top-k 2` acts as `--num-focus-segments 2`."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated; use --{self.dest.replace('_', '-')}.", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
