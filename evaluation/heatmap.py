"""Depth x length heatmaps drawn with Pillow: one panel per metric, cells coloured red (0) to green (1) and
labelled with their value."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = (64, 34)  # width, height in pixels
MARGIN = (70, 48, 12, 40)  # left (depth labels), top (title), right, bottom (length labels)
PANEL_GAP = 24


def draw_heatmaps(panels: dict[str, np.ndarray], lengths: list[float], depths: list[float], path: str | Path) -> Path:
    """Writes the panels side by side to `path` (PNG). Each panel is `(len(depths), len(lengths))` in [0, 1]."""
    font = ImageFont.load_default(size=13)
    title_font = ImageFont.load_default(size=14)
    panel_width = MARGIN[0] + CELL[0] * len(lengths) + MARGIN[2]
    panel_height = MARGIN[1] + CELL[1] * len(depths) + MARGIN[3]
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    image = Image.new(
        "RGB",
        (columns * panel_width + (columns - 1) * PANEL_GAP, rows * panel_height + (rows - 1) * PANEL_GAP),
        "white",
    )
    draw = ImageDraw.Draw(image)
    for number, (title, values) in enumerate(panels.items()):
        if values.shape != (len(depths), len(lengths)):
            raise ValueError(
                f"Panel {title!r} is {values.shape}, expected (depths, lengths) {len(depths), len(lengths)}."
            )
        left = (number % columns) * (panel_width + PANEL_GAP)
        top = (number // columns) * (panel_height + PANEL_GAP)
        draw.text((left + MARGIN[0], top + 12), title, fill="black", font=title_font)
        for row, depth in enumerate(depths):
            y = top + MARGIN[1] + row * CELL[1]
            draw.text((left + MARGIN[0] - 8, y + CELL[1] // 2), f"{depth:g}", fill="black", font=font, anchor="rm")
            for column, value in enumerate(values[row]):
                x = left + MARGIN[0] + column * CELL[0]
                draw.rectangle((x, y, x + CELL[0] - 1, y + CELL[1] - 1), fill=_colour(value), outline="white")
                draw.text((x + CELL[0] // 2, y + CELL[1] // 2), f"{value:.2f}", fill="black", font=font, anchor="mm")
        bottom = top + MARGIN[1] + len(depths) * CELL[1]
        for column, length in enumerate(lengths):
            x = left + MARGIN[0] + column * CELL[0] + CELL[0] // 2
            draw.text((x, bottom + 4), _format_length(length), fill="black", font=font, anchor="mt")
        draw.text((left + MARGIN[0], bottom + 22), "haystack length", fill="gray", font=font)
        draw.text((left + 4, top + MARGIN[1] - 16), "depth", fill="gray", font=font)
    path = Path(path)
    image.save(path)
    return path


def _colour(value: float) -> tuple[int, int, int]:
    value = float(np.clip(value, 0.0, 1.0))
    red, green = (230, 90, 80), (90, 190, 100)
    return tuple(round(r + (g - r) * value) for r, g in zip(red, green, strict=True))


def _format_length(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
