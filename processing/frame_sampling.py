"""The sampling rule: of a video's frames in presentation order, the first at or after each instant `k / fps`.

The decoder keeps these frames, the data check predicts them from a file's packet times, and the speed benchmark
samples with them, so all three agree on which frames a video gives.
"""

import math
from collections.abc import Iterable

# SALOVA samples one frame per second: the default of the video processor's `fps` and of the decoder.
SAMPLING_FPS = 1.0


def sampling_instant_index(seconds: float, fps: float) -> int:
    """`k` of the sampling instant `k / fps` a frame at `seconds` covers (the last at or before it);
    tolerant to timestamp rounding, so a frame stamped a hair before an instant still counts as at it."""
    return math.floor(seconds * fps + 1e-6)


class FirstFrameSampler:
    """Shown each frame's time in presentation order, keeps the first frame at or after each sampling instant."""

    def __init__(self, fps: float):
        self.fps = fps
        self._next_index = 0

    def keeps(self, seconds: float) -> bool:
        """Whether the next frame, at `seconds`, is kept."""
        index = sampling_instant_index(seconds, self.fps)
        if index < self._next_index:
            return False
        self._next_index = index + 1
        return True


def sampled_times(times: Iterable[float], fps: float) -> list[float]:
    """The times, of `times` (seconds, in presentation order), of the frames the sampler keeps."""
    sampler = FirstFrameSampler(fps)
    return [seconds for seconds in times if sampler.keeps(seconds)]
