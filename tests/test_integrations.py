"""Live recorders for other frameworks: TRL for real (a few GRPOTrainer steps on the shipped tiny
model), veRL's compute_score / sampler and OpenRLHF's reward_func against their documented
signatures with hand-built inputs (those frameworks need GPUs and Ray)."""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from limr.cli import main
from limr.history import RewardHistory, find_history

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "limr" / "data" / "tiny_base"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def naive_lim(cells: dict[tuple[str, int], list[float]]) -> dict[str, float]:
    """LIM by hand (LIMR eq. 2-3 and its released script's rules): per (prompt, epoch) the
    fraction correct; a missing epoch takes the next epoch's value (one pass); prompts still
    missing one are unscored; the rest are scored against their mean curve."""
    prompts = sorted({p for p, _ in cells})
    epochs = max(e for _, e in cells) + 1
    curves = {}
    for p in prompts:
        acc = [None] * epochs
        for e in range(epochs):
            if (p, e) in cells:
                n, c = cells[(p, e)]
                acc[e] = c / n
        for e in range(epochs - 1):
            if acc[e] is None and acc[e + 1] is not None and (p, e + 1) in cells:
                acc[e] = acc[e + 1]
        if None not in acc:
            curves[p] = acc
    avg = [sum(c[e] for c in curves.values()) / len(curves) for e in range(epochs)]
    denom = sum((1 - a) ** 2 for a in avg)
    return {
        p: 1 - sum((c[e] - avg[e]) ** 2 for e in range(epochs)) / denom for p, c in curves.items()
    }


# ------------------------------------------------------------------------------------ TRL


@pytest.fixture(scope="module")
def trl_run(tmp_path_factory):
    """12 GRPO steps of the shipped tiny model with a recorded reward function."""
    pytest.importorskip("trl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from limr.integrations.trl import record_rewards

    run = tmp_path_factory.mktemp("trl_run")
    seen: list[tuple[int, int, str, float]] = []  # what the reward function saw and returned
    evaluated: list[str] = []

    def exact_answer(prompts, completions, answer, id, trainer_state, log_extra=None, **kwargs):
        out = []
        for c, pid in zip(completions, id):
            r = 1.0 if (len(c) + int(pid[1:]) + trainer_state.global_step) % 3 else -0.5
            out.append(r)
        model_training = kwargs.get("completion_ids") is not None
        assert model_training
        if log_extra is not None:
            log_extra("id", list(id))
        return out

    def capture(prompts, completions, answer, id, trainer_state, **kwargs):
        rewards = exact_answer(prompts, completions, answer, id, trainer_state, **kwargs)
        for pid, r in zip(id, rewards):
            if pid.startswith("e"):
                evaluated.append(pid)
            else:
                seen.append((trainer_state.global_step, int(trainer_state.epoch or 0), pid, r))
        return rewards

    capture.__name__ = "exact_answer"
    reward = record_rewards(capture, run / "history", id_column="id", correct_threshold=1.0)
    train = Dataset.from_list(
        [{"id": f"q{i}", "prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(4)]
    )
    evals = Dataset.from_list([{"id": "e0", "prompt": "What is 9 plus 9?", "answer": "18"}])
    args = GRPOConfig(
        output_dir=str(run / "trl"),
        per_device_train_batch_size=4,
        num_generations=4,
        steps_per_generation=2,
        max_completion_length=6,
        max_steps=12,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=6,
        per_device_eval_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        log_completions=True,
        num_completions_to_print=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=str(TINY),
        reward_funcs=[reward],
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        callbacks=[reward.callback()],
    )
    trainer.train()
    return SimpleNamespace(run=run, seen=seen, evaluated=evaluated, reward=reward)


def test_trl_grpo_records_every_completion_and_limr_scores_it(trl_run, tmp_path, capsys):
    run, seen = trl_run.run, trl_run.seen
    assert trl_run.reward.__name__ == "exact_answer"  # TRL logs the reward under its name
    assert len(seen) == 12 // 2 * 8  # 6 generations x 2 prompts x 4 completions, all recorded
    assert trl_run.evaluated and trl_run.reward.skipped_eval == len(trl_run.evaluated)
    h = RewardHistory.load(run)
    cells: dict[tuple[str, int], list[float]] = {}
    for _step, epoch, pid, r in seen:
        cell = cells.setdefault((pid, epoch), [0, 0])
        cell[0] += 1
        cell[1] += r >= 1.0
    got = {
        (pid, e): [int(h.n[i, e]), int(h.n_correct[i, e])]
        for i, pid in enumerate(h.ids)
        for e in range(h.num_epochs)
        if h.n[i, e] > 0
    }
    assert got == cells
    assert sorted({s for s, *_ in seen}) == [0, 2, 4, 6, 8, 10]
    assert len({e for _, e, _, _ in seen}) >= 2  # several epochs, for LIM
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(run), "--out", str(out)]) == 0
    assert "reward history" in capsys.readouterr().out
    scores = {r["id"]: r["score"] for r in _lines(out)}
    expected = naive_lim(cells)
    assert scores.keys() == expected.keys()
    for pid, s in expected.items():
        assert scores[pid] == pytest.approx(s, abs=1e-12)


def test_trl_completion_logs_import_with_repeats_dropped(trl_run, tmp_path, capsys):
    """TRL writes each logging step's last generation batch; with steps_per_generation=2 a
    logging step without a new generation writes the previous file's rows again: dropped. The id
    comes from a column a reward function logged with log_extra."""
    import pyarrow.parquet as pq

    from limr.importers import ImportOptions, read_history

    files = sorted((trl_run.run / "trl" / "completions").glob("completions_*.parquet"))
    assert len(files) == 12
    expected: dict[tuple[str, int], int] = {}
    previous, repeated = None, 0
    for f in files:
        table = pq.read_table(f)
        content = table.drop_columns(["step"]).to_pylist()
        if content == previous:
            repeated += table.num_rows
            continue
        previous = content
        epoch = (int(f.stem.split("_")[1]) - 1) // 4
        for row in content:
            expected[(row["id"], epoch)] = expected.get((row["id"], epoch), 0) + 1
    assert repeated  # the run did repeat rows
    h = read_history(trl_run.run / "trl", "auto", ImportOptions(steps_per_epoch=4, id_field="id"))
    got = {(pid, e): int(h.n[i, e]) for i, pid in enumerate(h.ids) for e in range(h.num_epochs)
           if h.n[i, e] > 0}  # fmt: skip
    assert got == expected and h.info["format"] == "trl"
    assert h.info["dropped"] == {"rows repeating the previous file": repeated}
    assert h.info["missing_steps"] == []
    out = tmp_path / "scores.jsonl"
    args = ["score", str(trl_run.run / "trl"), "--steps-per-epoch", "12", "--out", str(out)]
    assert main(args) == 0  # detected; keyed by the prompt text
    printed = capsys.readouterr().out
    assert f"{repeated} rollouts left out: rows repeating the previous file" in printed
    assert "last generation batch" in printed
    assert all(r["prompt"].startswith("What is") for r in _lines(out))
    assert main([*args, "--id-field", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ veRL


def test_verl_compute_score_carries_the_prompt_id():
    from limr.integrations.verl import record_compute_score

    def plain(data_source, solution_str, ground_truth, extra_info=None):
        return 1.0 if solution_str == ground_truth else 0.0

    def rich(data_source, solution_str, ground_truth, extra_info=None, **kw):
        return {"score": 0.5, "acc": True}

    fn = record_compute_score(plain)
    assert fn("math", "4", "4", extra_info={"index": 7}) == {"score": 1.0, "index": 7}
    assert record_compute_score(rich)("m", "x", "y", extra_info={"index": "a"}) == {
        "score": 0.5, "acc": True, "index": "a"
    }  # fmt: skip
    with pytest.raises(KeyError, match="extra_info has no 'index'"):
        fn("math", "4", "4", extra_info={"split": "train"})


class _Frame:
    """What the sampler reads of veRL's RLHFDataset: ``dataframe`` with an extra_info column."""

    def __init__(self, ids):
        self.rows = [{"extra_info": {"index": i}} for i in ids]
        self.column_names = ["prompt", "extra_info"]

    def __getitem__(self, column):
        return [r[column] for r in self.rows]


class _Dataset:
    def __init__(self, ids):
        self.dataframe = _Frame(ids)

    def __len__(self):
        return len(self.dataframe.rows)


def _batch(ids, rewards, lengths):
    """A veRL DataProto as the sampler reads it: tensors in .batch, numpy in .non_tensor_batch."""
    t = len(lengths) and max(lengths)
    scores = torch.zeros(len(ids), t + 1)
    mask = torch.zeros(len(ids), t + 1)
    for i, (r, n) in enumerate(zip(rewards, lengths)):
        scores[i, n - 1] = r  # veRL puts the sequence score on the last response token
        mask[i, :n] = 1
    return SimpleNamespace(
        batch={"token_level_scores": scores, "response_mask": mask},
        non_tensor_batch={"index": np.array(ids, dtype=object), "uid": np.array(ids)},
        meta_info={},
    )


def test_verl_sampler_records_every_step_and_runs_the_curriculum(tmp_path):
    from limr.integrations.verl import LimrCurriculumSampler

    ids = list(range(8))
    config = {
        "train_batch_size": 4,
        "sampler": {
            "history_dir": str(tmp_path / "run" / "history"),
            "curriculum": True,
            "curriculum_args": {"warmup_epochs": 2, "min_size": 4, "mastered_accuracy": 0.95},
            "seed": 3,
        },
    }
    sampler = LimrCurriculumSampler(data_source=_Dataset(ids), data_config=config)
    cells: dict[tuple[str, int], list[int]] = {}
    sizes = []
    for epoch in range(4):
        order = list(iter(sampler))
        sizes.append(len(order))
        assert len(order) == len(sampler)
        for start in range(0, len(order) - 3, 4):
            rows = order[start : start + 4]
            batch_ids = [r for r in rows for _ in range(2)]  # 2 responses per prompt
            # prompts 0-2 always right (mastered: the curriculum drops them), the rest learn
            rewards = [1.0 if r < 3 or (k == 0 and epoch % 2 == 0) else 0.0
                       for r in rows for k in range(2)]  # fmt: skip
            sampler.update(_batch(batch_ids, rewards, [3] * len(batch_ids)))
            for pid, r in zip(batch_ids, rewards):
                cell = cells.setdefault((str(pid), epoch), [0, 0])
                cell[0] += 1
                cell[1] += r >= 1.0
        if epoch == 1:
            state = sampler.state_dict()
    assert sizes[:2] == [8, 8] and sizes[2] < 8  # the curriculum reselected after warm-up
    h = RewardHistory.load(tmp_path / "run")
    got = {
        (pid, e): [int(h.n[i, e]), int(h.n_correct[i, e])]
        for i, pid in enumerate(h.ids)
        for e in range(h.num_epochs)
        if h.n[i, e] > 0
    }
    assert got == cells
    assert float(h.length_sum.sum()) == 3 * sum(c[0] for c in cells.values())
    assert sampler.curriculum.schedule and sampler.curriculum.schedule[0]["epoch"] == 2
    # a resumed run: veRL restores the sampler; the steps after that point are dropped
    again = LimrCurriculumSampler(data_source=_Dataset(ids), data_config=config)
    again.load_state_dict(state)
    assert RewardHistory.load(tmp_path / "run").committed_step == state["step"] == 4
    with pytest.raises(KeyError, match="return it from compute_score"):
        bad = _batch([0], [1.0], [2])
        bad.non_tensor_batch.pop("index")
        again.update(bad)
    with pytest.raises(ValueError, match="history_dir"):
        LimrCurriculumSampler(data_source=_Dataset(ids), data_config={"sampler": {}})


# ------------------------------------------------------------------------------------ OpenRLHF


def test_openrlhf_reward_func_records_per_sample_calls_from_several_workers(tmp_path):
    from limr.integrations.openrlhf import record_reward_func

    def reward_func(queries, prompts, labels, **kwargs):  # OpenRLHF's documented signature
        values = [1.0 if q.endswith(lab) else -0.5 for q, lab in zip(queries, labels)]
        rewards = torch.tensor(values)
        return {"rewards": rewards, "scores": rewards, "extra_logs": {"n": len(queries)}}

    data = tmp_path / "train.jsonl"
    problems = [f"Compute {i}+{i}." for i in range(4)]
    data.write_text(
        "".join(json.dumps({"id": f"d{i}", "problem": p}) + "\n" for i, p in enumerate(problems))
    )
    template = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    history = tmp_path / "run" / "history"
    workers = [
        record_reward_func(
            reward_func,
            history,
            samples_per_prompt=2,
            prompts_per_step=2,
            data=str(data),
            shard=f"worker{w}",
        )  # fmt: skip
        for w in range(2)
    ]
    expected: dict[tuple[str, int], list[int]] = {}
    for epoch in range(3):
        calls = []  # (worker, query, prompt, label): one sample per call, as OpenRLHF sends
        for i, problem in enumerate(problems):
            worker = workers[(i + epoch) % 2]  # a prompt moves between workers across epochs
            prompt = template.format(problem)
            for k in range(2):
                right = k <= epoch % 2
                calls.append((worker, prompt + ("42" if right else "0"), prompt, "42"))
                cell = expected.setdefault((f"d{i}", epoch), [0, 0])
                cell[0] += 1
                cell[1] += right
        eval_prompt = template.format("An evaluation prompt.")
        calls.append((workers[0], eval_prompt + "1", eval_prompt, "1"))
        with ThreadPoolExecutor(4) as pool:  # OpenRLHF calls it from threads
            results = list(pool.map(lambda c: c[0]([c[1]], [c[2]], [c[3]]), calls))
        assert all(set(r) == {"rewards", "scores", "extra_logs"} for r in results)
    for w in workers:
        w.flush()
    h = RewardHistory.load(history)
    assert sorted(h.info["shards"]) == ["rewards.worker0.log", "rewards.worker1.log"]
    got = {
        (pid, e): [int(h.n[i, e]), int(h.n_correct[i, e])]
        for i, pid in enumerate(h.ids)
        for e in range(h.num_epochs)
        if h.n[i, e] > 0
    }
    assert got == expected  # epochs exact although prompts moved between workers
    assert sum(w.skipped for w in workers) == 3  # the evaluation prompt matched no record
    assert find_history(tmp_path / "run") == history
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert {r["id"] for r in _lines(out)} == {"d0", "d1", "d2", "d3"}
    assert all(math.isfinite(r["score"]) for r in _lines(out))
