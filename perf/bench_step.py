"""Time one RL step (generation + reward + update) of limr against TRL on the same tiny model.

Every contender gets the same work: a random Qwen2 of about 1M parameters (hidden 128, 4 layers,
4 heads, 2 kv heads, intermediate 512, vocab 256, fp32), 16 prompts x 8 samples, 16 new tokens at
temperature 1, a rule reward, one optimiser step per RL step, the same micro-batch size, the same
torch thread count. A step's time is the wall clock between the ends of consecutive steps, so
each framework's own per-step overhead (logging, callbacks, scheduling) is in it; the figure is the
median over the steps after the warm-up.

    ours GRPO      limr train, ppo.estimator=grpo, no KL (TRL's default beta is 0)
    ours PPO       limr train, ppo.estimator=gae: critic, frozen reference, KL 0.01 in the reward
    TRL GRPO       GRPOTrainer with its defaults (gradient checkpointing on) and with it off
    TRL PPO        PPOTrainer, one PPO epoch (TRL <= 1.12 only: PPO left TRL in 1.13), with a
                   reward model (it takes no rule reward) and a value model
    floor          bare ``generate`` of the same 128 x 16 tokens, and a bare forward + backward +
                   AdamW step over the 128 sequences: what no framework can go below

TRL goes in the ``bench`` extra (``pip install -e '.[bench]'``). GRPOTrainer and PPOTrainer live
in different TRL releases, so the PPO peer can run under another interpreter in the same run
(that venv needs only torch, transformers and TRL 1.12):

    python3 -m venv /tmp/venv-trl112
    /tmp/venv-trl112/bin/pip install torch==2.13.0 'trl==1.12.*'
    python perf/bench_step.py --ppo-python /tmp/venv-trl112/bin/python

``--threads`` defaults to 2; on a machine whose cores are shared with other work, 2 OpenMP threads
can wait on each other for a whole time slice per parallel region (steps several times slower
and erratic), and ``--threads 1`` gives steadier figures for every contender alike.

Run it from the repository root. Figures go to stdout (and to ``--json``); nothing asserts on
them. A TRL peer that cannot be imported is reported as such, not skipped silently.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the working tree's limr, not an installed copy

import torch  # noqa: E402

N_PROMPTS, N_SAMPLES, NEW_TOKENS, VOCAB = 16, 8, 16, 256
SEED = 0


# ---------------------------------------------------------------------------------------------
# The shared task: tiny model, tokenizer, prompts, reward


def make_tokenizer() -> Any:
    """A character-level tokenizer of exactly 256 ids (pad 0, eos 1), built offline."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in map(chr, range(32, 127)):
        vocab[c] = len(vocab)
    while len(vocab) < VOCAB:
        vocab[f"<x{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
        padding_side="left",
    )  # fmt: skip


def model_config() -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=VOCAB, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=512, max_position_embeddings=256,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=1,
    )  # fmt: skip


