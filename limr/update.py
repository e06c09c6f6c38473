"""The PPO update of one rollout batch: PPO epochs over shuffled mini-batches, micro-batches
accumulated, one optimiser step per mini-batch with each model's gradients clipped on its own norm.

Every row weighs the same whichever process holds it: a micro-batch's loss is weighted by its
rows over the mini-batch's rows on all processes (times the number of processes, since gradients
are averaged over them), so the update equals that of one process over all the rows, also when
the online filter leaves processes with different numbers of rows. Every term of the loss, the
entropy bonus included, is a mean over each row's tokens, then over rows (see :mod:`limr.ppo`), so
neither the micro-batch size nor the number of processes changes the update.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from limr import ppo as ppo_math
from limr.config import PPOConfig, SamplerConfig
from limr.experience import Experience, advantages_from_values, kl_in_reward
from limr.forward import Batching, Models, critic_values, sequence_logprobs

GradShard = tuple[torch.Tensor, Callable[[torch.Tensor], None] | None]
"""A gradient tensor this process holds, and how to write it back (None: scale it in place)."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf; the run stops and the last good checkpoint stays."""


class Processes:
    """The processes of one run as the update sees them: sums over all of them, backward passes,
    and where the gradients are.

    This class is plain torch: one process, or ``torch.distributed`` with every process holding
    whole gradients in ``p.grad`` (averaged by :meth:`reduce_gradients`). :mod:`limr.module`
    routes backward passes through Lightning and, under DeepSpeed, reads ZeRO's partitions.
    """

    sharded = False
    """Whether each process holds only a partition of every gradient (ZeRO)."""

    def __init__(self, world: int = 1, device: torch.device | str = "cpu") -> None:
        self.world = world
        self.device = torch.device(device)

    def _distributed(self) -> bool:
        return self.world > 1 and dist.is_available() and dist.is_initialized()

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes, in place (alone: as it is)."""
        if self._distributed():
            dist.all_reduce(tensor)
        return tensor

    def total(self, count: int) -> int:
        """``count`` summed over processes (the same number on every one)."""
        return int(self.all_reduce(torch.tensor([count], dtype=torch.long, device=self.device)))

    def backward(self, loss: torch.Tensor, last: bool) -> None:  # noqa: ARG002 - see subclasses
        """Accumulate the gradients of ``loss``; ``last``: the mini-batch's last backward pass."""
        loss.backward()

    def reduce_gradients(self, params: Sequence[nn.Parameter]) -> None:
        """Average ``p.grad`` over processes with one all-reduce. A process that ran no backward
        pass in this mini-batch (its groups were all filtered out) joins with zero gradients."""
        if not self._distributed():
            return
        for p in params:
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

    def grad_shards(self, params: Sequence[nn.Parameter]) -> list[GradShard]:
        """The gradients of ``params`` this process holds (whole ones here)."""
        return [(p.grad, None) for p in params if p.grad is not None]

    def step(
        self,
        optimizer: Any,
        groups: Mapping[str, Sequence[nn.Parameter]],
        max_norm: float,
        ran_backward: bool,  # noqa: ARG002 - every process steps here, see reduce_gradients
    ) -> dict[str, float]:
        """The optimiser step that ends a mini-batch: gradients reduced over processes, each
        model's clipped on its own norm (:func:`clip_per_model`), then the step. Returns the
        norms."""
        self.reduce_gradients([p for params in groups.values() for p in params])
        norms = clip_per_model(groups, max_norm, self)
        optimizer.step()
        return norms


def clip_per_model(
    groups: Mapping[str, Sequence[nn.Parameter]], max_norm: float, processes: Processes
) -> dict[str, float]:
    """Scale each group's gradients so that their norm is at most ``max_norm``, on that group's
    own norm: a critic whose gradients are huge does not shrink the actor's (one norm over both
    would; OpenRLHF clips actor and critic in their own engines). ``max_norm <= 0`` only measures.

    Where each process holds a partition of the gradients (``processes.sharded``), the squared
    norms of the partitions are summed over processes first, so every process scales its part by
    the same factor. Returns ``{"<group>_grad_norm": the norm before clipping}``.
    """
    shards = {name: processes.grad_shards(params) for name, params in groups.items()}
    norms = torch.stack([_norm([g for g, _ in s], processes.device) for s in shards.values()])
    if processes.sharded:
        norms = processes.all_reduce(norms.square()).sqrt()
    if max_norm > 0:
        for s, norm in zip(shards.values(), norms):
            coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)  # as torch's clip_grad_norm_
            for g, write in s:
                if write is None:
                    g.mul_(coef.to(g.device))
                else:
                    write(g * coef.to(g.device))
    return {f"{name}_grad_norm": float(norm) for name, norm in zip(shards, norms)}


