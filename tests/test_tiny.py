"""The tiny base policy: tokenizer round trip, model builder, warm-up, shipped checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

from limr import task, tiny
from limr.config import TinyModelConfig

TEXT = "What is 37 plus 48? Answer in \\boxed{}.\n\\boxed{85}  two  spaces, é and ∑"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def test_tokenizer_is_character_level(tokenizer):
    ids = tokenizer(TEXT[:41])["input_ids"]
    assert ids == [ord(c) + 2 for c in TEXT[:41]]  # one token per ASCII character, nothing added
    assert tokenizer.decode(ids) == TEXT[:41]
    assert tokenizer.decode(tokenizer(TEXT)["input_ids"]) == TEXT  # any UTF-8 text round trips
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id, len(tokenizer)) == (0, 1, 258)
    assert tokenizer.bos_token_id is None


@pytest.mark.parametrize("config_cls", [Qwen2Config, LlamaConfig])
def test_auto_tokenizer_loads_it_back_unchanged(tokenizer, tmp_path, config_cls):
    # transformers 5 rebuilds the tokenizer of a qwen2 folder as a Qwen2Tokenizer: must not matter
    tokenizer.save_pretrained(tmp_path)
    config_cls(vocab_size=len(tokenizer)).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    ids = tokenizer(TEXT)["input_ids"]
    assert loaded(TEXT)["input_ids"] == ids
    assert loaded.decode(ids) == TEXT
    with_eos = ids + [loaded.eos_token_id, loaded.pad_token_id]
    assert loaded.decode(with_eos, skip_special_tokens=True) == TEXT
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.eos_token_id, loaded.pad_token_id) == (0, 1)
    batch = loaded(["ab", "abcd"], padding=True, padding_side="left")
    assert batch["input_ids"][0][:2] == [1, 1] and batch["attention_mask"][0] == [0, 0, 1, 1]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_build_model(arch):
    model = tiny.build_model(arch, hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=1)
    assert type(model).__name__ == ("Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    again = tiny.build_model(arch, hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=1)
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)  # seeded
    with pytest.raises(ValueError, match="qwen2, llama"):
        tiny.build_model("gpt2")


def test_warmup_trains_on_the_response_only(tokenizer):
    prompt = task.load("arith", "train")[0]
    [(ids, n_prompt)] = tiny._encode_examples(tokenizer, [prompt])
    input_ids, mask, labels = tiny._collate([(ids, n_prompt), (ids[:-3], n_prompt)], 1)
    assert tokenizer.decode(ids[n_prompt:]) == task.response_for(prompt) + tokenizer.eos_token
    assert (labels[0, :n_prompt] == -100).all() and (
        labels[0, n_prompt:] == input_ids[0, n_prompt:]
    ).all()
    assert (labels[1, len(ids) - 3 :] == -100).all() and mask[1].sum() == len(ids) - 3


def test_unfinished_targets_keep_the_answer_and_run_past_the_response_limit(tokenizer):
    prompts = task.load("arith", "train")[:20]
    done = tiny._encode_examples(tokenizer, prompts)
    cut = tiny._encode_examples(tokenizer, prompts, finished=False)
    for p, (ids, n), (cut_ids, cut_n) in zip(prompts, done, cut):
        assert cut_n == n and cut_ids[: len(ids) - 1] == ids[:-1]  # same prompt, answer, digits
        response = tokenizer.decode(cut_ids[n:-1])
        assert response == task.response_for(p) + tiny.UNFINISHED_TAIL
        assert tokenizer.eos_token_id not in cut_ids[n : n + 14]  # no EOS within 13 new tokens


def test_warmup_draws_unfinished_targets_at_the_given_rate(tokenizer, monkeypatch):
    seen = []
    real = tiny._collate

    def spy(batch, pad_id):
        seen.extend(len(ids) for ids, _ in batch)
        return real(batch, pad_id)

    monkeypatch.setattr(tiny, "_collate", spy)
    model = tiny.build_model(hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=1)
    prompts = task.load("arith", "warmup")[:1]  # one prompt: two possible target lengths
    long = len(tiny._encode_examples(tokenizer, prompts, finished=False)[0][0])
    for fraction, expected in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        seen.clear()
        tiny.warmup(
            model, tokenizer, prompts, 10, 40, 1e-4, unfinished_fraction=fraction, progress=False
        )
        rate = sum(n == long for n in seen) / len(seen)
        assert abs(rate - expected) < 0.1, (fraction, rate)
    with pytest.raises(ValueError, match="unfinished_fraction"):
        tiny.warmup(model, tokenizer, prompts, 1, 2, 1e-4, unfinished_fraction=1.5)


def test_warmup_changes_the_weights(tokenizer):
    model = tiny.build_model(hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=1)
    before = [p.detach().clone() for p in model.parameters()]
    figures = tiny.warmup(
        model,
        tokenizer,
        task.load("arith", "warmup")[:50],
        steps=2,
        batch_size=4,
        lr=1e-2,
        levels=[1, 5],
        progress=False,
    )
    assert figures["steps"] == 2 and figures["final_loss"] > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="no warm-up prompts"):
        tiny.warmup(model, tokenizer, task.load("arith", "warmup")[:50], 1, 2, 1e-3, levels=[9])


def test_is_correct():
    assert tiny.is_correct("\\boxed{85}", True, "85")
    assert tiny.is_correct("\\boxed{1} so \\boxed{85}", True, "85")  # the last box counts
    assert not tiny.is_correct("\\boxed{85}", False, "85")  # unfinished
    assert not tiny.is_correct("85", True, "85")
    assert not tiny.is_correct("\\boxed{851}", True, "85")


def test_defaults_match_the_config_schema():
    assert tiny.tiny_config() == asdict(TinyModelConfig())
    with pytest.raises(ValueError, match="hidden_sizes"):
        tiny.tiny_config(hidden_sizes=3)


def test_ensure_base_warms_up_once_and_caches(tmp_path):
    fields = dict(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32)
    fields.update(warmup_steps=2, warmup_batch_size=4)
    path = tiny.ensure_base(tmp_path, progress=False, **fields)
    assert path.parent == tmp_path and path != tiny.SHIPPED_DIR
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary folder left
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny.ensure_base(tmp_path, progress=False, **fields) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not rebuilt
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size == 16


def test_ensure_base_returns_the_shipped_folder_for_the_default(tmp_path):
    assert tiny.ensure_base(tmp_path, **asdict(TinyModelConfig())) == tiny.SHIPPED_DIR
    assert not any(tmp_path.iterdir())  # nothing warmed up, nothing written


def test_shipped_base_loads_and_answers(tokenizer):
    folder = tiny.SHIPPED_DIR
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 2_000_000
    model = AutoModelForCausalLM.from_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(folder)
    assert loaded(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert loaded.decode(tokenizer(TEXT)["input_ids"]) == TEXT
    assert model.config.vocab_size == len(loaded) and model.config.tie_word_embeddings
    config = json.loads((folder / tiny.TINY_CONFIG_FILE).read_text())
    assert config == {"format_version": tiny.FORMAT_VERSION, **asdict(TinyModelConfig())}
    # the measured partial skill (figures.json): easy level mostly solved, every level learnable
    figures = json.loads((folder / tiny.FIGURES_FILE).read_text())["test"]
    assert set(figures["greedy"]) == {"1", "2", "3", "4", "5"}
    assert figures["greedy"]["1"] >= 0.8 and figures["greedy"]["5"] <= 0.6
    assert min(figures["pass@8_t1"].values()) >= 0.15
    # ... and, warmed up with half its targets unfinished, finishes about half of its samples
    assert 0.3 <= figures["boxed_t1"] <= 0.7
    # the base answers easy prompts in the rewarded format: \boxed{...} and then EOS
    easy = [p for p in task.load("arith", "test") if p.extra["level"] == 1][:16]
    texts, finished = tiny.generate(model, loaded, [p.problem for p in easy], max_new_tokens=13)
    assert sum(finished) >= 12 and all(t.startswith("\\boxed{") for t in texts)
    assert sum(tiny.is_correct(t, f, p.answer) for t, f, p in zip(texts, finished, easy)) >= 10
