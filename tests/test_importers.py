"""Importers of other frameworks' rollout logs (limr.importers): every format read into the same
cells, auto-detected, prompts mapped to dataset ids, bad input named FILE:LINE (or by column)
with a count and nothing written, memory bounded by one file, and `limr score` / `limr history
import` on them, torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from limr.cli import main
from limr.history import RewardHistory
from limr.importers import (
    DataIndex,
    ImportOptions,
    RolloutError,
    detect_format,
    iter_rollouts,
    normalize_prompt,
    read_history,
)

ROOT = Path(__file__).resolve().parent.parent
CHATML = "<|im_start|>system\nPlease reason step by step.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"  # noqa: E501


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _cells(h) -> dict[tuple[str, int], tuple[int, int, float]]:
    n, nc, rs = np.asarray(h.n), np.asarray(h.n_correct), np.asarray(h.reward_sum)
    return {
        (pid, e): (int(n[i, e]), int(nc[i, e]), float(rs[i, e]))
        for i, pid in enumerate(h.ids)
        for e in range(n.shape[1])
        if n[i, e] > 0
    }


def _run(prompts: int = 6, steps_per_epoch: int = 2, epochs: int = 3, samples: int = 4, seed=0):
    """A synthetic run: per step, (prompt index, [rewards]) for the step's prompts."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(epochs):
        order = rng.permutation(prompts)
        per = prompts // steps_per_epoch
        for s in range(steps_per_epoch):
            chosen = order[s * per : (s + 1) * per].tolist()
            steps.append(
                [(i, rng.choice([1.0, -0.5, -1.0], size=samples).tolist()) for i in chosen]
            )
    return steps


