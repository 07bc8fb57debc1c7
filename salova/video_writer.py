"""Writing test and synthetic videos with PyAV (H.264 in MP4), frame by frame, without holding them in memory."""

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    frame_times: Iterable[float] | None = None,
    rotation: int = 0,
    crf: int = 23,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """Encodes `(H, W, 3)` uint8 RGB frames (all the same size) to `path`.

    frame_times: presentation time of each frame in seconds, for variable-frame-rate files (default `i / fps`).
    rotation: display rotation in degrees, stored as container metadata (as phones do).
    encoder_options: more libx264 options (e.g. `{"x264-params": "scenecut=0"}`), added to crf and preset.
    """
    path = Path(path)
    times = iter(frame_times) if frame_times is not None else None
    time_base = Fraction(1, 1000) if times is not None else None
    with av.open(str(path), "w") as container:
        stream = None
        for index, pixels in enumerate(frames):
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = pixels.shape[:2]
                # x264 needs even sizes for 4:2:0; odd-sized frames are stored in 4:4:4.
                even = stream.height % 2 == 0 and stream.width % 2 == 0
                stream.pix_fmt = "yuv420p" if even else "yuv444p"
                stream.options = {"crf": str(crf), "preset": "veryfast", **(encoder_options or {})}
                if time_base is not None:
                    stream.codec_context.time_base = time_base
                if rotation:
                    stream.set_display_rotation(rotation)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(next(times) / time_base), time_base
            else:
                frame.pts = index
            container.mux(stream.encode(frame))
        if stream is None:
            raise ValueError(f"write_video({path}): no frames given.")
        container.mux(stream.encode())
    return path
