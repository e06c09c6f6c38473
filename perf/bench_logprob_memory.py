"""Peak memory of one forward + backward of ``limr.forward.sequence_logprobs``, unchunked (the
[N, T, V] float32 logits whole) against chunked (the head on a few positions at a time under
activation checkpointing), on a SmolLM2-135M-shaped model.

The model is built from a LlamaConfig with SmolLM2-135M's numbers (hidden 576, 30 layers, 9 heads,
3 kv heads, intermediate 1536, vocab 49152, tied embeddings; random weights: the memory is the
same), float32 on the CPU, one torch thread. The batch is a micro-batch of 8 rows x (64 prompt +
256 response) tokens, some prompts left-padded. Each variant runs in a fresh subprocess, which
reports its peak resident set (``VmHWM``) after building the model and after the step (glibc told
to map every block over 1 MiB on its own, so that freed tensors leave the resident set at once):

    model alone      build the model and a batch, nothing else
    unchunked        ``chunk_size=0``: the path before the chunking
    chunked          ``chunk_size=None``: the default (chunks of at most 64 MiB of float32 logits)
    chunked small    ``chunk_size=8``

The slope of the peak in the chunk size (default against 8) gives how many float32 copies of a
chunk's logits are live at the peak, and the unchunked peak above the extrapolated no-logits
floor how many copies of the whole logits; the 7B estimate uses those counts.

With ``--backbone-checkpointing`` the backbone's layers also run under gradient checkpointing
(``model.gradient_checkpointing_enable()``), which takes its activations out of the figures and
leaves mostly the logits. The entropy is computed as the update computes it by default (detached,
for logging; ``--entropy grad`` for an entropy bonus). At the end, an estimate (bytes arithmetic,
not a measurement) of the logits' memory of a 7B model at the paper's micro-batch.

    .venv/bin/python perf/bench_logprob_memory.py [--backbone-checkpointing] [--json out.json]

Run it from the repository root; it takes about a minute per variant (4-5 minutes in all) on one
core. Figures go to stdout; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
GiB = 2**30

# SmolLM2-135M (HuggingFaceTB/SmolLM2-135M config.json)
SMOLLM2 = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
    pad_token_id=2, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
ROWS, PROMPT, RESPONSE = 8, 64, 256
SMALL_CHUNK = 8
VARIANTS = {  # name: label (the model's alone has none)
    "model": "",
    "unchunked": "unchunked (before: 1 x {T} positions)",
    "chunked": "chunked (after: {chunk} pos/chunk)",
    "small": "chunked ({chunk} pos/chunk)",
}
# Qwen2.5-Math-7B at the paper's micro-batch (for the estimate only)
BIG = {"name": "Qwen2.5-Math-7B", "vocab": 152064, "hidden": 3584, "rows": 4, "response": 4096}


def _vm(key: str) -> int:
    """A ``/proc/self/status`` figure in bytes (VmHWM: peak resident set, VmRSS: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(variant: str, entropy: str, backbone_checkpointing: bool) -> dict:
    """One variant, in this (fresh) process."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from limr.forward import default_chunk_size, sequence_logprobs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2, attn_implementation="sdpa")).float()
    model.train()
    if backbone_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, SMOLLM2["vocab_size"], (ROWS, PROMPT + RESPONSE), generator=g)
    mask = torch.ones_like(ids)
    mask[::2, : PROMPT // 4] = 0  # every other prompt left-padded by a quarter
    ids[mask == 0] = SMOLLM2["pad_token_id"]
    out = {
        "variant": variant,
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_hwm": _vm("VmHWM"),
    }
    if variant == "model":
        return out
    chunk = {"unchunked": 0, "chunked": None, "small": SMALL_CHUNK}[variant]
    with_entropy = {"none": False, "log": True, "grad": "grad"}[entropy]
    t0 = time.perf_counter()
    lp, ent = sequence_logprobs(model, ids, mask, RESPONSE, 1.0, with_entropy, chunk_size=chunk)
    loss = lp.mean() + (ent.mean() if entropy == "grad" else 0)
    loss.backward()
    out["seconds"] = time.perf_counter() - t0
    out["step_hwm"] = _vm("VmHWM")
    default = default_chunk_size(ROWS, SMOLLM2["vocab_size"])
    out["chunk"] = RESPONSE if chunk == 0 else default if chunk is None else chunk
    out["loss"] = float(loss)
    out["grad_norm"] = float(
        torch.sqrt(
            sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None)
        )
    )
    return out


def run_child(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--entropy", args.entropy]
    if args.backbone_checkpointing:
        cmd.append("--backbone-checkpointing")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error",
           # glibc: every block over 1 MiB its own mapping, unmapped when freed (no dynamic
           # threshold, no trimming lag), so the resident set follows the live tensors
           "MALLOC_MMAP_THRESHOLD_": str(MiB), "MALLOC_TRIM_THRESHOLD_": str(MiB)}  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"variant {variant} failed with status {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - t0
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--entropy", choices=["none", "log", "grad"], default="log")
    ap.add_argument("--backbone-checkpointing", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.entropy, args.backbone_checkpointing)))
        return

    sys.path.insert(0, str(ROOT))
    from limr.forward import LOGITS_CHUNK_BYTES, default_chunk_size

    t0 = time.perf_counter()
    results = {v: run_child(v, args) for v in VARIANTS}
    base = results["model"]["model_hwm"]
    V = SMOLLM2["vocab_size"]
    one = ROWS * V * 4  # bytes of one position's float32 logits over the micro-batch
    copy = RESPONSE * one
    r0 = results["model"]
    print(f"SmolLM2-135M-shaped Llama ({r0['parameters'] / 1e6:.1f}M parameters, float32, CPU, "
          f"1 thread), micro-batch {ROWS} x ({PROMPT} prompt + {RESPONSE} response) tokens, "
          f"entropy={args.entropy}, backbone gradient checkpointing "
          f"{'on' if args.backbone_checkpointing else 'off'}")  # fmt: skip
    print(f"one float32 copy of the response logits [N, T, V] = {ROWS} x {RESPONSE} x {V} x 4 B "
          f"= {copy / MiB:.0f} MiB")  # fmt: skip
    print()
    print(f"{'variant':<40}{'peak RSS':>12}{'above model':>14}{'step s':>9}  loss / grad norm")
    print(f"{'model alone (+ batch)':<40}{base / MiB:>8.0f} MiB")
    for v in list(VARIANTS)[1:]:
        r = results[v]
        label = VARIANTS[v].format(chunk=r["chunk"], T=RESPONSE)
        print(f"{label:<40}{r['step_hwm'] / MiB:>8.0f} MiB"
              f"{(r['step_hwm'] - base) / MiB:>10.0f} MiB{r['seconds']:>9.1f}"
              f"  {r['loss']:.6f} / {r['grad_norm']:.6f}")  # fmt: skip
    before, after, small = (results[v]["step_hwm"] for v in ("unchunked", "chunked", "small"))
    c_after, c_small = results["chunked"]["chunk"], results["small"]["chunk"]
    print(f"peak saved by chunking: {(before - after) / MiB:.0f} MiB at the default chunk, "
          f"{(before - small) / MiB:.0f} MiB at {c_small} positions per chunk")  # fmt: skip
    # live float32 copies of one chunk's logits at the peak: the slope of peak RSS in chunk size
    k_after = (after - small) / ((c_after - c_small) * one) if c_after > c_small else float("nan")
    floor = small - k_after * c_small * one  # extrapolated: no logits at all
    k_before = (before - floor) / copy
    print(f"fitted: the chunked peak grows by {k_after:.1f} float32 copies of a chunk's logits; "
          f"the unchunked one is {k_before:.1f} copies of the whole logits above that")  # fmt: skip

    B = BIG
    big_chunk = default_chunk_size(B["rows"], B["vocab"])
    big_copy = B["rows"] * B["response"] * B["vocab"] * 4
    big_per_chunk = B["rows"] * big_chunk * B["vocab"] * 4
    hidden = B["rows"] * B["response"] * B["hidden"] * 2
    print()
    print(
        f"ESTIMATE (bytes arithmetic, not measured): {B['name']} (vocab {B['vocab']:,}, "
        f"hidden {B['hidden']:,}), micro-batch {B['rows']} x {B['response']:,} response tokens"
    )
    print(
        f"  one float32 copy of the logits {B['rows']} x {B['response']} x {B['vocab']} x 4 B"
        f" = {big_copy / GiB:.2f} GiB before; after, one chunk of {big_chunk} positions "
        f"(LOGITS_CHUNK_BYTES {LOGITS_CHUNK_BYTES // MiB} MiB) = {big_per_chunk / MiB:.0f} MiB"
    )
    if k_after > 0 and k_before > 0:
        print(
            f"  with the copy counts fitted above: before ~{k_before * big_copy / GiB:.0f} GiB, "
            f"after ~{k_after * big_per_chunk / GiB:.1f} GiB for the logits"
        )
    print(f"  either way the bf16 hidden states [N, T, H] = {hidden / MiB:.0f} MiB are kept")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "copy_bytes": copy}, indent=2))


if __name__ == "__main__":
    main()
