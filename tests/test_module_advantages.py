"""Advantages as PPOModule builds them from a rollout (no sampling, no training)."""

from __future__ import annotations

import pytest
import torch

from limr.config import PPOConfig, SamplerConfig
from limr.experience import make_experience, whitens
from limr.module import PPOModule
from limr.types import Prompt, Rollout, Scores


class _Reward:
    def __call__(self, responses, answers, finished, extras):  # noqa: ARG002
        n = len(responses)
        return Scores(rewards=torch.zeros(n), correct=torch.zeros(n, dtype=torch.bool))


def _module(tiny_policy, tiny_tokenizer, **kwargs) -> PPOModule:
    prompts = [Prompt(id=f"p{i}", problem=f"{i}+1", answer="1", extra={}) for i in range(2)]
    ppo = PPOConfig(rollout_batch_size=2, train_batch_size=4, micro_batch_size=4, kl_coef=0.0,
                    **kwargs)  # fmt: skip
    return PPOModule(
        policy=tiny_policy, tokenizer=tiny_tokenizer, reward=_Reward(), prompts=prompts,
        format_prompt=lambda p: p, history=None, sampler=SamplerConfig(n_samples=2), ppo=ppo,
    )  # fmt: skip


def _experience(module: PPOModule, rewards, rows):
    exp, _ = make_experience(
        _rollout(), rewards, rows, module.models, sampler=module.sampler_config,
        ppo=module.ppo_config, batching=module._batching(), kl_coef=0.0, recompute=False,
    )  # fmt: skip
    return exp


def _rollout() -> Rollout:
    # 2 prompts x 2 samples; responses of 2, 5, 3 and 1 tokens
    lengths = torch.tensor([2, 5, 3, 1])
    mask = torch.arange(5).unsqueeze(0) < lengths.unsqueeze(1)  # [4, 5]
    return Rollout(
        prompt_index=torch.tensor([0, 0, 1, 1]),
        query_ids=torch.full((4, 3), 5), query_mask=torch.ones(4, 3, dtype=torch.bool),
        response_ids=torch.where(mask, 6, 0), response_mask=mask,
        logprobs=torch.where(mask, -1.0, 0.0), finished=torch.ones(4, dtype=torch.bool),
        texts=["a"] * 4,
    )  # fmt: skip


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_a_group_whose_samples_agree_gets_no_advantage_by_default(
    tiny_policy, tiny_tokenizer, estimator
):
    rewards = torch.tensor([1.0, 1.0, 1.0, -1.0])  # group 0 agrees, group 1 does not
    rows = torch.arange(4)
    exp = _experience(_module(tiny_policy, tiny_tokenizer, estimator=estimator), rewards, rows)
    mask = exp.response_mask.bool()
    assert torch.all(exp.advantages[:2] == 0)  # both samples of group 0
    assert exp.advantages[2][mask[2]].min() > 0 > exp.advantages[3][mask[3]].max()
    # whitened again over the tokens (the old default), the agreeing group moves off zero
    whitened = _experience(
        _module(tiny_policy, tiny_tokenizer, estimator=estimator, whiten_advantages=True),
        rewards,
        rows,
    )
    assert whitened.advantages[:2][mask[:2]].abs().min() > 0.1


def test_value_based_estimators_still_whiten_by_default():
    assert whitens(PPOConfig(estimator="reinforce_pp"))
    assert not whitens(PPOConfig(estimator="grpo"))


def test_without_a_reference_policy_the_logged_kl_is_zero(tiny_policy, tiny_tokenizer):
    # the rollout's old log-probs are -1 per token: a "KL" against missing reference log-probs
    # (zeros) would log their distance from 0, not a divergence
    module = _module(tiny_policy, tiny_tokenizer, estimator="grpo")
    assert module.models.ref_policy is None
    _, stats = make_experience(
        _rollout(), torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.arange(4), module.models,
        sampler=module.sampler_config, ppo=module.ppo_config, batching=module._batching(),
        kl_coef=0.0, recompute=False,
    )  # fmt: skip
    assert float(stats["kl"]) == 0.0
