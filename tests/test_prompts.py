import json

import pytest

from limr.cli import main
from limr.prompts import SHIPPED, DataError, format_prompt, load_prompts

EXPECTED_SIZES = {"math_train": 8523, "math500": 500, "aime24": 30, "amc23": 40}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_dataset_loads(name):
    id_field = "unique_id" if name == "math500" else "id"
    prompts = load_prompts(f"shipped:{name}", id_field=id_field)
    assert len(prompts) == EXPECTED_SIZES[name]
    assert all(p.problem.strip() for p in prompts)
    assert sum(not p.answer.strip() for p in prompts) == (2 if name == "math_train" else 0)
    assert len({p.id for p in prompts}) == len(prompts)


def test_amc_float_answers_become_integers_and_aime_keeps_padding():
    amc = load_prompts("shipped:amc23")
    assert amc[0].answer == "27"
    aime = load_prompts("shipped:aime24")
    assert any(p.answer.startswith("0") for p in aime)


def test_math_train_keeps_level_and_subject():
    p = load_prompts("shipped:math_train", max_prompts=1)[0]
    assert p.extra["level"] == 5 and p.extra["subject"] == "Intermediate Algebra"


def test_all_problems_reported_at_once(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(
        '{"id": "a", "problem": "1+1", "answer": "2"}\n'
        "not json\n"
        '{"id": "b", "problem": "", "answer": "3"}\n'
        '{"id": "a", "problem": "2+2", "answer": "4"}\n'
        '{"id": "c", "problem": "3+3"}\n'
    )
    with pytest.raises(DataError) as err:
        load_prompts(str(f))
    problems = err.value.problems
    assert f"{f}:2: not valid JSON" in problems[0]
    assert f"{f}:3: empty 'problem'" in problems[1]
    assert f"{f}:4: duplicate id 'a'" in problems[2]
    assert f"{f}:5: missing field 'answer'" in problems[3]
    assert len(problems) == 4


def test_field_mapping_json_and_parquet(tmp_path):
    rows = [{"qid": 7, "question": "What is 2+3?", "gold": 5, "level": 1}]
    j = tmp_path / "d.json"
    j.write_text(json.dumps(rows))
    kw = dict(id_field="qid", problem_field="question", answer_field="gold")
    (p,) = load_prompts(str(j), **kw)
    assert (p.id, p.problem, p.answer, p.extra) == ("7", "What is 2+3?", "5", {"level": 1})
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    (q,) = load_prompts(str(tmp_path / "d.parquet"), **kw)
    assert q == p


def test_hf_dataset_from_local_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"id": "x", "problem": "1+2", "answer": "3"}])
    ds.save_to_disk(str(tmp_path / "ds"))
    (p,) = load_prompts(f"hf:{tmp_path / 'ds'}")
    assert p.answer == "3"


def test_subset_and_max_prompts(tmp_path):
    sub = tmp_path / "subset.jsonl"
    sub.write_text('{"id": "2"}\n{"id": "0"}\n')
    f = tmp_path / "d.jsonl"
    f.write_text(
        "".join(json.dumps({"problem": f"p{i}", "answer": str(i)}) + "\n" for i in range(4))
    )
    assert [p.id for p in load_prompts(str(f), subset=str(sub))] == ["0", "2"]
    assert len(load_prompts(str(f), max_prompts=3)) == 3
    bad = tmp_path / "bad_subset.jsonl"
    bad.write_text('{"id": "99"}\n')
    with pytest.raises(DataError, match="not in the dataset"):
        load_prompts(str(f), subset=str(bad))


def test_prompt_templates(tiny_tokenizer):
    assert format_prompt("1+1", template="plain", plain_suffix="=") == "1+1="
    text = format_prompt("1+1", template="qwen_math", system_prompt="SYS")
    assert text.startswith("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n1+1")
    assert text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="chat template"):
        format_prompt("1+1", template="chat", tokenizer=tiny_tokenizer)


def test_data_cli(tmp_path, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "math500" in out and "8523" in out
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": 1, "problem": "x"}\n{"id": 1, "problem": "y", "answer": "1"}\n')
    assert main(["data", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f}:1: missing field 'answer'" in err and f"{f}:2: duplicate id '1'" in err
    assert main(["data", "check", "shipped:aime24"]) == 0


def test_empty_answers_are_kept_and_warned_about(capsys):
    # Two shipped MATH training records have an empty gold answer (as in the paper's data).
    prompts = load_prompts("shipped:math_train")
    assert sum(not p.answer for p in prompts) == 2
    assert main(["data", "check", "shipped:math_train"]) == 0
    assert "2 records have an empty answer" in capsys.readouterr().out


def test_levels_filter_keeps_the_given_levels_in_order():
    pool = load_prompts("synthetic:arith", levels=[1, 3], max_prompts=40)
    assert {p.extra["level"] for p in pool} == {1, 3} and len(pool) == 40
    every = [p for p in load_prompts("synthetic:arith") if p.extra["level"] in (1, 3)]
    assert [p.id for p in pool] == [p.id for p in every[:40]]  # order kept, then max_prompts
    math = load_prompts("shipped:math_train", levels=[3])
    assert math and all(p.extra["level"] == 3 for p in math)


def test_levels_filter_reads_level_strings_and_names_what_is_wrong(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"id": "a", "problem": "1+1", "answer": "2", "level": "Level 2"},
            {"id": "b", "problem": "2+2", "answer": "4", "level": 3}]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [p.id for p in load_prompts(str(data), levels=[2])] == ["a"]
    with pytest.raises(DataError, match=r"no prompts at levels \[7\]"):
        load_prompts(str(data), levels=[7])
    data.write_text(
        data.read_text() + json.dumps({"id": "c", "problem": "x", "answer": "1"}) + "\n"
    )
    with pytest.raises(DataError, match="1 prompts have no level field.*'c'"):
        load_prompts(str(data), levels=[2])


def test_float_golds_are_written_without_exponents(tmp_path):
    # str(1e-05) is "1e-05", which a checker reads as e - 5
    data = tmp_path / "d.jsonl"
    golds = [1e-05, 0.5, 27.0, 2.5e-10, 123456789.25, -0.001]
    rows = [{"id": str(i), "problem": "p", "answer": g} for i, g in enumerate(golds)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = [p.answer for p in load_prompts(str(data))]
    assert answers == ["0.00001", "0.5", "27", "0.00000000025", "123456789.25", "-0.001"]
    assert all(float(a) == g for a, g in zip(answers, golds))
