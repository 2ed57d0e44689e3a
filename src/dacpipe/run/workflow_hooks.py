"""What the Snakemake workflow does when it ends (its onsuccess and onerror handlers).

Snakemake's job rate limit (``--max-jobs-per-timespan``, 100/1s by default)
reopens the scheduler through a :class:`threading.Timer` of the timespan after
each round of jobs (``JobScheduler._schedule_reevalutation``, spelled so in
Snakemake 9). The last of these timers outlives the workflow, and Python
waits for it before the process exits: about 1 s added to every run that ran
jobs (0.9-1.3 s measured after the last job of a 1,000-point run). When the
workflow is over there is nothing left to schedule, so the handlers cancel
them.
"""

from __future__ import annotations

import threading

# The name of the Snakemake method whose timers these are (tests/test_workflow.py checks it).
SCHEDULER_TIMER_METHOD = "_schedule_reevalutation"


def cancel_rate_limit_timers() -> int:
    """Cancel the scheduler's pending rate-limit timers; the number cancelled.

    Only timers whose function the scheduler's method defined are touched; with
    a Snakemake that names it otherwise, nothing is, and the exit waits as before.
    """
    cancelled = 0
    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if isinstance(thread, threading.Timer) and \
                f".{SCHEDULER_TIMER_METHOD}." in getattr(function, "__qualname__", ""):
            thread.cancel()
            cancelled += 1
    return cancelled
