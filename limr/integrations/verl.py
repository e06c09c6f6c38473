"""Record a limr reward history live from veRL, and run limr's curriculum as veRL's sampler.

Two pieces, for the ``ray_trainer`` PPO / GRPO loop of volcengine/verl:

1. :func:`record_compute_score` wraps a ``compute_score`` so that it also returns the prompt's
   dataset id. veRL (``verl/workers/reward_manager/naive.py``) calls
   ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` per response, takes
   ``score["score"]`` as the reward when a dict is returned, and puts every key of the dict in
   the reward's extra info, which ``verl/trainer/ppo/ray_trainer.py`` adds to the batch's
   ``non_tensor_batch`` and to the ``trainer.rollout_data_dir`` dumps (``_dump_generations``).
   So the id (``extra_info["index"]``, which ``verl/utils/dataset/rl_dataset.py`` reads from each
   row's ``extra_info``) reaches both the sampler below and ``limr score --format verl``::

       custom_reward_function.path=my_reward.py custom_reward_function.name=compute_score
       # my_reward.py:  compute_score = record_compute_score(my_compute_score)

2. :class:`LimrCurriculumSampler` is a ``data.sampler.class_path`` sampler
   (``verl/trainer/main_ppo.py``, ``create_rl_sampler``: built as ``cls(data_source=dataset,
   data_config=config.data)``, must subclass ``verl.experimental.dataset.sampler.
   AbstractCurriculumSampler`` and needs ``data.dataloader_num_workers=0``). veRL calls its
   ``update(batch)`` after every training step (``RayPPOTrainer.fit``) with the step's
   ``DataProto``: the sampler records each response's id, reward (``token_level_scores``
   summed), correctness (reward >= threshold) and length (``response_mask`` summed) into a
   limr history, one commit per step, and at each epoch's start can reselect the prompts with
   limr's dynamic-threshold curriculum (:class:`limr.selectors.curriculum.Curriculum`)::

       data.sampler.class_path=pkg://limr.integrations.verl \\
       data.sampler.class_name=LimrCurriculumSampler \\
       +data.sampler.history_dir=runs/verl/history +data.sampler.curriculum=true \\
       data.dataloader_num_workers=0

   Options (``data.sampler.*``): ``history_dir`` (required), ``id_key`` (``index``),
   ``correct_threshold`` (1.0), ``curriculum`` (false: a shuffled pass over every prompt per
   epoch, only recording), ``curriculum_args`` (a dict for ``Curriculum``, e.g.
   ``{base_threshold: 0.6}``), ``seed`` (``data.seed``, else 0). It keeps its place in
   ``state_dict()`` for veRL's resumable data loader; a resumed run drops the recorded steps
   after the restored one, so that none is counted twice.

veRL itself is imported only here, and only if installed (for the base class).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from pathlib import Path
from typing import Any

import numpy as np

from limr.integrations._recorder import StepRecorder


def record_compute_score(
    compute_score: Callable | None = None, id_key: str = "index", result_key: str | None = None
) -> Callable:
    """A veRL ``compute_score`` returning ``{"score": s, <id_key>: the prompt's id, ...}``.

    Args:
        compute_score: the function to wrap, veRL's signature ``(data_source, solution_str,
            ground_truth, extra_info=None, **kwargs)``, returning a number or a dict with
            ``"score"`` (its other keys are kept); None: veRL's ``default_compute_score``.
        id_key: the ``extra_info`` key holding the prompt's dataset id.
        result_key: the key under which the id is returned (default: ``id_key``).
    """
    key_out = result_key or id_key

    def limr_compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
        fn = compute_score
        if fn is None:
            from verl.utils.reward_score import default_compute_score as fn
        if not isinstance(extra_info, dict) or extra_info.get(id_key) is None:
            raise KeyError(
                f"record_compute_score: extra_info has no {id_key!r} (the prompt's dataset id); "
                "put one in every row's extra_info, or pass id_key="
            )
        result = fn(data_source, solution_str, ground_truth, extra_info=extra_info, **kwargs)
        out = dict(result) if isinstance(result, dict) else {"score": float(result)}
        if "score" not in out:
            raise KeyError("record_compute_score: the wrapped compute_score's dict has no 'score'")
        out[key_out] = extra_info[id_key]
        return out

    limr_compute_score.__wrapped__ = compute_score  # type: ignore[attr-defined]
    return limr_compute_score


def _base_class() -> type:
    try:
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler

        return AbstractCurriculumSampler
    except ImportError:  # veRL not installed (tests): a torch Sampler, same interface
        from torch.utils.data import Sampler

        return Sampler


def _get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    getter = getattr(config, "get", None)
    if getter is not None:
        return getter(key, default)
    return getattr(config, key, default)


def _row_ids(data_source: Sized, id_key: str) -> list[str]:
    """The id of every dataset row: ``extra_info[id_key]`` of veRL's RLHFDataset rows (read from
    its ``dataframe`` without tokenising), or a column ``id_key``; else the row numbers."""
    frame = getattr(data_source, "dataframe", None)
    columns = getattr(frame, "column_names", None) or []
    if frame is not None and "extra_info" in columns:
        infos = frame["extra_info"]
        ids = [None if not isinstance(e, dict) else e.get(id_key) for e in infos]
        if all(i is not None for i in ids):
            return [str(i) for i in ids]
    if frame is not None and id_key in columns:
        return [str(i) for i in frame[id_key]]
    return [str(i) for i in range(len(data_source))]


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


class _SamplerImpl:
    """The sampler's logic (the veRL class below adds the framework's base class)."""

    def __init__(self, data_source: Sized, data_config: Any) -> None:
        sampler_cfg = _get(data_config, "sampler")
        history_dir = _get(sampler_cfg, "history_dir")
        if not history_dir:
            raise ValueError(
                "LimrCurriculumSampler: set data.sampler.history_dir (the limr history folder, "
                "e.g. +data.sampler.history_dir=runs/verl/history)"
            )
        self.id_key = str(_get(sampler_cfg, "id_key", "index"))
        self.correct_threshold = float(_get(sampler_cfg, "correct_threshold", 1.0))
        seed = _get(sampler_cfg, "seed", _get(data_config, "seed", None))
        self.seed = 0 if seed is None else int(seed)
        self.batch_size = int(_get(data_config, "train_batch_size", 1) or 1)
        self.all_ids = _row_ids(data_source, self.id_key)
        self.rows_of: dict[str, list[int]] = {}
        for row, pid in enumerate(self.all_ids):
            self.rows_of.setdefault(pid, []).append(row)
        self.unique_ids = list(self.rows_of)
        self.recorder = StepRecorder(Path(history_dir), None, "truncate")
        self.curriculum = None
        if bool(_get(sampler_cfg, "curriculum", False)):
            from limr.selectors.curriculum import Curriculum

            kwargs = dict(_get(sampler_cfg, "curriculum_args", None) or {})
            kwargs.setdefault("rollout_batch_size", self.batch_size)
            self.curriculum = Curriculum(**kwargs)
        self.subset: list[str] = list(self.unique_ids)
        self.epoch = -1  # the epoch being sampled (first __iter__: 0)
        self.step = 0  # training steps recorded (veRL's global steps start at 1)
        self._order: list[int] = []
        self._pos = 0
        self._resume = False
        history = self.recorder.history
        if history.committed_step is not None:  # a history from an earlier run of this job
            self.step = history.committed_step

    # ------------------------------------------------------------------ sampling
    def _new_epoch(self) -> None:
        self.epoch += 1
        if self.curriculum is not None:
            self.recorder.flush()
            chosen = self.curriculum.update(self.recorder.history, self.epoch, self.unique_ids)
            if chosen is not None:
                self.subset = list(chosen)
        rows = [r for pid in self.subset for r in self.rows_of[pid]]
        rng = np.random.default_rng([self.seed, self.epoch])
        self._order = [rows[i] for i in rng.permutation(len(rows)).tolist()]
        self._pos = 0

    def __iter__(self) -> Iterator[int]:
        if not self._resume:
            self._new_epoch()
        self._resume = False
        while self._pos < len(self._order):
            row = self._order[self._pos]
            self._pos += 1
            yield row

    def __len__(self) -> int:
        return sum(len(self.rows_of[pid]) for pid in self.subset)

    def epoch_steps(self) -> int:
        """Steps of the current epoch (veRL's data loader drops the last partial batch)."""
        return max(1, len(self) // self.batch_size)

    # ------------------------------------------------------------------ recording
    def update(self, batch: Any) -> None:
        """Record one training step's responses (veRL calls this after every step)."""
        non_tensor = getattr(batch, "non_tensor_batch", None) or {}
        tensors = getattr(batch, "batch", None)
        if self.id_key not in non_tensor:
            raise KeyError(
                f"LimrCurriculumSampler.update: the batch has no {self.id_key!r} "
                f"(non-tensor keys: {sorted(non_tensor)}); return it from compute_score with "
                "limr.integrations.verl.record_compute_score, or set data.sampler.id_key"
            )
        ids = [str(i) for i in np.asarray(non_tensor[self.id_key]).tolist()]
        scores = _as_numpy(tensors["token_level_scores"])
        rewards = scores.reshape(len(ids), -1).sum(axis=1).astype(np.float64)
        lengths = None
        if tensors is not None and "response_mask" in tensors.keys():
            lengths = _as_numpy(tensors["response_mask"]).reshape(len(ids), -1).sum(axis=1)
        self.step += 1
        epoch = max(self.epoch, 0)
        finite = [i for i, r in enumerate(rewards.tolist()) if math.isfinite(r)]
        self.recorder.add(
            self.step,
            epoch,
            [ids[i] for i in finite],
            rewards[finite],
            rewards[finite] >= self.correct_threshold,
            None if lengths is None else lengths[finite],
            self.epoch_steps(),
        )
        self.recorder.flush()  # one durable commit per step, before veRL saves a checkpoint

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "subset": list(self.subset),
            "order": list(self._order),
            "pos": self._pos,
        }
        if self.curriculum is not None:
            state["curriculum"] = self.curriculum.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.subset = list(state["subset"])
        self._order = list(state["order"])
        self._pos = int(state["pos"])
        self._resume = self._pos < len(self._order)  # continue the epoch under way
        if self.curriculum is not None and "curriculum" in state:
            self.curriculum.load_state_dict(state["curriculum"])
        history = self.recorder.history
        if history.committed_step is not None and history.committed_step > self.step:
            history.truncate(self.step)


def _make_sampler_class() -> type:
    base = _base_class()

    class LimrCurriculumSampler(_SamplerImpl, base):  # type: ignore[misc, valid-type]
        """veRL ``data.sampler.class_path`` sampler recording a limr history (see module)."""

        def __init__(self, data_source: Sized, data_config: Any) -> None:
            _SamplerImpl.__init__(self, data_source, data_config)

    return LimrCurriculumSampler


def __getattr__(name: str) -> Any:
    # The class is made on first use, so that importing this module needs neither veRL nor
    # torch; veRL's loader reads it with getattr(module, class_name).
    if name == "LimrCurriculumSampler":
        cls = _make_sampler_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
