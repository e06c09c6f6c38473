"""Throughput and agreement of limr's answer checker against math-verify's ``parse`` + ``verify``.

    .venv/bin/python perf/bench_verify.py [--limit N] [--cpu 0] [--json OUT.json]

Both checkers get the same (response, gold) pairs, built from the shipped data with a known truth:

* ``reference``: every MATH500 reference solution as the response (correct);
* ``rewritten``: "The answer is $\\boxed{...}$" with value-preserving rewrites of the shipped
  gold answers (``\\dfrac``/``\\frac``, the decimal of a terminating fraction, ``x = v``,
  ``v^\\circ``, ``\\left( a, b \\right)``, AIME's zero padding, AMC's ``27.0``) (correct);
* ``perturbed``: the reference solution with the first digit of its boxed answer changed (wrong);
* ``mismatched``: the solution of the next MATH500 problem (wrong; skipped where the two gold
  answers have the same normal form);
* ``symbolic``: absolute values and ``\\log`` without a base, which only our symbolic stage
  (math-verify in the worker) decides: the worst case of our checker;
* ``suite:<name>``: the 417 labelled cases of other projects' answer-checker test suites
  (``perf/data/checker_cases.jsonl``; sources, commits and licences in ``checker_cases.md``),
  with the label each test asserts as the truth.

The process (and the checker's worker, which inherits it) is pinned to one CPU. Our checker runs
``check(extract_boxed(response), gold)`` pair by pair with cold caches, after its worker has
started; math-verify runs ``verify(parse("\\\\boxed{" + gold + "}"), parse(response))``, its
documented use with the gold wrapped so that it parses as maths (wrapping in ``$...$`` gives the
same verdicts on MATH500 and is twice as slow here, so this is the faster baseline). Adversarial
inputs are timed separately: math-verify's 5 s timeouts would dominate its rate.

Recorded figures (2026-12-02, full run, no --limit; 2 shared CPU cores, pinned to one; Python
3.11.7, math-verify 0.9, sympy 1.14, CPU only):

    agreement with the labels      cases   ours            math-verify
    MATH-gold (all built kinds)     2560   2560 (100.0%)   2556 (99.8%)
    public suites (all)              417    406 ( 97.4%)    387 (92.8%)
    at or above math-verify on every suite; math-verify's own: 217 vs 217 of 221
    wrong answers accepted by ours and rejected by math-verify: 0
    math-verify right, ours wrong: 5 -- three equation chains whose members disagree
    (x = 5+5+1 = 7 = 11 for 11: rejected on purpose, 5 = 4 is not 4) and NeMo-Skills'
    "17 \\text{ any text}" = 17 both ways (a word after a number is not a unit)
    throughput on MATH-like responses (2440 pairs): ours 1517 checks/s, math-verify 172, 8.8 x
    needed our symbolic stage: 9.1% of the pairs
    worst case of one check, all pairs and adversarial inputs: 0.64 s (budget 2 s); in the
    calling process (2^{50000}*2^{49999})^{1/2} times out in 0.4 ms (23 s before the deadline
    was checked), twenty \\binom{99999}{49999} in 1.1 ms (math-verify: 0.78 s)

Timings move with the machine's load; agreement and accuracy do not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from fractions import Fraction


@dataclass
class Pair:
    response: str
    gold: str
    truth: bool
    kind: str


def _answers(name: str) -> list[dict]:
    from limr.prompts import shipped_path

    with open(shipped_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _text(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _perturb(text: str) -> str | None:
    m = re.search(r"\d", text)
    if m is None:
        return None
    digit = int(m.group())
    return text[: m.start()] + (str(digit + 1) if digit < 9 else "8") + text[m.end() :]


def _decimal(value: Fraction) -> str | None:
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else None


def _rewrites(gold: str) -> list[str]:
    from limr.rewards import _expr, answer

    out = []
    if "\\frac" in gold:
        out.append(gold.replace("\\frac", "\\dfrac"))
    elif "\\dfrac" in gold:
        out.append(gold.replace("\\dfrac", "\\frac"))
    if not re.search(r"=|\\in|\\approx|\\text|\\mbox", gold):
        out.append(f"x = {gold}")
    norm = answer.normalize(gold)
    parsed = answer._parsed(norm)
    if isinstance(parsed, _expr.Expr) and not parsed.variables:
        try:
            value = _expr.evaluate(parsed, {})
        except Exception:  # noqa: BLE001 - undefined golds have no numeric rewrite
            value = None
        if isinstance(value, Fraction):
            if value.denominator != 1 and (d := _decimal(value)):
                out.append(d)
            if value.denominator == 1 and re.fullmatch(r"-?\d+", gold):
                out.append(f"{gold}^\\circ")
    struct = answer._structure(norm)
    if struct and struct[0] == "()" and "\\left" not in gold:
        out.append("\\left( " + ", ".join(struct[1]) + " \\right)")
    return out


def build_pairs() -> list[Pair]:
    from limr.rewards.answer import extract_boxed, normalize

    math500 = _answers("math500")
    pairs = [Pair(r["solution"], r["answer"], True, "reference") for r in math500]
    for r in math500:
        for rewrite in _rewrites(r["answer"]):
            pairs.append(
                Pair(f"The answer is $\\boxed{{{rewrite}}}$.", r["answer"], True, "rewritten")
            )
    for name in ("aime24", "amc23"):
        for r in _answers(name):
            gold = _text(r["answer"])
            shown = str(int(gold)) if name == "aime24" else f"{float(gold):.1f}"  # 25 / 27.0
            pairs.append(Pair(f"So the answer is $\\boxed{{{shown}}}$.", gold, True, "rewritten"))
    for r in math500:
        solution = r["solution"]
        boxed = extract_boxed(solution)
        wrong = _perturb(boxed) if boxed else None
        if wrong is not None and "," not in boxed:
            last = list(re.finditer(r"\\boxed\s*\{", solution))[-1]  # the content of the last box
            at = last.end()
            if solution[at : at + len(boxed)] != boxed:
                continue  # an answer over several boxes
            response = solution[:at] + wrong + solution[at + len(boxed) :]
            pairs.append(Pair(response, r["answer"], False, "perturbed"))
    for k in range(2, 32):  # answers only the symbolic stage decides: |...|, \log without base
        pairs += [
            Pair(f"$\\boxed{{|{k}-x|}}$", f"|x-{k}|", True, "symbolic"),
            Pair(f"$\\boxed{{|x+{k}|}}$", f"|x-{k}|", False, "symbolic"),
            Pair(f"$\\boxed{{\\log {{{2**k}}}}}$", f"{k}\\log 2", True, "symbolic"),
            Pair(f"$\\boxed{{\\log {{{2**k}}}}}$", f"{k + 1}\\log 2", False, "symbolic"),
        ]
    for r, nxt in zip(math500, math500[1:] + math500[:1]):
        if normalize(nxt["answer"]) != normalize(r["answer"]):  # skip the same answer twice
            pairs.append(Pair(nxt["solution"], r["answer"], False, "mismatched"))
    return pairs


ADVERSARIAL = [
    ("\\boxed{9^{9^{9^9}}}", "5"),
    ("\\boxed{10000!}", "5"),
    ("\\boxed{" + "{" * 200_000, "5"),
    ("\\boxed{__import__('os').system('true')}", "0"),
    ("\\boxed{(2^{50000}\\cdot2^{49999})^{\\frac{1}{2}}}", "5"),  # 23 s in the caller before
    ("\\boxed{" + "+".join(["\\binom{99999}{49999}"] * 20) + "}", "5"),
]

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "checker_cases.jsonl")
MATH_LIKE = ("reference", "rewritten", "perturbed", "mismatched")
"""The kinds that stand for training rollouts on MATH: the throughput figure is theirs."""


def labelled_cases() -> list[Pair]:
    """The cases of other projects' checker test suites (perf/data/checker_cases.md)."""
    with open(CASES, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [Pair(r["pred"], r["gold"], bool(r["label"]), "suite:" + r["suite"]) for r in rows]


def run_ours(pairs: list[Pair]) -> tuple[list[bool], list[float]]:
    from limr.rewards import answer, parallel, verify

    pool = parallel.get_pool()
    pool.warm(1)
    pool.run([{"op": "check", "pred": "1", "gold": "1", "budget": 5.0}], 120.0, 1)
    answer._normalize.cache_clear()
    answer._parsed.cache_clear()
    verdicts, seconds = [], []
    for p in pairs:
        start = time.perf_counter()
        verdicts.append(
            verify.check(answer.extract_boxed(p.response), p.gold) is answer.Verdict.CORRECT
        )
        seconds.append(time.perf_counter() - start)
    return verdicts, seconds


def run_math_verify(pairs: list[Pair]) -> tuple[list[bool], list[float]]:
    from math_verify import parse, verify

    verdicts, seconds = [], []
    for p in pairs:
        start = time.perf_counter()
        verdicts.append(bool(verify(parse("\\boxed{" + p.gold + "}"), parse(p.response))))
        seconds.append(time.perf_counter() - start)
    return verdicts, seconds


def time_adversarial() -> list[dict]:
    from math_verify import parse, verify

    from limr.rewards import answer
    from limr.rewards import verify as ours_verify

    out = []
    for response, gold in ADVERSARIAL:
        start = time.perf_counter()
        ours = ours_verify.check(answer.extract_boxed(response), gold).value
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        try:
            theirs = bool(verify(parse("\\boxed{" + gold + "}"), parse(response)))
        except BaseException as err:  # noqa: BLE001 - report whatever happens
            theirs = f"{type(err).__name__}"
        t_theirs = time.perf_counter() - start
        out.append(
            {
                "response": response[:40] + ("..." if len(response) > 40 else ""),
                "ours": ours,
                "ours_s": round(t_ours, 4),
                "math_verify": theirs,
                "math_verify_s": round(t_theirs, 4),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, help="use only the first N pairs of each kind")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: first)")
    parser.add_argument("--no-adversarial", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # math-verify logs every timeout
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})  # the checker's worker inherits this
    pairs = build_pairs() + labelled_cases()
    if args.limit:
        seen: dict[str, int] = {}
        limited = []
        for p in pairs:
            seen[p.kind] = seen.get(p.kind, 0) + 1
            if seen[p.kind] <= args.limit:
                limited.append(p)
        pairs = limited
    import math_verify  # noqa: F401 - imports are not timed

    import limr.rewards.answer  # noqa: F401

    ours, s_ours = run_ours(pairs)
    theirs, s_theirs = run_math_verify(pairs)
    n = len(pairs)
    kinds = sorted({p.kind for p in pairs})
    math_like = [i for i, p in enumerate(pairs) if p.kind in MATH_LIKE]

    def rate(idx: list[int], seconds: list[float]) -> float:
        return round(len(idx) / max(1e-9, sum(seconds[i] for i in idx)), 1)

    sets = {"MATH-gold (all built kinds)": [i for i, p in enumerate(pairs) if ":" not in p.kind]}
    sets["public suites (all)"] = [i for i, p in enumerate(pairs) if p.kind.startswith("suite:")]
    sets.update({k: [i for i, p in enumerate(pairs) if p.kind == k] for k in kinds})
    labelled = {
        name: {
            "cases": len(idx),
            "ours": sum(ours[i] == pairs[i].truth for i in idx),
            "math_verify": sum(theirs[i] == pairs[i].truth for i in idx),
        }
        for name, idx in sets.items()
        if idx
    }
    figures = {
        "pairs": n,
        "kinds": {k: sum(p.kind == k for p in pairs) for k in kinds},
        "math_like_checks_per_s": {
            "ours": rate(math_like, s_ours),
            "math_verify": rate(math_like, s_theirs),
        },
        "checks_per_s_by_kind": {
            k: {"ours": rate(idx, s_ours), "math_verify": rate(idx, s_theirs)}
            for k in kinds
            if (idx := [i for i, p in enumerate(pairs) if p.kind == k])
        },
        "ours_symbolic_share": round(
            sum(
                limr.rewards.answer.check_local(
                    limr.rewards.answer.extract_boxed(p.response), p.gold
                )
                is None
                for p in pairs
            )
            / n,
            4,
        ),
        "agreement_with_labels": labelled,
        "wrong_accepted_by_ours_rejected_by_math_verify": [
            {
                "kind": p.kind,
                "gold": p.gold,
                "pred": (limr.rewards.answer.extract_boxed(p.response) or "")[:80],
            }
            for p, o, t in zip(pairs, ours, theirs)
            if o and not t and not p.truth
        ],
        "math_verify_right_ours_wrong": [
            {
                "kind": p.kind,
                "gold": p.gold,
                "pred": (limr.rewards.answer.extract_boxed(p.response) or "")[:80],
                "truth": p.truth,
            }
            for p, o, t in zip(pairs, ours, theirs)
            if t == p.truth and o != p.truth
        ],
        "ours_slowest_check_s": round(max(s_ours), 4),
        "budget_s": limr.rewards.answer.DEFAULT_TIMEOUT,
    }
    speedup = (
        figures["math_like_checks_per_s"]["ours"] / figures["math_like_checks_per_s"]["math_verify"]
    )
    figures["math_like_speedup"] = round(speedup, 2)
    if not args.no_adversarial:
        figures["adversarial"] = time_adversarial()
    worst = max(
        [figures["ours_slowest_check_s"]] + [a["ours_s"] for a in figures.get("adversarial", [])]
    )
    figures["ours_worst_case_s"] = worst
    print(f"{n} pairs on one CPU: {figures['kinds']}")
    print("agreement with the labels (cases; ours; math-verify 0.9):")
    for name, row in labelled.items():
        mark = "" if row["ours"] >= row["math_verify"] else "   <-- below math-verify"
        share = {k: 100 * row[k] / row["cases"] for k in ("ours", "math_verify")}
        print(f"  {name:<30} {row['cases']:>5}  {row['ours']:>5} ({share['ours']:5.1f}%)"
              f"  {row['math_verify']:>5} ({share['math_verify']:5.1f}%){mark}")  # fmt: skip
    print(f"wrong answers accepted by ours and rejected by math-verify: "
          f"{len(figures['wrong_accepted_by_ours_rejected_by_math_verify'])}")  # fmt: skip
    for d in figures["wrong_accepted_by_ours_rejected_by_math_verify"]:
        print(f"  {d}")
    print(f"math-verify right, ours wrong ({len(figures['math_verify_right_ours_wrong'])}):")
    for d in figures["math_verify_right_ours_wrong"]:
        print(f"  {d}")
    mls = figures["math_like_checks_per_s"]
    print(f"throughput on MATH-like responses ({len(math_like)} pairs): ours {mls['ours']} "
          f"checks/s, math-verify {mls['math_verify']} checks/s, "
          f"{figures['math_like_speedup']} x")  # fmt: skip
    print(f"checks/s by kind: {figures['checks_per_s_by_kind']}")
    print(f"needed the symbolic stage (worker): {100 * figures['ours_symbolic_share']:.1f}%")
    for a in figures.get("adversarial", []):
        print(f"  adversarial {a}")
    print(f"worst case of one check (ours, all pairs and adversarial): {worst:.3f} s "
          f"(budget {figures['budget_s']} s)")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
