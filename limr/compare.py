"""Agreement of two per-prompt score files: rank correlations, top-k overlap, a scatter plot.

Used by ``limr compare-scores A B`` and by the cheap-LIM study (issue 11): how well does a cheap
estimator (LIM from a prefix of epochs, a pass-ratio probe, a subsample) rank the prompts as full
LIM does? Numpy only (no torch, no scipy needed).

- Spearman's rho: Pearson correlation of the average ranks (ties share the mean of their ranks,
  as scipy's ``spearmanr``).
- Kendall's tau-b (ties corrected, as scipy's ``kendalltau`` default), in O(n log^2 n): the
  discordant pairs are the inversions of B's ranks once the prompts are sorted by (A, B),
  counted by a vectorised bottom-up merge (Knight 1966).
- top-k overlap: |top_k(A) & top_k(B)| / k and the Jaccard index of the two top-k sets (ties at
  the cut broken by the prompts' order in A, then id).

Non-finite scores are ranks like any other (-inf lowest, +inf highest); prompts scored in only
one file are left out and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LIMR_KEPT_FRACTION = 1389 / 8523
"""The fraction of the pool LIMR's released selection keeps: the default top-k."""


def average_ranks(x: Any) -> np.ndarray:
    """1-based ranks of ``x`` [n], ties sharing the mean of their ranks (float64)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(x, kind="stable")
    sx = x[order]
    # group boundaries of equal values (nan-free input assumed; -inf == -inf is a tie)
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = sx[1:] != sx[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    group = np.cumsum(new) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman's rho of two equal-length score arrays (nan when either is constant or n < 2)."""
    ra, rb = average_ranks(a), average_ranks(b)
    if len(ra) != len(rb):
        raise ValueError(f"spearman: lengths differ ({len(ra)} and {len(rb)})")
    if len(ra) < 2:
        return math.nan
    ra = ra - ra.mean()
    rb = rb - rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / den if den > 0 else math.nan


def _tie_pairs(x: np.ndarray) -> int:
    """Pairs of equal values in ``x``."""
    if len(x) == 0:
        return 0
    _, counts = np.unique(x, return_counts=True)
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def count_inversions(y: Any) -> int:
    """Pairs i < j with y[i] > y[j] (strictly), for integer-valued ``y``; vectorised merge."""
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    if n < 2:
        return 0
    span = int(y.max() - y.min()) + 1
    y = y - y.min()
    total = 0
    width = 1
    cur = y.copy()  # made of sorted blocks of length `width`
    idx = np.arange(n, dtype=np.int64)
    while width < n:
        pair = idx // (2 * width)  # which pair of blocks each position is in
        right = (idx // width) % 2 == 1
        left_keys = pair[~right] * span + cur[~right]  # globally sorted (blocks are)
        r_pair = pair[right]
        # left elements of the same pair that are > r: end of the pair's left block minus
        # the count of left keys <= pair*span + r
        pos = np.searchsorted(left_keys, r_pair * span + cur[right], side="right")
        left_end = np.searchsorted(left_keys, (r_pair + 1) * span, side="left")
        total += int((left_end - pos).sum())
        cur = np.sort(pair * span + cur) - pair * span  # merge each pair of blocks
        width *= 2
    return total


def kendall_tau_b(a: Any, b: Any) -> float:
    """Kendall's tau-b of two equal-length arrays (nan when either is constant or n < 2)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"kendall: lengths differ ({len(a)} and {len(b)})")
    n = len(a)
    if n < 2:
        return math.nan
    order = np.lexsort((b, a))  # by a, then b
    _, rb = np.unique(b, return_inverse=True)
    n0 = n * (n - 1) // 2
    n1 = _tie_pairs(a)
    n2 = _tie_pairs(b)
    pairs = np.stack([a, b], axis=1)
    _, joint_counts = np.unique(pairs, axis=0, return_counts=True)
    joint_counts = joint_counts.astype(np.int64)
    n3 = int((joint_counts * (joint_counts - 1) // 2).sum())
    discordant = count_inversions(rb.reshape(-1)[order])
    den = math.sqrt(float(n0 - n1) * float(n0 - n2))
    if den == 0:
        return math.nan
    return (n0 - n1 - n2 + n3 - 2 * discordant) / den


def top_k(ids: list[str], scores: np.ndarray, k: int) -> list[str]:
    """The ``k`` ids with the highest scores (ties in the given order)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [ids[j] for j in order[:k].tolist()]


def jaccard(x: set, y: set) -> float:
    """|x & y| / |x | y| (1.0 for two empty sets)."""
    union = len(x | y)
    return len(x & y) / union if union else 1.0


@dataclass
class Agreement:
    """How two score files agree over the prompts both scored.

    Attributes:
        n_common: prompts scored in both; only_a / only_b: scored in one file only.
        spearman, kendall: rank correlations over the common prompts (nan if undefined).
        top_k: {k: {"overlap": |A_k & B_k| / k, "jaccard": J(A_k, B_k), "shared": |A_k & B_k|}}.
        nonfinite: common prompts whose score is not finite in A or B (ranked, not plotted).
    """

    n_common: int
    only_a: int
    only_b: int
    spearman: float
    kendall: float
    top_k: dict[int, dict[str, float]] = field(default_factory=dict)
    nonfinite: int = 0
    ids: list[str] = field(default_factory=list, repr=False)
    a: np.ndarray | None = field(default=None, repr=False)
    b: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_common": self.n_common,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "spearman": self.spearman,
            "kendall": self.kendall,
            "top_k": {str(k): v for k, v in self.top_k.items()},
            "nonfinite": self.nonfinite,
        }


