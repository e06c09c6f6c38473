import pytest
import torch

from limr.registry import SAMPLERS, import_plugins
from limr.samplers.hf import response_mask_and_finished


def test_response_mask_stops_after_first_eos():
    # eos = 1, pad = 1 too (generate pads finished rows with pad): tokens after the first EOS
    # are padding even though they are also "1".
    ids = torch.tensor([[5, 1, 1, 1], [5, 6, 7, 8], [1, 1, 1, 1]])
    generated = torch.ones_like(ids, dtype=torch.bool)
    mask, finished = response_mask_and_finished(ids, [1], generated)
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, True, True],
        [True, False, False, False],
    ]
    assert finished.tolist() == [True, False, True]


def test_hf_sampler_shapes_logprobs_and_finished(tiny_policy, tiny_tokenizer):
    import_plugins()
    sampler = SAMPLERS.build("hf", model=tiny_policy, tokenizer=tiny_tokenizer, batch_size=2)
    prompts = ["1+1=", "12+30=", "7*8="]
    out = sampler.generate(prompts, n=2, temperature=1.0, max_new_tokens=6, seed=0)
    N = 6
    assert out.prompt_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert out.query_ids.shape[0] == N and out.response_ids.shape[0] == N
    assert out.response_ids.shape[1] <= 6
    assert len(out.texts) == N
    # left padding: the last prompt token is real for every row
    assert out.query_mask[:, -1].all()
    # log-probs are <= 0 on real tokens, exactly 0 on padding
    assert (out.logprobs[out.response_mask] <= 0).all()
    assert (out.logprobs[~out.response_mask] == 0).all()
    # a finished row's last real token is EOS
    for row, m, fin in zip(out.response_ids, out.response_mask, out.finished):
        if fin:
            assert row[m][-1].item() == tiny_tokenizer.eos_token_id
    assert not tiny_policy.training or tiny_policy.training  # mode restored either way


def test_hf_sampler_logprobs_match_a_forward_pass(tiny_policy, tiny_tokenizer):
    import_plugins()
    tiny_policy.eval()
    sampler = SAMPLERS.build("hf", model=tiny_policy, tokenizer=tiny_tokenizer)
    out = sampler.generate(["3+4="], n=3, temperature=0.7, max_new_tokens=5, seed=1)
    ids = torch.cat([out.query_ids, out.response_ids], 1)
    mask = torch.cat([out.query_mask, out.response_mask], 1)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = tiny_policy(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits
    P = out.query_ids.shape[1]
    logits = logits[:, P - 1 : -1] / 0.7
    lp = torch.log_softmax(logits.float(), -1).gather(-1, out.response_ids.unsqueeze(-1))[..., 0]
    torch.testing.assert_close(
        lp[out.response_mask], out.logprobs[out.response_mask], atol=1e-4, rtol=1e-4
    )


def test_hf_sampler_greedy_is_deterministic(tiny_policy, tiny_tokenizer):
    import_plugins()
    sampler = SAMPLERS.build("hf", model=tiny_policy, tokenizer=tiny_tokenizer)
    a = sampler.generate(["2+2=", "9-3="], n=1, temperature=0, max_new_tokens=5)
    b = sampler.generate(["2+2=", "9-3="], n=1, temperature=0, max_new_tokens=5)
    assert a.texts == b.texts
    assert torch.equal(a.response_ids, b.response_ids)


@pytest.mark.parametrize("decoder", ["loop", "generate"])
def test_a_stop_string_ends_the_response_mask_when_pad_is_not_eos(
    tiny_policy, tiny_tokenizer, decoder
):
    # the digits are stop strings: rows stop at different lengths, and the padding written after
    # a stop (pad 0 is not EOS 1) must not count as response
    import_plugins()
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    assert pad != eos
    sampler = SAMPLERS.build(
        "hf", model=tiny_policy, tokenizer=tiny_tokenizer, batch_size=4, decoder=decoder
    )
    digits = list("0123456789")
    out = sampler.generate(
        ["1+1=", "12+30=", "7*8=", "9-3="], n=4, temperature=1.0, max_new_tokens=12, stop=digits,
        seed=0,
    )  # fmt: skip
    width = out.response_ids.shape[1]
    stopped_early = 0
    for row, m, done, text in zip(out.response_ids, out.response_mask, out.finished, out.texts):
        n_real = int(m.sum())
        assert m[:n_real].all() and not m[n_real:].any()  # the response, then nothing
        ids = row[:n_real].tolist()
        found = [c for c in tiny_tokenizer.decode(ids, skip_special_tokens=True) if c in digits]
        if ids[-1] == eos:  # ended by EOS, no stop string before it
            assert done and not found
        elif done:  # ended by its first stop string, nothing after it
            assert len(found) == 1 and text.endswith(found[0]), (ids, text)
            stopped_early += n_real < width
        else:  # cut at the token limit
            assert n_real == width == 12 and not found
    assert stopped_early > 0  # rows that stopped while others went on: padding was written
    assert (out.logprobs[~out.response_mask] == 0).all()
    assert (out.response_ids[~out.response_mask] == pad).all()


def test_stop_end_finds_the_first_prefix_with_a_stop_string(tiny_tokenizer):
    from limr.samplers.hf import stop_end

    ids = tiny_tokenizer("ab==cd", add_special_tokens=False)["input_ids"]
    assert stop_end(tiny_tokenizer, ids, ["=="]) == 4
    assert stop_end(tiny_tokenizer, ids, ["d"]) == 6
    assert stop_end(tiny_tokenizer, ids, ["zz"]) is None
    assert stop_end(tiny_tokenizer, [], ["a"]) is None