def _norm(tensors: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The 2-norm of ``tensors`` taken as one vector, in float32, on ``device``."""
    if not tensors:
        return torch.zeros((), device=device)
    each = [torch.linalg.vector_norm(t, dtype=torch.float32).to(device) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(each))


def zero_grad_shards(params: Sequence[nn.Parameter]) -> list[GradShard]:
    """This process's partitions of the gradients of ``params`` under DeepSpeed ZeRO, between the
    backward pass that ends an accumulation and the engine's step (ZeRO keeps them in the
    optimiser, not in ``p.grad``).

    ZeRO-3: the partition of each parameter, through DeepSpeed's local-gradient API. ZeRO-1/2:
    the fragment of each parameter that falls in this process's partition (the mapping DeepSpeed's
    own ``safe_set_full_grad`` writes through); parameters outside it have none. Partitions are
    disjoint, so their squared norms sum to the whole gradient's over processes.
    """
    out: list[GradShard] = []
    for p in params:
        if hasattr(p, "ds_id"):
            from deepspeed.utils import safe_get_local_grad, safe_set_local_grad

            grad = safe_get_local_grad(p)  # fp32, possibly a copy (offload): written back
            if grad is not None:
                out.append((grad, lambda v, p=p: safe_set_local_grad(p, v)))
        elif getattr(p, "_hp_mapping", None) is not None:
            out.append((p._hp_mapping.get_lp_grad_fragment(p._index_in_param_group), None))
    return out


def ppo_update(
    exp: Experience,
    models: Models,
    *,
    sampler: SamplerConfig,
    ppo: PPOConfig,
    batching: Batching,
    optimizer: Any,
    scheduler: Any,
    processes: Processes,
    kl_coef: float,
    seed: int,
    step: int = 0,
) -> dict[str, float]:
    """``ppo.ppo_epochs`` passes over ``exp`` in ``batching.minibatches`` shuffled mini-batches.

    Every process calls this, also one without rows (its groups filtered out): it joins every
    sum and optimiser step with zero gradients, so the processes stay in lock-step. A mini-batch
    without rows on any process is skipped whole (no gradient: neither the optimiser, which
    would move on stale momentum, nor the schedule steps).

    Args:
        exp: this process's experience (from :func:`limr.experience.make_experience`).
        models: the policy, reference and critic.
        sampler, ppo: the run's settings.
        batching: micro-batch size, mini-batches, prompt sharing, fused critic.
        optimizer, scheduler: one optimiser with an actor and a critic group, and its schedule.
        processes: sums, backward passes and gradients (:class:`Processes`).
        kl_coef: the KL coefficient now (the policy loss's KL term of grpo and rloo).
        seed: seed of this step's shuffles (epoch e shuffles with ``seed + e``).
        step: the RL step, for error messages.

    Returns:
        Means of the losses and their statistics (over micro-batches) and of the gradient norms
        before clipping (over optimiser steps), ``actor_lr``, and with the fused critic the
        ``advantage_mean`` of the advantages it computed.
    """
    num_minibatches = batching.minibatches
    fused = batching.fused_critic
    groups = {"actor": [p for p in models.policy.parameters() if p.requires_grad]}
    if models.value_model is not None:
        groups["critic"] = list(models.value_model.parameters())
    sums: dict[str, list[float]] = {}
    norms: dict[str, list[float]] = {}
    stats: dict[str, float] = {}
    n, world = sampler.n_samples, processes.world
    for epoch in range(ppo.ppo_epochs):
        g = torch.Generator().manual_seed(seed + epoch)
        if batching.group > 1:
            # whole groups, shuffled: each micro-batch holds whole groups in order
            order = torch.randperm(len(exp.input_ids) // n, generator=g)
            minibatches = [
                (c.unsqueeze(-1) * n + torch.arange(n)).reshape(-1)
                for c in torch.tensor_split(order, num_minibatches)
            ]
        else:
            perm = torch.randperm(len(exp.input_ids), generator=g)
            minibatches = torch.tensor_split(perm, num_minibatches)
        for mb in minibatches:
            total = processes.total(len(mb))
            if total == 0:
                continue  # no rollout on any process; every process sees the same total
            optimizer.zero_grad(set_to_none=False)
            micro = torch.split(mb, batching.micro_batch_size) if len(mb) else []
            if fused:
                exp, stats["advantage_mean"] = _critic_first(
                    exp, models, micro, ppo, batching, processes, total, sums
                )
            for j, m in enumerate(micro):
                part = exp.index(m.to(exp.input_ids.device))
                loss, s = _loss(part, models, sampler, ppo, batching, kl_coef, with_value=not fused)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"non-finite loss {loss.item()} at RL step {step} "
                        f"({', '.join(f'{k}={v:.4g}' for k, v in s.items())}); the run stops "
                        "and the last good checkpoint is kept. Lower the learning rates or "
                        "check the reward."
                    )
                # each row weighs 1 / total once the gradients are averaged over the processes
                processes.backward(loss * (len(m) * world / total), last=j == len(micro) - 1)
                for k, v in s.items():
                    sums.setdefault(k, []).append(float(v))
            for k, v in processes.step(optimizer, groups, ppo.grad_clip, bool(micro)).items():
                norms.setdefault(k, []).append(v)
            scheduler.step()
    stats.update({k: sum(v) / len(v) for k, v in sums.items()})
    stats.update({k: sum(v) / len(v) for k, v in norms.items()})  # mean over optimiser steps
    stats["actor_lr"] = optimizer.param_groups[0]["lr"]
    return stats


def _critic_first(
    exp: Experience,
    models: Models,
    micro: Sequence[torch.Tensor],
    ppo: PPOConfig,
    batching: Batching,
    processes: Processes,
    total: int,
    sums: dict[str, list[float]],
) -> tuple[Experience, float]:
    """The critic's forward, loss and backward for every micro-batch of the (only) mini-batch,
    then GAE and whitening (over all processes) from the values that forward gave. ``total``:
    the mini-batch's rows on all processes.

    Exact for one epoch over one mini-batch: GAE of a response needs only its own values, and
    the value loss clips around those same values (no clipping). The policy's backward passes
    follow; the optimiser steps once after both, as in the unfused update.
    """
    T = exp.response_mask.shape[1]
    values_all = torch.zeros_like(exp.token_rewards)
    for m in micro:
        m = m.to(exp.input_ids.device)
        b = exp.index(m)
        values = critic_values(
            models.value_model, b.input_ids, b.attention_mask, T, batching.group_of(len(m))
        )
        old = values.detach() * b.response_mask
        _, returns = ppo_math.compute_gae(b.token_rewards, old, b.response_mask, ppo.gamma, ppo.lam)
        vf_loss, vs = ppo_math.value_loss(values, old, returns, b.response_mask, ppo.value_clip)
        processes.backward(vf_loss * (len(m) * processes.world / total), last=False)
        for k, v in {"value_loss": vf_loss.detach(), **vs}.items():
            sums.setdefault(k, []).append(float(v))
        values_all[m] = old
    return advantages_from_values(exp, values_all, ppo, processes.all_reduce)


def _loss(
    b: Experience,
    models: Models,
    sampler: SamplerConfig,
    ppo: PPOConfig,
    batching: Batching,
    kl_coef: float,
    with_value: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch: PPO's clipped surrogate, the entropy bonus, the KL term of
    grpo and rloo, and (``with_value``) the critic's clipped value loss."""
    T = b.response_mask.shape[1]
    grp = batching.group_of(len(b.input_ids))
    want_entropy = "grad" if ppo.entropy_coef else True
    logprobs, entropy = sequence_logprobs(
        models.policy, b.input_ids, b.attention_mask, T, sampler.temperature, want_entropy,
        group=grp,
    )  # fmt: skip
    pg_loss, s = ppo_math.policy_loss(
        logprobs, b.old_logprobs, b.advantages, b.response_mask, ppo.clip_eps
    )
    loss = pg_loss
    stats = {"policy_loss": pg_loss.detach(), **s}
    if entropy is not None:  # a mean over each row's tokens, then over rows, as every term
        ent = ppo_math.masked_mean(entropy, b.response_mask, dim=-1).mean()
        stats["entropy"] = ent.detach()
        if ppo.entropy_coef:
            loss = loss - ppo.entropy_coef * ent
    if not kl_in_reward(ppo) and models.ref_policy is not None and kl_coef:
        # GRPO / RLOO: the KL term goes into the loss (k3, Shao et al. 2024, eq. 4)
        k3 = ppo_math.kl_penalty(logprobs, b.ref_logprobs, "k3")
        kl_loss = ppo_math.masked_mean(k3, b.response_mask, dim=-1).mean()
        loss = loss + kl_coef * kl_loss
        stats["kl_loss"] = kl_loss.detach()
    if models.value_model is not None and with_value:
        values = critic_values(models.value_model, b.input_ids, b.attention_mask, T, grp)
        vf_loss, vs = ppo_math.value_loss(
            values, b.old_values, b.returns, b.response_mask, ppo.value_clip
        )
        loss = loss + vf_loss  # separate parameters: the sum trains each on its own loss
        stats.update({"value_loss": vf_loss.detach(), **vs})
    return loss, stats
