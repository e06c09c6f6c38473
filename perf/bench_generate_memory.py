"""Peak memory of the hf sampler's ``decoder=generate`` log-probs: every step's logits stacked
into one float32 [b*n, T, V] tensor (the code before 2026-12-02, restated below as the peer)
against limr's ``HFSampler._generate``, which takes them one step at a time.

The model has SmolLM2-135M's vocabulary and widths (vocab 49152, hidden 576, 9 heads, 3 kv
heads) but 2 layers (random weights: the logits' memory is the same, the run is quick); 4
prompts x 4 samples, 128 new tokens, sampling at temperature 1, on the CPU, one torch thread.
Each variant runs in a fresh subprocess and reports its peak resident set (``VmHWM``; glibc
told to map every block over 1 MiB on its own, so freed tensors leave the resident set):

    generate alone   transformers' generate with output_logits=True, nothing else: the floor
                     (generate's own copy of every step's logits)
    stacked (peer)   the floor + torch.stack(...).float(), / temperature, log_softmax, gather
    per step (limr)  HFSampler._generate

    .venv/bin/python perf/bench_generate_memory.py [--dtype float32|bfloat16]

Measured 2026-12-02 on this project's 2-core machine (about a minute per dtype):

    == decoder=generate log-probs: 16 rows x 128 new tokens x vocab 49,152, float32 model
       (generate's logits: 384 MiB)
       variant             peak MiB  above generate
       generate alone           906
       stacked (peer)         1,655             749
       per step (limr)          909               4
    == the same, bfloat16 model (generate's logits: 192 MiB)
       generate alone           828
       stacked (peer)         1,582             754
       per step (limr)          829               1

The stacked peer held about 2 float32 copies of the logits above generate's own (3x that copy
in all for a float32 model, 4.9x for bf16); per step, one step's row of logits at a time.
Figures go to stdout; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
SHAPE = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
    tie_word_embeddings=True, pad_token_id=2, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
PROMPTS, SAMPLES, PROMPT_LEN, NEW = 4, 4, 32, 128

CHILD = r"""
import json, sys
import torch
torch.set_num_threads(1)
from transformers import LlamaConfig, LlamaForCausalLM
variant, dtype, shape, prompts, samples, prompt_len, new = sys.argv[1:8]
shape = json.loads(shape); prompts, samples, prompt_len, new = map(int, (prompts, samples,
                                                                         prompt_len, new))
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(**shape)).to(getattr(torch, dtype)).eval()
ids = torch.randint(3, shape["vocab_size"], (prompts, prompt_len))
enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

def hwm():
    with open("/proc/self/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith("VmHWM"))) * 1024

base = hwm()
kw = dict(do_sample=True, temperature=1.0, top_p=None, top_k=0, max_new_tokens=new,
          min_new_tokens=new, num_return_sequences=samples, return_dict_in_generate=True,
          output_logits=True, pad_token_id=2, eos_token_id=[2])
with torch.no_grad():
    if variant == "alone":
        out = model.generate(**enc, **kw)
        T = out.sequences.shape[1] - prompt_len
    elif variant == "stacked":
        out = model.generate(**enc, **kw)
        resp = out.sequences[:, prompt_len:]
        logits = torch.stack(out.logits, 1).float()
        logits = logits / 1.0
        lp = torch.log_softmax(logits, -1).gather(-1, resp.unsqueeze(-1)).squeeze(-1)
        T = resp.shape[1]
    else:
        from types import SimpleNamespace
        from limr.samplers.hf import HFSampler
        tok = SimpleNamespace(pad_token_id=2, eos_token_id=2)
        model.generation_config.min_new_tokens = new
        resp, lp = HFSampler(model, tok, decoder="generate")._generate(enc, samples, 1.0, 1.0,
                                                                      new, ())
        T = resp.shape[1]
print(json.dumps({"base": base, "peak": hwm(), "T": int(T)}))
"""


def run(variant: str, dtype: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": str(MiB),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    args = [variant, dtype, json.dumps(SHAPE), *map(str, (PROMPTS, SAMPLES, PROMPT_LEN, NEW))]
    out = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    rows = PROMPTS * SAMPLES
    width = 2 if args.dtype == "bfloat16" else 4
    copy_mib = rows * NEW * SHAPE["vocab_size"] * width / MiB
    print(
        f"== decoder=generate log-probs: {rows} rows x {NEW} new tokens x vocab "
        f"{SHAPE['vocab_size']:,}, {args.dtype} model (generate's logits: {copy_mib:,.0f} MiB)"
    )
    print(f"   {'variant':<18}{'peak MiB':>10}{'above generate':>16}")
    figures = {}
    for variant, label in (("alone", "generate alone"), ("stacked", "stacked (peer)"),
                           ("limr", "per step (limr)")):  # fmt: skip
        r = run(variant, args.dtype)
        assert r["T"] == NEW, r
        figures[variant] = r["peak"] / MiB
        extra = "" if variant == "alone" else f"{figures[variant] - figures['alone']:>16,.0f}"
        print(f"   {label:<18}{figures[variant]:>10,.0f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
