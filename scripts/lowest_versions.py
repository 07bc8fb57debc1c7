"""Prints a pip constraints file pinning each of setup.py's requirements to its lower bound (`name>=X` -> `name==X`),
so that a run installed under it proves the bounds setup.py states."""

import ast
from pathlib import Path


def lower_bounds(setup_py: Path) -> list[str]:
    for node in ast.walk(ast.parse(setup_py.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            requirements = ast.literal_eval(node.value)
            break
    else:
        raise SystemExit(f"{setup_py}: no install_requires list found.")
    pins = []
    for requirement in requirements:
        name, separator, version = requirement.partition(">=")
        if not separator or not version or any(mark in version for mark in ",<>=!;"):
            raise SystemExit(f"{setup_py}: {requirement!r} is not of the form 'name>=version' (lower bounds only).")
        pins.append(f"{name.strip()}=={version.strip()}")
    return pins


if __name__ == "__main__":
    print("\n".join(lower_bounds(Path(__file__).resolve().parent.parent / "setup.py")))
