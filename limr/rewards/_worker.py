"""The checker's worker process: reads one JSON request per line, answers one JSON line each.

Started by :mod:`limr.rewards.parallel` with ``limr.rewards`` stubbed out, so that importing this
module does not import the reward plugins (and torch): a worker starts in well under a second.
Each request runs under a ``SIGALRM`` timer (this is the worker's main thread, where signals are
delivered) and the worker's address space is capped; the parent kills the worker if the timer
cannot interrupt it (long C computations), so the parent's deadline is the hard one.

Requests:
    {"op": "check", "pred": str, "gold": str, "budget": seconds}
        -> {"verdict": "correct" | "wrong" | "timeout"}
    {"op": "score", "response": str, "gold": str, "finished": bool, "rules": {...},
     "budget": seconds} -> {"outcome": str, "verdict": str | null}
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys

from limr.rewards import answer, rules, symbolic
from limr.rewards.verdict import Verdict

MEMORY_LIMIT = 2 << 30
"""Address space a worker may add to what it has after start-up (bytes)."""


class _Alarm(BaseException):
    """The request's time is up (a BaseException so that library code catching Exception
    cannot swallow it)."""


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Alarm


def _limit_memory() -> None:
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = used + MEMORY_LIMIT
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError):  # not Linux, or not allowed: the parent's kill still holds
        pass


def handle(request: dict) -> dict:
    budget = float(request["budget"])
    if request["op"] == "check":
        verdict = answer.check_local(
            request["pred"], request["gold"], symbolic.symbolic_equal, budget
        )
        return {"verdict": (verdict or Verdict.TIMEOUT).value}
    if request["op"] == "score":
        outcome, verdict = rules.score(
            request["response"],
            request["gold"],
            bool(request["finished"]),
            rules.Rules(**request["rules"]),
            symbolic.symbolic_equal,
            budget,
        )
        return {"outcome": outcome.value, "verdict": verdict.value if verdict else None}
    raise ValueError(f"unknown op {request['op']!r}")


def _run(request: dict) -> dict:
    try:
        signal.setitimer(signal.ITIMER_REAL, max(1e-3, float(request["budget"])))
        try:
            return handle(request)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Alarm:
        if request.get("op") == "score":
            return {"outcome": rules.Outcome.OK.value, "verdict": Verdict.TIMEOUT.value}
        return {"verdict": Verdict.TIMEOUT.value}
    except MemoryError:
        return {"error": "memory"}


def main() -> None:
    channel = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import math_verify  # noqa: F401 - load it before the first request's timer starts

    _limit_memory()
    channel.write(b'{"ready": true}\n')
    channel.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            reply = _run(request)
        except Exception as err:  # a malformed request: report it, keep serving
            reply = {"error": f"{type(err).__name__}: {err}"}
        channel.write(json.dumps(reply).encode() + b"\n")
        channel.flush()
