"""The RL maths against hand-computed tensors (the arithmetic is in the comments)."""

import math

import pytest
import torch

from limr import ppo


def test_masked_mean_and_whiten():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    m = torch.tensor([[True, True, False], [True, False, False]])
    # (1 + 2 + 3) / 3 = 2; per row: 1.5 and 3
    assert ppo.masked_mean(x, m).item() == pytest.approx(2.0)
    assert ppo.masked_mean(x, m, dim=-1).tolist() == pytest.approx([1.5, 3.0])
    w = ppo.masked_whiten(x, m)
    # masked values 1, 2, 3: mean 2, var 2/3 -> (-1, 0, 1) / sqrt(2/3); padding stays 0
    s = math.sqrt(2 / 3)
    assert w[m].tolist() == pytest.approx([-1 / s, 0.0, 1 / s], abs=1e-5)
    assert w[~m].tolist() == [0.0, 0.0, 0.0]


def test_kl_estimators():
    lp, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]])
    # log r = 0.5
    assert ppo.kl_penalty(lp, ref, "k1").item() == pytest.approx(0.5)
    assert ppo.kl_penalty(lp, ref, "k2").item() == pytest.approx(0.125)
    # k3 = exp(-0.5) - 1 + 0.5 = 0.1065306597
    assert ppo.kl_penalty(lp, ref, "k3").item() == pytest.approx(math.exp(-0.5) - 0.5)
    with pytest.raises(ValueError):
        ppo.kl_penalty(lp, ref, "k9")


def test_token_rewards_put_the_score_on_the_last_real_token():
    scores = torch.tensor([1.0, -0.5])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    r = ppo.token_rewards(scores, kl, mask, kl_coef=0.1)
    # row 0: -0.01, -0.02 + 1, padding 0; row 1: -0.04, -0.05, -0.06 - 0.5
    expected = torch.tensor([[-0.01, 0.98, 0.0], [-0.04, -0.05, -0.56]])
    torch.testing.assert_close(r, expected)


def test_gae_by_hand():
    # one sequence of 3 tokens, gamma = 1, lambda = 0.5
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, ret = ppo.compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # delta2 = 1 + 0 - 0.7 = 0.3;         A2 = 0.3
    # delta1 = 0 + 0.7 - 0.6 = 0.1;       A1 = 0.1 + 0.5 * 0.3 = 0.25
    # delta0 = 0 + 0.6 - 0.5 = 0.1;       A0 = 0.1 + 0.5 * 0.25 = 0.225
    torch.testing.assert_close(adv, torch.tensor([[0.225, 0.25, 0.3]]))
    torch.testing.assert_close(ret, torch.tensor([[0.725, 0.85, 1.0]]))


def test_gae_ignores_padding_and_discounts():
    rewards = torch.tensor([[0.0, 2.0, 9.0]])
    values = torch.tensor([[1.0, 1.0, 9.0]])
    mask = torch.tensor([[True, True, False]])
    adv, ret = ppo.compute_gae(rewards, values, mask, gamma=0.5, lam=1.0)
    # the padded token is outside the episode: V after the last real token is 0
    # delta1 = 2 + 0.5 * 0 - 1 = 1;  A1 = 1
    # delta0 = 0 + 0.5 * 1 - 1 = -0.5; A0 = -0.5 + 0.5 * 1 * 1 = 0
    torch.testing.assert_close(adv, torch.tensor([[0.0, 1.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 2.0, 0.0]]))


def test_discounted_returns():
    r = torch.tensor([[1.0, 0.0, 2.0]])
    m = torch.tensor([[True, True, True]])
    # gamma 0.5: G2 = 2, G1 = 0 + 1 = 1, G0 = 1 + 0.5 = 1.5
    torch.testing.assert_close(ppo.discounted_returns(r, m, 0.5), torch.tensor([[1.5, 1.0, 2.0]]))


