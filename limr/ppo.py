"""The maths of the RL update: pure functions of tensors, no module state.

Shapes: N rollouts, T response tokens; ``mask`` [N, T] is True on real response tokens.
Sources: PPO (Schulman et al. 2017, arXiv 1707.06347); GAE (Schulman et al. 2015, arXiv
1506.02438); per-token KL penalty in the reward (Ziegler et al. 2019, arXiv 1909.08593, as in
OpenRLHF, which the LIMR paper used); k1/k2/k3 KL estimators (Schulman, "Approximating KL
divergence", 2020); GRPO (Shao et al. 2024, arXiv 2402.03300); RLOO (Ahmadian et al. 2024, arXiv
2402.14740); REINFORCE++ (Hu 2025, arXiv 2501.03262).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is True (over ``dim``, or all)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-8,
    all_reduce: Callable[[torch.Tensor], Any] | None = None,
) -> torch.Tensor:
    """Normalise ``x`` to mean 0 and std 1 over the masked positions; 0 elsewhere.

    ``all_reduce`` sums a tensor over processes in place (``torch.distributed.all_reduce``): the
    mean and variance are then those of every process's masked positions together, so each process
    whitens its rows exactly as whitening the concatenated batch would (a process without rows
    joins with empty tensors).
    """
    m = mask.to(x.dtype)
    moments = torch.stack([(x * m).sum(), m.sum()])
    if all_reduce is not None:
        all_reduce(moments)
    count = moments[1].clamp(min=1)
    mean = moments[0] / count
    sq = ((x - mean) ** 2 * m).sum().reshape(1)
    if all_reduce is not None:
        all_reduce(sq)
    var = sq[0] / count
    return ((x - mean) * torch.rsqrt(var + eps)) * mask


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens. [N, T].

    k1 = log r, k2 = (log r)^2 / 2, k3 = exp(-log r) - 1 + log r, with log r = logp - ref_logp
    (k1 is the paper's / OpenRLHF's default; k3 is unbiased and always >= 0).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}: k1, k2 or k3")


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards [N, T]: ``-kl_coef * kl`` on every token, plus the sequence score on the
    last real token (Ziegler et al. 2019; OpenRLHF ``compute_reward``)."""
    rewards = -kl_coef * kl * mask
    last = (mask.long().cumsum(-1) == mask.long().sum(-1, keepdim=True)) & mask  # [N, T]
    return rewards + scores.unsqueeze(-1).to(rewards.dtype) * last


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses.

    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1}; V after the
    last real token is 0 (the episode ends). Returns (advantages [N, T], returns = A + V [N, T]),
    both 0 on padding.
    """
    mask_f = mask.to(values.dtype)
    values = values * mask_f
    rewards = rewards * mask_f
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask_f[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask_f


def discounted_returns(
    rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """G_t = sum_{k>=t} gamma^(k-t) r_k over real tokens. [N, T] (REINFORCE++)."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t].to(rewards.dtype)
        out[:, t] = running
    return out


def group_advantages(
    scores: torch.Tensor, group_size: int, method: str = "grpo", eps: float = 1e-6
) -> torch.Tensor:
    """Critic-free sequence advantages [N] from scores [N] of groups of ``group_size`` samples
    (rollout-major: each prompt's samples are consecutive).

    grpo: (s - mean_group) / (std_group + eps) (Shao et al. 2024).
    rloo: s - mean of the other samples of the group (Ahmadian et al. 2024).
    """
    s = scores.view(-1, group_size).to(torch.float32)  # [G, n]
    if method == "grpo":
        adv = (s - s.mean(-1, keepdim=True)) / (s.std(-1, keepdim=True) + eps)
    elif method == "rloo":
        adv = s - (s.sum(-1, keepdim=True) - s) / (group_size - 1)
    else:
        raise ValueError(f"unknown group estimator {method!r}: grpo or rloo")
    return adv.reshape(-1)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), averaged over tokens of each sequence
    then over sequences (OpenRLHF ``PolicyLoss``).

    Returns (loss, stats) with stats ``clipfrac`` (share of tokens clipped) and ``approx_kl``
    (k3 between old and new policy).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    surr1 = ratio * advantages
    surr2 = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = masked_mean(-torch.min(surr1, surr2), mask, dim=-1).mean()
    with torch.no_grad():
        clipfrac = masked_mean((surr2 < surr1).float(), mask)
        approx_kl = masked_mean(torch.expm1(-log_ratio) + log_ratio, mask)
    return loss, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    value_clip: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old,
    -c, c) (OpenAI baselines ppo2; OpenRLHF ``ValueLoss``); ``value_clip <= 0`` disables clipping.
    """
    if value_clip > 0:
        clipped = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
        unclipped_sq = (values - returns) ** 2
        clipped_sq = (clipped - returns) ** 2
        loss = 0.5 * masked_mean(torch.max(unclipped_sq, clipped_sq), mask, dim=-1).mean()
        with torch.no_grad():
            clipfrac = masked_mean((clipped_sq > unclipped_sq).float(), mask)
    else:
        loss = 0.5 * masked_mean((values - returns) ** 2, mask, dim=-1).mean()
        clipfrac = torch.zeros(())
    return loss, {"vf_clipfrac": clipfrac}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position. [N, T] from logits [N, T, V]."""
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


class AdaptiveKLController:
    """Adapts the KL coefficient towards a target KL (Ziegler et al. 2019, section 2.2):
    coef <- coef * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon)."""

    def __init__(self, init_coef: float, target: float, horizon: int) -> None:
        self.value = init_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon


class FixedKLController:
    """A constant KL coefficient (the paper's 0.01)."""

    def __init__(self, init_coef: float) -> None:
        self.value = init_coef

    def update(self, current_kl: float, n_steps: int) -> None:  # noqa: ARG002 - same interface
        return None
