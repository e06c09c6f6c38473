"""The update's arithmetic: each model clipped on its own norm, and with several processes (gloo,
on the CPU) the same experience and gradient as one process over the same rows, also when the
online filter leaves the processes with different numbers of rows, or one with none."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from limr.config import PPOConfig, SamplerConfig
from limr.experience import make_experience
from limr.forward import Batching, Models
from limr.models import ValueModel
from limr.ppo import AdaptiveKLController
from limr.types import Rollout
from limr.update import Processes, clip_per_model, ppo_update

N_SAMPLES, P, T, VOCAB = 2, 3, 4, 16
SAMPLER = SamplerConfig(n_samples=N_SAMPLES, temperature=1.0)
PPO = PPOConfig(estimator="gae", micro_batch_size=2, kl_coef=0.05, adaptive_kl=True,
                kl_target=0.01, kl_horizon=100, grad_clip=0.0, value_clip=0.2,
                entropy_coef=0.01)  # fmt: skip


def _grads(model: nn.Module, scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * scale


def test_each_model_is_clipped_on_its_own_norm():
    actor, critic = nn.Linear(4, 3), nn.Linear(4, 1)
    _grads(actor, 0.05)  # a norm well below the clip
    _grads(critic, 1000.0)  # huge
    before = [p.grad.clone() for p in actor.parameters()]
    actor_norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in before])))
    groups = {"actor": list(actor.parameters()), "critic": list(critic.parameters())}
    norms = clip_per_model(groups, 1.0, Processes())
    assert norms["actor_grad_norm"] == pytest.approx(actor_norm) and actor_norm < 1.0
    assert norms["critic_grad_norm"] > 1000.0
    # the small one is not scaled down by the huge one (one norm over both would scale it ~1e-3)
    for p, b in zip(actor.parameters(), before):
        assert torch.equal(p.grad, b)
    after = torch.cat([p.grad.reshape(-1) for p in critic.parameters()])
    assert float(torch.linalg.vector_norm(after)) == pytest.approx(1.0, rel=1e-5)
    # 0 measures only
    assert clip_per_model(groups, 0.0, Processes())["critic_grad_norm"] == pytest.approx(1.0)


# -- several processes ---------------------------------------------------------------------------


def _models() -> Models:
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model

    config = Qwen2Config(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=32, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    policy = Qwen2ForCausalLM(config)
    ref = copy.deepcopy(policy).requires_grad_(False)
    with torch.no_grad():  # a reference that differs: a non-zero KL for the controller
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    value_model = ValueModel(Qwen2Model(config), config.hidden_size)
    return Models(policy, ref.eval(), value_model)


def _rollout(groups: list[int]) -> tuple[Rollout, torch.Tensor]:
    """Prompt groups with fixed tokens and rewards; responses of 1 to T tokens."""
    q, r, lengths, rewards = [], [], [], []
    for group in groups:
        g = torch.Generator().manual_seed(group)
        prompt = torch.randint(2, VOCAB, (P,), generator=g)
        for _ in range(N_SAMPLES):
            q.append(prompt)
            r.append(torch.randint(2, VOCAB, (T,), generator=g))
            lengths.append(int(torch.randint(1, T + 1, (1,), generator=g)))
            rewards.append(float(torch.randn((), generator=g)))
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    rollout = Rollout(
        prompt_index=torch.arange(len(groups)).repeat_interleave(N_SAMPLES),
        query_ids=torch.stack(q), query_mask=torch.ones(len(q), P, dtype=torch.bool),
        response_ids=torch.where(mask, torch.stack(r), 0), response_mask=mask,
        logprobs=torch.zeros(len(q), T), finished=torch.ones(len(q), dtype=torch.bool),
        texts=[""] * len(q),
    )  # fmt: skip
    return rollout, torch.tensor(rewards)


# The rollout groups of each process and the groups its filter keeps: unequal shares, and one
# process left with nothing.
CASES = {
    "unequal": ([[0, 1, 2], [3, 4]], [[0, 1], [3]]),
    "one-empty": ([[0, 1, 2], [3, 4]], [[0, 2], []]),
}


def _step(models, rollout, rewards, rows, processes, fused, micro_batch_size=PPO.micro_batch_size):
    """Experience, then one PPO epoch over one mini-batch (an SGD step of lr 0: the gradient
    stays in p.grad and the weights do not move)."""
    batching = Batching(micro_batch_size, 1, N_SAMPLES, fused)
    exp, stats = make_experience(
        rollout, rewards, rows, models, sampler=SAMPLER, ppo=PPO, batching=batching,
        kl_coef=PPO.kl_coef, recompute=True, all_reduce=processes.all_reduce,
    )  # fmt: skip
    params = [p for m in (models.policy, models.value_model) for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)  # noqa: ARG005
    for p in params:
        p.grad = None
    stats.update(
        ppo_update(exp, models, sampler=SAMPLER, ppo=PPO, batching=batching, optimizer=optimizer,
                   scheduler=scheduler, processes=processes, kl_coef=PPO.kl_coef, seed=0)
    )  # fmt: skip
    kl_ctl = AdaptiveKLController(PPO.kl_coef, PPO.kl_target, PPO.kl_horizon)
    kl_ctl.update(stats["kl"], 8)
    return {
        "advantages": exp.advantages,
        "kl": stats["kl"],
        "kl_coef": kl_ctl.value,
        "grads": [p.grad.clone() for p in params],
    }


def _kept_rows(groups: list[int], kept: list[int]) -> torch.Tensor:
    keep = torch.tensor([g in kept for g in groups]).repeat_interleave(N_SAMPLES)
    return keep.nonzero().squeeze(-1)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    processes = Processes(world)
    results = {}
    for case, (rolled, kept) in CASES.items():
        rollout, rewards = _rollout(rolled[rank])
        rows = _kept_rows(rolled[rank], kept[rank])
        for fused in (False, True):
            results[case, fused] = _step(_models(), rollout, rewards, rows, processes, fused)
    results["shards"] = _sharded_clip(rank, world)
    box = [None] * world
    dist.all_gather_object(box, results)
    if rank == 0:
        torch.save(box, out)
    dist.destroy_process_group()


class _Halves(Processes):
    """Each process holds one half of every gradient, as ZeRO's partitions."""

    sharded = True

    def __init__(self, rank: int, world: int) -> None:
        super().__init__(world)
        self.rank = rank

    def grad_shards(self, params):
        halves = [p.grad.view(-1).tensor_split(self.world)[self.rank] for p in params]
        return [(h, None) for h in halves]


