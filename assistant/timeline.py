"""The timeline picture: router score of every scene along the video's time axis, focus scenes highlighted and
shown by their thumbnails."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files and the web app only; never a window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402
from salova.assistant.answering import Answer  # noqa: E402
from salova.assistant.index import SalovaVideoIndex  # noqa: E402
from salova.processing import format_timestamp  # noqa: E402

FOCUS_COLOUR = "#d62728"
OTHER_COLOUR = "#9e9e9e"
FIGURE_SIZE = (11, 4.2)  # inches; 1100 x 420 pixels as saved


def draw_timeline(answer: Answer, index: SalovaVideoIndex, question: str = "", path: str | Path | None = None):
    """A figure with one bar per scene (width: its span, height: its router score) and the focus scenes'
    thumbnails above the axis at their spans; saved as PNG to `path` when given."""
    figure, (pictures, scores) = plt.subplots(
        2, 1, figsize=FIGURE_SIZE, height_ratios=(1.1, 2), sharex=True, layout="constrained"
    )
    for scene in answer.scenes:
        scores.bar(
            scene.start,
            scene.score,
            width=scene.end - scene.start,
            align="edge",
            color=FOCUS_COLOUR if scene.focus else OTHER_COLOUR,
            edgecolor="white",
            linewidth=0.8,
        )
    scores.axhline(0, color="black", linewidth=0.6)
    scores.set_xlim(0, index.duration)
    scores.set_ylabel("router score")
    scores.set_xlabel("video time")
    ticks = scores.get_xticks()
    scores.set_xticks(ticks[(ticks >= 0) & (ticks <= index.duration)])
    scores.set_xticklabels([format_timestamp(tick) for tick in scores.get_xticks()], fontsize=8)
    focus = answer.focus_scenes
    # Thumbnails sit in equal slots along the top row, each with a line to the middle of its scene's span, so
    # short neighbouring scenes never hide each other.
    height, width = index.thumbnails.shape[1:3]
    slot_points = FIGURE_SIZE[0] * 72 * 0.85 / max(1, len(focus))
    zoom = min(0.9 * slot_points / width, 0.8 * FIGURE_SIZE[1] * 72 * 0.3 / height)
    for slot, scene in enumerate(focus):
        thumbnail = OffsetImage(index.thumbnails[scene.index].numpy(), zoom=zoom, dpi_cor=False)
        pictures.add_artist(
            AnnotationBbox(
                thumbnail,
                ((scene.start + scene.end) / 2, 0.0),
                xybox=((slot + 0.5) / len(focus), 0.55),
                boxcoords="axes fraction",
                frameon=True,
                pad=0.1,
                bboxprops={"edgecolor": FOCUS_COLOUR, "linewidth": 2},
                arrowprops={"arrowstyle": "-", "color": FOCUS_COLOUR, "linewidth": 1},
            )
        )
        pictures.axvspan(scene.start, scene.end, ymax=0.08, color=FOCUS_COLOUR, alpha=0.5)
    pictures.set_ylim(0, 1)
    pictures.set_yticks([])
    for side in ("top", "right", "left"):
        pictures.spines[side].set_visible(False)
    title = f"{index.video}: focus scenes in red"
    pictures.set_title(f"{title}\n{question}" if question else title, fontsize=10, loc="left")
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure
