"""The evaluation runner with stand-in samplers: protocol, metrics, records, table, eval.json;
and the checker on real text (the MATH500 reference solutions as responses)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
import torch

from limr.benchmarks import Benchmark
from limr.benchmarks.evaluate import (
    average_accuracy,
    correct_matrix,
    evaluate,
    format_table,
    write_eval_json,
)
from limr.registry import BENCHMARKS, import_plugins
from limr.types import Prompt, Rollout

import_plugins()


class ScriptedSampler:
    """Answers each prompt text with ``respond(text, sample_index)``; records every call."""

    def __init__(self, respond: Callable[[str, int], str], finished: bool = True) -> None:
        self.respond = respond
        self.finished = finished
        self.calls: list[dict] = []

    def generate(self, prompts: Sequence[str], *, n=1, temperature=1.0, top_p=1.0,
                 max_new_tokens=64, stop=(), seed=None) -> Rollout:  # fmt: skip
        self.calls.append(
            dict(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                seed=seed,
                batch=len(prompts),
            )  # fmt: skip
        )
        texts = [self.respond(p, j) for p in prompts for j in range(n)]
        N = len(texts)
        empty = torch.zeros(N, 1, dtype=torch.long)
        return Rollout(
            prompt_index=torch.arange(len(prompts)).repeat_interleave(n),
            query_ids=empty,
            query_mask=empty.bool(),
            response_ids=empty,
            response_mask=empty.bool(),
            logprobs=torch.zeros(N, 1),
            finished=torch.full((N,), self.finished),
            texts=texts,
        )

    def update_weights(self, model) -> None:  # noqa: ARG002
        pass


def toy_benchmark(n_samples: int = 4) -> Benchmark:
    prompts = [
        Prompt("p0", "What is 1+1?", "2", {"level": 1, "subject": "Arithmetic"}),
        Prompt("p1", "What is 2*3?", "6", {"level": 1, "subject": "Arithmetic"}),
        Prompt("p2", "Half of 1?", "\\frac12", {"level": 2, "subject": "Fractions"}),
    ]
    return Benchmark("toy", lambda: prompts, n_samples=n_samples, temperature=0.4, top_p=0.95)


def toy_respond(text: str, j: int) -> str:
    # p0: all 4 samples right; p1: samples 0 and 1 right; p2: only sample 3 right (as 0.5)
    if "1+1" in text:
        return "\\boxed{2}"
    if "2*3" in text:
        return "\\boxed{6}" if j < 2 else "\\boxed{5}"
    return "so \\boxed{0.5}" if j == 3 else "\\boxed{1}"


def test_evaluate_with_a_scripted_sampler(tmp_path):
    sampler = ScriptedSampler(toy_respond)
    result = evaluate(
        sampler, [toy_benchmark()], format_prompt=lambda p: f"Q: {p}\nA:", batch_size=2, seed=7,
        progress=False,
    )  # fmt: skip
    r = result["toy"]
    # 4 + 2 + 1 = 7 correct of 12 samples
    assert r["accuracy"] == pytest.approx(7 / 12)
    # pass@4: every problem has a correct sample; pass@1 = mean accuracy
    assert r["pass@k"] == {"1": pytest.approx(7 / 12), "4": 1.0}
    assert r["by_level"] == {"1": pytest.approx(6 / 8), "2": pytest.approx(1 / 4)}
    assert r["by_subject"] == {
        "Arithmetic": pytest.approx(6 / 8),
        "Fractions": pytest.approx(1 / 4),
    }
    assert (r["n_problems"], r["n_samples"]) == (3, 4)
    assert r["protocol"] == {"n_samples": 4, "temperature": 0.4, "top_p": 0.95,
                             "max_new_tokens": 3072}  # fmt: skip
    assert [c["seed"] for c in sampler.calls] == [7, 8] and [c["batch"] for c in sampler.calls] == [
        2,
        1,
    ]
    assert all(c["temperature"] == 0.4 and c["top_p"] == 0.95 for c in sampler.calls)
    p2 = r["problems"][2]
    assert p2["id"] == "p2" and p2["answer"] == "\\frac12" and p2["level"] == 2
    assert p2["correct"] == [False, False, False, True]
    assert p2["rewards"] == [0.0, 0.0, 0.0, 1.0]
    assert p2["responses"][3] == "so \\boxed{0.5}"
    assert correct_matrix(r).sum().item() == 7
    # JSON round trip
    path = write_eval_json(result, tmp_path / "out" / "eval.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))


def test_protocol_overrides_and_max_problems():
    sampler = ScriptedSampler(toy_respond)
    result = evaluate(
        sampler, [toy_benchmark()], format_prompt=str, n_samples=2, temperature=0.0,
        max_new_tokens=16, max_problems=2, progress=False,
    )  # fmt: skip
    r = result["toy"]
    assert (r["n_problems"], r["n_samples"]) == (2, 2)
    assert r["accuracy"] == 1.0  # p0 and p1's first two samples are right
    assert sampler.calls == [dict(n=2, temperature=0.0, top_p=0.95, max_new_tokens=16, seed=0,
                                  batch=2)]  # fmt: skip


def test_the_reward_decides_correctness():
    sampler = ScriptedSampler(toy_respond, finished=False)  # every response cut by the limit
    result = evaluate(sampler, [toy_benchmark()], format_prompt=str, progress=False)
    assert result["toy"]["accuracy"] == pytest.approx(7 / 12)  # `correct` ignores finished
    from limr.registry import REWARDS

    strict = evaluate(
        sampler, [toy_benchmark()], format_prompt=str, reward=REWARDS.build("math_rule"),
        progress=False,
    )  # fmt: skip
    assert strict["toy"]["accuracy"] == 0.0
    assert set(strict["toy"]["problems"][0]["rewards"]) == {-1.0}


def test_format_table_has_the_paper_columns_and_avg():
    result = {
        "math500": {"accuracy": 0.78, "n_problems": 500, "n_samples": 1, "pass@k": {"1": 0.78}},
        "amc23": {"accuracy": 0.638, "n_problems": 40, "n_samples": 4, "pass@k": {"1": 0.638}},
        "aime24": {"accuracy": 0.325, "n_problems": 30, "n_samples": 4, "pass@k": {"1": 0.325}},
    }
    table = format_table(result)
    header, _, row = table.splitlines()[:3]
    assert header.split("|")[1:-1] == [" AIME24 ", " MATH500 ", " AMC23 ", "  AVG "]
    # the paper's LIMR row: 32.5, 78.0, 63.8 -> AVG 58.1
    assert [c.strip() for c in row.split("|")[1:-1]] == ["32.5", "78.0", "63.8", "58.1"]
    assert average_accuracy(result) == pytest.approx((0.78 + 0.638 + 0.325) / 3)


def test_math500_reference_solutions_score_at_least_99_percent():
    """The checker on real text: each MATH500 solution, given as the response, must be right."""
    solutions = {p.problem: p.extra["solution"] for p in BENCHMARKS.build("math500").prompts()}
    sampler = ScriptedSampler(lambda text, j: solutions[text])
    result = evaluate(sampler, ["math500"], format_prompt=str, batch_size=250, progress=False)
    r = result["math500"]
    wrong = [p["id"] for p in r["problems"] if not p["correct"][0]]
    assert r["accuracy"] >= 0.99, wrong
    assert set(r["by_level"]) == {"1", "2", "3", "4", "5"} and len(r["by_subject"]) == 7
