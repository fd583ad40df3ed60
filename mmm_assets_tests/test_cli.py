"""`make run` over many markets: how many runs go at once, and the bounded launcher that keeps to it."""

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from mmm_assets import cli


def test_the_number_of_runs_at_once_follows_the_setting_or_the_machine(monkeypatch):
    assert cli.parallel_runs(3) == (3, "operations.max_parallel_runs")
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda _: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    monkeypatch.setattr(cli, "_available_mib", lambda: 3.5 * cli.RUN_PEAK_MIB)
    limit, why = cli.parallel_runs(None)
    assert limit == 3 and why.startswith("8 cores, ")  # memory for three, cores for eight
    monkeypatch.setattr(cli, "_available_mib", lambda: 100 * cli.RUN_PEAK_MIB)
    assert cli.parallel_runs(None)[0] == 8
    monkeypatch.setattr(cli, "_available_mib", lambda: 0.2 * cli.RUN_PEAK_MIB)
    assert cli.parallel_runs(None)[0] == 1  # never none


def test_at_most_the_limit_run_at_once_and_every_one_runs(tmp_path, capsys):
    """Six children that each record when they ran: never more than two at the same time, all six finished, their
    stdout and return codes kept, their stderr copied with their name."""
    log = tmp_path / "spans.txt"
    code = ("import sys, time; start = time.monotonic(); time.sleep(0.4); "
            f"open({str(log)!r}, 'a').write(f'{{start}} {{time.monotonic()}}\\n'); "
            "print('out', sys.argv[1]); print('err', sys.argv[1], file=sys.stderr); sys.exit(int(sys.argv[1]) % 2)")
    commands = {f"m{i}": [sys.executable, "-c", code, str(i)] for i in range(6)}
    started = time.monotonic()
    results = cli.run_bounded(commands, limit=2, prefix_width=2)
    assert time.monotonic() - started >= 3 * 0.4  # six of 0.4 s, two at a time
    assert {name: code for name, (code, _) in results.items()} == {f"m{i}": i % 2 for i in range(6)}
    assert all(out.strip() == f"out {name[1:]}" for name, (_, out) in results.items())
    spans = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(spans) == 6
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap == 2
    err = capsys.readouterr().err
    assert "[m3] err 3" in err and "at most 2 at once" in err


def test_an_interrupt_stops_the_running_and_never_starts_the_waiting(tmp_path, monkeypatch):
    marker = tmp_path / "started"
    code = f"import sys, time; open({str(marker)!r} + sys.argv[1], 'w'); time.sleep(30)"
    commands = {f"m{i}": [sys.executable, "-c", code, str(i)] for i in range(3)}
    interrupted = []

    def sleep(seconds):  # the launcher's wait: interrupted once, when both running children exist
        if not interrupted and all((tmp_path / f"started{i}").exists() for i in range(2)):
            interrupted.append(True)
            raise KeyboardInterrupt
        time.sleep(seconds)

    # the launcher's own view of the time module only (subprocess's waits and other threads keep the real sleep)
    monkeypatch.setattr(cli, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        cli.run_bounded(commands, limit=2)
    assert time.monotonic() - started < 20  # the running ones were stopped, not waited for
    assert not (tmp_path / "started2").exists()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch):
    """A market run that does not stop on SIGTERM (it inherited SIGTERM ignored) is killed STOP_GRACE_S later."""
    monkeypatch.setattr(cli, "STOP_GRACE_S", 0.5)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    started = time.monotonic()
    cli._stop([child])
    assert time.monotonic() - started < 5 and child.returncode == -signal.SIGKILL
