"""Worker processes for answer checking: parallel when batches are large, killable always.

Why processes: the symbolic stage (sympy) can spend seconds inside C code, where neither a
thread nor a signal can stop it. A worker is a separate process that the parent kills when its
deadline passes, so the time budget of a check holds whichever thread or process asks for it.
The parent waits on the worker's pipe with ``poll`` (any thread can), never on a signal.

Workers are plain ``python -I -c`` subprocesses (not ``multiprocessing``, whose children would
re-import the parent's ``__main__``, and which daemonic processes such as data-loader workers
cannot use). They import only the checker (:mod:`limr.rewards._worker`), not torch, and start in
well under a second. A pool is created on first use, per process (a forked child makes its own),
and its workers exit with the parent (end of their stdin).

Results are deterministic and in input order: every request is a pure function of its inputs,
except that a check that runs out of time is ``TIMEOUT``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from limr.rewards import answer, rules
from limr.rewards.verdict import DEFAULT_TIMEOUT, Verdict

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to import its modules (not counted in any check's budget)."""
PARALLEL_MIN_CHARS = 2_000_000
"""Batches with at least this much response text are scored entirely in the workers."""

_BOOT = """
import json, sys, types
paths, package = json.loads(sys.argv[1])
sys.path[:0] = paths
import limr
stub = types.ModuleType("limr.rewards")
stub.__path__ = [package]
sys.modules["limr.rewards"] = stub
limr.rewards = stub
from limr.rewards import _worker
_worker.main()
"""


