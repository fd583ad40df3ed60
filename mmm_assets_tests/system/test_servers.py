"""The servers the system tests start stop on SIGTERM, however the tests themselves were started."""

import signal
import subprocess
import sys

import pytest

from mmm_assets_tests.system.servers import start_server

#: A stand-in for Dagster's servers: SIGTERM mapped onto SIGINT's handler (dagster._utils.interrupts).
SERVER = ("import signal, time; signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT)); "
          "print('ready', flush=True); time.sleep(60)")


def _started_with_sigint_ignored(start) -> subprocess.Popen:
    """``start`` run as under CI's runner: SIGINT ignored in this process; the child once it is ready."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = start([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # ours left as it was
    finally:
        signal.signal(signal.SIGINT, previous)
    assert child.stdout.readline() == "ready\n"
    return child


def test_a_server_started_while_sigint_is_ignored_stops_on_sigterm() -> None:
    child = _started_with_sigint_ignored(start_server)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == -signal.SIGINT  # ended by its KeyboardInterrupt (Python re-raises SIGINT)


def test_without_it_the_stand_in_ignores_sigterm() -> None:
    """The condition the helper is for is real: a plain Popen passes the ignored SIGINT on, and SIGTERM with it."""
    child = _started_with_sigint_ignored(subprocess.Popen)
    try:
        child.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    finally:
        child.kill()
        child.wait()