def default_top_k(n_common: int) -> int:
    """LIMR's kept fraction (1,389 of 8,523) of the common prompts, at least 1."""
    return max(1, round(n_common * LIMR_KEPT_FRACTION))


def compare_scores(
    a: dict[str, float], b: dict[str, float], ks: list[int] | None = None
) -> Agreement:
    """Agreement of two {id: score} maps over their common ids (in A's order).

    ``ks``: the top-k sizes (None: :func:`default_top_k`); a k above the common count is cut to it.
    """
    ids = [pid for pid in a if pid in b]
    va = np.array([a[p] for p in ids], dtype=np.float64)
    vb = np.array([b[p] for p in ids], dtype=np.float64)
    n = len(ids)
    out = Agreement(
        n_common=n,
        only_a=len(a) - n,
        only_b=len(b) - n,
        spearman=spearman(va, vb) if n else math.nan,
        kendall=kendall_tau_b(va, vb) if n else math.nan,
        nonfinite=int((~np.isfinite(va) | ~np.isfinite(vb)).sum()),
        ids=ids,
        a=va,
        b=vb,
    )
    for k in ks if ks is not None else [default_top_k(n)]:
        if k < 1:
            raise ValueError(f"top-k must be at least 1, got {k}")
        k = min(k, n)
        sa, sb = set(top_k(ids, va, k)), set(top_k(ids, vb, k))
        shared = len(sa & sb)
        out.top_k[k] = {
            "shared": shared,
            "overlap": shared / k if k else math.nan,
            "jaccard": jaccard(sa, sb),
        }
    return out


def scatter_plot(
    agreement: Agreement, path: str | Path, label_a: str = "A", label_b: str = "B"
) -> Path:
    """A scatter of B's scores against A's over the common prompts with finite scores, the
    top-k cut of each (the first k) drawn as lines; written as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    va, vb = agreement.a, agreement.b
    ok = np.isfinite(va) & np.isfinite(vb)
    fig = Figure(figsize=(6.0, 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(va[ok], vb[ok], s=6, alpha=0.35, color="tab:blue", linewidths=0)
    if agreement.top_k and ok.any():
        k = next(iter(agreement.top_k))
        if 0 < k <= len(va):
            cut_a = float(np.sort(va)[::-1][k - 1])
            cut_b = float(np.sort(vb)[::-1][k - 1])
            if math.isfinite(cut_a):
                ax.axvline(cut_a, color="tab:red", lw=1, ls="--", label=f"top {k} of {label_a}")
            if math.isfinite(cut_b):
                ax.axhline(cut_b, color="tab:green", lw=1, ls="--", label=f"top {k} of {label_b}")
            ax.legend(loc="lower right")
    ax.set_xlabel(label_a)
    ax.set_ylabel(label_b)
    left_out = int((~ok).sum())
    note = f", {left_out} non-finite not drawn" if left_out else ""
    ax.set_title(
        f"{agreement.n_common} prompts: Spearman {agreement.spearman:.3f}, "
        f"Kendall {agreement.kendall:.3f}{note}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