def make_model_dir(path: Path) -> Path:
    """The tiny random policy (seeded) and its tokenizer as a Hugging Face folder."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(model_config())
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


def make_prompts() -> list[tuple[str, str]]:
    """16 (problem, answer) pairs."""
    return [(f"{3 * i + 1}+{7 * i + 2}=", str(10 * i + 3)) for i in range(N_PROMPTS)]


def contains_reward(completion: str, answer: str) -> float:
    """1 when the completion contains the answer, else 0: the same cheap rule for everyone."""
    return float(answer in completion)


def _median_after_warmup(ends: list[float], warmup: int) -> tuple[float, list[float]]:
    """Median time of the steps after the first ``warmup`` (>= 1: step 1 has no start mark)."""
    periods = [b - a for a, b in zip(ends, ends[1:])]  # periods[k] = time of step k + 2
    kept = periods[warmup - 1 :]
    return statistics.median(kept), kept


# ---------------------------------------------------------------------------------------------
# limr


def bench_ours(estimator: str, args: argparse.Namespace, model_dir: Path, tmp: Path) -> dict:
    import lightning as L

    from limr.config import load_config
    from limr.registry import REWARDS, register_reward
    from limr.train import train
    from limr.types import Scores

    if "bench_contains" not in REWARDS:

        @register_reward("bench_contains")
        class _Contains:
            def __call__(self, responses, answers, finished, extras):  # noqa: ARG002
                r = torch.tensor([contains_reward(c, a) for c, a in zip(responses, answers)])
                return Scores(rewards=r, correct=r > 0)

    data = tmp / "prompts.jsonl"
    with open(data, "w") as f:
        for i, (problem, answer) in enumerate(make_prompts()):
            f.write(json.dumps({"id": f"b{i}", "problem": problem, "answer": answer}) + "\n")

    class Ends(L.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, *a: Any, **k: Any) -> None:  # noqa: ARG002
            self.ends.append(time.perf_counter())

    steps = args.warmup + args.steps
    run = tmp / f"run-{estimator}"
    overrides = {
        "model.name_or_path": str(model_dir),
        "data.train": str(data),
        "reward.name": "bench_contains",
        "sampler.n_samples": N_SAMPLES,
        "sampler.max_new_tokens": NEW_TOKENS,
        "sampler.temperature": 1.0,
        "sampler.top_p": 1.0,
        "sampler.kwargs": "{batch_size: 64}",
        "ppo.estimator": estimator,
        "ppo.kl_coef": 0.0 if estimator == "grpo" else 0.01,
        "ppo.rollout_batch_size": N_PROMPTS,
        "ppo.train_batch_size": N_PROMPTS * N_SAMPLES,
        "ppo.micro_batch_size": args.micro_batch,
        "ppo.actor_lr": 1e-6,
        "ppo.critic_lr": 1e-5,
        "ppo.warmup_steps": 0,
        "ppo.old_logprobs": args.old_logprobs,
        "trainer.accelerator": "cpu",
        "trainer.max_steps": steps,
        "trainer.checkpoint_every": 10**6,
        "trainer.num_threads": args.threads,
        "trainer.progress": False,
        "trainer.log_every": 1,
        "run.run_dir": str(run),
        "run.seed": SEED,
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    ends = Ends()
    train(cfg, callbacks=[ends])
    median, kept = _median_after_warmup(ends.ends, args.warmup)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    lines = lines[args.warmup :]
    stages = sorted({k for line in lines for k in line if k.startswith("time/")})
    breakdown = {k[5:]: statistics.median(line[k] for line in lines) for k in stages}
    return {"median_s": median, "steps_s": kept, "stages_s": breakdown}


# ---------------------------------------------------------------------------------------------
# TRL


def _trl_timer() -> Any:
    from transformers import TrainerCallback

    class Ends(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, *a: Any, **k: Any) -> None:  # noqa: ARG002
            self.ends.append(time.perf_counter())

    return Ends()


def bench_trl_grpo(args: argparse.Namespace, model_dir: Path, tmp: Path, gc: bool | None) -> dict:
    """GRPOTrainer, one optimiser step per generation of 16 prompts x 8 samples.

    ``gc=None`` keeps TRL's default for gradient checkpointing (on). bf16 is off: the model is
    fp32 for everyone (TRL's default would autocast to bf16).
    """
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    answers = dict(make_prompts())

    def reward(prompts: list[str], completions: list[str], **kw: Any) -> list[float]:  # noqa: ARG001
        return [contains_reward(c, answers[p]) for p, c in zip(prompts, completions)]

    steps = args.warmup + args.steps
    extra = {} if gc is None else {"gradient_checkpointing": gc}
    config = GRPOConfig(
        output_dir=str(tmp / "trl-grpo"), max_steps=steps, seed=SEED, use_cpu=True, bf16=False,
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=N_PROMPTS * N_SAMPLES // args.micro_batch,
        num_generations=N_SAMPLES, max_completion_length=NEW_TOKENS, temperature=1.0, top_p=1.0,
        learning_rate=1e-6, report_to="none", save_strategy="no", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, **extra,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dataset = Dataset.from_dict({"prompt": [p for p, _ in make_prompts()]})
    timer = _trl_timer()
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=config, train_dataset=dataset,
        processing_class=make_tokenizer(), callbacks=[timer],
    )  # fmt: skip
    trainer.train()
    median, kept = _median_after_warmup(timer.ends, args.warmup)
    return {"median_s": median, "steps_s": kept, "trl": trl.__version__,
            "gradient_checkpointing": bool(config.gradient_checkpointing)}  # fmt: skip


def bench_trl_ppo(args: argparse.Namespace, model_dir: Path, tmp: Path) -> dict:
    """PPOTrainer (TRL <= 1.12): 128 rollouts (the 16 prompts x 8) per update, one PPO epoch."""
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        from trl.experimental.ppo import PPOConfig, PPOTrainer
    except ImportError:
        from trl import PPOConfig, PPOTrainer  # older layout

    tok = make_tokenizer()
    rollouts = N_PROMPTS * N_SAMPLES
    steps = args.warmup + args.steps
    config = PPOConfig(
        output_dir=str(tmp / "trl-ppo"), seed=SEED, use_cpu=True, bf16=False,
        per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=rollouts // args.micro_batch, num_mini_batches=1,
        num_ppo_epochs=1, total_episodes=rollouts * steps, response_length=NEW_TOKENS,
        temperature=1.0, learning_rate=1e-6, report_to="none", save_strategy="no",
        logging_steps=1, disable_tqdm=True, num_sample_generations=0, kl_coef=0.01,
        local_rollout_forward_batch_size=rollouts, stop_token="eos",
    )  # fmt: skip

    def load(cls: Any, **kw: Any) -> Any:
        return cls.from_pretrained(model_dir, dtype=torch.float32, **kw)

    policy, ref = load(AutoModelForCausalLM), load(AutoModelForCausalLM)
    value = load(AutoModelForSequenceClassification, num_labels=1)
    reward_model = load(AutoModelForSequenceClassification, num_labels=1)
    ids = [tok(p)["input_ids"] for p, _ in make_prompts() for _ in range(N_SAMPLES)]
    dataset = Dataset.from_dict({"input_ids": ids})
    timer = _trl_timer()
    trainer = PPOTrainer(
        args=config, processing_class=tok, model=policy, ref_model=ref,
        reward_model=reward_model, value_model=value, train_dataset=dataset, callbacks=[timer],
    )  # fmt: skip
    trainer.train()
    median, kept = _median_after_warmup(timer.ends, args.warmup)
    return {"median_s": median, "steps_s": kept, "trl": trl.__version__}


# ---------------------------------------------------------------------------------------------
# The floor


def bench_floor(args: argparse.Namespace, model_dir: Path) -> dict:
    """Bare generate of 128 x 16 tokens; bare forward + backward + AdamW over those sequences."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = make_tokenizer()
    enc = tok([p for p, _ in make_prompts()], return_tensors="pt", padding=True)
    reps = args.warmup + args.steps

    def generate() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(
                **enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                max_new_tokens=NEW_TOKENS, num_return_sequences=N_SAMPLES, pad_token_id=0,
            )  # fmt: skip

    model.eval()
    gen_times = []
    for _ in range(reps):
        t = time.perf_counter()
        seqs = generate()
        gen_times.append(time.perf_counter() - t)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    attention = torch.ones_like(seqs)
    upd_times = []
    for _ in range(reps):
        t = time.perf_counter()
        logits = model(input_ids=seqs, attention_mask=attention).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), seqs[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        upd_times.append(time.perf_counter() - t)
    g = statistics.median(gen_times[args.warmup :])
    u = statistics.median(upd_times[args.warmup :])
    return {"generate_s": g, "update_s": u, "median_s": g + u, "sequences": list(seqs.shape)}


# ---------------------------------------------------------------------------------------------


def _run_peer(python: str, args: argparse.Namespace) -> dict:
    """The TRL PPO peer under another interpreter (a venv with TRL <= 1.12)."""
    cmd = [python, str(Path(__file__).resolve()), "--only", "trl-ppo", "--json", "-",
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
           str(args.threads), "--micro-batch", str(args.micro_batch)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return {"error": f"{python} failed: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])["trl-ppo"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=8, help="measured steps (after the warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="steps not measured")
    p.add_argument("--rounds", type=int, default=1,
                   help="run all contenders this many times (figures: medians)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--micro-batch", type=int, default=32, help="sequences per forward/backward")
    p.add_argument("--old-logprobs", default="auto", help="limr's ppo.old_logprobs")
    p.add_argument("--only", default="ours-grpo,ours-ppo,trl-grpo,trl-grpo-nogc,trl-ppo,floor",
                   help="comma-separated contenders")  # fmt: skip
    p.add_argument("--ppo-python", help="interpreter with TRL <= 1.12 for the TRL PPO peer")
    p.add_argument("--json", help="also write the figures here ('-': stdout, JSON only)")
    args = p.parse_args()
    if args.warmup < 1 or args.steps < 1:
        p.error(
            "--warmup and --steps must be at least 1 (a step's time runs from the previous end)"
        )
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet = args.json == "-"
    only = args.only.split(",")
    rounds: list[dict[str, Any]] = []

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    def attempt(results: dict, name: str, fn: Any, *fn_args: Any) -> None:
        if name not in only:
            return
        say(f"running {name} ...")
        try:
            results[name] = fn(*fn_args)
        except ImportError as err:
            results[name] = {"error": f"not importable here: {err}"}
        say(f"  {name}: {_fmt(results[name])}")

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model_dir = make_model_dir(tmp / "model")
        for k in range(args.rounds):
            say(f"round {k + 1} of {args.rounds}")
            r: dict[str, Any] = {}
            t = tmp / f"round-{k}"
            t.mkdir()
            attempt(r, "floor", bench_floor, args, model_dir)
            attempt(r, "ours-grpo", bench_ours, "grpo", args, model_dir, t)
            attempt(r, "ours-ppo", bench_ours, "gae", args, model_dir, t)
            attempt(r, "trl-grpo", bench_trl_grpo, args, model_dir, t, None)
            attempt(r, "trl-grpo-nogc", bench_trl_grpo, args, model_dir, t, False)
            if "trl-ppo" in only:
                if args.ppo_python:
                    say(f"running trl-ppo under {args.ppo_python} ...")
                    r["trl-ppo"] = _run_peer(args.ppo_python, args)
                    say(f"  trl-ppo: {_fmt(r['trl-ppo'])}")
                else:
                    attempt(r, "trl-ppo", bench_trl_ppo, args, model_dir, t)
            rounds.append(r)
    results = _combine(rounds)

    meta = {
        "torch": torch.__version__, "threads": args.threads, "micro_batch": args.micro_batch,
        "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
        "old_logprobs": args.old_logprobs,
    }  # fmt: skip
    if quiet:
        print(json.dumps({**results, "meta": meta}))
        return 0
    print()
    print(_report(results, rounds, meta))
    if args.json:
        out = {**results, "rounds": rounds, "meta": meta}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per contender: the median over rounds of its per-round median (and of its stages)."""
    out: dict[str, Any] = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds if name in r and "error" not in r[name]]
        if not runs:
            out[name] = rounds[0][name]
            continue
        combined = dict(runs[0])
        for key in ("median_s", "generate_s", "update_s"):
            if key in combined:
                combined[key] = statistics.median(x[key] for x in runs)
        if "stages_s" in combined:
            combined["stages_s"] = {
                k: statistics.median(x["stages_s"][k] for x in runs) for k in combined["stages_s"]
            }
        combined["rounds_s"] = [x["median_s"] for x in runs]
        out[name] = combined
    return out


def _fmt(r: dict) -> str:
    if "error" in r:
        return r["error"]
    extra = f" (TRL {r['trl']})" if "trl" in r else ""
    return f"{r['median_s']:.3f} s/step{extra}"


def _report(results: dict, rounds: list[dict], meta: dict) -> str:
    def ratio(a: str, b: str) -> float | None:
        """Median over rounds of a / b, each round's pair measured minutes apart."""
        pairs = [
            r[a]["median_s"] / r[b]["median_s"]
            for r in rounds
            if a in r and b in r and "error" not in r[a] and "error" not in r[b]
        ]
        return statistics.median(pairs) if pairs else None

    lines = [
        f"one RL step, {N_PROMPTS} prompts x {N_SAMPLES} samples x {NEW_TOKENS} new tokens, "
        f"tiny Qwen2 fp32, {meta['threads']} threads, micro-batch {meta['micro_batch']}, "
        f"median of {meta['steps']} steps after {meta['warmup']} warm-up, "
        f"{meta['rounds']} round(s) (torch {meta['torch']})",
    ]
    for name, r in results.items():
        per_round = ""
        if len(r.get("rounds_s", [])) > 1:
            per_round = "  [rounds: " + ", ".join(f"{x:.3f}" for x in r["rounds_s"]) + "]"
        lines.append(f"  {name:14s} {_fmt(r)}{per_round}")
        if "stages_s" in r:
            st = ", ".join(f"{k} {v:.3f}" for k, v in r["stages_s"].items() if k != "step")
            lines.append(f"  {'':14s}   in-step stages (s): {st}")
    floor = results.get("floor")
    if floor and "error" not in floor:
        lines.append(
            f"  floor = generate {floor['generate_s']:.3f} s + update {floor['update_s']:.3f} s"
        )
    for ours, peer, target in (("ours-grpo", "trl-grpo", 0.6), ("ours-ppo", "trl-ppo", 0.5)):
        if ours not in results or "error" in results[ours]:
            continue
        parts = []
        vs_peer, vs_floor = ratio(ours, peer), ratio(ours, "floor")
        if vs_peer is not None:
            verdict = "meets" if vs_peer <= target else "misses"
            parts.append(f"{vs_peer:.3f}x {peer} ({verdict} the {target}x target)")
        else:
            parts.append(f"{peer} not measured")
        if vs_floor is not None:
            parts.append(f"{vs_floor:.3f}x the floor")
        lines.append(f"  {ours}: " + "; ".join(parts))
    nogc = ratio("ours-grpo", "trl-grpo-nogc")
    if nogc is not None:
        lines.append(f"  ours-grpo: {nogc:.3f}x trl-grpo-nogc")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
