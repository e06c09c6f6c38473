"""Record a limr reward history live from OpenRLHF's custom reward function.

    # reward.py, given to OpenRLHF as --reward.remote_url reward.py (or the LIMR fork's hook)
    from limr.integrations.openrlhf import record_reward_func
    from my_rewards import reward_func as my_reward_func

    reward_func = record_reward_func(
        my_reward_func, "runs/openrlhf/history", samples_per_prompt=8, prompts_per_step=128,
        data="train.jsonl",  # map prompt texts to dataset ids; other prompts (eval) are skipped
    )

Facts about OpenRLHF this relies on (OpenRLHF/OpenRLHF, ``README.md`` "Custom Reward Function",
``examples/python/math_reward_func.py`` and ``openrlhf/utils/agent.py``,
``SingleTurnAgentExecutor``): a file's ``reward_func(queries, prompts, labels, **kwargs)`` is
called with lists (``queries`` = prompt + response text, ``prompts``, ``labels``), per sample
(``_fetch_rewards_via_func`` sends batches of one, in threads, in every rollout worker), and
returns a dict with ``"rewards"`` (a tensor or list; ``"scores"`` and ``"extra_logs"`` too) or
the rewards themselves. It is told nothing else: no step, no epoch, no dataset id, and evaluation
prompts go through the same function.

So the recorder works these out itself. Each prompt's ``samples_per_prompt`` samples are
generated together once per epoch (``openrlhf/trainer/ppo_utils/samples_generator.py`` sends a
prompt's n samples to one engine), so a sample's epoch is how many samples of its prompt came
before it, divided by n, counted over every worker through a small SQLite file beside the
history (``openrlhf_counts.sqlite``; exact when the workers share the history folder, e.g. one
node); its step is the order in which its prompt group first reached the recorder, divided by
``prompts_per_step`` (``--rollout.batch_size``): approximate at step boundaries, which only the
epoch-completeness check uses. Each worker process writes its own shard. With ``data``, prompts
are mapped to dataset ids (as ``limr score --data`` does) and prompts of no record (evaluation
sets) are skipped and counted; without it the stripped prompt text is the id.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from limr.integrations._recorder import StepRecorder, process_shard

COUNTS_NAME = "openrlhf_counts.sqlite"


class _Counter:
    """Per-prompt sample counts and prompt-group order shared by every worker (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS prompts "
                "(key TEXT PRIMARY KEY, seen INTEGER NOT NULL, grp INTEGER NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('groups', 0)")
            self._local.db = db
        return db

    def next(self, key: str, samples_per_prompt: int) -> tuple[int, int]:
        """(how many samples of ``key`` came before this one, its prompt group's number)."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT seen, grp FROM prompts WHERE key = ?", (key,)).fetchone()
            seen, grp = (0, 0) if row is None else row
            if seen % samples_per_prompt == 0:  # the first sample of a new group
                (groups,) = db.execute("SELECT value FROM meta WHERE name='groups'").fetchone()
                grp = groups + 1
                db.execute("UPDATE meta SET value = ? WHERE name='groups'", (grp,))
            db.execute(
                "INSERT INTO prompts VALUES (?, ?, ?) ON CONFLICT(key) "
                "DO UPDATE SET seen = excluded.seen, grp = excluded.grp",
                (key, seen + 1, grp),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seen, grp


class _Recorded:
    def __init__(self, fn, history_dir, n, per_step, data, threshold, num_prompts, reward_key,
                 shard):  # fmt: skip
        self._fn = fn
        self.history_dir = Path(history_dir)
        self.samples_per_prompt = int(n)
        self.prompts_per_step = int(per_step)
        self.correct_threshold = float(threshold)
        self.reward_key = reward_key
        self.recorder = StepRecorder(self.history_dir, shard or process_shard(), "append")
        self.counter = _Counter(self.history_dir / COUNTS_NAME)
        self.data = None
        if data is not None:
            from limr.importers import DataIndex

            self.data = data if isinstance(data, DataIndex) else DataIndex(str(data))
        self.epoch_steps = None
        size = num_prompts if num_prompts is not None else getattr(self.data, "size", None)
        if size:
            self.epoch_steps = max(1, -(-int(size) // self.prompts_per_step))
        self.skipped = 0
        self._match_lock = threading.Lock()
        functools.update_wrapper(self, fn)

    def _rewards(self, result: Any, count: int) -> list[float]:
        values = result.get(self.reward_key) if isinstance(result, dict) else result
        if values is None:
            raise KeyError(
                f"record_reward_func: the reward function returned no {self.reward_key!r}"
            )
        if hasattr(values, "detach"):
            values = values.detach().float().cpu().reshape(-1).tolist()
        values = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
        if len(values) != count:
            raise ValueError(f"record_reward_func: {len(values)} rewards for {count} queries")
        return values

    def _key(self, prompt: str) -> str | None:
        if self.data is None:
            return prompt.strip()
        with self._match_lock:
            return self.data.match(prompt)

    def __call__(self, queries, prompts, labels, **kwargs):
        result = self._fn(queries, prompts, labels, **kwargs)
        rewards = self._rewards(result, len(queries))
        for query, prompt, reward in zip(queries, prompts, rewards):
            key = self._key(prompt) if isinstance(prompt, str) else None
            if key is None or reward != reward:  # no record (evaluation prompt) or NaN
                self.skipped += 1
                continue
            seen, group = self.counter.next(key, self.samples_per_prompt)
            epoch = seen // self.samples_per_prompt
            step = (group - 1) // self.prompts_per_step + 1
            response = query[len(prompt) :] if query.startswith(prompt) else query
            self.recorder.add(
                step, epoch, [key], [reward], [reward >= self.correct_threshold],
                [len(response)], self.epoch_steps,
            )  # fmt: skip
        return result

    def flush(self) -> None:
        self.recorder.flush()


def record_reward_func(
    reward_func: Callable,
    history_dir: str | Path,
    samples_per_prompt: int,
    prompts_per_step: int,
    data: Any = None,
    correct_threshold: float = 1.0,
    num_prompts: int | None = None,
    reward_key: str = "rewards",
    shard: str | None = None,
) -> Any:
    """An OpenRLHF ``reward_func(queries, prompts, labels, **kwargs)`` that returns
    ``reward_func``'s result unchanged and records every sample into a limr history.

    Args:
        reward_func: the reward function to wrap (OpenRLHF's signature).
        history_dir: the history folder (``run_dir/history``).
        samples_per_prompt: OpenRLHF's ``--rollout.n_samples_per_prompt``.
        prompts_per_step: OpenRLHF's ``--rollout.batch_size`` (prompts per rollout step).
        data: a dataset file / ``shipped:NAME`` (or a :class:`limr.importers.DataIndex`) to map
            prompts to ids; prompts matching no record are not recorded (evaluation prompts).
        correct_threshold: a sample is correct when its reward is >= this.
        num_prompts: the training set's size, for each epoch's step count (default: ``data``'s
            size; None: epochs are whole when a later one began).
        reward_key: the result's key holding the rewards (when it returns a dict).
        shard: this worker's file (default: host and process id).
    """
    if samples_per_prompt < 1 or prompts_per_step < 1:
        raise ValueError("record_reward_func: samples_per_prompt and prompts_per_step must be >= 1")
    return _Recorded(
        reward_func, history_dir, samples_per_prompt, prompts_per_step, data, correct_threshold,
        num_prompts, reward_key, shard,
    )  # fmt: skip