def test_group_advantages_grpo_and_rloo():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # two groups of 3
    grpo = ppo.group_advantages(scores, 3, "grpo", eps=0.0)
    # group 1: mean 1/3, std (unbiased) = sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = sqrt(1/3)
    s = math.sqrt(1 / 3)
    assert grpo.tolist() == pytest.approx(
        [(2 / 3) / s, (-1 / 3) / s, (-1 / 3) / s, (-2 / 3) / s, (1 / 3) / s, (1 / 3) / s]
    )
    rloo = ppo.group_advantages(scores, 3, "rloo")
    # 1 - (0 + 0) / 2 = 1; 0 - (1 + 0) / 2 = -0.5; group 2: 0 - 1 = -1, 1 - 0.5 = 0.5
    assert rloo.tolist() == pytest.approx([1.0, -0.5, -0.5, -1.0, 0.5, 0.5])


def test_policy_loss_clips():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.25]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, s = ppo.policy_loss(new, old, adv, mask, clip_eps=0.2)
    # token 0: min(1.5, 1.2) = 1.2; token 1: min(0.5, 0.8) = 0.5 -> loss = -(1.2 + 0.5) / 2
    assert loss.item() == pytest.approx(-0.85)
    assert s["clipfrac"].item() == pytest.approx(0.5)  # only token 0 is clipped
    # negative advantage: token 0 min(-1.5, -1.2) = -1.5; token 1 min(-0.5, -0.8) = -0.8
    loss_neg, _ = ppo.policy_loss(new, old, -adv, mask, clip_eps=0.2)
    assert loss_neg.item() == pytest.approx((1.5 + 0.8) / 2)


def test_policy_loss_gradient_is_zero_when_clipped():
    old = torch.log(torch.tensor([[0.5]]))
    new = torch.log(torch.tensor([[0.75]])).requires_grad_()
    loss, _ = ppo.policy_loss(new, old, torch.tensor([[1.0]]), torch.ones(1, 1, dtype=torch.bool))
    loss.backward()
    assert new.grad.item() == 0.0


def test_value_loss_with_and_without_clip():
    values = torch.tensor([[1.0]])
    old = torch.tensor([[0.0]])
    ret = torch.tensor([[0.5]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, s = ppo.value_loss(values, old, ret, mask, value_clip=0.2)
    # unclipped (1 - 0.5)^2 = 0.25; clipped V = 0.2 -> (0.2 - 0.5)^2 = 0.09; max = 0.25; x 0.5
    assert loss.item() == pytest.approx(0.125)
    assert s["vf_clipfrac"].item() == 0.0
    values2 = torch.tensor([[0.6]])
    ret2 = torch.tensor([[1.0]])
    loss2, s2 = ppo.value_loss(values2, old, ret2, mask, value_clip=0.2)
    # unclipped (0.6 - 1)^2 = 0.16; clipped 0.2 -> 0.64; max 0.64 -> 0.32
    assert loss2.item() == pytest.approx(0.32)
    assert s2["vf_clipfrac"].item() == 1.0
    loss3, _ = ppo.value_loss(values2, old, ret2, mask, value_clip=0.0)
    assert loss3.item() == pytest.approx(0.08)  # 0.5 * 0.16


def test_entropy_of_uniform_logits():
    logits = torch.zeros(1, 1, 4)
    assert ppo.entropy_from_logits(logits).item() == pytest.approx(math.log(4))


def test_adaptive_kl_controller():
    ctl = ppo.AdaptiveKLController(0.1, target=0.01, horizon=100)
    ctl.update(0.02, n_steps=10)  # error clipped to 0.2 -> 0.1 * (1 + 0.2 * 10 / 100) = 0.102
    assert ctl.value == pytest.approx(0.102)
    ctl.update(0.0, n_steps=10)  # error -1 clipped to -0.2 -> 0.102 * 0.98
    assert ctl.value == pytest.approx(0.102 * 0.98)
    fixed = ppo.FixedKLController(0.01)
    fixed.update(5.0, 10)
    assert fixed.value == 0.01
