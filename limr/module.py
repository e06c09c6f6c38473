"""``PPOModule``: PPO (or a critic-free estimator) over a policy, a value model and a frozen
reference policy, as a Lightning module with manual optimisation.

One ``training_step`` is one RL step: a rollout batch of prompts x samples and its update. The
maths lives in :mod:`limr.ppo`; this module wires the stages together and is, with
:mod:`limr.train`, the only place that sees every stage.

Data order is a pure function of (seed, epoch, prompt set), and sampling is seeded per step, so a
run resumed from a checkpoint replays exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from limr import ppo
from limr.registry import SAMPLERS
from limr.types import Prompt, Reward, Rollout


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf; the run stops and the last good checkpoint stays."""


class Experience(NamedTuple):
    """One rollout batch ready for the PPO epochs. N rollouts, P prompt and T response tokens.

    Attributes:
        input_ids: [N, P + T] prompt (left-padded) then response (right-padded) tokens.
        attention_mask: [N, P + T] bool, True on real tokens.
        response_mask: [N, T] bool, True on response tokens that are trained on.
        old_logprobs: [N, T] log-probs of the response under the policy that sampled it.
        ref_logprobs: [N, T] log-probs under the reference policy (zeros when KL is off).
        old_values: [N, T] value estimates (zeros without a value model).
        advantages: [N, T].
        returns: [N, T] value targets (zeros without a value model).
        token_rewards: [N, T] KL-penalised per-token rewards (GAE and REINFORCE++; else zeros).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    token_rewards: torch.Tensor

    def index(self, idx: torch.Tensor) -> Experience:
        return Experience(*(t[idx] for t in self))


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


def response_outputs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response: int,
    group: int = 1,
) -> torch.Tensor:
    """The outputs at the T positions that predict the last T tokens, [N, T, ...]: logits of a
    causal LM, last hidden states of a base model (the critic's backbone).

    With ``group > 1``, rows come in groups of ``group`` that share one prompt (the n samples of a
    prompt, as samplers return them): each prompt then runs once, its KV cache is copied for the
    group, and the responses run on top of it. The result and its gradients equal a forward of
    the whole rows (gradients reach the prompt's computation through the copied cache); the
    prompt's share of the work falls by ``1 - 1/group``.
    """
    T = num_response
    mask = attention_mask.long()
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)

    def out_of(o: Any) -> torch.Tensor:
        return o.logits if hasattr(o, "logits") else o.last_hidden_state

    N, L = input_ids.shape
    P = L - T
    if group <= 1 or N % group or P < 1:
        keep = {"logits_to_keep": T + 1} if _is_lm(model) else {}
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, **keep)
        return out_of(out)[:, -T - 1 : -1]  # position t predicts token t + 1
    q = slice(None, None, group)  # the first row of each group carries the prompt
    keep = {"logits_to_keep": 1} if _is_lm(model) else {}
    first = model(input_ids=input_ids[q, :P], attention_mask=mask[q, :P],
                  position_ids=position_ids[q, :P], use_cache=True, **keep)  # fmt: skip
    head = out_of(first)[:, -1:].repeat_interleave(group, 0)  # [N, 1, ...] predicts token P
    if T == 1:
        return head
    cache = first.past_key_values
    cache.batch_repeat_interleave(group)
    rest = model(
        input_ids=input_ids[:, P:-1],
        attention_mask=mask[:, :-1],
        position_ids=position_ids[:, P:-1],
        past_key_values=cache,
        use_cache=True,
    )
    return torch.cat([head, out_of(rest)], 1)  # [N, T, ...]


def _is_lm(model: nn.Module) -> bool:
    return hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_response: int,
    temperature: float,
    with_entropy: bool | str = False,
    group: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [N, T] of the last ``num_response`` tokens (and their entropy) under ``model``.

    The LM head runs on the last T + 1 positions only (``logits_to_keep``): the prompt's logits are
    never needed, and at a 152k vocabulary they would dominate the memory of the step. The entropy
    carries gradients only when ``with_entropy == "grad"`` (an entropy bonus); ``True`` gives a
    detached value for logging without keeping the [N, T, V] softmax alive for backward.
    ``group``: rows sharing a prompt, see :func:`response_outputs`.
    """
    logits = response_outputs(model, input_ids, attention_mask, num_response, group).float()
    if temperature > 0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1)
    token_logp = logp.gather(-1, input_ids[:, -num_response:].unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy == "grad":
        entropy = -(logp.exp() * logp).sum(-1)
    elif with_entropy:
        with torch.no_grad():
            entropy = -(logp.exp() * logp).sum(-1)
    return token_logp, entropy


class PPOModule(L.LightningModule):
    """PPO for language models (the LIMR paper's OpenRLHF setup), plus GRPO / RLOO / REINFORCE++.

    Args:
        policy: the actor, a transformers causal LM.
        tokenizer: its tokenizer.
        reward: a reward plugin (``limr.types.Reward``).
        prompts: the training prompts.
        format_prompt: problem text -> model input text.
        history: the reward history (``limr.history.RewardHistory``); every rollout goes in.
        ref_policy: frozen reference for the KL penalty (None when ``kl_coef == 0``).
        value_model: the critic (``estimator == "gae"`` only).
        group_filter: an online filter ``(correct [G, n], rewards [G, n]) -> keep [G]``.
        curriculum: an online selector with ``update(history, epoch, all_ids)`` and ``schedule``.
        metrics_path: a JSONL file that gets one line of metrics per step (for the report).
        The other arguments are the fields of ``SamplerConfig`` and ``PPOConfig`` (see
        :mod:`limr.config` for each one's meaning).
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
        ref_policy: nn.Module | None = None,
        value_model: nn.Module | None = None,
        group_filter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        curriculum: Any = None,
        metrics_path: str | Path | None = None,
        max_steps: int = 100,
        max_epochs: int | None = None,
        seed: int = 42,
        # sampler
        sampler_name: str = "hf",
        sampler_kwargs: dict[str, Any] | None = None,
        n_samples: int = 8,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        # ppo
        estimator: str = "gae",
        rollout_batch_size: int = 8,
        train_batch_size: int = 16,
        micro_batch_size: int = 4,
        ppo_epochs: int = 1,
        clip_eps: float = 0.2,
        value_clip: float = 0.2,
        kl_coef: float = 0.01,
        kl_estimator: str = "k1",
        adaptive_kl: bool = False,
        kl_target: float = 0.01,
        kl_horizon: int = 10000,
        gamma: float = 1.0,
        lam: float = 0.95,
        whiten_advantages: bool | None = None,
        entropy_coef: float = 0.0,
        old_logprobs: str = "auto",
        actor_lr: float = 1e-6,
        critic_lr: float = 1e-5,
        adam_betas: Sequence[float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if estimator == "gae" and value_model is None:
            raise ValueError("estimator 'gae' needs a value model")
        if kl_coef > 0 and ref_policy is None:
            raise ValueError("kl_coef > 0 needs a reference policy")
        self.policy = policy
        self.value_model = value_model if estimator == "gae" else None
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
        self.sampler_name = sampler_name
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self.sampler: Any = None
        self.gen = dict(
            n=n_samples, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
            stop=list(stop),
        )  # fmt: skip
        self.n_samples = n_samples
        self.temperature = temperature
        self.estimator = estimator
        self.rollout_batch_size = rollout_batch_size
        self.train_batch_size = train_batch_size
        self.micro_batch_size = micro_batch_size
        self.ppo_epochs = ppo_epochs
        self.clip_eps = clip_eps
        self.value_clip = value_clip
        self.kl_estimator = kl_estimator
        self.kl_in_reward = estimator in ("gae", "reinforce_pp")
        self.kl_ctl: ppo.AdaptiveKLController | ppo.FixedKLController = (
            ppo.AdaptiveKLController(kl_coef, kl_target, kl_horizon)
            if adaptive_kl
            else ppo.FixedKLController(kl_coef)
        )
        self.gamma = gamma
        self.lam = lam
        # GRPO/RLOO advantages are already normalised within each group; whitening them again over
        # the batch's tokens would give a group whose samples all agree a non-zero advantage
        # whenever response length correlates with reward (OpenRLHF also leaves them alone).
        if whiten_advantages is None:
            whiten_advantages = estimator not in ("grpo", "rloo")
        self.whiten_advantages = whiten_advantages
        self.entropy_coef = entropy_coef
        if old_logprobs not in ("auto", "sampler", "recompute"):
            raise ValueError(
                f"old_logprobs must be auto, sampler or recompute, got {old_logprobs!r}"
            )
        self.old_logprobs = old_logprobs
        self.fuse_critic = True  # see _critic_in_update; False only to test the equivalence
        self.share_prompts = True  # see _share_prompts; False only to test the equivalence
        self.actor_lr = actor_lr
        self.critic_lr = critic_lr
        self.adam_betas = tuple(adam_betas)
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.warmup_steps = warmup_steps
        # position in the run (saved in every checkpoint)
        self.rl_step = 0
        self.epoch = 0
        self.epoch_ids: list[str] = [p.id for p in self.prompts]
        self.position = 0  # batches of the current epoch already done
        # prompt ids this process rolled out, per RL step (this session only; see limr.train)
        self.rollout_ids: dict[int, list[str]] = {}

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
        per_epoch = len(self.prompts) // self.rollout_batch_size
        return min(self.max_steps, per_epoch * self.max_epochs)

    def train_dataloader(self) -> StepLoader:
        return StepLoader(self, self.total_steps())

    def configure_optimizers(self) -> Any:
        # One optimiser with an actor group and a critic group: DeepSpeed accepts only one, and
        # the learning rates stay separate (the paper: actor 5e-7, critic 9e-6).
        groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad],
                   "lr": self.actor_lr, "name": "actor"}]  # fmt: skip
        if self.value_model is not None:
            groups.append({"params": list(self.value_model.parameters()), "lr": self.critic_lr,
                           "name": "critic"})  # fmt: skip
        optimizer = torch.optim.AdamW(groups, betas=self.adam_betas, weight_decay=self.weight_decay)
        warmup = max(self.warmup_steps, 0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        return [optimizer], [{"scheduler": scheduler, "interval": "step"}]

    def on_fit_start(self) -> None:
        if self.sampler is None:
            self.sampler = SAMPLERS.build(
                self.sampler_name, model=self.policy, tokenizer=self.tokenizer,
                **self.sampler_kwargs,
            )  # fmt: skip
        if self._deepspeed and self.group_filter is not None and self.world > 1:
            raise ValueError(
                "ppo.filter with DeepSpeed on several processes is not supported: ranks would run "
                "different numbers of backward passes and ZeRO's collectives would hang. Use "
                "trainer.strategy=ddp, or one process."
            )
        if self.rollout_batch_size % self.world:
            raise ValueError(
                f"ppo.rollout_batch_size ({self.rollout_batch_size}) must be divisible by the "
                f"number of processes ({self.world})"
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
        return max(1, len(self.epoch_ids) // self.rollout_batch_size)

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
                if len(chosen) < self.rollout_batch_size:
                    # the built-in curriculum never does: rollout_batch_size is part of its floor
                    raise ValueError(
                        f"the curriculum chose {len(chosen)} prompts, fewer than one rollout "
                        f"batch ({self.rollout_batch_size}); a curriculum must keep at least "
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
        start = self.position * self.rollout_batch_size
        batch = order[start : start + self.rollout_batch_size]
        return batch[self.rank :: self.world]

    # ------------------------------------------------------------------ the RL step

    def training_step(self, step: int, batch_idx: int) -> None:  # noqa: ARG002
        timer = _Timer()
        prompt_idx = self._batch_indices()
        prompts = [self.prompts[i] for i in prompt_idx]
        self.rollout_ids[self.rl_step] = [p.id for p in prompts]
        n = self.n_samples

        # 1. generate n responses per prompt with the current policy
        rollout: Rollout = self.sampler.generate(
            [self.texts[i] for i in prompt_idx],
            seed=self.seed * 1_000_003 + self.rl_step * 1_009 + self.rank,
            **self.gen,
        )
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

        # 5. log-probs, reference, values; KL-penalised rewards; advantages
        stats: dict[str, float] = {}
        exp = self._make_experience(rollout, rewards, rows, stats) if len(rows) > 0 else None
        timer.lap("experience")
        # 6. PPO epochs over mini-batches, micro-batches accumulated (a rank whose groups were
        # all filtered out still takes part, so optimiser steps stay in lock-step across ranks)
        self._ppo_update(exp, stats)
        timer.lap("update")

        # 7. the sampler generates with the new weights from the next step on
        self.sampler.update_weights(self.policy)
        timer.lap("sync_weights")
        self.kl_ctl.update(stats.get("kl", 0.0), self.rollout_batch_size * n)
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

    @torch.no_grad()
    def _make_experience(
        self, rollout: Rollout, rewards: torch.Tensor, rows: torch.Tensor, stats: dict
    ) -> Experience:
        device = self.device
        input_ids = torch.cat([rollout.query_ids, rollout.response_ids], 1)[rows].to(device)
        attention = torch.cat([rollout.query_mask, rollout.response_mask], 1)[rows].to(device)
        mask = rollout.response_mask[rows].to(device)
        scores = rewards[rows].to(device)
        T = mask.shape[1]
        recompute = self._recompute_old_logprobs()
        fused = self._critic_in_update()
        old_logprobs, ref_logprobs, values = [], [], []
        self.policy.eval()
        for chunk in torch.split(torch.arange(len(rows)), self.micro_batch_size * 4):
            ids, att = input_ids[chunk], attention[chunk]
            grp = self._group(len(chunk))
            if recompute:
                old_logprobs.append(
                    sequence_logprobs(self.policy, ids, att, T, self.temperature, group=grp)[0]
                )
            if self.ref_policy is not None:
                ref_logprobs.append(
                    sequence_logprobs(self.ref_policy, ids, att, T, self.temperature, group=grp)[0]
                )
            if self.value_model is not None and not fused:
                self.value_model.eval()
                values.append(self._values(ids, att, T, grp))
        self.policy.train()
        if self.value_model is not None:
            self.value_model.train()
        if recompute:
            old_lp = torch.cat(old_logprobs) * mask
        else:  # the sampler's own log-probs of the same weights: no extra forward pass
            old_lp = rollout.logprobs[rows].to(device=device, dtype=torch.float32) * mask
        ref_lp = torch.cat(ref_logprobs) * mask if ref_logprobs else torch.zeros_like(old_lp)
        old_values = torch.cat(values) * mask if values else torch.zeros_like(old_lp)

        kl = ppo.kl_penalty(old_lp, ref_lp, self.kl_estimator) * mask
        kl_coef = self.kl_ctl.value if self.ref_policy is not None else 0.0
        stats["kl"] = float(ppo.masked_mean(kl, mask, dim=-1).mean())
        token_r = torch.zeros_like(old_lp)
        if self.estimator == "gae":
            token_r = ppo.token_rewards(scores, kl, mask, kl_coef)
            if fused:  # the values come from the critic's pass in the update (_critic_first)
                z = torch.zeros_like(old_lp)
                return Experience(input_ids, attention, mask, old_lp, ref_lp, z, z, z, token_r)
            advantages, returns = ppo.compute_gae(token_r, old_values, mask, self.gamma, self.lam)
        elif self.estimator == "reinforce_pp":
            token_r = ppo.token_rewards(scores, kl, mask, kl_coef)
            advantages = ppo.discounted_returns(token_r, mask, self.gamma)
            returns = torch.zeros_like(advantages)
        else:  # grpo / rloo: whole groups survive the filter, so groups stay contiguous
            seq_adv = ppo.group_advantages(scores, self.n_samples, self.estimator)
            advantages = seq_adv.unsqueeze(-1) * mask
            returns = torch.zeros_like(advantages)
        if self.whiten_advantages:
            advantages = ppo.masked_whiten(advantages, mask)
        stats["advantage_mean"] = float(ppo.masked_mean(advantages, mask))
        return Experience(input_ids, attention, mask, old_lp, ref_lp, old_values,
                          advantages, returns, token_r)  # fmt: skip

    def _recompute_old_logprobs(self) -> bool:
        """Whether the PPO ratio's denominator needs a forward pass of the policy after generation.

        The sampler's log-probs are those of the sampling policy already: with ``hf`` (same module,
        same weights) they equal a recomputation up to float rounding, so ``auto`` reuses them. A
        sampler with its own copy and numerics (``vllm``, bf16 kernels) is recomputed, as OpenRLHF
        does, unless ``old_logprobs == "sampler"`` asks for the engine's values.
        """
        if self.old_logprobs == "auto":
            return not getattr(self.sampler, "shares_weights", False)
        return self.old_logprobs == "recompute"

    def _share_prompts(self) -> bool:
        """Run each prompt once per group of samples in the update's forwards (response_outputs).

        Needs micro-batches of whole groups and a KV cache in training (gradient checkpointing
        turns the cache off)."""
        return (
            self.share_prompts
            and self.n_samples > 1
            and self.micro_batch_size % self.n_samples == 0
            and not getattr(self.policy, "is_gradient_checkpointing", False)
        )

    def _group(self, rows: int) -> int:
        """Rows per shared prompt for a batch of ``rows`` rows cut at group boundaries."""
        return self.n_samples if self._share_prompts() and rows % self.n_samples == 0 else 1

    def _values(self, ids: torch.Tensor, att: torch.Tensor, T: int, group: int) -> torch.Tensor:
        """The critic's values [N, T] at the positions that predict the response tokens."""
        vm = self.value_model
        hidden = response_outputs(vm.backbone, ids, att, T, group)  # [N, T, H]
        return vm.value_head(hidden.to(vm.value_head.weight.dtype)).squeeze(-1).float()

    def _num_minibatches(self) -> int:
        local_rollouts = self.rollout_batch_size * self.n_samples // self.world
        local_train = max(1, self.train_batch_size // self.world)
        return max(1, local_rollouts // local_train)

    def _critic_in_update(self) -> bool:
        """One PPO epoch over one mini-batch: the critic is not updated before its loss is taken,
        so the values its loss-time forward computes are the rollout's values exactly, and the
        separate no-grad forward for them can be skipped (see :meth:`_critic_first`)."""
        return (
            self.fuse_critic
            and self.value_model is not None
            and self.ppo_epochs == 1
            and self._num_minibatches() == 1
        )

    def _ppo_update(self, exp: Experience | None, stats: dict) -> None:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        num_minibatches = self._num_minibatches()
        fused = exp is not None and self._critic_in_update()
        sums: dict[str, list[float]] = {}
        for epoch in range(self.ppo_epochs):
            if exp is not None:
                g = torch.Generator().manual_seed(self.seed + self.rl_step * 31 + epoch)
                if self._share_prompts():
                    # whole groups, shuffled: each micro-batch holds whole groups in order
                    n = self.n_samples
                    groups = torch.randperm(len(exp.input_ids) // n, generator=g)
                    minibatches = [
                        (c.unsqueeze(-1) * n + torch.arange(n)).reshape(-1)
                        for c in torch.tensor_split(groups, num_minibatches)
                    ]
                else:
                    perm = torch.randperm(len(exp.input_ids), generator=g)
                    minibatches = torch.tensor_split(perm, num_minibatches)
            else:
                minibatches = [torch.zeros(0, dtype=torch.long)] * num_minibatches
            for mb in minibatches:
                if self._rows_on_all_ranks(len(mb)) == 0:
                    # no rollout on any rank (filters, an empty batch): no gradient, so neither
                    # the optimiser (AdamW would move on stale momentum) nor the schedule steps;
                    # every rank sees the same total, so all skip together
                    continue
                optimizer.zero_grad(set_to_none=False)
                micro = torch.split(mb, self.micro_batch_size) if len(mb) else []
                if fused:
                    exp = self._critic_first(exp, micro, sums, stats)
                for j, m in enumerate(micro):
                    part = exp.index(m.to(exp.input_ids.device))
                    loss, s = self._loss(part, with_value=not fused)
                    if not torch.isfinite(loss):
                        raise NonFiniteLossError(
                            f"non-finite loss {loss.item()} at RL step {self.rl_step} "
                            f"({', '.join(f'{k}={v:.4g}' for k, v in s.items())}); the run stops "
                            "and the last good checkpoint is kept. Lower the learning rates or "
                            "check the reward."
                        )
                    weight = len(m) / len(mb)
                    last = j == len(micro) - 1
                    if self._deepspeed:
                        # Our micro-batches, not a fixed count in the DeepSpeed config, decide
                        # where an accumulation ends: DeepSpeed reduces and steps only there.
                        self.trainer.strategy.model.set_gradient_accumulation_boundary(last)
                        ctx = contextlib.nullcontext()
                    else:
                        # never DDP's reducer: _all_reduce_grads averages once per mini-batch,
                        # also on a rank whose groups were all filtered out (no backward at all)
                        ctx = self._no_sync()
                    with ctx:
                        self.manual_backward(loss * weight)
                    for k, v in s.items():
                        sums.setdefault(k, []).append(float(v))
                if self._deepspeed:
                    if micro:
                        optimizer.step()  # clips (config gradient_clipping) and steps
                else:
                    self._all_reduce_grads()
                    stats.update(self._clip_gradients())
                    optimizer.step()
                scheduler.step()
        stats.update({k: sum(v) / len(v) for k, v in sums.items()})
        stats["actor_lr"] = optimizer.param_groups[0]["lr"]

    def _critic_first(
        self, exp: Experience, micro: Sequence[torch.Tensor], sums: dict, stats: dict
    ) -> Experience:
        """The critic's forward, loss and backward for every micro-batch of the (only) mini-batch,
        then GAE and whitening from the values that forward gave.

        Exact for one epoch over one mini-batch: GAE of a response needs only its own values, and
        the value loss clips around those same values (no clipping). The policy's backward passes
        follow; the optimiser steps once after both, as in the unfused update.
        """
        T = exp.response_mask.shape[1]
        N = sum(len(m) for m in micro)
        values_all = torch.zeros_like(exp.token_rewards)
        for m in micro:
            m = m.to(exp.input_ids.device)
            b = exp.index(m)
            values = self._values(b.input_ids, b.attention_mask, T, self._group(len(m)))
            old = values.detach() * b.response_mask
            _, returns = ppo.compute_gae(
                b.token_rewards, old, b.response_mask, self.gamma, self.lam
            )
            vf_loss, vs = ppo.value_loss(values, old, returns, b.response_mask, self.value_clip)
            if self._deepspeed:
                self.trainer.strategy.model.set_gradient_accumulation_boundary(False)
                ctx = contextlib.nullcontext()
            else:
                ctx = self._no_sync()
            with ctx:
                self.manual_backward(vf_loss * (len(m) / N))
            for k, v in {"value_loss": vf_loss.detach(), **vs}.items():
                sums.setdefault(k, []).append(float(v))
            values_all[m] = old
        mask = exp.response_mask
        advantages, returns = ppo.compute_gae(exp.token_rewards, values_all, mask, self.gamma,
                                              self.lam)  # fmt: skip
        if self.whiten_advantages:
            advantages = ppo.masked_whiten(advantages, mask)
        stats["advantage_mean"] = float(ppo.masked_mean(advantages, mask))
        return exp._replace(old_values=values_all, advantages=advantages, returns=returns)

    def _no_sync(self) -> Any:
        block = getattr(self.trainer.strategy, "block_backward_sync", None)
        return block() if block is not None else contextlib.nullcontext()

    def _rows_on_all_ranks(self, rows: int) -> int:
        """Rollouts in this mini-batch summed over processes (the same number on every rank)."""
        if self.world <= 1 or not (dist.is_available() and dist.is_initialized()):
            return rows
        total = torch.tensor([rows], dtype=torch.long, device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def _all_reduce_grads(self) -> None:
        """Average gradients over processes ourselves: every backward runs without DDP's reducer
        (it cannot sync several backward passes per forward of the wrapper)."""
        if self.world <= 1 or not (dist.is_available() and dist.is_initialized()):
            return
        params = self._trainable()
        for p in params:  # a rank with nothing to train on still joins with zero gradients
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def _trainable(self) -> list[torch.nn.Parameter]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value_model is not None:
            params += list(self.value_model.parameters())
        return params

    def _clip_gradients(self) -> dict[str, float]:
        out = {}
        if self.grad_clip > 0:
            out["actor_grad_norm"] = float(
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
            )
            if self.value_model is not None:
                out["critic_grad_norm"] = float(
                    torch.nn.utils.clip_grad_norm_(self.value_model.parameters(), self.grad_clip)
                )
        return out

    def _loss(
        self, b: Experience, with_value: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T = b.response_mask.shape[1]
        want_entropy = "grad" if self.entropy_coef else True
        logprobs, entropy = sequence_logprobs(
            self.policy, b.input_ids, b.attention_mask, T, self.temperature, want_entropy,
            group=self._group(len(b.input_ids)),
        )  # fmt: skip
        pg_loss, s = ppo.policy_loss(
            logprobs, b.old_logprobs, b.advantages, b.response_mask, self.clip_eps
        )
        loss = pg_loss
        stats = {"policy_loss": pg_loss.detach(), **s}
        if entropy is not None:
            ent = ppo.masked_mean(entropy, b.response_mask)
            stats["entropy"] = ent.detach()
            if self.entropy_coef:
                loss = loss - self.entropy_coef * ent
        if not self.kl_in_reward and self.ref_policy is not None and self.kl_ctl.value:
            # GRPO / RLOO: the KL term goes into the loss (k3, Shao et al. 2024, eq. 4)
            k3 = ppo.kl_penalty(logprobs, b.ref_logprobs, "k3")
            kl_loss = ppo.masked_mean(k3, b.response_mask, dim=-1).mean()
            loss = loss + self.kl_ctl.value * kl_loss
            stats["kl_loss"] = kl_loss.detach()
        if self.value_model is not None and with_value:
            grp = self._group(len(b.input_ids))
            values = self._values(b.input_ids, b.attention_mask, T, grp)
            vf_loss, vs = ppo.value_loss(
                values, b.old_values, b.returns, b.response_mask, self.value_clip
            )
            loss = loss + vf_loss  # separate parameters: the sum trains each on its own loss
            stats.update({"value_loss": vf_loss.detach(), **vs})
        return loss, stats

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
