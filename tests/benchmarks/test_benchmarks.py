"""Benchmark plugins and their torchmetrics metrics (hand-computed values, a simulated DDP sync)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from limr.benchmarks import Benchmark
from limr.benchmarks.metrics import GroupAccuracy, MeanAccuracy, PassAtK, pass_at_k
from limr.prompts import DataError
from limr.registry import BENCHMARKS, import_plugins
from limr.types import Prompt

import_plugins()

EXPECTED = {
    # name: (problems, n_samples, temperature, top_p, max_new_tokens)
    "math500": (500, 1, 0.0, 1.0, 3072),
    "aime24": (30, 4, 0.4, 0.95, 3072),
    "amc23": (40, 4, 0.4, 0.95, 3072),
    "arith": (1000, 1, 0.0, 1.0, 16),
}


@pytest.fixture
def jsonl_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"id": "a", "problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": 4}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def build(name: str, jsonl_file) -> Benchmark:
    return (
        BENCHMARKS.build(name, path=str(jsonl_file)) if name == "jsonl" else BENCHMARKS.build(name)
    )


@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_every_registered_benchmark_builds_and_loads(name, jsonl_file):
    bench = build(name, jsonl_file)
    prompts = bench.prompts()
    assert prompts and all(isinstance(p, Prompt) and p.problem and p.answer for p in prompts)
    assert len({p.id for p in prompts}) == len(prompts)
    for attr in ("n_samples", "temperature", "top_p", "max_new_tokens"):
        assert getattr(bench, attr) == bench.protocol[attr]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_protocols(name):
    bench = BENCHMARKS.build(name)
    size, n, temperature, top_p, tokens = EXPECTED[name]
    assert bench.name == name
    assert len(bench.prompts()) == size
    assert (bench.n_samples, bench.temperature, bench.top_p, bench.max_new_tokens) == (
        n,
        temperature,
        top_p,
        tokens,
    )


def test_protocol_overrides():
    bench = BENCHMARKS.build("aime24", n_samples=8, max_new_tokens=100)
    assert (bench.n_samples, bench.temperature, bench.max_new_tokens) == (8, 0.4, 100)
    again = bench.with_protocol(temperature=0.0, n_samples=None)
    assert (again.n_samples, again.temperature) == (8, 0.0)
    with pytest.raises(ValueError, match="n_samples"):
        BENCHMARKS.build("math500", n_samples=0)


def test_shipped_extras_carry_level_and_subject():
    math500 = BENCHMARKS.build("math500").prompts()
    assert math500[0].id == "test/precalculus/807.json"
    assert {p.extra["level"] for p in math500} == {1, 2, 3, 4, 5}
    assert len({p.extra["subject"] for p in math500}) == 7
    aime = BENCHMARKS.build("aime24").prompts()
    assert aime[0].answer == "204" and all(len(p.answer) == 3 for p in aime)  # zero padded
    assert BENCHMARKS.build("amc23").prompts()[0].answer == "27"  # 27.0 in the file
    assert {p.extra["level"] for p in BENCHMARKS.build("arith").prompts()} == {1, 2, 3, 4, 5}


def test_jsonl_benchmark(jsonl_file, tmp_path):
    bench = BENCHMARKS.build("jsonl", path=str(jsonl_file))
    assert bench.name == "mine"
    assert [(p.id, p.answer) for p in bench.prompts()] == [("a", "2"), ("1", "4")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x", "answer": "1"}\nnot json\n{"problem": "y"}\n')
    with pytest.raises(DataError) as err:
        BENCHMARKS.build("jsonl", path=str(bad))
    assert f"{bad}:2: not valid JSON" in str(err.value)
    assert f"{bad}:3: missing field 'answer'" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Metrics

CORRECT = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)


def test_mean_accuracy():
    metric = MeanAccuracy()
    metric.update(CORRECT)
    assert metric.compute().item() == pytest.approx(7 / 12)


def test_pass_at_k_by_hand():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)  # 1 - 3/4
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 1, 4) == 1.0
    metric = PassAtK(2)
    metric.update(CORRECT)
    # rows: c=3 -> 1 - C(1,2)/C(4,2) = 1; c=0 -> 0; c=4 -> 1
    assert metric.compute().item() == pytest.approx(2 / 3)
    one = PassAtK(1)
    one.update(CORRECT)
    assert one.compute().item() == pytest.approx(7 / 12)  # pass@1 is the mean accuracy
    with pytest.raises(ValueError, match="at least 8"):
        PassAtK(8).update(CORRECT)


def test_group_accuracy():
    metric = GroupAccuracy(["1", "2", "5"])
    metric.update(CORRECT, ["1", "2", "1"])
    assert metric.as_dict() == {"1": pytest.approx(7 / 8), "2": 0.0}  # "5" had no problems
    assert math.isnan(metric.compute()[2].item())


def test_metrics_reduce_across_ddp_ranks():
    """Two ranks with half of the problems each agree with one process holding all of them."""
    ranks = [
        (CORRECT[:2], ["1", "2"]),
        (CORRECT[2:], ["1"]),
    ]
    builders = [
        MeanAccuracy,
        lambda **kw: PassAtK(2, **kw),
        lambda **kw: GroupAccuracy(["1", "2"], **kw),
    ]
    for make in builders:
        locals_ = []
        for correct, groups in ranks:
            locals_.append(make())
            args = (correct, groups) if isinstance(locals_[-1], GroupAccuracy) else (correct,)
            locals_[-1].update(*args)
        # what torch.distributed.all_gather returns on rank 0: that state of every rank, in the
        # order torchmetrics syncs the states (the order they were added)
        states = [dict(m.metric_state) for m in locals_]
        order: list[str] = []

        def gather(tensor, group=None, _states=states, _order=order):
            name = _order.pop(0)
            torch.testing.assert_close(tensor, _states[0][name])
            return [s[name] for s in _states]

        synced = make(dist_sync_fn=gather, distributed_available_fn=lambda: True)
        order.extend(synced._reductions)
        args = (ranks[0][0], ranks[0][1]) if isinstance(synced, GroupAccuracy) else (ranks[0][0],)
        synced.update(*args)
        whole = make()
        whole.update(
            *((CORRECT, ["1", "2", "1"]) if isinstance(whole, GroupAccuracy) else (CORRECT,))
        )
        torch.testing.assert_close(synced.compute(), whole.compute(), equal_nan=True)
