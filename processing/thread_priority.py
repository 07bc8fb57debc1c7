"""The decode loop's helper threads (scene detection, the 1 FPS resize) give way to the decoder's own threads.

The decoder is the critical path of a processor call: its frame threads wait on one another and leave a core idle
now and then. At the same priority, a helper thread woken by a new frame takes a core from a decoder thread and
the decode finishes later; at a lower priority (a higher nice value) the scheduler runs it mostly in those idle
gaps. A helper cannot starve: when it falls behind, its bounded queue stops the decoding thread, and the decoder's
threads go idle after it.
"""

import os
import sys
import threading

# Nice value of the helper threads: a nice-0 thread gets about ten times the CPU of one at 10 when both want it,
# enough to yield the cores without leaving the helpers to a trickle on a machine busy with other work.
HELPER_THREAD_NICENESS = 10


def lower_current_thread_priority(niceness: int | None = None) -> None:
    """Raises the calling thread's nice value to `niceness` (default `HELPER_THREAD_NICENESS`; never lowers it).

    Only on Linux, where a nice value belongs to a thread; elsewhere it would slow the whole process, so the
    priority stays as it is. A refusal (a sandbox forbidding it) also leaves it as it is: only the speed depends
    on it.
    """
    if not sys.platform.startswith("linux"):
        return
    niceness = HELPER_THREAD_NICENESS if niceness is None else niceness
    thread_id = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, max(os.getpriority(os.PRIO_PROCESS, thread_id), niceness))
    except OSError:
        pass