def _expected(steps, key, steps_per_epoch=2, correct=lambda r: r == 1.0):
    cells: dict[tuple[str, int], list[float]] = {}
    for s, rows in enumerate(steps):
        for i, rewards in rows:
            cell = cells.setdefault((key(i), s // steps_per_epoch), [0, 0, 0.0])
            for r in rewards:
                cell[0] += 1
                cell[1] += correct(r)
                cell[2] += r
    return {k: (v[0], v[1], v[2]) for k, v in cells.items()}


def _problem(i: int) -> str:
    return f"Compute {i} + {i * 7 % 11}, then add  {i}."


# ------------------------------------------------------------------------------ writers


def write_openrlhf(folder: Path, steps, indent=None, jsonl=False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s, rows in enumerate(steps, 1):
        recs = [
            {"prompt": CHATML.format(_problem(i)) + " ", "response": "x" * (i + 1),
             "reward": r, "extra": [1, {"x": "]"}]}
            for i, rewards in rows for r in rewards
        ]  # fmt: skip
        if jsonl:
            (folder / f"step_{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        else:
            (folder / f"step_{s}.json").write_text(json.dumps(recs, indent=indent))


def write_verl(folder: Path, steps, with_index=True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s, rows in enumerate(steps, 1):
        lines = []
        for i, rewards in rows:
            for r in rewards:
                text = f"system\nreason\nuser\n{_problem(i)}\nassistant\n"
                rec = {"input": text, "output": "yyy", "gts": ["1", {"a": 2}], "score": r,
                       "step": s}  # fmt: skip
                if with_index:
                    rec["index"] = i
                lines.append(json.dumps(rec, ensure_ascii=False))
        (folder / f"{s}.jsonl").write_text("\n".join(lines) + "\n")


def write_nemo(folder: Path, steps) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s, rows in enumerate(steps, 1):
        with open(folder / f"train_data_step{s}.jsonl", "w") as f:
            k = 0
            for i, rewards in rows:
                for r in rewards:
                    content = [CHATML.format(_problem(i)), "answer " * (i + 1)]
                    if i % 2:  # a system message of its own
                        content = [
                            "<|im_start|>system\nhi<|im_end|>\n",
                            content[0][31:],
                            content[1],
                        ]
                    f.write(json.dumps({"content": content, "rewards": r, "input_lengths": 9,
                                        "token_ids": [1, 2, 3], "advantages": [0.0], "idx": k})
                            + "\n")  # fmt: skip
                    k += 1


def write_prime(folder: Path, steps, subset="all") -> None:
    for s, rows in enumerate(steps, 1):
        path = folder / "rollouts" / f"step_{s}" / "train" / subset / "traces.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            for i, rewards in rows:
                for r in rewards:
                    rec = {"id": "ep", "task": {"type": "T", "data": {"q": "x"}, "key": f"task-{i}",
                                                "hash": "h"},
                           "group": {"id": "g"}, "ok": True,
                           "traces": [{"rewards": {"correct": {"score": r, "weight": 1.0},
                                                   "format": None},
                                       "nodes": [{"text": '"rewards": {"no": 1}'}]}]}  # fmt: skip
                    f.write(json.dumps(rec) + "\n")
            # a failed episode without a trace
            f.write(json.dumps({"task": {"key": "task-0"}, "ok": False, "traces": []}) + "\n")
        eval_path = folder / "rollouts" / f"step_{s}" / "eval" / "all" / "traces.jsonl"
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        eval_path.write_text(json.dumps({"task": {"key": "eval"}, "traces": []}) + "\n")


def write_trl(folder: Path, steps, repeat_every_other=True) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = folder / "completions"
    out.mkdir(parents=True, exist_ok=True)
    for s, rows in enumerate(steps, 1):
        table = {"step": [], "prompt": [], "completion": [], "accuracy": [], "id": [],
                 "advantage": []}  # fmt: skip
        for i, rewards in rows:
            for r in rewards:
                table["step"].append(2 * s - 1)
                table["prompt"].append([{"role": "user", "content": _problem(i)}])
                table["completion"].append([{"role": "assistant", "content": "z" * i}])
                table["accuracy"].append(r)
                table["id"].append(f"d{i}")
                table["advantage"].append(0.0)
        pq.write_table(pa.table(table), out / f"completions_{2 * s - 1:05d}.parquet")
        if repeat_every_other:  # a logging step with no new generation: the same rows
            table["step"] = [2 * s] * len(table["step"])
            pq.write_table(pa.table(table), out / f"completions_{2 * s:05d}.parquet")


def write_data(path: Path, n: int = 6) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "problem": _problem(i), "answer": "1"}) + "\n"
            for i in range(n)
        )  # fmt: skip
    )
    return path


# ------------------------------------------------------------------------------ every format


def test_every_format_reads_into_the_same_cells(tmp_path):
    steps = _run()
    data = write_data(tmp_path / "train.jsonl")
    by_id = _expected(steps, lambda i: f"d{i}")
    write_openrlhf(tmp_path / "openrlhf" / "train", steps, indent=4)  # the LIMR fork's layout
    write_verl(tmp_path / "verl", steps, with_index=False)
    write_nemo(tmp_path / "nemo", steps)
    write_prime(tmp_path / "prime", steps)
    write_trl(tmp_path / "trl", [rows for rows in steps])
    opts = ImportOptions(steps_per_epoch=2, data=str(data))
    for fmt, folder in [("openrlhf", "openrlhf"), ("verl", "verl"), ("nemo-rl", "nemo")]:
        assert detect_format(tmp_path / folder) == fmt
        h = read_history(tmp_path / folder, "auto", opts)
        assert _cells(h) == by_id, fmt
        assert h.info["format"] == fmt and h.info["key"] == "id"
    # keyed by their own ids: prime-rl's task.key, TRL's logged id column
    prime = read_history(tmp_path / "prime", "auto", ImportOptions(steps_per_epoch=2))
    assert _cells(prime) == _expected(steps, lambda i: f"task-{i}")
    assert prime.info["dropped"] == {"episodes without a trace (failed)": len(steps)}
    trl_opts = ImportOptions(steps_per_epoch=4, id_field="id")  # two files per generation
    trl = read_history(tmp_path / "trl", "auto", trl_opts)
    assert _cells(trl) == by_id
    assert trl.info["dropped"] == {"rows repeating the previous file": 6 * 3 * 4}
    # conversational TRL prompts map through --data by their user message
    assert (
        _cells(
            read_history(tmp_path / "trl", "trl", ImportOptions(steps_per_epoch=4, data=str(data)))
        )
        == by_id
    )
    # without --data, prompts are keyed by their stripped text, as the released LIM does
    h = read_history(tmp_path / "openrlhf", "auto", ImportOptions(steps_per_epoch=2))
    assert h.info["key"] == "prompt" and h.ids[0] == CHATML.format(_problem(steps[0][0][0])).strip()
    assert float(np.asarray(h.length_sum).sum()) == sum(
        (i + 1) * len(r) for rows in steps for i, r in rows
    )


def test_openrlhf_json_lists_compact_indented_or_jsonl_and_their_epochs(tmp_path):
    steps = _run(epochs=3)
    expected = _expected(steps, lambda i: CHATML.format(_problem(i)).strip())
    for name, kw in [("compact", {}), ("indented", {"indent": 4}), ("jsonl", {"jsonl": True})]:
        write_openrlhf(tmp_path / name, steps, **kw)
        h = read_history(tmp_path / name, "openrlhf", ImportOptions(steps_per_epoch=2))
        assert _cells(h) == expected, name
    # --max-epochs: files of later steps are not read; --first-step shifts the epochs
    h = read_history(tmp_path / "compact", "auto", ImportOptions(steps_per_epoch=2, max_epochs=2))
    assert h.info["steps_read"] == 4 and h.num_epochs == 2
    h = read_history(tmp_path / "compact", "auto", ImportOptions(steps_per_epoch=2, first_step=2))
    assert h.info["first_step"] == 2 and h.num_epochs == 3
    # a partly recorded last epoch is known as such
    (tmp_path / "compact" / "step_6.json").unlink()
    h = read_history(tmp_path / "compact", "auto", ImportOptions(steps_per_epoch=2))
    assert [h.epoch_complete(e) for e in range(3)] == [True, True, False]
    # --correct-threshold: reward >= T is correct (default: reward == 1)
    h = read_history(tmp_path / "compact", "auto",
                     ImportOptions(steps_per_epoch=2, correct_threshold=-0.5))  # fmt: skip
    assert int(np.asarray(h.n_correct).sum()) == sum(
        r >= -0.5 for rows in steps[:5] for _, rr in rows for r in rr
    )


def test_limr_score_on_step_logs_equals_the_released_algorithm(tmp_path):
    """The released LIMR script's rules, written out here: whole epochs, prompt.strip() keys,
    reward == 1 correct, one backward fill, prompts missing an epoch left out."""
    steps = _run(prompts=9, steps_per_epoch=3, epochs=4, seed=3)
    steps[5] = steps[5][:-1]  # a prompt that misses epoch 1 (filled from epoch 2)
    write_openrlhf(tmp_path / "logs", steps)
    per_epoch: list[dict[str, list[int]]] = [{} for _ in range(4)]
    for s, rows in enumerate(steps):
        for i, rewards in rows:
            key = CHATML.format(_problem(i)).strip()
            acc = per_epoch[s // 3].setdefault(key, [0, 0])
            acc[0] += sum(r == 1 for r in rewards)
            acc[1] += len(rewards)
    prompts = set().union(*per_epoch)
    curves = {p: [e[p][0] / e[p][1] if p in e else -1 for e in per_epoch] for p in prompts}
    for c in curves.values():
        for k in range(len(c) - 1):
            if c[k] == -1 and c[k + 1] != -1:
                c[k] = c[k + 1]
    valid = {p: c for p, c in curves.items() if -1 not in c}
    mean = np.mean(list(valid.values()), axis=0)
    released = {
        p: 1 - sum((a - b) ** 2 for a, b in zip(c, mean)) / sum((1 - b) ** 2 for b in mean)
        for p, c in valid.items()
    }
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(tmp_path / "logs"), "--steps-per-epoch", "3", "--out", str(out)]) == 0
    got = {r["prompt"]: r["score"] for r in _lines(out)}
    assert got.keys() == released.keys()
    assert all(abs(got[p] - released[p]) < 1e-12 for p in got)


