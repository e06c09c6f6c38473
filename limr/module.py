"""``PPOModule``: PPO (or a critic-free estimator) over a policy, a value model and a frozen
reference policy, as a Lightning module with manual optimisation.

One ``training_step`` is one RL step: a rollout batch of prompts x samples and its update. The
stages live elsewhere: the maths in :mod:`limr.ppo`, the forward passes in :mod:`limr.forward`, the
rollout-to-advantages step in :mod:`limr.experience`, the PPO epochs in :mod:`limr.update`. This
module wires them together with Lightning (processes, precision, DeepSpeed), the data order, the
reward history, logging and checkpoints; with :mod:`limr.train` it is the only place that sees
every stage.

Data order is a pure function of (seed, epoch, prompt set), and sampling is seeded per step, so a
run resumed from a checkpoint replays exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from limr import ppo as ppo_math
from limr.config import PPOConfig, SamplerConfig
from limr.experience import make_experience
from limr.forward import Batching, Models
from limr.registry import SAMPLERS
from limr.types import Prompt, Reward, Rollout
from limr.update import GradShard, Processes, ppo_update, zero_grad_shards


class StepLoader:
    """The train "dataloader": yields the RL step numbers still to run.

    The prompts of a step are chosen by the module from its own restored state, so this loader
    is stateless; ``state_dict`` exists so that Lightning treats it as resumable.
    """

    def __init__(self, module: PPOModule, total_steps: int) -> None:
        self.module = module
        self.total_steps = total_steps

    def __len__(self) -> int:
        return self.total_steps

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.module.rl_step, self.total_steps))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class PPOModule(L.LightningModule):
    """PPO for language models (the LIMR paper's OpenRLHF setup), plus GRPO / RLOO / REINFORCE++.

    Args:
        policy: the actor, a transformers causal LM.
        tokenizer: its tokenizer.
        reward: a reward plugin (``limr.types.Reward``).
        prompts: the training prompts.
        format_prompt: problem text -> model input text.
        history: the reward history (``limr.history.RewardHistory``); every rollout goes in.
        sampler: the ``sampler`` section (see :class:`limr.config.SamplerConfig`).
        ppo: the ``ppo`` section (see :class:`limr.config.PPOConfig`; ``filter`` is built by the
            caller and passed as ``group_filter``).
        ref_policy: frozen reference for the KL penalty (None when ``ppo.kl_coef == 0``).
        value_model: the critic (``ppo.estimator == "gae"`` only).
        group_filter: an online filter ``(correct [G, n], rewards [G, n]) -> keep [G]``.
        curriculum: an online selector with ``update(history, epoch, all_ids)`` and ``schedule``.
        metrics_path: a JSONL file that gets one line of metrics per step (for the report).
        max_steps: RL steps of the run.
        max_epochs: passes over the prompts after which the run stops (None: ``max_steps``).
        seed: seed of the data order, the sampling and the update's shuffles.
    """

    def __init__(
        self,
        *,
        policy: nn.Module,
        tokenizer: Any,
        reward: Reward,
        prompts: Sequence[Prompt],
        format_prompt: Callable[[str], str],
        history: Any,
        sampler: SamplerConfig,
        ppo: PPOConfig,
        ref_policy: nn.Module | None = None,
        value_model: nn.Module | None = None,
        group_filter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        curriculum: Any = None,
        metrics_path: str | Path | None = None,
        max_steps: int = 100,
        max_epochs: int | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if ppo.estimator == "gae" and value_model is None:
            raise ValueError("estimator 'gae' needs a value model")
        if ppo.kl_coef > 0 and ref_policy is None:
            raise ValueError("kl_coef > 0 needs a reference policy")
        self.policy = policy
        self.value_model = value_model if ppo.estimator == "gae" else None
        self.ref_policy = ref_policy
        if ref_policy is not None:
            ref_policy.requires_grad_(False)
            ref_policy.eval()
        self.tokenizer = tokenizer
        self.reward = reward
        self.prompts = list(prompts)
        self.texts = [format_prompt(p.problem) for p in self.prompts]
        self.index_of = {p.id: i for i, p in enumerate(self.prompts)}
        self.history = history
        self.group_filter = group_filter
        self.curriculum = curriculum
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.max_steps = max_steps
        self.max_epochs = max_epochs
        self.seed = seed
        self.sampler_config = sampler
        self.ppo_config = ppo
        self.sampler: Any = None  # built in on_fit_start (it may need the device)
        self.kl_ctl: ppo_math.AdaptiveKLController | ppo_math.FixedKLController = (
            ppo_math.AdaptiveKLController(ppo.kl_coef, ppo.kl_target, ppo.kl_horizon)
            if ppo.adaptive_kl
            else ppo_math.FixedKLController(ppo.kl_coef)
        )
        self.fuse_critic = True  # see _batching; False only to test the equivalence
        self.share_prompts = True  # see _batching; False only to test the equivalence
        # position in the run (saved in every checkpoint)
        self.rl_step = 0
        self.epoch = 0
        self.epoch_ids: list[str] = [p.id for p in self.prompts]
        self.position = 0  # batches of the current epoch already done
        # prompt ids this process rolled out, per RL step (this session only; see limr.train)
        self.rollout_ids: dict[int, list[str]] = {}

    @property
    def models(self) -> Models:
        return Models(self.policy, self.ref_policy, self.value_model)

    # ------------------------------------------------------------------ Lightning plumbing

    @property
    def world(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    @property
    def rank(self) -> int:
        return self.trainer.global_rank if self._trainer is not None else 0

    def total_steps(self) -> int:
        if self.max_epochs is None or self.curriculum is not None:
            return self.max_steps
        per_epoch = len(self.prompts) // self.ppo_config.rollout_batch_size
        return min(self.max_steps, per_epoch * self.max_epochs)

    def train_dataloader(self) -> StepLoader:
        return StepLoader(self, self.total_steps())

    def configure_optimizers(self) -> Any:
        # One optimiser with an actor group and a critic group: DeepSpeed accepts only one, and
        # the learning rates stay separate (the paper: actor 5e-7, critic 9e-6).
        pc = self.ppo_config
        groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad],
                   "lr": pc.actor_lr, "name": "actor"}]  # fmt: skip
        if self.value_model is not None:
            groups.append({"params": list(self.value_model.parameters()), "lr": pc.critic_lr,
                           "name": "critic"})  # fmt: skip
        optimizer = torch.optim.AdamW(groups, betas=tuple(pc.adam_betas),
                                      weight_decay=pc.weight_decay)  # fmt: skip
        warmup = max(pc.warmup_steps, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    def on_fit_start(self) -> None:
        if self.sampler is None:
            self.sampler = SAMPLERS.build(
                self.sampler_config.name, model=self.policy, tokenizer=self.tokenizer,
                **dict(self.sampler_config.kwargs),
            )  # fmt: skip
        if self._deepspeed and self.group_filter is not None and self.world > 1:
            raise ValueError(
                "ppo.filter with DeepSpeed on several processes is not supported: ranks would run "
                "different numbers of backward passes and ZeRO's collectives would hang. Use "
                "trainer.strategy=ddp, or one process."
            )
        batch = self.ppo_config.rollout_batch_size
        if batch % self.world:
            raise ValueError(
                f"ppo.rollout_batch_size ({batch}) must be divisible by the number of processes "
                f"({self.world})"
            )

    def _stop_if_done(self) -> None:
        # Lightning's epochs are not RL epochs: the run ends after total_steps RL steps.
        if self.rl_step >= self.total_steps():
            self.trainer.should_stop = True

    def on_train_start(self) -> None:
        self._stop_if_done()

    def on_train_epoch_start(self) -> None:
        self._stop_if_done()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:  # noqa: ARG002
        self._stop_if_done()

    @property
    def _deepspeed(self) -> bool:
        return "deepspeed" in type(self.trainer.strategy).__name__.lower()

    # ------------------------------------------------------------------ data order

    def _epoch_order(self, epoch: int, ids: list[str]) -> list[int]:
        """Prompt indices of an epoch: a permutation seeded by (seed, epoch); drop_last."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        idx = [self.index_of[i] for i in ids]
        perm = torch.randperm(len(idx), generator=g).tolist()
        return [idx[j] for j in perm]

    def _steps_in_epoch(self) -> int:
        return max(1, len(self.epoch_ids) // self.ppo_config.rollout_batch_size)

    def _start_epoch_if_due(self) -> None:
        if self.position < self._steps_in_epoch():
            return
        self.epoch += 1
        self.position = 0
        if self.curriculum is not None:
            chosen = None
            if self.rank == 0:
                all_ids = [p.id for p in self.prompts]
                chosen = self.curriculum.update(self.history, self.epoch, all_ids)
            chosen = self._broadcast(chosen)
            if chosen is not None:
                batch = self.ppo_config.rollout_batch_size
                if len(chosen) < batch:
                    # the built-in curriculum never does: rollout_batch_size is part of its floor
                    raise ValueError(
                        f"the curriculum chose {len(chosen)} prompts, fewer than one rollout "
                        f"batch ({batch}); a curriculum must keep at least "
                        "ppo.rollout_batch_size prompts"
                    )
                self.epoch_ids = list(chosen)
            if self.rank == 0 and self.curriculum.schedule:
                last = self.curriculum.schedule[-1]
                for k in ("theta", "size", "mean_accuracy"):
                    if k in last and last[k] is not None:
                        self.log(f"curriculum/{k}", float(last[k]), rank_zero_only=True)

    def _broadcast(self, obj: Any) -> Any:
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            box = [obj]
            dist.broadcast_object_list(box, src=0)
            return box[0]
        return obj

    def _batch_indices(self) -> list[int]:
        """This rank's prompt indices for the current step (ranks take interleaved shares)."""
        self._start_epoch_if_due()
        order = self._epoch_order(self.epoch, self.epoch_ids)
        start = self.position * self.ppo_config.rollout_batch_size
        batch = order[start : start + self.ppo_config.rollout_batch_size]
        return batch[self.rank :: self.world]

    # ------------------------------------------------------------------ the RL step

    def training_step(self, step: int, batch_idx: int) -> None:  # noqa: ARG002
        timer = _Timer()
        prompt_idx = self._batch_indices()
        prompts = [self.prompts[i] for i in prompt_idx]
        self.rollout_ids[self.rl_step] = [p.id for p in prompts]
        sc, pc = self.sampler_config, self.ppo_config
        n = sc.n_samples

        # 1. generate n responses per prompt with the current policy
        rollout: Rollout = self.sampler.generate(
            [self.texts[i] for i in prompt_idx],
            seed=self.seed * 1_000_003 + self.rl_step * 1_009 + self.rank,
            n=n, temperature=sc.temperature, top_p=sc.top_p, max_new_tokens=sc.max_new_tokens,
            stop=list(sc.stop),
        )  # fmt: skip
        answers = [prompts[i].answer for i in rollout.prompt_index.tolist()]
        extras = [prompts[i].extra for i in rollout.prompt_index.tolist()]
        timer.lap("generate")

        # 2. score every response with the reward plugin
        scores = self.reward(rollout.texts, answers, rollout.finished.tolist(), extras)
        rewards = scores.rewards.float()
        correct = scores.correct.bool()
        lengths = rollout.response_mask.sum(-1)
        timer.lap("reward")

        # 3. record every rollout in the reward history (gathered on rank 0), durably
        self._record(prompt_idx, rollout, rewards, correct, lengths)
        timer.lap("record")

        # 4. online filter: keep whole groups (DAPO dynamic sampling, PRIME's band, ...)
        keep = torch.ones(len(prompt_idx), dtype=torch.bool)
        if self.group_filter is not None:
            keep = self.group_filter(correct.view(-1, n), rewards.view(-1, n)).bool()
        rows = keep.repeat_interleave(n).nonzero().squeeze(-1)

        # 5. log-probs, reference, values; KL-penalised rewards; advantages. The batch's
        # statistics are summed over processes (a process whose groups were all filtered out
        # joins with no rows), so whitening and the KL are those of the whole batch
        batching = self._batching()
        processes = self._processes()
        exp, stats = make_experience(
            rollout, rewards, rows, self.models, sampler=sc, ppo=pc, batching=batching,
            kl_coef=self.kl_ctl.value if self.ref_policy is not None else 0.0,
            recompute=self._recompute_old_logprobs(), device=self.device,
            all_reduce=processes.all_reduce,
        )  # fmt: skip
        timer.lap("experience")

        # 6. PPO epochs over mini-batches, micro-batches accumulated, each model clipped on its
        # own norm (every process takes part, so optimiser steps stay in lock-step)
        stats.update(
            ppo_update(
                exp,
                self.models,
                sampler=sc,
                ppo=pc,
                batching=batching,
                optimizer=self.optimizers(),
                scheduler=self.lr_schedulers(),
                processes=processes,
                kl_coef=self.kl_ctl.value,
                seed=self.seed + self.rl_step * 31,
                step=self.rl_step,
            )  # fmt: skip
        )
        timer.lap("update")

        # 7. the sampler generates with the new weights from the next step on
        self.sampler.update_weights(self.policy)
        timer.lap("sync_weights")
        # the batch's KL (the same on every process), so every process keeps the same coefficient
        self.kl_ctl.update(stats["kl"], pc.rollout_batch_size * n)
        self.rl_step += 1
        self.position += 1
        stats.update({f"time/{k}": v for k, v in timer.laps.items()})
        stats["time/step"] = timer.total()
        self._log_step(rollout, rewards, correct, lengths, keep, stats)

    def _record(self, prompt_idx, rollout, rewards, correct, lengths) -> None:
        idx = torch.tensor(prompt_idx, dtype=torch.long)[rollout.prompt_index]
        payload = torch.stack([idx.double(), rewards.double(), correct.double(),
                               lengths.double()], -1)  # fmt: skip  # [N, 4]
        if self.world > 1:
            # note: NCCL gathers device tensors, gloo CPU ones
            local = payload.to(self.device)
            gathered = [torch.zeros_like(local) for _ in range(self.world)]
            dist.all_gather(gathered, local)
            payload = torch.cat(gathered, 0).cpu()
        if self.rank != 0:
            return
        ids = [self.prompts[int(i)].id for i in payload[:, 0].tolist()]
        # epoch_steps: the history can then tell this epoch, whole, from one cut short by the
        # end of the run (selectors score whole epochs only, see limr.history.whole_epochs)
        self.history.record(
            self.rl_step, self.epoch, ids, payload[:, 2].bool(), payload[:, 1].float(),
            payload[:, 3].long(), epoch_steps=self._steps_in_epoch(),
        )  # fmt: skip
        self.history.commit(self.rl_step)

    def _recompute_old_logprobs(self) -> bool:
        """Whether the PPO ratio's denominator needs a forward pass of the policy after generation.

        The ``hf`` sampler runs the policy module itself, but its one-token-at-a-time decode over
        a KV cache is not the training forward: in float32 the two agree to rounding, so ``auto``
        reuses the sampler's log-probs; in bf16 or fp16 (the parameters, or a mixed precision's
        autocast) they can differ visibly (how much depends on the model and library versions),
        and the ratio would not be 1 nor the KL to the reference 0 before any update, so ``auto``
        recomputes them. A sampler with its own copy and numerics
        (``vllm``) is recomputed too, as OpenRLHF does, unless ``old_logprobs == "sampler"``.
        """
        mode = self.ppo_config.old_logprobs
        if mode == "auto":
            return not (getattr(self.sampler, "shares_weights", False) and self._float32())
        return mode == "recompute"

    def _float32(self) -> bool:
        """The policy's forwards run in float32: float32 weights and a ``32`` precision (no
        autocast)."""
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        weights = all(p.dtype == torch.float32 for p in self.policy.parameters())
        return precision.startswith("32") and weights

    def _batching(self) -> Batching:
        """How this step's rows are cut: micro-batches, mini-batches per PPO epoch (of this
        process's share of the rollouts), prompts run once per group, and the fused critic.

        Prompts run once per group of samples (:func:`limr.forward.response_outputs`) when
        micro-batches hold whole groups and both models keep a KV cache in training (gradient
        checkpointing turns it off). The critic's values come from its pass in the update when
        it is not updated before its loss is taken (one PPO epoch over one mini-batch): its
        loss-time forward then computes the rollout's values exactly, and the separate no-grad
        forward for them can be skipped.
        """
        sc, pc = self.sampler_config, self.ppo_config
        local_rollouts = pc.rollout_batch_size * sc.n_samples // self.world
        local_train = max(1, pc.train_batch_size // self.world)
        minibatches = max(1, local_rollouts // local_train)
        checkpointing = any(
            getattr(m, "is_gradient_checkpointing", False)
            for m in (self.policy, self.value_model)
            if m is not None
        )
        share = (
            self.share_prompts
            and sc.n_samples > 1
            and pc.micro_batch_size % sc.n_samples == 0
            and not checkpointing
        )
        fused = (
            self.fuse_critic
            and self.value_model is not None
            and pc.ppo_epochs == 1
            and minibatches == 1
        )
        return Batching(pc.micro_batch_size, minibatches, sc.n_samples if share else 1, fused)

    def _processes(self) -> Processes:
        if self._trainer is None:
            return Processes(1, self.device)
        return _DeepSpeedProcesses(self) if self._deepspeed else _LightningProcesses(self)

    # ------------------------------------------------------------------ logging

    def _log_step(self, rollout, rewards, correct, lengths, keep, stats) -> None:
        metrics = {
            "train/reward_mean": float(rewards.mean()),
            "train/correct_rate": float(correct.float().mean()),
            "train/finished_rate": float(rollout.finished.float().mean()),
            "train/response_length": float(lengths.float().mean()),
            "train/kept_groups": float(keep.float().mean()),
            "train/kl_coef": float(self.kl_ctl.value),
            "train/epoch": float(self.epoch),
            "train/prompts_in_epoch": float(len(self.epoch_ids)),
        }
        metrics.update(
            {(k if k.startswith("time/") else f"train/{k}"): float(v) for k, v in stats.items()}
        )
        logger = self.trainer.logger if self._trainer is not None else None
        every = max(1, self.trainer.log_every_n_steps) if self._trainer is not None else 1
        if logger is not None and self.rank == 0 and self.rl_step % every == 0:
            # straight to the logger: Lightning's per-value bookkeeping behind self.log costs
            # tens of milliseconds a step for these ~25 scalars
            logger.log_metrics(metrics, step=self.rl_step)
        self.log("reward", metrics["train/reward_mean"], prog_bar=True, rank_zero_only=True)
        self.log("epoch_rl", float(self.epoch), prog_bar=True, rank_zero_only=True)
        if self.metrics_path is not None and self.rank == 0:
            line = {"step": self.rl_step, **metrics}
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only plain types and tensors: checkpoints load with torch.load(weights_only=True).
        checkpoint["limr"] = {
            "rl_step": self.rl_step,
            "epoch": self.epoch,
            "position": self.position,
            "epoch_ids": list(self.epoch_ids),
            "kl_coef": float(self.kl_ctl.value),
            "curriculum_schedule": json.dumps(getattr(self.curriculum, "schedule", [])),
            "torch_rng": torch.get_rng_state(),
            "python_rng": json.dumps(random.getstate(), default=list),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["limr"]
        self.rl_step = int(state["rl_step"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.epoch_ids = list(state["epoch_ids"])
        self.kl_ctl.value = float(state["kl_coef"])
        if self.curriculum is not None:
            self.curriculum.schedule[:] = json.loads(state["curriculum_schedule"])
        torch.set_rng_state(state["torch_rng"])
        version, internal, gauss = json.loads(state["python_rng"])
        random.setstate((version, tuple(internal), gauss))
        # the history may hold steps after this checkpoint: forget them, they will be replayed
        if self.history is not None:
            self.history.truncate(self.rl_step - 1)
        if self.metrics_path is not None and self.metrics_path.exists():
            keep = [
                line
                for line in self.metrics_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _step_of(line) <= self.rl_step
            ]
            self.metrics_path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


class _LightningProcesses(Processes):
    """The processes of a Lightning run. Backward passes go through Lightning (its precision
    plugin) but never through DDP's reducer: it cannot sync several backward passes per forward of
    the wrapper, and a process whose groups were all filtered out runs none; the gradients are
    averaged once per mini-batch instead (:meth:`Processes.reduce_gradients`)."""

    def __init__(self, module: PPOModule) -> None:
        super().__init__(module.world, module.device)
        self.module = module

    def backward(self, loss: torch.Tensor, last: bool) -> None:  # noqa: ARG002
        block = getattr(self.module.trainer.strategy, "block_backward_sync", None)
        with block() if block is not None else contextlib.nullcontext():
            self.module.manual_backward(loss)


class _DeepSpeedProcesses(_LightningProcesses):
    """DeepSpeed ZeRO: the engine reduces the gradients in the backward pass that ends an
    accumulation and leaves each process its partition of them. The generated config turns
    DeepSpeed's own clipping off (one norm over actor and critic together; see
    :func:`limr.train.deepspeed_config`): the partitions are clipped per model here, before the
    engine's step."""

    sharded = True

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        # Our micro-batches, not a fixed count in the DeepSpeed config, decide where an
        # accumulation ends: DeepSpeed reduces and steps only there.
        self.module.trainer.strategy.model.set_gradient_accumulation_boundary(last)
        self.module.manual_backward(loss)

    def reduce_gradients(self, params: Sequence[nn.Parameter]) -> None:  # noqa: ARG002
        return None  # reduced and partitioned by ZeRO in the last backward pass

    def grad_shards(self, params: Sequence[nn.Parameter]) -> list[GradShard]:
        return zero_grad_shards(params)

    def step(
        self,
        optimizer: Any,
        groups: Mapping[str, Sequence[nn.Parameter]],
        max_norm: float,
        ran_backward: bool,
    ) -> dict[str, float]:
        # A process without rows in the mini-batch holds no ZeRO gradients to clip or step on. It
        # cannot arise: several processes with a filter are refused in on_fit_start, and alone a
        # mini-batch without rows is skipped before it gets here.
        return super().step(optimizer, groups, max_norm, ran_backward) if ran_backward else {}


class _Timer:
    """Wall-clock seconds of the stages of one RL step (logged as ``time/<stage>``)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
