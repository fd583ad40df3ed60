"""`make run`'s queue of jobs: worker processes, each handed one job at a time on its stdin, stages of jobs that end
before the next stage starts, a dead worker's job failed (a first stage's handed out once more) and its place taken
by a new worker, and stopping them all.

The jobs are `python -m mmm_assets run --worker` lines (cli.serve_markets): a market's refresh or its inputs. The
queue knows only job names and exit statuses; what a job does is the worker's.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def say(line: str) -> None:
    """A progress line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


#: Seconds a market run gets to stop after SIGTERM (its Dagster run marked failed, its pool slot released) before
#: it is killed: a child can ignore SIGTERM when it inherits that from the launcher's own process (seen once in the
#: test suite, where a stopped child then ran its full 30 s).
STOP_GRACE_S = 10.0

#: The line a market worker writes after each market's summary on stdout: the mark, the market and its exit status.
DONE_MARK = "@@mmm_assets market done"
#: The line a market worker writes on stderr before each market's log lines: the mark and the market.
START_MARK = "@@mmm_assets market start"


@dataclass
class _Worker:
    """A worker process, the job it is on (None between jobs) and that job's stdout so far."""

    process: subprocess.Popen
    job: str | None = None
    out: list[str] = field(default_factory=list)


class _Queue:
    """The state of :func:`run_queued`: the jobs waiting (those of the stage under way, and the later stages'), the
    workers alive, the results, and the workers' events (a job done, a worker's stdout closed) from their reader
    threads."""

    def __init__(self, command: list[str], stages: list[list[str]], limit: int, prefix_width: int,
                 env: Mapping[str, str] | None = None) -> None:
        #: The jobs of a first stage with more stages after it (the later jobs need every one of them) whose worker
        #: has not died on them yet: one that does is handed out once more.
        self.retry_once = set(stages[0]) if len(stages) > 1 and stages[1] else set()
        stages = [list(jobs) for jobs in stages if jobs]
        self.waiting, self.later = (stages[0], stages[1:]) if stages else ([], [])
        self.command, self.limit, self.prefix_width, self.env = command, limit, prefix_width, env
        self.workers: list[_Worker] = []
        self.log_copiers: list[threading.Thread] = []
        self.results: dict[str, tuple[int, str]] = {}
        self.events: queue.Queue = queue.Queue()

    def read_out(self, worker: _Worker) -> None:
        for line in worker.process.stdout:
            if line.startswith(DONE_MARK):
                name, code = line[len(DONE_MARK):].rsplit(maxsplit=1)
                name = name.strip()
                self.events.put(("done", worker, name, int(code)))
            else:
                worker.out.append(line)
        self.events.put(("exit", worker, None, None))

    def read_err(self, worker: _Worker) -> None:
        """The worker's stderr, each line prefixed with the job named by the last ``START_MARK`` before it (the
        job handed out can already be the next one when this thread reads a line late)."""
        job = ""
        for line in worker.process.stderr:
            if line.startswith(START_MARK):
                job = line[len(START_MARK):].strip()
                continue
            sys.stderr.write(f"[{job:<{self.prefix_width}}] {line}")
            sys.stderr.flush()

    def hand_out(self, worker: _Worker) -> None:
        """The next job to ``worker``; when the stage under way has none left to hand out, ``worker`` waits (its stdin
        open) until the stage's last job ends and the next stage starts; its stdin is closed when no job is left."""
        if not self.waiting and self.later and not any(w.job for w in self.workers if w is not worker):
            self.waiting = self.later.pop(0)
            for idle in [w for w in self.workers if w is not worker and w.job is None and not w.process.stdin.closed]:
                self.hand_out(idle)
        worker.job, worker.out = (self.waiting.pop(0), []) if self.waiting else (None, [])
        try:
            if worker.job is None:
                if not self.later:
                    worker.process.stdin.close()
                return
            worker.process.stdin.write(worker.job + "\n")
            worker.process.stdin.flush()
        except BrokenPipeError:  # it has died: its exit event records the job with its exit status
            return
        busy = sum(w.job is not None for w in self.workers)
        say(f"started {worker.job} ({busy} running, {len(self.waiting)} waiting, at most {self.limit} at once)")

    def start(self) -> None:
        process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, bufsize=1)
        worker = _Worker(process)
        self.workers.append(worker)
        threading.Thread(target=self.read_out, args=(worker,), daemon=True).start()
        self.log_copiers.append(threading.Thread(target=self.read_err, args=(worker,), daemon=True))
        self.log_copiers[-1].start()
        self.hand_out(worker)

    def handle(self, kind: str, worker: _Worker, name: str | None, code: int | None) -> None:
        if kind == "done":
            self.results[name] = (code, "".join(worker.out))
            self.hand_out(worker)
            return
        worker.process.wait()
        self.workers.remove(worker)
        if worker.job is not None:  # it died during a job
            self.results[worker.job] = (worker.process.returncode, "".join(worker.out))
            if worker.job in self.retry_once:  # a pooled model is fitted on every market's inputs
                say(f"{worker.job}: its worker died (exit {worker.process.returncode}); handed out once more")
                self.retry_once.remove(worker.job)
                self.waiting.insert(0, worker.job)
            if self.waiting or self.later:
                self.start()


def run_queued(command: list[str], jobs: list[str], limit: int, prefix_width: int = 0,
               first: Sequence[str] = (), env: Mapping[str, str] | None = None) -> dict[str, tuple[int, str]]:
    """Every job done by at most ``limit`` worker processes running ``command``, each worker handed one job at a time
    (its name, a line on the worker's stdin) and the next when it writes ``DONE_MARK <job> <status>`` on stdout; a
    worker whose stdin closes exits. The ``first`` jobs all end before any of ``jobs`` starts (by the same workers).
    The workers' stderr lines are copied to ours prefixed with their job (a worker starts each job's stderr with
    ``START_MARK <job>``). The workers get ``env`` (ours when None).
    Returns each job's status and stdout; a worker that dies during a job leaves that job its exit status, and a new
    worker takes the jobs still waiting; a ``first`` job it died on is handed out once more first, since every one
    of ``jobs`` needs them all. On Ctrl-C / SIGTERM the workers are stopped (``stop``) and no job is
    handed out again."""
    state = _Queue(command, [list(first), jobs], limit, prefix_width, env)
    try:
        for _ in range(min(limit, max(len(first), len(jobs)))):
            state.start()
        while state.workers:
            try:
                state.handle(*state.events.get(timeout=0.1))
            except queue.Empty:
                continue
    except KeyboardInterrupt:
        stop([w.process for w in state.workers])
        raise
    for copier in state.log_copiers:  # every worker's last log lines copied before the summary follows
        copier.join()
    return {name: state.results[name] for name in [*first, *jobs]}


def stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM to every child, then SIGKILL to those still running ``STOP_GRACE_S`` later."""
    for child in children:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"pid {child.pid} still running {STOP_GRACE_S:.0f} s after SIGTERM: killed")
            child.kill()
            child.wait()
