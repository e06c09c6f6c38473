"""The rollout-to-advantages step: from a rollout batch and its rewards, the :class:`Experience`
that the PPO epochs train on (old and reference log-probs, values, KL-penalised rewards, advantages
and returns). The maths lives in :mod:`limr.ppo`; the forward passes in :mod:`limr.forward`.

With several processes each one holds its own rows, after the online filter not necessarily as
many as the others (a process may hold none). The statistics of the batch are summed over
processes: whitened advantages equal those of whitening the concatenated batch, and the KL that
drives the adaptive controller is the batch's, so every process keeps the same coefficient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from limr import ppo as ppo_math
from limr.config import PPOConfig, SamplerConfig
from limr.forward import Batching, Models, critic_values, sequence_logprobs
from limr.types import Rollout

AllReduce = Callable[[torch.Tensor], Any]
"""Sums a tensor over processes in place (``torch.distributed.all_reduce``)."""


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


def whitens(ppo: PPOConfig) -> bool:
    """``ppo.whiten_advantages`` resolved: None means yes for gae and reinforce_pp.

    GRPO/RLOO advantages are already normalised within each group; whitening them again over the
    batch's tokens would give a group whose samples all agree a non-zero advantage whenever
    response length correlates with reward (OpenRLHF also leaves them alone).
    """
    if ppo.whiten_advantages is None:
        return ppo.estimator not in ("grpo", "rloo")
    return ppo.whiten_advantages


def kl_in_reward(ppo: PPOConfig) -> bool:
    """Whether the KL penalty is part of the per-token reward (gae, reinforce_pp) rather than a
    term of the policy loss (grpo, rloo)."""
    return ppo.estimator in ("gae", "reinforce_pp")


@torch.no_grad()
def make_experience(
    rollout: Rollout,
    rewards: torch.Tensor,
    rows: torch.Tensor,
    models: Models,
    *,
    sampler: SamplerConfig,
    ppo: PPOConfig,
    batching: Batching,
    kl_coef: float,
    recompute: bool,
    device: torch.device | str = "cpu",
    all_reduce: AllReduce | None = None,
) -> tuple[Experience, dict[str, float]]:
    """The experience of the rollout's ``rows`` (whole groups, in order), and its statistics.

    Args:
        rollout: the sampler's output for this process's prompts.
        rewards: [N] the reward of every rollout.
        rows: indices of the rollouts kept by the online filter (may be empty).
        models: policy, reference (KL) and critic (GAE).
        sampler, ppo: the run's settings (temperature and samples per prompt; the estimator and
            its constants).
        batching: how the rows are cut into forward passes; with ``fused_critic`` the values, GAE
            and whitening are left to the update (:func:`advantages_from_values`).
        kl_coef: the KL coefficient now (0 without a reference policy).
        recompute: take the old log-probs from a forward of the policy instead of the sampler's.
        device: where the experience lives (the models' device).
        all_reduce: sums over processes (None: one process).

    Returns:
        ``(experience, stats)``; stats holds ``kl`` (the batch's mean per-sequence KL to the
        reference, over all processes) and, unless the critic is fused, ``advantage_mean``.
    """
    input_ids = torch.cat([rollout.query_ids, rollout.response_ids], 1)[rows].to(device)
    attention = torch.cat([rollout.query_mask, rollout.response_mask], 1)[rows].to(device)
    mask = rollout.response_mask[rows].to(device)
    scores = rewards[rows].to(device)
    T = mask.shape[1]
    zeros = torch.zeros(mask.shape, device=device)
    old_logprobs, ref_logprobs, values = [], [], []
    policy, ref_policy, value_model = models
    size = batching.micro_batch_size * 4
    chunks = torch.split(torch.arange(len(rows)), size) if len(rows) else ()
    policy.eval()
    if value_model is not None:
        value_model.eval()
    for chunk in chunks:
        ids, att = input_ids[chunk], attention[chunk]
        grp = batching.group_of(len(chunk))
        if recompute:
            old_logprobs.append(
                sequence_logprobs(policy, ids, att, T, sampler.temperature, group=grp)[0]
            )
        if ref_policy is not None:
            ref_logprobs.append(
                sequence_logprobs(ref_policy, ids, att, T, sampler.temperature, group=grp)[0]
            )
        if value_model is not None and not batching.fused_critic:
            values.append(critic_values(value_model, ids, att, T, grp))
    policy.train()
    if value_model is not None:
        value_model.train()
    if not recompute:  # the sampler's own log-probs of the same weights: no extra forward pass
        old_lp = rollout.logprobs[rows].to(device=device, dtype=torch.float32) * mask
    else:
        old_lp = torch.cat(old_logprobs) * mask if old_logprobs else zeros
    ref_lp = torch.cat(ref_logprobs) * mask if ref_logprobs else zeros
    old_values = torch.cat(values) * mask if values else zeros

    # no reference policy (KL off): no KL, not the old log-probs' distance from zeros
    kl = ppo_math.kl_penalty(old_lp, ref_lp, ppo.kl_estimator) * mask if ref_logprobs else zeros
    per_row = ppo_math.masked_mean(kl, mask, dim=-1)
    stats = {"kl": mean_over_processes(per_row.sum(), len(per_row), all_reduce)}
    token_r = zeros
    if ppo.estimator == "gae":
        token_r = ppo_math.token_rewards(scores, kl, mask, kl_coef)
        exp = Experience(input_ids, attention, mask, old_lp, ref_lp, zeros, zeros, zeros, token_r)
        if batching.fused_critic:  # the values come from the critic's pass in the update
            return exp, stats
        exp, stats["advantage_mean"] = advantages_from_values(exp, old_values, ppo, all_reduce)
        return exp, stats
    if ppo.estimator == "reinforce_pp":
        token_r = ppo_math.token_rewards(scores, kl, mask, kl_coef)
        advantages = ppo_math.discounted_returns(token_r, mask, ppo.gamma)
    else:  # grpo / rloo: whole groups survive the filter, so groups stay contiguous
        seq_adv = ppo_math.group_advantages(scores, sampler.n_samples, ppo.estimator)
        advantages = seq_adv.unsqueeze(-1) * mask
    advantages, stats["advantage_mean"] = _finish(advantages, mask, ppo, all_reduce)
    exp = Experience(input_ids, attention, mask, old_lp, ref_lp, old_values, advantages,
                     torch.zeros_like(advantages), token_r)  # fmt: skip
    return exp, stats


def advantages_from_values(
    exp: Experience, values: torch.Tensor, ppo: PPOConfig, all_reduce: AllReduce | None = None
) -> tuple[Experience, float]:
    """GAE advantages and returns of ``exp``'s KL-penalised rewards under the critic's ``values``
    [N, T] (zero off the response), whitened over all processes when the settings say so.

    Returns the experience with ``old_values``, ``advantages`` and ``returns`` filled in, and the
    mean advantage over all processes' response tokens.
    """
    mask = exp.response_mask
    advantages, returns = ppo_math.compute_gae(exp.token_rewards, values, mask, ppo.gamma, ppo.lam)
    advantages, mean = _finish(advantages, mask, ppo, all_reduce)
    return exp._replace(old_values=values, advantages=advantages, returns=returns), mean


def _finish(
    advantages: torch.Tensor, mask: torch.Tensor, ppo: PPOConfig, all_reduce: AllReduce | None
) -> tuple[torch.Tensor, float]:
    if whitens(ppo):
        advantages = ppo_math.masked_whiten(advantages, mask, all_reduce=all_reduce)
    m = mask.to(advantages.dtype)
    return advantages, mean_over_processes((advantages * m).sum(), m.sum(), all_reduce)


def mean_over_processes(
    total: torch.Tensor, count: torch.Tensor | int, all_reduce: AllReduce | None = None
) -> float:
    """``total / count`` with both summed over processes (0 when there is nothing anywhere)."""
    pair = torch.stack([total.float(), torch.as_tensor(count, device=total.device).float()])
    if all_reduce is not None:
        all_reduce(pair)
    return float(pair[0] / pair[1].clamp(min=1))
