"""Record a limr reward history live from TRL's ``GRPOTrainer``.

    from limr.integrations.trl import record_rewards

    reward = record_rewards(my_reward, "runs/grpo/history", id_column="id")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=ds, args=...,
                          callbacks=[reward.callback()])
    trainer.train()
    # then: limr score runs/grpo --out scores.jsonl

Facts about TRL this relies on (huggingface/trl 1.16, ``trl/trainer/grpo_trainer.py``,
``GRPOTrainer._calculate_rewards``): every reward function is called once per generation batch
and per process, by keyword, with ``prompts``, ``completions``, ``completion_ids``, every other
column of the dataset as a list with one value per completion (so a dataset ``id`` column reaches
the reward function), ``trainer_state`` (the ``transformers.TrainerState``: ``global_step``,
``epoch`` as a float), ``log_extra`` and ``log_metric``; it returns one float (or None) per
completion; async reward functions are awaited. The same functions score evaluation batches;
they are told apart here by the trainer's model being in eval mode (the trainer that called is
found on the call stack by its ``state`` being ``trainer_state``), as TRL's own ``mode`` is; an
async reward function runs on TRL's event-loop thread, where that trainer cannot be seen: its
evaluation batches are recorded too (give the evaluation set ids outside the training set's, or
leave its id column out, to keep them apart).

Per completion the history gets the prompt id, the reward, correctness (reward >= threshold),
the completion length (tokens from ``completion_ids``, else characters), the step
(``trainer_state.global_step``: the optimizer steps done when the batch was generated) and the
epoch (``int(trainer_state.epoch)``). Each process writes its own file
(``rewards.rank{RANK}.log`` under ``torchrun`` / ``accelerate launch``, else ``rewards.log``),
merged on read. A step is committed when the next one begins, at each optimizer step's end with
``reward.callback()`` (before any checkpoint of that step is saved, so a resumed run neither
loses nor repeats a step: a replayed step drops the recorded steps from there on), and at exit.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from limr.integrations._recorder import StepRecorder, rank_shard


def _is_eval(trainer_state: Any) -> bool:
    """Whether the caller is a trainer scoring an evaluation batch (its model in eval mode)."""
    if trainer_state is None:
        return False
    frame = sys._getframe(1)
    for _ in range(10):
        if frame is None:
            return False
        owner = frame.f_locals.get("self")
        if owner is not None and getattr(owner, "state", None) is trainer_state:
            model = getattr(owner, "model", None)
            return model is not None and not getattr(model, "training", True)
        frame = frame.f_back
    return False


_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")
"""What TRL passes a reward function besides the dataset's columns."""


def _text_length(completion: Any) -> int:
    if isinstance(completion, str):
        return len(completion)
    if isinstance(completion, list):  # conversational: [{"role", "content"}, ...]
        return sum(len(str(m.get("content", ""))) for m in completion if isinstance(m, dict))
    return len(str(completion))


class _Recorded:
    """What :func:`record_rewards` returns: the reward function, recording as it goes."""

    def __init__(self, fn: Callable, recorder: StepRecorder, id_column: str, threshold: float):
        self._fn = fn
        self.recorder = recorder
        self.id_column = id_column
        self.correct_threshold = threshold
        self.skipped_eval = 0
        self.skipped_none = 0
        functools.update_wrapper(self, fn)

    def _record(
        self, rewards: Any, completions: Any, completion_ids: Any, kwargs: dict, evaluating: bool
    ) -> None:
        state = kwargs.get("trainer_state")
        if state is None:
            raise TypeError(
                "record_rewards: called without trainer_state; TRL's GRPOTrainer passes it "
                "(call the wrapped function with trainer_state=... outside TRL)"
            )
        if evaluating:
            self.skipped_eval += len(rewards)
            return
        if self.id_column not in kwargs:
            columns = sorted(k for k in kwargs if k not in _TRL_KWARGS)
            raise KeyError(
                f"record_rewards: no dataset column {self.id_column!r} reached the reward "
                f"function (columns: {columns}); add a prompt id column to the dataset or pass "
                "id_column="
            )
        ids = kwargs[self.id_column]
        if len(ids) != len(rewards):
            raise ValueError(
                f"record_rewards: {len(rewards)} rewards for {len(ids)} {self.id_column!r} values"
            )
        keep = [i for i, r in enumerate(rewards) if r is not None and not _nan(r)]
        self.skipped_none += len(rewards) - len(keep)
        if completion_ids is not None:
            lengths = [len(completion_ids[i]) for i in keep]
        else:
            lengths = [_text_length(completions[i]) for i in keep]
        values = [float(rewards[i]) for i in keep]
        self.recorder.add(
            int(state.global_step),
            int(state.epoch or 0),
            [str(ids[i]) for i in keep],
            values,
            [v >= self.correct_threshold for v in values],
            lengths,
        )

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs):
        evaluating = _is_eval(kwargs.get("trainer_state"))
        rewards = self._fn(
            prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs
        )
        if inspect.isawaitable(rewards):
            return self._finish_async(rewards, completions, completion_ids, kwargs, evaluating)
        self._record(list(rewards), completions, completion_ids, kwargs, evaluating)
        return rewards

    async def _finish_async(self, awaitable, completions, completion_ids, kwargs, evaluating):
        rewards = await awaitable
        self._record(list(rewards), completions, completion_ids, kwargs, evaluating)
        return rewards

    def flush(self) -> None:
        """Commit everything recorded so far."""
        self.recorder.flush()

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` committing the history at every optimizer step's
        end (before a checkpoint of that step is saved) and at the end of training."""
        from transformers import TrainerCallback

        recorded = self

        class LimrHistoryCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                recorded.flush()

            def on_train_end(self, args, state, control, **kwargs):
                recorded.flush()

        return LimrHistoryCallback()


def _nan(x: Any) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def record_rewards(
    reward_func: Callable,
    history_dir: str | Path,
    id_column: str = "id",
    correct_threshold: float = 1.0,
    shard: str | None = None,
) -> Any:
    """A TRL reward function that returns ``reward_func``'s rewards unchanged and records them.

    Args:
        reward_func: a TRL reward function (called by keyword, as TRL calls it; sync or async).
        history_dir: the history folder (``run_dir/history``: then ``limr score run_dir`` reads
            it, as a run of limr's own).
        id_column: the dataset column holding the prompt id.
        correct_threshold: a completion is correct when its reward is >= this.
        shard: this process's file (default: ``rank{RANK}`` in a multi-process job).

    Returns:
        the recording reward function (TRL names it after ``reward_func``); its ``callback()``
        commits at every step's end, ``flush()`` commits now, ``recorder`` is the recorder.
    """
    recorder = StepRecorder(history_dir, shard if shard is not None else rank_shard(), "truncate")
    wrapped = _Recorded(reward_func, recorder, id_column, correct_threshold)
    if inspect.iscoroutinefunction(reward_func):

        @functools.wraps(reward_func)
        async def recording(prompts=None, completions=None, completion_ids=None, **kwargs):
            return await wrapped(prompts, completions, completion_ids, **kwargs)

        recording.flush = wrapped.flush  # type: ignore[attr-defined]
        recording.callback = wrapped.callback  # type: ignore[attr-defined]
        recording.recorder = recorder  # type: ignore[attr-defined]
        return recording
    return wrapped
