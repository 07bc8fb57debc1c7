"""Frames to the vision tower's input size with PyAV's scaler (no torchvision); the tower families' settings.

Resizing happens on the decoded `av.VideoFrame` (YUV for files), so a long video never holds a full-size RGB
frame longer than one step of the decode loop. Frames already in memory go through the same scaler, so a
video gives the same pixels whether it is passed as a file or as decoded frames.
"""

from dataclasses import dataclass, field

import av
import numpy as np
from av.video.reformatter import VideoReformatter

RESIZE_MODES = ("squash", "shortest_edge_crop")

# Resize and normalisation of each tower family: SigLIP squashes to a square and maps to [-1, 1];
# CLIP resizes the shortest edge, crops the centre and uses the OpenAI statistics.
TOWER_PRESETS = {
    "siglip": {"resize_mode": "squash", "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5)},
    "clip": {
        "resize_mode": "shortest_edge_crop",
        "image_mean": (0.48145466, 0.4578275, 0.40821073),
        "image_std": (0.26862954, 0.26130258, 0.27577711),
    },
}


@dataclass(frozen=True)
class FrameTransform:
    """Resizes one frame to `size × size` RGB the way the tower family expects, applying display rotation.

    One instance serves one decode loop: it keeps its scaler, which `VideoFrame.reformat` would build anew for
    every frame; it is not to be shared between threads.
    """

    size: int
    resize_mode: str = "squash"
    interpolation: str = "BICUBIC"
    _scaler: VideoReformatter = field(default_factory=VideoReformatter, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}.")
        if self.size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {self.size}.")

    def __call__(self, frame: av.VideoFrame, rotation: int = 0) -> np.ndarray:
        """`frame` (any pixel format, `W × H` as stored) -> `(size, size, 3)` uint8 RGB as displayed.

        `rotation` is the counter-clockwise display rotation in degrees (a multiple of 90).
        """
        quarter_turns = (rotation // 90) % 4
        if self.resize_mode == "squash":
            width = height = self.size
        else:
            shortest = min(frame.width, frame.height)
            width = max(self.size, round(frame.width * self.size / shortest))
            height = max(self.size, round(frame.height * self.size / shortest))
        pixels = self._scaler.reformat(
            frame, width=width, height=height, format="rgb24", interpolation=self.interpolation
        ).to_ndarray()
        pixels = np.rot90(pixels, k=quarter_turns)
        if self.resize_mode == "shortest_edge_crop":
            top = (pixels.shape[0] - self.size) // 2
            left = (pixels.shape[1] - self.size) // 2
            pixels = pixels[top : top + self.size, left : left + self.size]
        return np.ascontiguousarray(pixels)


def display_thumbnail(frame: av.VideoFrame, height: int, scaler: VideoReformatter) -> np.ndarray:
    """`frame` as displayed, `height` pixels high: `(height, width, 3)` uint8 RGB, its display rotation applied and
    its aspect kept (an even width), scaled by `scaler` (one per thread)."""
    quarter_turns = (frame.rotation // 90) % 4
    if quarter_turns % 2:  # stored sideways: its width becomes the displayed height
        stored_width, stored_height = height, _even(height * frame.height / frame.width)
    else:
        stored_width, stored_height = _even(height * frame.width / frame.height), height
    pixels = scaler.reformat(frame, width=stored_width, height=stored_height, format="rgb24").to_ndarray()
    return np.ascontiguousarray(np.rot90(pixels, k=quarter_turns))


def _even(pixels: float) -> int:
    return max(2, round(pixels / 2) * 2)


def tower_video_settings(image_size: int, resize_mode: str, image_mean, image_std) -> dict:
    """`SalovaVideoProcessor` settings of a square `image_size` tower input resized the `resize_mode` way."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}.")
    square = {"height": image_size, "width": image_size}
    if resize_mode == "squash":
        resize = {"size": square, "do_center_crop": False}
    else:
        resize = {"size": {"shortest_edge": image_size}, "do_center_crop": True, "crop_size": square}
    return {**resize, "image_mean": tuple(image_mean), "image_std": tuple(image_std)}
