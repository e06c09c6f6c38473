"""Shared fixtures: a fixed seed for every test, a run folder, a writable copy of a config."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

# The test models are tiny: one thread is faster than two, and on a busy 2-core machine two
# threads can make every op wait for a descheduled peer (measured: 40x slower steps).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def pytest_collection_modifyitems(config, items):  # noqa: ARG001 - pytest hook signature
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


CHARS = list("0123456789+-*/=?.,:;()[]{}\\ abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n")


def make_char_tokenizer():
    """A character-level tokenizer built offline (pad 0, eos 1), as a PreTrainedTokenizerFast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )


def make_tiny_model(vocab_size: int, hidden: int = 32, layers: int = 2):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return Qwen2ForCausalLM(config)


@pytest.fixture
def tiny_tokenizer():
    return make_char_tokenizer()


@pytest.fixture
def tiny_policy(tiny_tokenizer):
    torch.manual_seed(0)
    return make_tiny_model(len(tiny_tokenizer))


@pytest.fixture
def tiny_model_dir(tmp_path: Path, tiny_policy, tiny_tokenizer) -> Path:
    """A tiny random Qwen2 model and its tokenizer saved as a normal Hugging Face folder."""
    path = tmp_path / "tiny-model"
    tiny_policy.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path
