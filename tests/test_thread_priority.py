"""The decode loop's helper threads run below the decoder's priority; the caller's thread keeps its own."""

import math
import os
import sys
import threading

import pytest
from conftest import real_video
from salova.processing import FrameTransform, SceneCutDetector, decode_video, video_decoding
from salova.processing.thread_priority import HELPER_THREAD_NICENESS, lower_current_thread_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values are per thread on Linux")


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_new_thread(step) -> list:
    seen = []
    thread = threading.Thread(target=lambda: seen.append(step()))
    thread.start()
    thread.join()
    return seen


def test_a_thread_lowers_its_own_priority_only():
    caller = _niceness()
    assert _in_new_thread(lambda: (lower_current_thread_priority(), _niceness())[1]) == [
        max(caller, HELPER_THREAD_NICENESS)
    ]
    assert _niceness() == caller


def test_a_lower_priority_is_never_raised_back():
    def already_nicer():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        lower_current_thread_priority(niceness=5)
        return _niceness()

    assert _in_new_thread(already_nicer) == [19]


def test_a_refused_change_leaves_the_priority_and_raises_nothing(monkeypatch):
    def refuse(*args):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    caller = _niceness()
    assert _in_new_thread(lambda: (lower_current_thread_priority(), _niceness())[1]) == [caller]


def test_detection_and_resize_run_below_the_decoding_thread(monkeypatch):
    seen = {"detection": set(), "resize": set()}
    real_process, real_resize = SceneCutDetector.process, FrameTransform.__call__

    def recording_process(self, frame, stamp):
        seen["detection"].add(_niceness())
        return real_process(self, frame, stamp)

    def recording_resize(self, frame, rotation=0):
        seen["resize"].add(_niceness())
        return real_resize(self, frame, rotation)

    monkeypatch.setattr(SceneCutDetector, "process", recording_process)
    monkeypatch.setattr(FrameTransform, "__call__", recording_resize)
    # One pass, with its helper threads (parts side by side score and resize on their own decoding threads).
    monkeypatch.setattr(video_decoding, "MIN_EXACT_PART_SECONDS", math.inf)
    caller = _niceness()
    decoded = decode_video(real_video("bikes.mp4"), FrameTransform(32), cut_detector=SceneCutDetector())
    assert len(decoded.cut_times) == 5
    lowered = {max(caller, HELPER_THREAD_NICENESS)}
    assert seen == {"detection": lowered, "resize": lowered}
    assert _niceness() == caller