# ------------------------------------------------------------------------------ bad input


def test_a_truncated_jsonl_line_is_named_with_a_count_and_nothing_is_written(tmp_path, capsys):
    steps = _run()
    write_verl(tmp_path / "verl", steps)
    path = tmp_path / "verl" / "3.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:25]  # cut mid-record
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:-7])  # and a torn last line
    with pytest.raises(RolloutError) as err:
        read_history(tmp_path / "verl", "verl", ImportOptions(steps_per_epoch=2))
    assert f"{path}:2: not valid JSON" in str(err.value)
    assert f"{path}:{len(lines)}: not valid JSON" in str(err.value)
    assert "truncated line?" in str(err.value)
    out = tmp_path / "scores.jsonl"
    args = ["score", str(tmp_path / "verl"), "--steps-per-epoch", "2", "--out", str(out)]
    assert main(args) == 2
    assert f"{path}:2:" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    # a JSON list cut short
    write_openrlhf(tmp_path / "cut", steps)
    step = tmp_path / "cut" / "step_2.json"
    step.write_text(step.read_text()[:-40])
    with pytest.raises(RolloutError, match=r"step_2\.json:1: not valid JSON"):
        read_history(tmp_path / "cut", "auto", ImportOptions(steps_per_epoch=2))
    # a rollout without a reward, and many bad lines: the first ones and the count
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "step_1.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n"
                                              for i in range(30)))  # fmt: skip
    with pytest.raises(RolloutError) as err:
        read_history(bad, "auto", ImportOptions(steps_per_epoch=1))
    text = str(err.value)
    assert "step_1.jsonl:1: rollout lacks a text 'prompt' or a numeric 'reward'" in text
    assert "30 in all" in text