def default_workers() -> int:
    """Worker count: ``$LIMR_VERIFY_WORKERS``, else half the CPUs (1 to 8)."""
    env = os.environ.get("LIMR_VERIFY_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class WorkerError(RuntimeError):
    """A worker could not be started or died unexpectedly."""


class _Worker:
    """One subprocess and its pipes. Used by one thread at a time."""

    def __init__(self) -> None:
        paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        package = str(Path(__file__).resolve().parent)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, json.dumps([paths, package])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                close_fds=True,
            )
        except OSError as err:
            raise WorkerError(f"cannot start a checker worker: {err}") from err
        self.buffer = b""
        self.ready = False

    def _readline(self, deadline: float) -> bytes | None:
        """One line from the worker, or None if the deadline passes first."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
                if time.monotonic() >= deadline:
                    return None
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerError("checker worker exited")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def wait_ready(self) -> None:
        if self.ready:
            return
        line = self._readline(time.monotonic() + STARTUP_TIMEOUT)
        if line is None or json.loads(line).get("ready") is not True:
            self.kill()
            raise WorkerError("checker worker did not start")
        self.ready = True

    def request(self, message: dict, budget: float) -> dict | None:
        """Send one request; None (and the worker is killed) if no reply within ``budget`` s."""
        self.wait_ready()
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")  # type: ignore[union-attr]
        except (BrokenPipeError, OSError) as err:
            raise WorkerError(f"checker worker exited: {err}") from err
        line = self._readline(time.monotonic() + budget)
        if line is None:
            self.kill()
            return None
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class Pool:
    """Up to ``size`` workers, lent to one thread at a time."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)
        self._count = 0
        self._limit = 0

    def warm(self, n: int) -> None:
        """Start workers (without waiting for them) so that the first checks find them ready."""
        with self._lock:
            self._limit = max(self._limit, n)
            while self._count < n:
                self._idle.append(_Worker())
                self._count += 1

    def _acquire(self) -> _Worker:
        with self._available:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()
                    self._count -= 1
                if self._count < max(self._limit, 1):
                    self._count += 1
                    break
                self._available.wait()
        try:
            return _Worker()
        except WorkerError:
            with self._available:
                self._count -= 1
                self._available.notify()
            raise

    def _release(self, worker: _Worker) -> None:
        with self._available:
            if worker.alive():
                self._idle.append(worker)
            else:
                self._count -= 1
            self._available.notify()

    def run(self, messages: Sequence[dict], budget: float, workers: int) -> list[dict | None]:
        """Answer every message (in order); None where the budget ran out."""
        results: list[dict | None] = [None] * len(messages)
        if not messages:
            return results
        lanes = max(1, min(workers, len(messages)))
        with self._lock:
            self._limit = max(self._limit, lanes)
        next_index = iter(range(len(messages)))
        index_lock = threading.Lock()
        errors: list[BaseException] = []

        def lane() -> None:
            worker = self._acquire()
            try:
                while True:
                    with index_lock:
                        i = next(next_index, None)
                    if i is None:
                        return
                    for _attempt in range(2):  # a worker that died gets one retry on a new one
                        try:
                            results[i] = worker.request(messages[i], budget)
                            break
                        except WorkerError:
                            worker.kill()
                            worker = _Worker()
                    if not worker.alive():  # killed on timeout: the next item gets a new one
                        worker = _Worker()
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(err)
            finally:
                self._release(worker)

        if lanes == 1:
            lane()
        else:
            threads = [threading.Thread(target=lane, daemon=True) for _ in range(lanes)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
        return results

    def close(self) -> None:
        with self._lock:
            for worker in self._idle:
                worker.kill()
            self._idle.clear()
            self._count = 0


_POOL: Pool | None = None
_POOL_LOCK = threading.Lock()
_WARNED = False


def get_pool() -> Pool:
    """This process's pool (a forked child gets its own rather than its parent's pipes)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = Pool()
        return _POOL


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()


def warm(workers: int | None = None) -> None:
    """Start the workers now (rewards call this when they are built)."""
    try:
        get_pool().warm(workers or default_workers())
    except WorkerError as err:
        _warn(err)


def _warn(err: BaseException) -> None:
    global _WARNED
    if not _WARNED:
        log.warning("%s; answers that need the symbolic stage count as timeouts", err)
        _WARNED = True


def check_symbolic(
    pairs: Sequence[tuple[str, str]],
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
) -> list[Verdict]:
    """Check (pred, gold) pairs with every stage, the symbolic one included, in the workers."""
    unique = list(dict.fromkeys(pairs))  # the same answer often comes back many times
    messages = [{"op": "check", "pred": p, "gold": g, "budget": timeout} for p, g in unique]
    try:
        replies = get_pool().run(messages, timeout, workers or default_workers())
    except WorkerError as err:
        _warn(err)
        replies = [None] * len(messages)
    verdict = {
        pair: Verdict(r["verdict"]) if r and "verdict" in r else Verdict.TIMEOUT
        for pair, r in zip(unique, replies)
    }
    return [verdict[pair] for pair in pairs]


def score_batch(
    responses: Sequence[str],
    golds: Sequence[str],
    finished: Sequence[bool],
    rule_set: rules.Rules,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    parallel_min_chars: int = PARALLEL_MIN_CHARS,
) -> list[tuple[rules.Outcome, Verdict | None]]:
    """Format checks and answer checks of N responses, in input order.

    Small batches are checked here and only their undecided answers go to the workers; batches
    with at least ``parallel_min_chars`` characters of responses go to the workers whole.
    """
    n = len(responses)
    if not len(golds) == len(finished) == n:
        raise ValueError(
            f"{n} responses, {len(golds)} answers and {len(finished)} finished flags: "
            "they must be as many"
        )
    workers = workers or default_workers()
    if workers > 1 and n > 1 and sum(map(len, responses)) >= parallel_min_chars:
        messages = [
            {
                "op": "score",
                "response": r,
                "gold": g,
                "finished": bool(f),
                "rules": asdict(rule_set),
                "budget": timeout,
            }
            for r, g, f in zip(responses, golds, finished)
        ]
        try:
            replies = get_pool().run(messages, timeout, workers)
        except WorkerError as err:
            _warn(err)
        else:
            out = []
            for reply in replies:
                if reply is None or "outcome" not in reply:
                    out.append((rules.Outcome.OK, Verdict.TIMEOUT))
                else:
                    v = reply["verdict"]
                    out.append((rules.Outcome(reply["outcome"]), Verdict(v) if v else None))
            return out
    scored = [
        rules.score(r, g, bool(f), rule_set, None, timeout)
        for r, g, f in zip(responses, golds, finished)
    ]
    todo = [i for i, (o, v) in enumerate(scored) if o is rules.Outcome.OK and v is None]
    if todo:
        pairs = []
        for i in todo:
            boxed = answer.extract_boxed(responses[i])
            pairs.append((boxed, golds[i]))
        for i, v in zip(todo, check_symbolic(pairs, timeout, workers)):
            scored[i] = (rules.Outcome.OK, v)
    return scored
