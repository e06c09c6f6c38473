"""``limr probe``: pass-ratio@k of checkpoints on the shipped tiny base, as a reward history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limr.cli import main
from limr.config import load_config
from limr.history import RewardHistory
from limr.probe import ProbeError, load_checkpoint_policy, probe

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "limr" / "data" / "tiny_base")
FAST = ["sampler.max_new_tokens=13", "sampler.temperature=0.5", "trainer.num_threads=1"]


def _cfg(max_prompts: int = 2):
    return load_config(
        None, [*FAST, "data.train=synthetic:arith", f"data.max_prompts={max_prompts}"]
    )


def test_probe_records_one_epoch_per_checkpoint_and_resumes(tmp_path, capsys):
    out = tmp_path / "probe"
    cfg = _cfg()
    m = probe([TINY], cfg, out, samples=2, batch_size=2, log=print)
    assert m["rollouts"] == [4] and m["samples"] == 2 and m["n_prompts"] == 2
    assert "100%" in capsys.readouterr().err  # the progress bar
    h = RewardHistory.load(out / "history")
    assert h.n.tolist() == [[2], [2]]
    # a rerun with one more checkpoint probes only that one
    calls = []

    def counting_load(spec, cfg):
        calls.append(spec)
        return load_checkpoint_policy(spec, cfg)

    m = probe([TINY, "builtin:tiny"], cfg, out, samples=2, batch_size=2, load=counting_load)
    assert calls == ["builtin:tiny"] and m["rollouts"] == [4, 4]
    assert "resuming after checkpoint 1 of 2" in capsys.readouterr().out
    h = RewardHistory.load(out / "history")
    assert h.n.tolist() == [[2, 2], [2, 2]] and h.epoch_complete(1) is True
    assert json.loads((out / "probe.json").read_text())["checkpoints"][1] == "builtin:tiny"
    # done: nothing is loaded again
    probe([TINY, "builtin:tiny"], cfg, out, samples=2, batch_size=2, load=counting_load)
    assert calls == ["builtin:tiny"]
    # other settings in the same folder are refused
    with pytest.raises(ProbeError, match="samples"):
        probe([TINY], cfg, out, samples=3)
    # every selector runs on it
    scores = tmp_path / "s.jsonl"
    assert main(["score", str(out), "--out", str(scores)]) == 0
    assert "over 2 epochs" in capsys.readouterr().out


def test_cli_probe_end_to_end_and_bad_data(tmp_path, capsys):
    out = tmp_path / "p"
    args = ["probe", TINY, "--data", "synthetic:arith", "--max-prompts", "2", "--samples", "1",
            "--out", str(out), "--batch-size", "2"]  # fmt: skip
    for kv in FAST:
        args += ["--set", kv]
    assert main(args) == 0
    assert "1 checkpoints x 2 prompts x 1 samples = 2 rollouts" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "1+1", "answer": "2"}\n{"id": "b", "answer": "3"}\n')
    assert main(["probe", TINY, "--data", str(bad), "--samples", "1", "--out", str(out / "x")]) == 2
    assert f"{bad}:2: missing field 'problem'" in capsys.readouterr().err
    assert (
        main(
            [
                "probe",
                TINY,
                "--samples",
                "2",
                "--out",
                str(out),
                *sum((["--set", kv] for kv in FAST), []),
                "--data",
                "synthetic:arith",
                "--max-prompts",
                "2",
            ]
        )
        == 2
    )
    assert "other settings" in capsys.readouterr().err


def test_a_training_checkpoint_loads_its_policy_weights(tmp_path):
    cfg = load_config(None, [f"model.name_or_path={TINY}"])
    policy, _ = load_checkpoint_policy(TINY, cfg)
    state = {f"policy.{k}": v + 1.0 for k, v in policy.state_dict().items()}
    state["value_model.head.weight"] = torch.zeros(1)
    path = tmp_path / "step-000001.ckpt"
    torch.save({"state_dict": state}, path)
    loaded, _ = load_checkpoint_policy(str(path), cfg)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, policy.state_dict()[k] + 1.0), k
    torch.save({"state_dict": {"value_model.x": torch.zeros(1)}}, path)
    with pytest.raises(ProbeError, match="no policy"):
        load_checkpoint_policy(str(path), cfg)
