"""Frame preprocessing to the vision tower's input size and normalisation, with PIL and NumPy only."""

import numpy as np
import torch
from PIL import Image

# SigLIP normalises to [-1, 1]; CLIP uses the OpenAI statistics.
NORMALISATION = {
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def preprocess_frames(frames: np.ndarray, size: int, tower_type: str = "siglip") -> torch.Tensor:
    """`(T, H, W, 3)` uint8 RGB -> `(T, 3, size, size)` float32, bicubic resize, tower normalisation."""
    if tower_type not in NORMALISATION:
        raise ValueError(f"tower_type must be one of {sorted(NORMALISATION)}, got {tower_type!r}.")
    mean, std = (np.asarray(v, dtype=np.float32)[:, None, None] for v in NORMALISATION[tower_type])
    resized = [
        np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        for frame in frames
    ]
    pixels = np.stack(resized).transpose(0, 3, 1, 2) / 255.0
    return torch.from_numpy((pixels - mean) / std)
