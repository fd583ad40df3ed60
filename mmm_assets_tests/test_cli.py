"""`make run` over many markets: how many runs go at once, and the market workers that keep to it."""

import queue
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from mmm_assets import cli, work_queue


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


def _worker(body: str) -> list[str]:
    """A stand-in for `make run`'s market worker: ``body`` runs for each job read from stdin (``job``, ``time``,
    ``os`` and ``sys`` at hand) after its start mark on stderr, then its done mark with ``status`` on stdout."""
    lines = "\n".join(f"    {line}" for line in body.strip().splitlines())
    code = (f"import os, sys, time\nwhile line := sys.stdin.readline():\n    job = line.strip(); status = 0\n"
            f"    print({work_queue.START_MARK!r}, job, file=sys.stderr, flush=True)\n{lines}\n"
            f"    print({work_queue.DONE_MARK!r}, job, status, flush=True)\n")
    return [sys.executable, "-c", code]


def test_at_most_the_limit_run_at_once_every_job_runs_and_workers_are_reused(tmp_path, capsys):
    """Six jobs for two workers: never more than two at the same time, all six done by the same two processes, each
    job's stdout and status kept, the workers' stderr copied with the job's name."""
    log = tmp_path / "spans.txt"
    command = _worker(f"""
start = time.monotonic(); time.sleep(0.4)
open({str(log)!r}, 'a').write(f'{{start}} {{time.monotonic()}} {{os.getpid()}}\\n')
print('out', job); print('err', job, file=sys.stderr, flush=True); status = int(job[1:]) % 2
""")
    jobs = [f"m{i}" for i in range(6)]
    started = time.monotonic()
    results = work_queue.run_queued(command, jobs, limit=2, prefix_width=2)
    assert time.monotonic() - started >= 3 * 0.4  # six of 0.4 s, two at a time
    assert {name: code for name, (code, _) in results.items()} == {f"m{i}": i % 2 for i in range(6)}
    assert all(out.strip() == f"out {name}" for name, (_, out) in results.items())
    spans = [line.split() for line in log.read_text().splitlines()]
    assert len(spans) == 6 and len({pid for _, _, pid in spans}) == 2  # two processes did all six
    times = [(float(s), float(e)) for s, e, _ in spans]
    assert max(sum(s <= t < e for s, e in times) for t, _ in times) == 2
    err = capsys.readouterr().err
    # every job's line under its own name (stderr and stdout are two pipes: the name comes from the stderr mark)
    assert all(f"[{job}] err {job}" in err for job in jobs) and "at most 2 at once" in err
    assert work_queue.START_MARK not in err


def test_workers_get_one_blas_thread_unless_told_otherwise(monkeypatch):
    """Several workers share the cores: BLAS pools spinning in each slowed a mode search 6x (cli.BLAS_THREADS)."""
    for name in cli.BLAS_THREADS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")  # the user's own setting stays
    command = _worker("print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'], "
                      "os.environ['MKL_NUM_THREADS'], os.environ['HOME'] != '')")
    results = work_queue.run_queued(command, ["m0"], limit=1, env=cli.worker_env())
    assert results["m0"] == (0, "1 1 4 True\n")


def test_the_first_jobs_all_end_before_any_other_starts_on_the_same_workers(tmp_path):
    """A pooled refresh's inputs (`first`, one slow) before any market's refresh: a worker that runs out of first
    jobs waits for the slow one instead of starting a market, then both workers share the markets."""
    log = tmp_path / "spans.txt"
    command = _worker(f"""
start = time.monotonic(); time.sleep(1.0 if job == 'm0 inputs' else 0.1)
open({str(log)!r}, 'a').write(f'{{job.replace(" ", "_")}} {{start}} {{time.monotonic()}} {{os.getpid()}}\\n')
status = 2 if job == 'm2 inputs' else 0
""")
    first = ["m0 inputs", "m1 inputs", "m2 inputs"]
    results = work_queue.run_queued(command, ["m0", "m1", "m2", "m3"], limit=2, first=first)
    assert list(results) == [*first, "m0", "m1", "m2", "m3"]
    assert {name: code for name, (code, _) in results.items()} == {**dict.fromkeys(results, 0), "m2 inputs": 2}
    lines = (line.split() for line in log.read_text().splitlines())
    spans = {job: (float(s), float(e), pid) for job, s, e, pid in lines}
    assert max(e for job, (_, e, _) in spans.items() if "inputs" in job) <= min(
        s for job, (s, _, _) in spans.items() if "inputs" not in job)
    assert len({pid for _, _, pid in spans.values()}) == 2  # the same two workers did both stages
    assert len({spans[m][2] for m in ("m0", "m1", "m2", "m3")}) == 2  # and shared the markets


