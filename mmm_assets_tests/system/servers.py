"""Servers the system tests start (`dagster dev`, `dagster api grpc`, `dagster-daemon`, MLflow): each in a session of
its own, with SIGINT at its default even when the tests themselves were started with it ignored.

A non-interactive shell starts its background jobs with SIGINT ignored (CI's runner starts the suite that way), and
an ignored signal stays ignored across fork and exec. Dagster's processes map SIGTERM onto SIGINT's handler
(`dagster._utils.interrupts.setup_interrupt_handlers`), so a server started with SIGINT ignored ignores SIGTERM as
well: each stop then waited out its whole grace period before SIGKILL (20-30 s a server in CI) and the server never
shut down cleanly. A terminal, systemd or a Kubernetes pod starts them with SIGINT at its default; so do the tests.
"""

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_at_default() -> Iterator[None]:
    """Processes started inside inherit SIGINT at its default (a handler of ours is reset to it by exec)."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_server(command: list[str], **popen_kwargs) -> subprocess.Popen:
    """``command`` in a session (and process group) of its own, SIGINT at its default; ``popen_kwargs`` as Popen's."""
    with sigint_at_default():
        return subprocess.Popen(command, start_new_session=True, **popen_kwargs)


def stop_server(proc: subprocess.Popen, grace_s: float) -> None:
    """Stop a server started in a session of its own (:func:`start_server`): SIGTERM to its process group, SIGKILL
    to the group when the server has not ended after ``grace_s``, and SIGKILL to whatever of the group outlived it.
    A server's children do not always end with it: a `dagster-daemon`'s gRPC code server was still running 15
    minutes after the daemon had stopped, holding a core for the rest of the suite."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader while a member is left
    proc.wait()
