"""SIGTERM (Slurm's warning before SIGKILL) stops a job at its next safe point, or after a grace
period where it is; the job exits with status 143 and says so in its log."""

import os
import signal
import time

import pytest

from sltgeom.preemption import EXIT_STATUS, Preempted, preemptible, safe_point


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_at_the_next_safe_point(capsys):
    finished = []
    with pytest.raises(SystemExit) as stop, preemptible():
        for epoch in range(5):
            if epoch == 2:
                sigterm()
            finished.append(epoch)  # the epoch in progress is completed
            safe_point(f"epoch {epoch}")
    assert stop.value.code == EXIT_STATUS == 143 and finished == [0, 1, 2]
    log = capsys.readouterr().err
    assert "SIGTERM: stopping at the next safe point" in log
    assert "preempted: stopped after epoch 2; rerunning the workflow resumes from there" in log


def test_without_a_safe_point_it_stops_after_the_grace_period(capsys):
    tic = time.perf_counter()
    with pytest.raises(SystemExit), preemptible(grace=0.2):
        sigterm()
        while time.perf_counter() - tic < 10:  # an epoch that would outlast the grace period
            pass
    assert 0.2 <= time.perf_counter() - tic < 5
    assert "no safe point within 0.2 s: the unfinished epoch is lost" in capsys.readouterr().err


def test_the_handlers_are_restored_and_safe_points_are_free_outside():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)
    with pytest.raises(SystemExit), preemptible():
        sigterm()
        safe_point("x")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM)) == before
    safe_point("no SIGTERM since: nothing happens")
    with preemptible():
        safe_point("nothing requested")


def test_preempted_passes_through_except_exception():
    with pytest.raises(SystemExit), preemptible():
        try:
            sigterm()
            safe_point("epoch 0")
        except Exception:  # e.g. a retry loop in the job
            pytest.fail("Preempted was caught as an Exception")
    assert issubclass(Preempted, BaseException) and not issubclass(Preempted, Exception)