def test_a_parquet_file_with_a_missing_column_is_named(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_trl(tmp_path / "trl", _run(), repeat_every_other=False)
    path = tmp_path / "trl" / "completions" / "completions_00003.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["completion"]), path)
    out = tmp_path / "s.jsonl"
    args = ["score", str(tmp_path / "trl"), "--steps-per-epoch", "2", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{path}: no column 'completion' (columns: step, prompt, accuracy, id" in err
    assert not out.exists()
    # two reward columns: which one, or their sum
    write_trl(tmp_path / "two", _run(), repeat_every_other=False)
    for f in (tmp_path / "two" / "completions").iterdir():
        t = pq.read_table(f)
        pq.write_table(t.append_column("fmt", pa.array([0.5] * t.num_rows)), f)
    with pytest.raises(RolloutError, match=r"2 reward columns \(accuracy, fmt\): give"):
        read_history(tmp_path / "two", "trl", ImportOptions(steps_per_epoch=2))
    summed = read_history(
        tmp_path / "two", "trl", ImportOptions(steps_per_epoch=2, reward_field="accuracy+fmt")
    )
    alone = read_history(
        tmp_path / "two", "trl", ImportOptions(steps_per_epoch=2, reward_field="accuracy")
    )
    assert np.allclose(np.asarray(summed.reward_sum) - np.asarray(alone.reward_sum),
                       0.5 * np.asarray(alone.n))  # fmt: skip


def test_prompts_matching_no_record_are_counted_and_fail_unless_allowed(tmp_path, capsys):
    steps = _run()
    write_nemo(tmp_path / "nemo", steps)
    data = write_data(tmp_path / "train.jsonl", n=4)  # prompts 4 and 5 are not in it
    opts = ImportOptions(steps_per_epoch=2, data=str(data))
    with pytest.raises(RolloutError) as err:
        read_history(tmp_path / "nemo", "auto", opts)
    text = str(err.value)
    assert "2 prompts (" in text and "match no --data record" in text
    assert "train_data_step" in text and ".jsonl:" in text and "Compute 4 + 6" in text
    out = tmp_path / "s.jsonl"
    args = ["score", str(tmp_path / "nemo"), "--steps-per-epoch", "2", "--data", str(data),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 2 and not out.exists()
    assert "--allow-unmatched" in capsys.readouterr().err
    assert main([*args, "--allow-unmatched"]) == 0
    assert "match no --data record: left out" in capsys.readouterr().out
    assert {r["id"] for r in _lines(out)} <= {"d0", "d1", "d2", "d3"}


def test_formats_are_detected_or_the_choice_is_explained(tmp_path, capsys):
    steps = _run()
    write_openrlhf(tmp_path / "both", steps)
    write_verl(tmp_path / "both", steps)
    with pytest.raises(RolloutError, match=r"several formats \(openrlhf, verl\)"):
        detect_format(tmp_path / "both")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RolloutError, match="--format prime-rl"):
        detect_format(tmp_path / "empty")
    # no --steps-per-epoch: the step at which a prompt first comes back is suggested
    write_openrlhf(tmp_path / "logs", _run(steps_per_epoch=3, epochs=2))
    assert main(["score", str(tmp_path / "logs"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--steps-per-epoch 3 looks right" in err
    # prime-rl without an `all` subset uses `effective`
    write_prime(tmp_path / "prime", steps, subset="effective")
    assert (
        read_history(tmp_path / "prime", "auto", ImportOptions(steps_per_epoch=2)).num_epochs == 3
    )
    rollouts = list(iter_rollouts(tmp_path / "prime", "prime-rl"))
    assert len(rollouts) == sum(len(r) for rows in steps for _, r in rows)
    assert rollouts[0].step == 1 and rollouts[0].key.startswith("task-")


# ------------------------------------------------------------------------------ mapping prompts


def test_prompts_are_normalised_and_templates_learned():
    assert normalize_prompt(CHATML.format("  What is\n 2+2? ")) == "What is 2+2?"
    llama = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 1+1?"
             "<|eot_id|><|start_header_id|>assistant<|end_header_id|>")  # fmt: skip
    assert normalize_prompt(llama) == "What is 1+1?"
    assert normalize_prompt("<｜User｜>Solve x.<｜Assistant｜><think>") == "Solve x."
    assert normalize_prompt("[INST] Add 3. [/INST]") == "Add 3."


def test_data_index_learns_an_instruction_template(tmp_path):
    data = write_data(tmp_path / "d.jsonl", n=50)
    index = DataIndex(str(data))
    template = "user\nSolve: {}\nPut the answer in \\boxed{{}}.\nassistant\n"
    assert index.match(template.format(_problem(7))) == "d7"
    assert index._templates  # learned from that first match
    index.SEARCH_LIMIT = 0  # later prompts are matched by the template alone
    assert index.match(template.format(_problem(31))) == "d31"
    assert index.match(template.format("Something else entirely.")) is None


def test_data_index_reads_datasets_with_the_training_reader(tmp_path):
    import subprocess
    import sys

    # shipped:NAME resolves without torch (limr.prompts no longer imports it)
    code = (
        "import sys; from limr.importers._core import DataIndex; "
        "i = DataIndex('shipped:math_train'); print(len(i.by_text), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, torch_loaded = out.stdout.split()
    assert int(n) > 8000 and torch_loaded == "False"
    bad = write_data(tmp_path / "d.jsonl", n=3)
    with open(bad, "a", encoding="utf-8") as f:
        f.write('{"id": "d9", "problem": \n')
    with pytest.raises(RolloutError, match=rf"--data {bad}:4: not valid JSON"):
        DataIndex(str(bad))


# ------------------------------------------------------------------------------ import, memory


def test_history_import_writes_a_limr_history_every_command_reads(tmp_path, capsys):
    steps = _run()
    write_verl(tmp_path / "verl", steps)
    run = tmp_path / "run"
    args = [
        "history",
        "import",
        str(tmp_path / "verl"),
        "--steps-per-epoch",
        "2",
        "--out",
        str(run),
    ]
    assert main(args) == 0
    assert "imported 72 rollouts of 6 prompts (ids) x 3 epochs" in capsys.readouterr().out
    h = RewardHistory.load(run)
    assert _cells(h) == _expected(steps, str)
    direct, via = tmp_path / "direct.jsonl", tmp_path / "via.jsonl"
    assert (
        main(["score", str(tmp_path / "verl"), "--steps-per-epoch", "2", "--out", str(direct)]) == 0
    )
    assert main(["score", str(run), "--out", str(via)]) == 0
    assert _lines(direct) == _lines(via)
    assert main(["select", str(run), "--size", "2", "--out", str(tmp_path / "k.jsonl")]) == 0
    assert main(args) == 2  # refuses to overwrite
    assert "already holds files" in capsys.readouterr().err
    assert main(["history", "show", str(tmp_path / "verl"), "--steps-per-epoch", "2"]) == 0
    assert "6 prompts, 3 epochs, 72 rollouts" in capsys.readouterr().out


@pytest.mark.parametrize("writer", [write_openrlhf, write_trl])
def test_limr_score_imports_no_torch(tmp_path, writer):
    """Start-up is part of the measured time: no torch, Lightning or pandas, and no
    pyarrow.dataset (~0.5 s to import; pq.read_table would bring it in for TRL's parquet)."""
    writer(tmp_path / "logs", _run())
    code = (
        "import sys\nfrom limr.cli import main\n"
        f"rc = main(['score', {str(tmp_path / 'logs')!r}, '--steps-per-epoch', '2', '--out', "
        f"{str(tmp_path / 's.jsonl')!r}])\n"
        "print(rc, sorted(m for m in ('torch', 'lightning', 'pandas', 'pyarrow.dataset') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "0 []"


_MEASURE = """
import json, sys
import pyarrow as pa
from limr.importers import ImportOptions, read_history
h = read_history(sys.argv[1], "auto", ImportOptions(steps_per_epoch=2, workers=2))
print(json.dumps({"peak": pa.default_memory_pool().max_memory(), "n": int(h.n.sum())}))
"""


def test_memory_is_bounded_by_one_file_not_by_the_logs(tmp_path):
    """Arrow's peak allocation while reading 4 or 16 step files of ~0.5 MB is the same: a few
    files in flight, never the logs."""
    rng = np.random.default_rng(0)
    big = [[(i, rng.choice([1.0, -1.0], size=8).tolist()) for i in range(300)]] * 16
    write_openrlhf(tmp_path / "few", big[:4])
    write_openrlhf(tmp_path / "many", big)
    size = (tmp_path / "few" / "step_1.json").stat().st_size
    peaks = {}
    for name in ("few", "many"):
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / name)], cwd=ROOT,
                             capture_output=True, text=True, check=True)  # fmt: skip
        peaks[name] = json.loads(out.stdout)["peak"]
    assert peaks["many"] <= peaks["few"] * 1.25 + size
    assert peaks["many"] < 8 * size  # a few files in flight, not 16
