"""Preemption: a job sent SIGTERM stops at its next safe point and keeps what it finished.

Slurm sends SIGTERM before it kills a job (time limit, preemption, ``scancel``) and SIGKILL
``KillWait`` seconds later (30 by default). Training keeps a checkpoint per epoch in
``<run>/.partial`` and an analysis a cache entry per checkpoint in ``<run>/.partial-<kind>``,
both written atomically, so the point after each finished epoch is safe: the loops call
:func:`safe_point` there. The scripts run their job inside :func:`preemptible`, which turns
SIGTERM into a stop at the next safe point, or, when none comes within ``grace`` seconds (an LLC
epoch can take an hour), a stop where the job is, losing only the unfinished epoch. The job then
exits with status 143 (as if killed by SIGTERM) and a line in its log; rerunning the workflow
resumes it from what was kept. :func:`note` writes such lines to the job's log (stderr).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

GRACE_SECONDS = 20  # below Slurm's default KillWait of 30 s
EXIT_STATUS = 128 + signal.SIGTERM


class Preempted(BaseException):
    """The job was asked to stop (a BaseException: ``except Exception`` does not swallow it)."""


_stop_requested = False


def note(message: str) -> None:
    """One line in the job's log (the scripts point stderr at it)."""
    print(message, file=sys.stderr, flush=True)


def safe_point(kept: str) -> None:
    """Stop here if SIGTERM has arrived; ``kept`` says what the rerun resumes from."""
    if _stop_requested:
        raise Preempted(f"stopped after {kept}")


@contextlib.contextmanager
def preemptible(grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Run the block with SIGTERM as a request to stop at the next :func:`safe_point` (within
    ``grace`` seconds, else at once); a stop exits with :data:`EXIT_STATUS` and a logged line."""

    def on_sigterm(signum, frame):
        global _stop_requested
        _stop_requested = True
        note(f"SIGTERM: stopping at the next safe point (at most {grace:g} s from now)")
        signal.setitimer(signal.ITIMER_REAL, grace)

    def on_alarm(signum, frame):
        raise Preempted(f"no safe point within {grace:g} s: the unfinished epoch is lost")

    previous = signal.signal(signal.SIGTERM, on_sigterm), signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield
    except Preempted as stop:
        note(f"preempted: {stop}; rerunning the workflow resumes from there")
        raise SystemExit(EXIT_STATUS) from None
    finally:
        _reset(previous)


def _reset(previous) -> None:
    global _stop_requested
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGTERM, previous[0])
    signal.signal(signal.SIGALRM, previous[1])
    _stop_requested = False
