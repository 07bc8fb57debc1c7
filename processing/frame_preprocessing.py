"""Frames to the vision tower's input: resize with PyAV's scaler (no torchvision), then normalise.

Resizing happens on the decoded `av.VideoFrame` (YUV for files), so a long video never holds a full-size RGB
frame longer than one step of the decode loop. Frames already in memory go through the same scaler, so a
video gives the same pixels whether it is passed as a file or as decoded frames.
"""

from dataclasses import dataclass

import av
import numpy as np
import torch

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
    """Resizes one frame to `size × size` RGB the way the tower family expects, applying display rotation."""

    size: int
    resize_mode: str = "squash"

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
        pixels = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC").to_ndarray()
        pixels = np.rot90(pixels, k=quarter_turns)
        if self.resize_mode == "shortest_edge_crop":
            top = (pixels.shape[0] - self.size) // 2
            left = (pixels.shape[1] - self.size) // 2
            pixels = pixels[top : top + self.size, left : left + self.size]
        return np.ascontiguousarray(pixels)


def normalize_frames(frames: np.ndarray, image_mean, image_std, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`(T, H, W, 3)` uint8 RGB -> `(T, 3, H, W)` `(x / 255 - mean) / std`."""
    mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    return pixels.sub_(mean).div_(std).to(dtype)