def _sharded_clip(rank: int, world: int) -> dict:
    actor, critic = nn.Linear(4, 3), nn.Linear(4, 1)
    _grads(actor, 0.05)
    _grads(critic, 1000.0)
    groups = {"actor": list(actor.parameters()), "critic": list(critic.parameters())}
    norms = clip_per_model(groups, 1.0, _Halves(rank, world))
    mine = {
        name: [p.grad.view(-1).tensor_split(world)[rank].clone() for p in params]
        for name, params in groups.items()
    }
    return {"norms": norms, "mine": mine}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("gloo") / "results.pt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=False)


def _alone(case: str, fused: bool) -> dict:
    """The same rows in one process: each process's kept rows, concatenated."""
    _, kept = CASES[case]
    groups = [g for k in kept for g in k]
    rollout, rewards = _rollout(groups)
    return _step(_models(), rollout, rewards, torch.arange(len(groups) * N_SAMPLES),
                 Processes(), fused)  # fmt: skip


@pytest.mark.parametrize("fused", [False, True], ids=["separate-critic", "fused-critic"])
@pytest.mark.parametrize("case", list(CASES))
def test_processes_with_unequal_rows_update_as_one_process(two_processes, case, fused):
    ranks = [r[case, fused] for r in two_processes]
    alone = _alone(case, fused)
    # the KL that drives the adaptive controller is the batch's: one coefficient everywhere
    assert ranks[0]["kl"] == ranks[1]["kl"] and ranks[0]["kl_coef"] == ranks[1]["kl_coef"]
    assert ranks[0]["kl"] == pytest.approx(alone["kl"], rel=1e-5) and alone["kl"] != 0
    assert ranks[0]["kl_coef"] == pytest.approx(alone["kl_coef"], rel=1e-6)
    # advantages whitened over both processes' tokens: those of the concatenated batch
    advantages = torch.cat([r["advantages"] for r in ranks])
    torch.testing.assert_close(advantages, alone["advantages"], atol=1e-5, rtol=1e-5)
    # every row weighs the same whatever process holds it: the one-process gradient
    for a, b, c in zip(ranks[0]["grads"], ranks[1]["grads"], alone["grads"]):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-4)
    assert any(float(g.abs().max()) > 0 for g in alone["grads"])


def test_partitioned_gradients_are_clipped_on_the_whole_norm(two_processes):
    # the reference: whole gradients in one process, each model clipped on its own norm
    actor, critic = nn.Linear(4, 3), nn.Linear(4, 1)
    _grads(actor, 0.05)
    _grads(critic, 1000.0)
    groups = {"actor": list(actor.parameters()), "critic": list(critic.parameters())}
    norms = clip_per_model(groups, 1.0, Processes())
    for rank, r in enumerate(two_processes):
        shards = r["shards"]
        assert shards["norms"] == pytest.approx(norms, rel=1e-6)
        for name, params in groups.items():
            for got, p in zip(shards["mine"][name], params):
                torch.testing.assert_close(got, p.grad.view(-1).tensor_split(2)[rank])


def test_the_micro_batch_size_does_not_change_the_update():
    """Every term of the loss, the entropy bonus included, is a mean over each row's tokens, then
    over rows: micro-batches of one group or of all of them give the same gradient (a token mean
    per micro-batch weighted the entropy of long responses by how they were batched)."""
    groups = [0, 1, 2]
    rollout, rewards = _rollout(groups)
    rows = torch.arange(len(groups) * N_SAMPLES)
    small, whole = (
        _step(_models(), rollout, rewards, rows, Processes(), False, micro_batch_size=k)
        for k in (N_SAMPLES, len(rows))
    )
    for a, b in zip(small["grads"], whole["grads"]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