def test_a_worker_that_dies_during_a_job_fails_only_that_job(tmp_path):
    """The job a worker died on gets the worker's exit status and the output it wrote; a new worker takes the rest."""
    log = tmp_path / "pids.txt"
    command = _worker(f"""
open({str(log)!r}, 'a').write(f'{{job}} {{os.getpid()}}\\n'); print('working on', job, flush=True)
if job == 'm1': os._exit(3)
""")
    results = work_queue.run_queued(command, ["m0", "m1", "m2", "m3"], limit=1)
    assert {name: code for name, (code, _) in results.items()} == {"m0": 0, "m1": 3, "m2": 0, "m3": 0}
    assert results["m1"][1].strip() == "working on m1"
    pids = dict(line.split() for line in log.read_text().splitlines())
    assert pids["m0"] == pids["m1"] != pids["m2"] == pids["m3"]


def test_a_first_stage_job_whose_worker_died_is_handed_out_once_more(tmp_path):
    """A pooled model is fitted on every market's inputs: a worker that dies during one market's inputs (here b's,
    killed on its first try) must not fail every market. The job goes to a new worker once more, before the markets;
    a job whose worker dies twice (c's) keeps its exit status, and the markets run all the same."""
    log = tmp_path / "jobs.txt"
    command = _worker(f"""
open({str(log)!r}, 'a').write(f'{{job}}\\n')
tries = open({str(log)!r}).read().split().count(job)
if job == 'b' and tries == 1 or job == 'c': os.kill(os.getpid(), 9)
""")
    results = work_queue.run_queued(command, ["m0", "m1"], limit=2, first=["a", "b", "c"])
    assert {name: code for name, (code, _) in results.items()} == {"a": 0, "b": 0, "c": -9, "m0": 0, "m1": 0}
    ran = log.read_text().split()
    assert sorted(ran[:5]) == ["a", "b", "b", "c", "c"] and sorted(ran[5:]) == ["m0", "m1"]


def test_an_interrupt_stops_the_workers_and_hands_out_no_other_job(tmp_path, monkeypatch):
    marker = tmp_path / "started"
    command = _worker(f"open({str(marker)!r} + job, 'w'); time.sleep(30)")
    interrupted = []

    class Events(queue.Queue):  # the launcher's wait: interrupted once, when both workers are on a job
        def get(self, block=True, timeout=None):
            if not interrupted and all((tmp_path / f"startedm{i}").exists() for i in range(2)):
                interrupted.append(True)
                raise KeyboardInterrupt
            return super().get(block, timeout)

    # the launcher's own view of the queue module only
    monkeypatch.setattr(work_queue, "queue", SimpleNamespace(Queue=Events, Empty=queue.Empty))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        work_queue.run_queued(command, ["m0", "m1", "m2"], limit=2)
    assert time.monotonic() - started < 20  # the running ones were stopped, not waited for
    assert not (tmp_path / "startedm2").exists()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(monkeypatch):
    """A market run that does not stop on SIGTERM (it inherited SIGTERM ignored) is killed STOP_GRACE_S later."""
    monkeypatch.setattr(work_queue, "STOP_GRACE_S", 0.5)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    started = time.monotonic()
    work_queue.stop([child])
    assert time.monotonic() - started < 5 and child.returncode == -signal.SIGKILL


STOPS_ON_SIGTERM = """
import os, signal, sys
from dagster._utils.interrupts import setup_interrupt_handlers
from mmm_assets import cli
cli.install_stop_signals()
setup_interrupt_handlers()  # what every Dagster run does: SIGTERM gets SIGINT's handler
try:
    os.kill(os.getpid(), signal.SIGTERM)
except KeyboardInterrupt:
    sys.exit(7)
sys.exit(0)
"""


@pytest.mark.parametrize("sigint", ["ignored", "default"])
def test_a_refresh_stops_on_sigterm_even_when_started_with_sigint_ignored(sigint: str) -> None:
    """A background job of a non-interactive shell starts with SIGINT ignored; Dagster's runs map SIGTERM onto it."""
    def start() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL)

    done = subprocess.run([sys.executable, "-c", STOPS_ON_SIGTERM], preexec_fn=start, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 7, done.stderr[-2000:]
