"""Chunked log-probs (:func:`limr.forward.sequence_logprobs`): the head runs on a few positions at
a time under activation checkpointing, and gives the same log-probs, entropies and gradients as
the unchunked path (``chunk_size=0``), which materialises the [N, T, V] logits."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

from limr.forward import (
    LOGITS_CHUNK_BYTES,
    SPLIT_MODEL_TYPES,
    default_chunk_size,
    sequence_logprobs,
    split_lm,
)

VOCAB = 1000
N, P, T = 4, 5, 9  # 9 positions in chunks of 2: four full chunks and a ragged one


def _config_kwargs(**extra):
    return dict(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, bos_token_id=1, **extra,
    )  # fmt: skip


def _llama(tied: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**_config_kwargs(tie_word_embeddings=tied)))


def _qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(**_config_kwargs(tie_word_embeddings=False)))


MODELS = {"llama": _llama, "qwen2": _qwen2}


def _rows(group: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [N, P + T]: left-padded prompts (shared within each group), then responses."""
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(3, VOCAB, (N // group, P), generator=g).repeat_interleave(group, 0)
    ids = torch.cat([prompts, torch.randint(3, VOCAB, (N, T), generator=g)], 1)
    mask = torch.ones_like(ids)
    mask[:group, :2] = 0  # the first prompt (of each of its group's rows) is left-padded
    ids[mask == 0] = 0
    return ids, mask


def _run(model, ids, mask, temperature, with_entropy, group, chunk_size):
    model.zero_grad(set_to_none=True)
    lp, ent = sequence_logprobs(model, ids, mask, T, temperature, with_entropy, group, chunk_size)
    loss = (lp * torch.linspace(0.5, 1.5, T)).sum()  # non-uniform weights per position
    if with_entropy == "grad":
        loss = loss + 0.3 * ent.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return lp.detach(), None if ent is None else ent.detach(), grads


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("with_entropy", [False, True, "grad"])
def test_chunked_equals_unchunked_values_and_gradients(family, temperature, group, with_entropy):
    model = MODELS[family]()
    assert split_lm(model) is not None  # the chunked path is the one under test
    ids, mask = _rows(group)
    want = _run(model, ids, mask, temperature, with_entropy, group, chunk_size=0)
    got = _run(model, ids, mask, temperature, with_entropy, group, chunk_size=2)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    if with_entropy:
        torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
        assert got[1].requires_grad is False
    else:
        assert got[1] is None and want[1] is None
    assert got[2].keys() == want[2].keys() and len(want[2]) == len(list(model.parameters()))
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_entropy_bonus_moves_the_gradients():
    """With ``"grad"`` the entropy's gradient reaches the weights (in both paths, equally)."""
    model = _llama()
    ids, mask = _rows()
    plain = _run(model, ids, mask, 1.0, True, 1, chunk_size=2)[2]
    bonus = _run(model, ids, mask, 1.0, "grad", 1, chunk_size=2)[2]
    assert any(not torch.allclose(plain[k], bonus[k]) for k in plain)


def test_default_chunk_size_and_one_chunk_match_unchunked():
    model = _qwen2()
    ids, mask = _rows()
    want = _run(model, ids, mask, 0.7, "grad", 1, chunk_size=0)
    for chunk_size in (None, T, 10 * T):
        got = _run(model, ids, mask, 0.7, "grad", 1, chunk_size=chunk_size)
        torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
        for name in want[2]:
            torch.testing.assert_close(got[2][name], want[2][name], atol=1e-5, rtol=1e-4)


def test_no_grad_chunked_equals_unchunked():
    """The experience's passes (no grad): chunked without checkpointing, same values."""
    model = _llama()
    ids, mask = _rows(2)
    with torch.no_grad():
        a = sequence_logprobs(model, ids, mask, T, 0.7, True, group=2, chunk_size=0)
        b = sequence_logprobs(model, ids, mask, T, 0.7, True, group=2, chunk_size=3)
    torch.testing.assert_close(b[0], a[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b[1], a[1], atol=1e-5, rtol=1e-5)


def _count_head_calls(model) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    model.get_output_embeddings().register_forward_hook(
        lambda _m, _i, out: calls.append(tuple(out.shape))
    )
    return calls


def test_the_head_runs_once_per_chunk_and_again_in_backward():
    model = _llama()
    calls = _count_head_calls(model)
    ids, mask = _rows()
    with torch.no_grad():
        sequence_logprobs(model, ids, mask, T, 1.0, chunk_size=2)
    assert calls == [(N, 2, VOCAB)] * 4 + [(N, 1, VOCAB)]
    calls.clear()
    lp, _ = sequence_logprobs(model, ids, mask, T, 1.0, chunk_size=4)
    assert calls == [(N, 4, VOCAB), (N, 4, VOCAB), (N, 1, VOCAB)]
    lp.sum().backward()  # checkpointing: each chunk's logits are recomputed, not kept
    assert sorted(calls) == sorted([(N, 4, VOCAB)] * 4 + [(N, 1, VOCAB)] * 2)
    calls.clear()
    sequence_logprobs(model, ids, mask, T, 1.0, chunk_size=0)  # unchunked: the model's forward
    assert calls == [(N, T + 1, VOCAB)]


def _saved_for_backward(model, chunk_size, with_entropy="grad") -> list[tuple[int, ...]]:
    """Shapes of the tensors autograd keeps for backward from one forward."""
    shapes: list[tuple[int, ...]] = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    ids, mask = _rows()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sequence_logprobs(model, ids, mask, T, 0.7, with_entropy, chunk_size=chunk_size)
    return shapes


@pytest.mark.parametrize("with_entropy", [False, "grad"])
def test_no_vocabulary_sized_activation_is_kept_for_backward(with_entropy):
    model = _llama()
    vocab_sized = [s for s in _saved_for_backward(model, 0, with_entropy) if s[-1] == VOCAB]
    assert (N, T, VOCAB) in vocab_sized  # the unchunked path keeps the [N, T, V] log-softmax
    saved = _saved_for_backward(model, 2, with_entropy)
    assert saved  # the backbone's activations
    assert [s for s in saved if len(s) == 3 and s[-1] == VOCAB] == []  # no [N, t, V] logits


def test_default_chunk_size_budget():
    assert LOGITS_CHUNK_BYTES == 64 * 2**20
    # SmolLM2-135M at micro-batch 8: 64 MiB / (8 x 49152 x 4 B) = 42.7 positions
    assert default_chunk_size(8, 49152) == 42
    assert 8 * 42 * 49152 * 4 <= LOGITS_CHUNK_BYTES < 8 * 43 * 49152 * 4
    assert default_chunk_size(4, 152064) == 27
    assert default_chunk_size(10_000, 152064) == 1  # at least one position
    assert default_chunk_size(2, 10, budget=80) == 1 and default_chunk_size(2, 10, budget=160) == 2


def test_models_that_scale_their_logits_run_whole():
    """Cohere multiplies the head's logits by ``logit_scale``: no split, and the log-probs are
    those of the model's own logits."""
    from transformers import CohereConfig, CohereForCausalLM

    torch.manual_seed(0)
    model = CohereForCausalLM(CohereConfig(**_config_kwargs(logit_scale=0.25)))
    assert split_lm(model) is None
    calls = _count_head_calls(model)
    ids, mask = _rows()
    lp, _ = sequence_logprobs(model, ids, mask, T, 0.7, chunk_size=2)
    assert calls == [(N, T + 1, VOCAB)]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -T - 1 : -1]
    want = torch.log_softmax(logits.float() / 0.7, -1).gather(-1, ids[:, -T:, None])[..., 0]
    torch.testing.assert_close(lp, want, atol=1e-5, rtol=1e-5)


def test_what_does_not_split():
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    gemma2 = Gemma2ForCausalLM(Gemma2Config(**_config_kwargs(head_dim=8)))
    assert gemma2.config.final_logit_softcapping is not None and split_lm(gemma2) is None
    capped = LlamaForCausalLM(LlamaConfig(**_config_kwargs()))
    capped.config.final_logit_softcapping = 30.0  # a config field the family would apply
    assert split_lm(capped) is None

    class Scaled(LlamaForCausalLM):  # its own forward: not the one the split reproduces
        def forward(self, *args, **kwargs):
            return super().forward(*args, **kwargs)

    assert split_lm(Scaled(LlamaConfig(**_config_kwargs()))) is None
    assert split_lm(torch.nn.Linear(2, 2)) is None
    backbone, head = split_lm(_llama())
    assert type(backbone).__name__ == "LlamaModel" and isinstance(head, torch.nn.Linear)


@pytest.mark.parametrize("model_type", sorted(SPLIT_MODEL_TYPES))
def test_split_families_compute_logits_as_the_head_of_the_backbone(model_type):
    """Each family the split path accepts: its causal LM's forward computes ``logits`` once, as
    the head of the backbone's last hidden states, and changes them no further."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cls = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
    src = inspect.getsource(cls.forward)
    # an assignment to logits, not the ``logits=logits,`` keyword of the output
    assign = re.compile(r"\s*logits\s*[-+*/]?=(?!\s*logits,\s*$)")
    assigned = [ln.strip() for ln in src.splitlines() if assign.match(ln)]
    assert assigned == ["logits = self.lm_head(hidden_states[:, slice_indices, :])"], assigned
    assert "hidden_states = outputs.last_hidden_state" in src or "outputs[0]" in src
    assert "self.model(" in src


def test_bfloat16_chunked_matches_unchunked():
    model = _llama(tied=False).to(torch.bfloat16)
    ids, mask = _rows()
    want = _run(model, ids, mask, 0.7, "grad", 1, chunk_size=0)
    got = _run(model, ids, mask, 0.7, "grad", 1, chunk_size=2)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
    for name in want[2]:
        torch.testing.assert_close(got[2][name], want[2][name], atol=1e-2, rtol=1e-2)
