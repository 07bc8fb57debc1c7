"""The adaptive rule and scene-length gate against PySceneDetect's own `AdaptiveDetector`, fed the same scores; the
detection image against a plain I420 conversion."""

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import scenedetect
from conftest import real_video
from salova.processing import SceneCutDetector
from salova.processing.scene_detection import FrameStamp, content_score
from scenedetect.common import Timecode


class _ScoreFedAdaptiveDetector(scenedetect.AdaptiveDetector):
    """PySceneDetect's detector whose "frames" are content scores."""

    def _calculate_frame_score(self, timecode, score):
        return score


def _stamps(count: int, frame_rate: Fraction, rng, with_pts: bool) -> list[FrameStamp]:
    if not with_pts:
        return [FrameStamp(index / float(frame_rate), index, frame_rate) for index in range(count)]
    # Millisecond ticks with jitter: a variable-frame-rate file.
    time_base = Fraction(1, 1000)
    ticks = np.cumsum(rng.integers(25, 60, count)) - 25
    return [
        FrameStamp(float(int(tick) * time_base), index, frame_rate, int(tick), time_base)
        for index, tick in enumerate(ticks)
    ]


def _reference_cuts(scores, stamps, **settings) -> list[float]:
    detector = _ScoreFedAdaptiveDetector(**settings)
    cuts = []
    for stamp, score in zip(stamps, scores, strict=True):
        timecode = (
            scenedetect.FrameTimecode(Timecode(pts=stamp.pts, time_base=stamp.time_base), fps=stamp.frame_rate)
            if stamp.pts is not None
            else scenedetect.FrameTimecode(stamp.index, fps=stamp.frame_rate)
        )
        cuts += detector.process_frame(timecode, score)
    return [cut.seconds for cut in cuts]


def _our_cuts(scores, stamps, **settings) -> list[float]:
    detector = SceneCutDetector(**settings)
    for stamp, score in zip(stamps, scores, strict=True):
        detector.process_score(stamp, score)
    return detector.finish()


@pytest.mark.parametrize("with_pts", [False, True], ids=["frame-index", "pts"])
@pytest.mark.parametrize("seed", range(6))
def test_rule_and_gate_give_pyscenedetects_cuts_on_random_scores(seed, with_pts):
    rng = np.random.default_rng(seed)
    count = 600
    # Quiet stretches, motion, zeros (the mean-is-zero branch) and spikes of all heights, some close together.
    scores = rng.gamma(1.5, 3.0, count) * rng.integers(0, 2, count)
    spikes = rng.choice(count, 60, replace=False)
    scores[spikes] = rng.uniform(5.0, 120.0, len(spikes))
    scores[0] = 0.0
    settings = {
        "adaptive_threshold": float(rng.choice([1.5, 3.0, 5.0])),
        "min_content_val": float(rng.choice([5.0, 15.0, 30.0])),
        "window_width": int(rng.integers(1, 5)),
        "min_scene_len": int(rng.choice([0, 1, 5, 15])),
    }
    stamps = _stamps(count, Fraction(30000, 1001), rng, with_pts)
    reference = _reference_cuts(scores, stamps, **settings)
    assert len(reference) >= 5, settings
    assert _our_cuts(scores, stamps, **settings) == reference


def test_hand_computed_cuts():
    # Window 2: frame 5's neighbours average (1 + 1 + 1 + 1) / 4 = 1, ratio 40 >= 3 and 40 >= 15: a cut.
    # Frame 9 (score 20, neighbours average 1) comes 4 frames after it, under min_scene_len=5: dropped.
    # Frame 14 (score 12) is under min_content_val=15 whatever its ratio; frame 19 (score 16, ratio 16) is a cut.
    scores = [0.0] + [1.0] * 24
    scores[5], scores[9], scores[14], scores[19] = 40.0, 20.0, 12.0, 16.0
    stamps = [FrameStamp(index / 10.0, index, Fraction(10)) for index in range(len(scores))]
    assert _our_cuts(scores, stamps, min_scene_len=5) == [0.5, 1.9]
    assert _reference_cuts(scores, stamps, min_scene_len=5) == [0.5, 1.9]


def test_window_width_must_be_positive():
    with pytest.raises(ValueError, match="window_width must be at least 1, got 0"):
        SceneCutDetector(window_width=0)


@pytest.mark.parametrize(
    "name, size", [("carphone_pristine.mp4", (176, 144)), ("bikes.mp4", (256, 108)), ("bigbuckbunny.mp4", (256, 144))]
)
def test_detection_image_is_the_plain_i420_conversion_of_the_sampled_planes(name, size):
    # carphone's 176-pixel rows are padded for the conversion and cropped after; the others need no padding.
    detector = SceneCutDetector()
    with av.open(str(real_video(name))) as container:
        frames = [frame for _, frame in zip(range(12), container.decode(video=0), strict=False)]
    for frame in frames:
        hsv = detector.detection_image(frame)
        width, height = detector._detection_size
        planes = [np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size) for plane in frame.planes]
        sizes = [(frame.width, frame.height), *[((frame.width + 1) // 2, (frame.height + 1) // 2)] * 2]
        targets = [(width, height), *[(width // 2, height // 2)] * 2]
        resized = [
            cv2.resize(plane[:rows, :columns], target, interpolation=cv2.INTER_NEAREST).reshape(-1)
            for plane, (columns, rows), target in zip(planes, sizes, targets, strict=True)
        ]
        i420 = np.concatenate(resized).reshape(height * 3 // 2, width)
        expected = cv2.cvtColor(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), cv2.COLOR_BGR2HSV)
        np.testing.assert_array_equal(hsv, expected)
    assert (width, height) == size


def test_content_score_is_pyscenedetects_to_the_bit():
    detector = scenedetect.ContentDetector()
    ours = SceneCutDetector()
    with av.open(str(real_video("bikes.mp4"))) as container:
        frames = [frame for _, frame in zip(range(40), container.decode(video=0), strict=False)]
    previous = None
    for index, frame in enumerate(frames):
        bgr = ours._downscaled_bgr(frame)
        hsv = ours.detection_image(frame)
        reference = detector._calculate_frame_score(scenedetect.FrameTimecode(index, fps=25.0), bgr)
        assert content_score(previous, hsv) == reference
        previous = hsv
