"""The durable recorder every integration writes through: a :class:`limr.history.RewardHistory`
shard per process, steps buffered and committed in order, thread-safe, flushed at exit."""

from __future__ import annotations

import atexit
import os
import socket
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from limr.history import RewardHistory


def rank_shard() -> str | None:
    """This process's shard name in a multi-process job (``rank{RANK}``, from the launcher's
    ``RANK`` / ``WORLD_SIZE``), None for a single process (the folder's ``rewards.log``)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return f"rank{int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0')) or 0)}"


def process_shard() -> str:
    """A shard name unique to this process on this machine (workers that have no rank)."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{host or 'host'}-{os.getpid()}"


_LIVE: weakref.WeakSet[StepRecorder] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:  # pragma: no cover - runs at interpreter exit
    for recorder in list(_LIVE):
        try:
            recorder.flush()
        except Exception:
            pass


class StepRecorder:
    """Rollouts buffered by step, committed to a history shard when a later step begins, on
    :meth:`flush`, and at interpreter exit.

    Args:
        history_dir: the history folder (``limr score`` reads it, or its parent run folder).
        shard: this process's shard (None: ``rewards.log``).
        on_replay: what a step at or before the last committed one means: ``"truncate"`` (a run
            resumed from an earlier checkpoint replays its steps: the history drops the steps
            from there on, so that nothing is counted twice), or ``"append"`` (a late rollout:
            it joins the next step).
    """

    def __init__(self, history_dir: str | Path, shard: str | None, on_replay: str) -> None:
        self.history_dir = Path(history_dir)
        self.shard = shard
        self.on_replay = on_replay
        self._history: RewardHistory | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._pending: dict[int, list[tuple[int, list[str], np.ndarray, ...]]] = {}
        self.recorded = 0
        _LIVE.add(self)

    def __getstate__(self) -> dict[str, Any]:
        self.flush()
        state = dict(self.__dict__)
        state.update(_history=None, _lock=None, _pending={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def history(self) -> RewardHistory:
        """The shard's history, opened on first use; in another process (a forked child, or a
        copy unpickled there) a shard of that process's own."""
        if self._pid != os.getpid():
            self.shard = f"{self.shard or 'proc'}-{os.getpid()}"
            self._pid = os.getpid()
            self._pending = {}
            self._history = None
        if self._history is None:
            self._history = RewardHistory(self.history_dir, shard=self.shard)
        return self._history

    def add(
        self,
        step: int,
        epoch: int,
        ids: list[str],
        rewards: Any,
        correct: Any,
        lengths: Any = None,
        epoch_steps: int | None = None,
    ) -> None:
        """Buffer one call's rollouts (commits the steps before ``step`` first)."""
        if not ids:
            return
        with self._lock:
            h = self.history
            last = h.committed_step
            if last is not None and step <= last and step not in self._pending:
                if self.on_replay == "truncate":
                    self._commit_locked()
                    h.truncate(step - 1)
                else:
                    step = max([last + 1, *self._pending])
            for s in [s for s in self._pending if s < step]:
                self._commit_step_locked(s)
            rows = self._pending.setdefault(step, [])
            rows.append((epoch, list(ids), np.asarray(rewards, np.float64),
                         np.asarray(correct, bool),
                         None if lengths is None else np.asarray(lengths, np.float64),
                         epoch_steps))  # fmt: skip
            self.recorded += len(ids)

    def _commit_step_locked(self, step: int) -> None:
        h = self.history
        by_epoch: dict[int, list] = {}
        for item in self._pending.pop(step):
            by_epoch.setdefault(item[0], []).append(item)
        for epoch, items in sorted(by_epoch.items()):
            ids = [i for it in items for i in it[1]]
            rewards = np.concatenate([it[2] for it in items])
            correct = np.concatenate([it[3] for it in items])
            lengths = None
            if all(it[4] is not None for it in items):
                lengths = np.concatenate([it[4] for it in items])
            epoch_steps = max((it[5] for it in items if it[5] is not None), default=None)
            h.record(step, epoch, ids, correct, rewards, lengths, epoch_steps)
        h.commit(step)

    def _commit_locked(self) -> None:
        for step in sorted(self._pending):
            self._commit_step_locked(step)

    def flush(self) -> None:
        """Commit every buffered step (durable: append + fsync)."""
        with self._lock:
            if self._pending and self._pid == os.getpid() and self._history is not None:
                self._commit_locked()
