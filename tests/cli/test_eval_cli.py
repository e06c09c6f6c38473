"""``limr eval MODEL``: end to end on a tiny random Qwen2 model saved to a folder, on CPU."""

from __future__ import annotations

import json

from limr.cli import main


def test_eval_end_to_end_with_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    argv = [
        "eval", str(tiny_model_dir), "--benchmarks", "math500,aime24", "--max-problems", "2",
        "--out", str(out), "eval.max_new_tokens=8", "trainer.progress=false",
    ]  # fmt: skip
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split("|")[1:-1] == [" AIME24 ", " MATH500 ", " AVG "]
    result = json.loads(out.read_text())
    assert set(result) == {"math500", "aime24"}
    math500, aime = result["math500"], result["aime24"]
    assert math500["protocol"] == {"n_samples": 1, "temperature": 0.0, "top_p": 1.0,
                                   "max_new_tokens": 8}  # fmt: skip
    assert aime["protocol"]["n_samples"] == 4 and aime["protocol"]["temperature"] == 0.4
    assert [p["id"] for p in math500["problems"]] == [
        "test/precalculus/807.json",
        "test/intermediate_algebra/1994.json",
    ]
    for record, n in ((math500, 1), (aime, 4)):
        assert record["n_problems"] == 2 and record["n_samples"] == n
        for problem in record["problems"]:
            assert len(problem["responses"]) == len(problem["correct"]) == n
            assert all(len(r) <= 8 for r in problem["responses"])  # char tokenizer: 8 tokens
        assert 0.0 <= record["accuracy"] <= 1.0  # a random model: almost surely 0


def test_eval_of_a_jsonl_file_with_the_qwen_template(tiny_model_dir, tmp_path):
    data = tmp_path / "mini.jsonl"
    data.write_text(
        json.dumps({"problem": "1+1=", "answer": "2", "level": 1}) + "\n"
        + json.dumps({"problem": "2+2=", "answer": "4", "level": 2}) + "\n"
    )  # fmt: skip
    out = tmp_path / "eval.json"
    argv = ["eval", str(tiny_model_dir), "--benchmarks", str(data), "--template", "qwen_math",
            "--out", str(out), "eval.max_new_tokens=4", "eval.n_samples=2",
            "eval.temperature=1.0"]  # fmt: skip
    assert main(argv) == 0
    mini = json.loads(out.read_text())["mini"]
    assert mini["n_samples"] == 2 and set(mini["by_level"]) == {"1", "2"}
    assert mini["protocol"]["temperature"] == 1.0


def test_eval_fails_early_on_bad_names_and_data(tmp_path, capsys):
    missing_model = str(tmp_path / "no-model")
    assert main(["eval", missing_model, "--benchmarks", "math5000"]) == 2
    assert "Did you mean 'math500'?" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "x"}\n')
    assert main(["eval", missing_model, "--benchmarks", str(bad)]) == 2
    assert f"{bad}:1: missing field 'answer'" in capsys.readouterr().err
    assert main(["eval", missing_model, "--benchmarks", "math500"]) == 2
    assert "cannot load model" in capsys.readouterr().err
