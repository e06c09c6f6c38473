"""The dynamic-threshold curriculum: LIM selection redone during training from the history so far.

Not in the LIMR paper (asked for by this project). At the start of every ``update_every``-th
epoch after ``warmup_epochs`` epochs on all prompts, :meth:`Curriculum.update`:

1. measures the model's current mean accuracy a (the last epoch with rollouts);
2. sets theta = min(max_threshold, base_threshold + threshold_slope * (a - 0.5)): as the model
   improves, more curves follow the (rising) average, so the bar rises to keep the subset focused;
3. scores every prompt by LIM over the epochs in which it was rolled out (one backward fill,
   then :func:`limr.selectors.curves.masked_lim_scores`; equal to LIM when nothing is missing,
   and needed because prompts left out of the subset have no later epochs);
4. drops mastered prompts (accuracy >= ``mastered_accuracy`` in their latest epoch);
5. keeps the unmastered prompts with s >= theta, plus prompts never rolled out yet (they have no
   score; they get a first look) and, with ``revisit_after``, unmastered prompts left out that
   long (their frozen curves get new points);
6. if fewer than floor = max(min_size, ceil(min_fraction * all prompts), rollout_batch_size)
   (at most all prompts) are kept, tops the subset up with the best-scoring unmastered prompts,
   then the least-mastered ones. The rollout batch is part of the floor because an epoch is
   ``len(subset) // rollout_batch_size`` steps: a smaller subset could not fill one step (the 7B
   config's 10% of 8,523 prompts is 853, below its batch of 1,024).

Every update appends a dict to :attr:`Curriculum.schedule` (epoch, theta, size, mean_accuracy,
n_mastered, ...), which :meth:`Curriculum.metrics` gives the logger and :meth:`plot_schedule`
draws.

How it behaves (worth knowing when tuning it):

- a is measured on the prompts of the last epoch, i.e. on the current subset after the first
  update, not on the whole pool; the subset lacks the mastered prompts, so a, and with it theta,
  read lower than the pool's;
- LIM's denominator sum_k (1 - r_avg^k)^2 is large when the average accuracy is low, so at low a
  nearly every curve scores close to 1: a never-solved prompt scores 1 - a^2 / (1 - a)^2 for a
  flat average a (0.89 at a = 0.25), above theta = 0.5 there. Below a ~ 0.4 every never-solved
  prompt is kept, and theta falling with a makes it easier still (the embedded default kept 511
  of 512). ``n_never_solved_kept`` in each schedule entry counts them;
- mastery is one epoch's accuracy: with n samples a prompt right n times out of n (0.95 and above
  means all of them for n < 20) is dropped, and with ``revisit_after = 0`` it returns only
  through the floor;
- the update is deterministic (ties keep the order of ``all_ids``) and replays identically on a
  resume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from limr.history import HistoryArrays
from limr.registry import register_selector
from limr.selectors.curves import (
    check_metric,
    epoch_values,
    fill_backward_once,
    masked_lim_scores,
    one_thread,
)
from limr.types import HistoryLike


@register_selector("curriculum")
class Curriculum:
    """Reselects the training prompts every few epochs with a threshold that follows the model.

    Args (the fields of :class:`limr.config.CurriculumConfig` but ``enabled``):
        warmup_epochs: epochs on all prompts before the first selection.
        update_every: reselect every this many epochs.
        base_threshold: theta when the model's mean accuracy is 0.5 (``threshold`` is an alias).
        threshold_slope: d theta / d mean accuracy.
        max_threshold: upper bound of theta.
        mastered_accuracy: a prompt at or above this accuracy in its latest epoch is dropped.
        min_fraction: floor on the subset size, as a fraction of all prompts.
        min_size: floor on the subset size, in prompts.
        revisit_after: an unmastered prompt not rolled out for this many epochs rejoins the subset
            for the coming epochs, so that its curve (and score) is brought up to date; 0 = never
            (a dropped prompt then returns only through the floor).
        rollout_batch_size: prompts per RL step; the subset never has fewer (part of the floor).
            The trainer passes ``ppo.rollout_batch_size``.
        metric: the per-epoch value LIM scores (accuracy or reward); theta always follows the mean
            accuracy, and mastery is always accuracy.
        seed: unused (the update is deterministic: ties keep the order of ``all_ids``).
    """

    kind = "curriculum"

    def __init__(
        self,
        warmup_epochs: int = 1,
        update_every: int = 1,
        base_threshold: float = 0.6,
        threshold_slope: float = 0.4,
        max_threshold: float = 0.9,
        mastered_accuracy: float = 0.95,
        min_fraction: float = 0.1,
        min_size: int = 8,
        revisit_after: int = 0,
        metric: str = "accuracy",
        seed: int = 42,
        threshold: float | None = None,
        size: int | None = None,
        rollout_batch_size: int = 1,
    ) -> None:
        if warmup_epochs < 1:
            raise ValueError("curriculum: warmup_epochs must be >= 1 (LIM needs a curve)")
        if update_every < 1:
            raise ValueError("curriculum: update_every must be >= 1")
        if not 0.0 <= min_fraction <= 1.0:
            raise ValueError("curriculum: min_fraction must be in [0, 1]")
        self.warmup_epochs = warmup_epochs
        self.update_every = update_every
        self.base_threshold = base_threshold if threshold is None else threshold
        self.threshold_slope = threshold_slope
        self.max_threshold = max_threshold
        self.mastered_accuracy = mastered_accuracy
        self.min_fraction = min_fraction
        self.min_size = min_size
        if revisit_after < 0:
            raise ValueError("curriculum: revisit_after must be >= 0")
        if rollout_batch_size < 1:
            raise ValueError("curriculum: rollout_batch_size must be >= 1")
        self.rollout_batch_size = int(rollout_batch_size)
        self.revisit_after = revisit_after
        self.metric = check_metric(metric)
        self.seed = seed
        self.schedule: list[dict[str, Any]] = []
        self.current: list[str] | None = None

    def threshold_for(self, mean_accuracy: float) -> float:
        """theta = min(max_threshold, base_threshold + threshold_slope * (mean_accuracy - 0.5))."""
        return min(
            self.max_threshold, self.base_threshold + self.threshold_slope * (mean_accuracy - 0.5)
        )

    def floor(self, num_prompts: int) -> int:
        """The fewest prompts a subset of ``num_prompts`` keeps: max(min_size, ceil(min_fraction
        * num_prompts), rollout_batch_size), at most num_prompts."""
        return min(
            num_prompts,
            max(
                self.min_size,
                math.ceil(self.min_fraction * num_prompts),
                self.rollout_batch_size,
            ),
        )

    def due(self, epoch: int) -> bool:
        """Whether :meth:`update` reselects at the start of ``epoch``."""
        return epoch >= self.warmup_epochs and (epoch - self.warmup_epochs) % self.update_every == 0

    @one_thread()
    def update(self, history: HistoryLike, epoch: int, all_ids: Sequence[str]) -> list[str] | None:
        """Called at the start of each epoch. None: keep training on the current prompts; a list:
        the prompts (a subset of ``all_ids``, in its order) for the coming epochs."""
        if not self.due(epoch):
            return None
        past = _head(history, epoch)  # only the epochs before this one
        n = past.n
        totals = n.sum(dim=0)  # [E]
        seen_epochs = torch.nonzero(totals > 0).squeeze(1)
        if len(seen_epochs) == 0:
            return None
        last = int(seen_epochs[-1])
        mean_acc = float(past.n_correct[:, last].sum()) / float(totals[last])
        mean_reward = float(past.reward_sum[:, last].sum()) / float(totals[last])
        theta = self.threshold_for(mean_acc)

        raw_present = n > 0
        values, present, _ = fill_backward_once(*epoch_values(past, self.metric))
        scores, _ = masked_lim_scores(values, present)  # [I], nan if never rolled out
        # Accuracy in each prompt's latest epoch with rollouts.
        num_e = n.shape[1]
        latest = (num_e - 1) - torch.argmax(raw_present.flip(1).to(torch.int8), dim=1)  # [I]
        rows = torch.arange(len(latest))
        acc_latest = past.n_correct[rows, latest].to(torch.float64) / n[rows, latest].clamp_min(1)
        seen = raw_present.any(dim=1)
        mastered = seen & (acc_latest >= self.mastered_accuracy)
        unsolved = past.n_correct.sum(dim=1) == 0

        index = {pid: j for j, pid in enumerate(past.ids)}
        pos = torch.tensor([index.get(pid, -1) for pid in all_ids], dtype=torch.long)
        known = pos >= 0
        safe = pos.clamp_min(0)
        a_seen = known & seen[safe]
        a_score = torch.where(a_seen, scores[safe], torch.nan)
        a_mastered = a_seen & mastered[safe]
        a_passed = a_seen & ~a_mastered & (a_score >= theta)
        a_unseen = ~a_seen
        chosen = a_passed | a_unseen
        a_revisit = torch.zeros_like(chosen)
        if self.revisit_after:
            stale = latest < epoch - self.revisit_after  # not rolled out for revisit_after epochs
            a_revisit = a_seen & ~a_mastered & ~chosen & stale[safe]
            chosen |= a_revisit

        floor = self.floor(len(all_ids))
        topped_up = 0
        if int(chosen.sum()) < floor:
            # Best-scoring unmastered prompts first, then the least-mastered ones.
            free = a_seen & ~a_mastered & ~chosen
            by_score = torch.argsort(
                torch.where(free, a_score, -torch.inf), descending=True, stable=True
            )
            acc_all = torch.where(a_mastered, acc_latest[safe], torch.inf)
            by_acc = torch.argsort(acc_all, stable=True)
            need = floor - int(chosen.sum())
            extra = [j for j in by_score.tolist() if free[j]][:need]
            extra += [j for j in by_acc.tolist() if a_mastered[j]][: need - len(extra)]
            chosen[extra] = True
            topped_up = len(extra)

        selected = [pid for pid, c in zip(all_ids, chosen.tolist()) if c]
        entry = {
            "epoch": epoch,
            "theta": theta,
            "size": len(selected),
            "mean_accuracy": mean_acc,
            "mean_reward": mean_reward,
            "n_prompts": len(all_ids),
            "n_passed": int(a_passed.sum()),
            "n_mastered": int(a_mastered.sum()),
            "n_unseen": int(a_unseen.sum()),
            "n_revisited": int(a_revisit.sum()),
            "n_topped_up": topped_up,
            "floor": floor,
            "n_never_solved_kept": int((chosen & a_seen & unsolved[safe]).sum()),
            "metric": self.metric,
        }
        # Idempotent on resume: an update replayed for an epoch replaces the later entries.
        self.schedule = [s for s in self.schedule if s["epoch"] < epoch] + [entry]
        self.current = selected
        return selected

    def metrics(self) -> dict[str, float]:
        """The latest update, namespaced for the logger (empty before the first update)."""
        if not self.schedule:
            return {}
        last = self.schedule[-1]
        keys = ("theta", "size", "mean_accuracy", "n_mastered", "n_passed", "n_topped_up")
        return {f"curriculum/{k}": float(last[k]) for k in keys}

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": [dict(s) for s in self.schedule], "current": self.current}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule = [dict(s) for s in state.get("schedule", [])]
        self.current = state.get("current")

    def plot_schedule(self, path: str | Path) -> Path:
        """Draw theta, the mean accuracy and the subset size per update (PNG)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = Figure(figsize=(7, 5.5))
        FigureCanvasAgg(fig)
        top, bottom = fig.subplots(2, 1, sharex=True)
        epochs = [s["epoch"] for s in self.schedule]
        top.plot(epochs, [s["theta"] for s in self.schedule], "o-", label="theta (LIM threshold)")
        top.plot(epochs, [s["mean_accuracy"] for s in self.schedule], "s--", label="mean accuracy")
        top.set_ylabel("value")
        top.legend(loc="best")
        top.set_title("Dynamic-threshold curriculum")
        bottom.plot(epochs, [s["size"] for s in self.schedule], "o-", label="subset size")
        bottom.plot(epochs, [s["n_mastered"] for s in self.schedule], "x:", label="mastered")
        if self.schedule:
            bottom.axhline(self.schedule[-1]["floor"], color="grey", lw=0.8, label="floor")
        bottom.set_xlabel("epoch of the update")
        bottom.set_ylabel("prompts")
        bottom.legend(loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path


def _head(history: HistoryLike, epochs: int) -> HistoryArrays:
    return HistoryArrays(
        ids=list(history.ids),
        n=history.n[:, :epochs],
        n_correct=history.n_correct[:, :epochs],
        reward_sum=history.reward_sum[:, :epochs],
    )
