"""Reward history: every prompt's reward curve, recorded compactly and durably while training.

LIM and every other curve-based selector need r_i^k, prompt i's accuracy in epoch k (an epoch is
one pass over the training prompts). :class:`RewardHistory` keeps, per (prompt, epoch) cell, the
number of rollouts, correct rollouts, the reward sum and optionally the response-length sum:
memory is O(prompts x epochs), never O(rollouts).

On disk a history is a folder holding ``rewards.log``, an append-only binary log:

    file   = FILE_MAGIC, frame*
    frame  = FRAME_MAGIC (4 bytes) | payload length (uint64) | crc32 of payload (uint32) | payload
    payload= header length (uint32) | header JSON | idx uint32[M] | n uint32[M]
             | n_correct uint32[M] | reward_sum float64[M] | [length_sum float64[M]]
    header = {"step", "epoch", "id_base", "new_ids", "m", "has_length"[, "epoch_steps"]}

One frame holds the cells of one (step, epoch): the prompts (by index) rolled out in that step and
their sums. ``new_ids`` declares prompt ids the first time they appear, so the log stays compact.
``epoch_steps`` (optional, written by the trainer) is how many steps the frame's epoch has: it
tells a whole epoch from one that a stopped run left partly recorded (see :func:`whole_epochs`).
:meth:`RewardHistory.commit` appends frames with ``fsync``; a process killed at any moment leaves a
readable file: a torn last frame (short, or failing its checksum, at the end of the file) is
ignored and cut off when the history is reopened, while damage before the end raises
:class:`HistoryError`. The checksum covers a frame's payload only, so a damaged length field can
make a middle frame look like a torn tail: before anything is treated as torn, the rest of the
file is searched for a valid frame, and one found there means the damage is before the end (an
error, nothing cut). :meth:`RewardHistory.truncate` drops the steps after a checkpoint so that a
resumed run neither loses nor duplicates a cell (it rewrites the file via temp + fsync +
``os.replace``). The trainer must ``commit(step)`` before it saves the checkpoint of ``step``.

Several processes recording one run (the ranks of a data-parallel job, the workers of a foreign
trainer, see :mod:`limr.integrations`) each write their own file in the same folder,
``rewards.<shard>.log`` (``RewardHistory(folder, shard="rank1")``); :meth:`RewardHistory.load` and
every ``limr`` command read the folder's files merged, as one history.

This module imports no torch: a history's arrays are numpy (:meth:`RewardHistory.numpy_arrays`),
and its ``n``, ``n_correct``, ... properties (what the selectors read) are torch tensors made on
first use. :func:`lim_scores` is LIM computed with numpy only, for ``limr score``. Foreign rollout
logs (LIMR/OpenRLHF ``step_N.json``, veRL, TRL, NeMo-RL, prime-rl) are read by
:mod:`limr.importers`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LOG_NAME = "rewards.log"
"""File of a history folder (a single-process recording)."""
HISTORY_DIRNAME = "history"
"""Sub-folder of a run folder that holds its history (``run_dir/history``)."""
FILE_MAGIC = b"LIMR-REWARD-HISTORY v1\n"
FRAME_MAGIC = b"LRHF"
_FRAME = struct.Struct("<4sQI")  # magic, payload length, crc32
_U32 = struct.Struct("<I")
_SHARD = re.compile(r"^rewards\.([A-Za-z0-9_-]+)\.log$")
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class HistoryError(ValueError):
    """A history that cannot be read (corrupt file, wrong format) or a misuse of the recorder."""


def _torch() -> Any:
    import torch

    return torch


def _np(x: Any) -> np.ndarray:
    """A numpy view of a numpy array or a CPU torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class HistoryArrays:
    """A read-only history given by its arrays (satisfies :class:`limr.types.HistoryLike`).

    The arrays are torch tensors for the selectors (:class:`RewardHistory` makes them so), or
    numpy arrays where no torch is wanted (:meth:`RewardHistory.numpy_arrays`); every function of
    this module takes either.

    Attributes:
        ids: I prompt ids.
        n: [I, E] int64 rollouts per cell (0 = absent that epoch).
        n_correct: [I, E] int64 correct rollouts.
        reward_sum: [I, E] float64 sum of rewards.
        length_sum: [I, E] float64 sum of response lengths, or None when not recorded.
        last_epoch_complete: whether the last epoch is whole (True / False), None when unknown
            (then it counts as whole); the epochs before it always are.
    """

    ids: list[str]
    n: Any
    n_correct: Any
    reward_sum: Any
    length_sum: Any = None
    last_epoch_complete: bool | None = None

    @property
    def num_epochs(self) -> int:
        return int(self.n.shape[1])

    def epoch_complete(self, epoch: int) -> bool | None:
        """Whether ``epoch`` is whole: True before the last one, ``last_epoch_complete`` for it."""
        return True if epoch < self.num_epochs - 1 else self.last_epoch_complete

    def epoch_mean_accuracy(self, epoch: int) -> float:
        return _mean(self.n_correct[:, epoch].sum(), self.n[:, epoch].sum())

    def epoch_mean_reward(self, epoch: int) -> float:
        return _mean(self.reward_sum[:, epoch].sum(), self.n[:, epoch].sum())

    def head(self, epochs: int) -> HistoryArrays:
        """The first ``epochs`` epochs (a view, no copy)."""
        return _head(self, epochs)


def _mean(total: Any, count: Any) -> float:
    count = float(count)
    return float(total) / count if count else float("nan")


def _head(h: Any, epochs: int) -> HistoryArrays:
    if epochs < 1:
        raise HistoryError(f"max_epochs must be at least 1, got {epochs}")
    ls = getattr(h, "length_sum", None)
    num_e = int(h.n.shape[1])
    # a cut before the last epoch ends on a whole epoch (a later one was begun after it)
    last = True if epochs < num_e else epoch_complete(h, num_e - 1)
    nc, rs = h.n_correct, h.reward_sum
    return HistoryArrays(
        ids=list(h.ids),
        n=h.n[:, :epochs],
        n_correct=None if nc is None else nc[:, :epochs],
        reward_sum=None if rs is None else rs[:, :epochs],
        length_sum=None if ls is None else ls[:, :epochs],
        last_epoch_complete=last,
    )


def score_record(id_key: str, pid: str, score: float) -> dict[str, Any]:
    """One line of a scores file (here, with no torch to import, for ``limr score`` and the
    selectors alike): a finite score as a number; -inf, inf and NaN (which JSON cannot
    hold) as ``"score": null`` with ``"nonfinite": "-inf" | "inf" | "nan"``."""
    score = float(score)
    if math.isfinite(score):
        return {id_key: pid, "score": score}
    return {id_key: pid, "score": None, "nonfinite": str(score)}


@dataclass
class _Block:
    """The cells of one (step, epoch): prompt indices and their sums (numpy, [M] each).

    ``idx`` holds unique indices into RewardHistory.ids; the integer arrays may be int32 or
    int64 (readers of rollout logs keep them compact)."""

    step: int
    epoch: int
    idx: np.ndarray  # [M] index into RewardHistory.ids
    n: np.ndarray  # [M]
    n_correct: np.ndarray  # [M]
    reward_sum: np.ndarray  # [M] float64
    length_sum: np.ndarray | None  # [M] float64
    epoch_steps: int | None = None  # steps of this block's epoch (written by the trainer)


def _aggregate(idx: np.ndarray, correct, rewards, lengths) -> tuple[np.ndarray, ...]:
    """Sum per unique prompt index: (unique idx, n, n_correct, reward_sum, length_sum | None)."""
    uniq, inv = np.unique(idx, return_inverse=True)
    n = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
    nc = np.rint(np.bincount(inv, weights=correct, minlength=len(uniq))).astype(np.int64)
    rs = np.bincount(inv, weights=rewards, minlength=len(uniq))
    ls = None if lengths is None else np.bincount(inv, weights=lengths, minlength=len(uniq))
    return uniq, n, nc, rs, ls


def _merge(blocks: list[_Block]) -> _Block:
    """One block of the same (step, epoch) from several."""
    if len(blocks) == 1:
        return blocks[0]
    has_len = all(b.length_sum is not None for b in blocks)
    idx = np.concatenate([b.idx for b in blocks])
    uniq, inv = np.unique(idx, return_inverse=True)

    def total(name: str) -> np.ndarray:
        return np.bincount(
            inv, weights=np.concatenate([getattr(b, name) for b in blocks]), minlength=len(uniq)
        )

    return _Block(
        step=blocks[0].step,
        epoch=blocks[0].epoch,
        idx=uniq,
        n=np.rint(total("n")).astype(np.int64),
        n_correct=np.rint(total("n_correct")).astype(np.int64),
        reward_sum=total("reward_sum"),
        length_sum=total("length_sum") if has_len else None,
        epoch_steps=_max_known(b.epoch_steps for b in blocks),
    )


def _max_known(values: Any) -> int | None:
    known = [int(v) for v in values if v is not None]
    return max(known) if known else None


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    return np.asarray(_np(x), dtype=dtype).reshape(-1)


def log_files(folder: str | Path) -> list[Path]:
    """The log files of a history folder: ``rewards.log`` first, then the shards
    ``rewards.<shard>.log`` in natural order (rank2 before rank10)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    shards = []
    for p in folder.iterdir():
        m = _SHARD.match(p.name)
        if m and p.is_file():
            shards.append(p)

    def natural(p: Path) -> list[Any]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    main = [folder / LOG_NAME] if (folder / LOG_NAME).is_file() else []
    return main + sorted(shards, key=natural)


class RewardHistory:
    """Per-prompt, per-epoch reward statistics, recorded step by step (HistoryLike).

    Args:
        path: a folder (created if missing) that holds the log; if it already holds this
            recorder's log, that log is loaded (a torn tail from a killed process is cut off).
            None keeps the history in memory only.
        shard: None for the folder's ``rewards.log``; a name (letters, digits, ``-``, ``_``)
            for ``rewards.<shard>.log``, one file per process of a multi-process recording
            (:meth:`load` reads them all, merged).

    Attributes (computed lazily from the recorded cells, then cached):
        ids: I prompt ids in order of first appearance.
        n, n_correct: [I, E] int64 torch tensors, rollouts and correct rollouts; epochs 0..E-1;
            ``n == 0`` means the prompt was not rolled out that epoch.
        reward_sum: [I, E] float64 sum of rewards.
        length_sum: [I, E] float64 sum of response lengths, or None if lengths were not recorded.
        info: reader details (``torn_tail_bytes``, ``shards``, an importer's counts, ...).
    """

    def __init__(self, path: str | Path | None = None, shard: str | None = None) -> None:
        if shard is not None and not _SHARD_NAME.match(shard):
            raise HistoryError(f"shard name {shard!r}: use letters, digits, '-' and '_' only")
        self.path = None if path is None else Path(path)
        self.log_name = LOG_NAME if shard is None else f"rewards.{shard}.log"
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._blocks: list[_Block] = []  # committed first (in file order), then pending
        self._n_committed = 0  # blocks[:n_committed] are on disk
        self._committed_step: int | None = None
        self._ids_on_disk = 0
        self._epoch_totals: dict[int, list[float]] = {}  # epoch -> [n, n_correct, reward_sum]
        self._dense_np: dict[str, np.ndarray | None] = {}
        self._dense: HistoryArrays | None = None
        self._ids_cache: list[str] | None = None
        self.info: dict[str, Any] = {}
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise HistoryError(f"{self.path}: a reward history is a folder, not a file")
            self.path.mkdir(parents=True, exist_ok=True)
            log = self.path / self.log_name
            if log.exists():
                self._load_log(log, repair=True)

    # ------------------------------------------------------------------ recording
    def record(
        self,
        step: int,
        epoch: int,
        ids: Sequence[str],
        correct: Any,
        rewards: Any,
        lengths: Any = None,
        epoch_steps: int | None = None,
    ) -> None:
        """Add one training step's N rollouts (``ids`` repeats a prompt's id for each sample).

        Args:
            step: the training step (cells of a step are committed and truncated together).
            epoch: the pass over the training prompts this step belongs to (0-based).
            ids: N prompt ids.
            correct: [N] bool (torch tensor, numpy array or list), True where the final answer
                was right.
            rewards: [N] float rewards.
            lengths: [N] response lengths (tokens), optional.
            epoch_steps: how many steps ``epoch`` has in all (the trainer knows it), optional:
                with it, an epoch that a stopped run left partly recorded is told from a whole
                one exactly (:meth:`epoch_complete`).
        """
        if self._committed_step is not None and step <= self._committed_step:
            raise HistoryError(
                f"step {step} is at or before the last committed step {self._committed_step}; "
                f"call truncate({step - 1}) first when replaying steps after a resume"
            )
        if epoch < 0:
            raise HistoryError(f"epoch must be >= 0, got {epoch}")
        if epoch_steps is not None and epoch_steps < 1:
            raise HistoryError(f"epoch_steps must be >= 1, got {epoch_steps}")
        correct_np = _to_numpy(correct, np.float64)
        rewards_np = _to_numpy(rewards, np.float64)
        lengths_np = None if lengths is None else _to_numpy(lengths, np.float64)
        if not (len(ids) == len(correct_np) == len(rewards_np)) or (
            lengths_np is not None and len(lengths_np) != len(ids)
        ):
            raise HistoryError(
                f"record: ids ({len(ids)}), correct ({len(correct_np)}), rewards "
                f"({len(rewards_np)}) and lengths must have the same length"
            )
        if not len(ids):
            return
        idx = self.intern(ids)
        self._add_block(
            step, epoch, *_aggregate(idx, correct_np, rewards_np, lengths_np), epoch_steps
        )

    def intern(self, ids: Sequence[str]) -> np.ndarray:
        """The indices of ``ids`` in :attr:`ids` (int64), giving new ids the next indices."""
        index = self._index
        idx = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if (idx < 0).any():
            for pid in ids:
                if pid not in index:
                    index[pid] = len(self._ids)
                    self._ids.append(pid)
            idx = np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids))
        return idx

    def add_cells(
        self,
        step: int,
        epoch: int,
        idx: np.ndarray,
        n: np.ndarray,
        n_correct: np.ndarray,
        reward_sum: np.ndarray,
        length_sum: np.ndarray | None = None,
        epoch_steps: int | None = None,
    ) -> None:
        """Add already aggregated cells of one (step, epoch): ``idx`` [M] unique indices from
        :meth:`intern`, and their sums (what the importers of rollout logs do)."""
        if epoch < 0:
            raise HistoryError(f"epoch must be >= 0, got {epoch}")
        if len(idx) and int(np.max(idx)) >= len(self._ids):
            raise HistoryError("add_cells: an index refers to no interned id")
        self._add_block(step, epoch, idx, n, n_correct, reward_sum, length_sum, epoch_steps)

    def _add_block(self, step, epoch, idx, n, nc, rs, ls, epoch_steps=None) -> None:
        es = None if epoch_steps is None else int(epoch_steps)
        self._blocks.append(_Block(int(step), int(epoch), idx, n, nc, rs, ls, es))
        tot = self._epoch_totals.setdefault(int(epoch), [0.0, 0.0, 0.0])
        tot[0] += float(n.sum())
        tot[1] += float(nc.sum())
        tot[2] += float(rs.sum())
        self._invalidate()

    def _invalidate(self) -> None:
        self._dense_np = {}
        self._dense = None
        self._ids_cache = None

    def commit(self, step: int) -> None:
        """Make everything recorded for steps <= ``step`` durable (append + fsync).

        Steps recorded later stay in memory until a later commit. A memory-only history just
        remembers the step (later ``record`` calls must use larger steps).
        """
        pending = self._blocks[self._n_committed :]
        now = [b for b in pending if b.step <= step]
        later = [b for b in pending if b.step > step]
        if self.path is not None and now:
            groups: dict[tuple[int, int], list[_Block]] = {}
            for b in now:
                groups.setdefault((b.step, b.epoch), []).append(b)
            merged = [_merge(g) for g in groups.values()]
            log = self.path / self.log_name
            fresh = not log.exists() or log.stat().st_size == 0
            with open(log, "ab") as f:
                if fresh:
                    f.write(FILE_MAGIC)
                for b in merged:
                    f.write(self._frame(b))
                f.flush()
                os.fsync(f.fileno())
            if fresh:
                _fsync_dir(self.path)
            now = merged
        self._blocks = self._blocks[: self._n_committed] + now + later
        self._n_committed += len(now)
        self._committed_step = (
            step if self._committed_step is None else max(self._committed_step, step)
        )

    def truncate(self, step: int) -> None:
        """Forget everything recorded for steps > ``step``, in memory and on disk (resume)."""
        keep = [b for b in self._blocks if b.step <= step]
        n_keep_committed = sum(1 for b in self._blocks[: self._n_committed] if b.step <= step)
        changed_disk = n_keep_committed != self._n_committed
        disk_ids = self._ids[: self._ids_on_disk]
        if len(keep) != len(self._blocks):
            # Rebuild ids in order of first appearance among the surviving cells.
            old_ids = self._ids
            self._ids, self._index = [], {}
            remap = np.full(len(old_ids), -1, dtype=np.int64)
            for b in keep:
                for j in b.idx.tolist():
                    if remap[j] < 0:
                        remap[j] = len(self._ids)
                        self._index[old_ids[j]] = len(self._ids)
                        self._ids.append(old_ids[j])
            for b in keep:
                b.idx = remap[b.idx]
            self._blocks = keep
            self._n_committed = n_keep_committed
            self._epoch_totals = {}
            for b in keep:
                tot = self._epoch_totals.setdefault(b.epoch, [0.0, 0.0, 0.0])
                tot[0] += float(b.n.sum())
                tot[1] += float(b.n_correct.sum())
                tot[2] += float(b.reward_sum.sum())
            self._invalidate()
        if self._committed_step is not None and self._committed_step > step:
            self._committed_step = step
        if self.path is not None and (changed_disk or self._ids[: len(disk_ids)] != disk_ids):
            self._rewrite()

    def _rewrite(self) -> None:
        assert self.path is not None
        log = self.path / self.log_name
        tmp = log.with_name(self.log_name + ".tmp")
        self._ids_on_disk = 0
        with open(tmp, "wb") as f:
            f.write(FILE_MAGIC)
            for b in self._blocks[: self._n_committed]:
                f.write(self._frame(b))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, log)
        _fsync_dir(self.path)

    def save(self, folder: str | Path) -> Path:
        """Write every cell of this history (pending ones too) as a new history folder.

        The folder is written whole or not at all: into a temporary folder beside it, fsynced,
        then renamed. ``folder`` must not exist yet, or be an empty folder. Returns the folder.
        """
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise HistoryError(f"{folder}: already exists and is not an empty folder")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            saved_on_disk = self._ids_on_disk
            self._ids_on_disk = 0
            try:
                with open(tmp / LOG_NAME, "wb") as f:
                    f.write(FILE_MAGIC)
                    groups: dict[tuple[int, int], list[_Block]] = {}
                    for b in self._blocks:
                        groups.setdefault((b.step, b.epoch), []).append(b)
                    # frames in step order, ids declared as they first appear
                    for key in sorted(groups):
                        f.write(self._frame(_merge(groups[key])))
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                self._ids_on_disk = saved_on_disk
            _fsync_dir(tmp)
            if folder.exists():
                folder.rmdir()
            os.replace(tmp, folder)
            _fsync_dir(folder.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    def first_epochs(self, epochs: int) -> RewardHistory:
        """A memory-only copy holding the cells of the first ``epochs`` epochs."""
        if epochs < 1:
            raise HistoryError(f"max_epochs must be at least 1, got {epochs}")
        out = RewardHistory(None)
        for b in self._blocks:
            if b.epoch < epochs:
                idx = out.intern([self._ids[j] for j in b.idx.tolist()])
                out._add_block(
                    b.step, b.epoch, idx, b.n, b.n_correct, b.reward_sum, b.length_sum,
                    b.epoch_steps,
                )  # fmt: skip
        out.info = dict(self.info)
        out._n_committed = len(out._blocks)
        steps = [b.step for b in out._blocks]
        out._committed_step = max(steps) if steps else None
        return out

    def _frame(self, b: _Block) -> bytes:
        """Serialise a block; declares the ids it introduces (advances ``_ids_on_disk``)."""
        top = int(b.idx.max()) + 1 if len(b.idx) else 0
        base = self._ids_on_disk
        new_ids = self._ids[base:top] if top > base else []
        self._ids_on_disk = max(base, top)
        fields: dict[str, Any] = {
            "step": b.step,
            "epoch": b.epoch,
            "id_base": base,
            "new_ids": new_ids,
            "m": len(b.idx),
            "has_length": b.length_sum is not None,
        }
        if b.epoch_steps is not None:
            fields["epoch_steps"] = b.epoch_steps
        header = json.dumps(fields, ensure_ascii=False).encode("utf-8")
        parts = [
            _U32.pack(len(header)),
            header,
            b.idx.astype("<u4").tobytes(),
            b.n.astype("<u4").tobytes(),
            b.n_correct.astype("<u4").tobytes(),
            b.reward_sum.astype("<f8").tobytes(),
        ]
        if b.length_sum is not None:
            parts.append(b.length_sum.astype("<f8").tobytes())
        payload = b"".join(parts)
        return _FRAME.pack(FRAME_MAGIC, len(payload), zlib.crc32(payload)) + payload

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path) -> RewardHistory:
        """Read a history folder (all its log files, merged; or a run folder's ``history/``) or
        one log file, in memory only (the files are untouched).

        A torn last frame is ignored; any other damage raises :class:`HistoryError`.
        """
        path = Path(path)
        if path.is_file():
            logs = [path]
        else:
            folder = find_history(path)
            logs = [] if folder is None else log_files(folder)
        if not logs:
            raise HistoryError(
                f"{path}: no reward history here (expected {LOG_NAME} or rewards.<shard>.log)"
            )
        h = cls(None)
        h._load_log(logs[0], repair=False)
        torn = {logs[0].name: h.info.pop("torn_tail_bytes")} if "torn_tail_bytes" in h.info else {}
        for log in logs[1:]:
            part = cls(None)
            part._load_log(log, repair=False)
            if "torn_tail_bytes" in part.info:
                torn[log.name] = part.info["torn_tail_bytes"]
            h._absorb(part)
        if len(logs) > 1:
            h.info["shards"] = [p.name for p in logs]
        if torn:
            h.info["torn_tail_bytes"] = sum(torn.values())
        h.path = None
        return h

    def _absorb(self, other: RewardHistory) -> None:
        """Add the cells of another history (one more shard of the same run)."""
        remap = self.intern(other._ids) if other._ids else np.zeros(0, np.int64)
        for b in other._blocks:
            self._add_block(
                b.step, b.epoch, remap[b.idx], b.n, b.n_correct, b.reward_sum, b.length_sum,
                b.epoch_steps,
            )  # fmt: skip
        self._n_committed = len(self._blocks)
        self._ids_on_disk = len(self._ids)
        steps = [b.step for b in self._blocks]
        self._committed_step = max(steps) if steps else None

    def _load_log(self, log: Path, repair: bool) -> None:
        # Frame by frame: memory O(largest frame + the history), not O(file).
        with open(log, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(len(FILE_MAGIC))
            if head != FILE_MAGIC:
                if len(head) < len(FILE_MAGIC) and FILE_MAGIC.startswith(head):
                    good = 0  # torn while writing the file header
                else:
                    raise HistoryError(f"{log}: not a limr reward history (bad file header)")
            else:
                good = self._parse_frames(log, f, size)
        if good < size:
            self.info["torn_tail_bytes"] = size - good
            if repair:
                if good == 0:
                    log.unlink()
                else:
                    with open(log, "r+b") as f:
                        f.truncate(good)
                        f.flush()
                        os.fsync(f.fileno())
        self._n_committed = len(self._blocks)
        self._ids_on_disk = len(self._ids)
        steps = [b.step for b in self._blocks]
        self._committed_step = max(steps) if steps else None

    def _parse_frames(self, log: Path, f: Any, size: int) -> int:
        """Parse the frames after the file header; return the offset where valid data ends."""
        pos = len(FILE_MAGIC)
        while pos < size:
            if size - pos < _FRAME.size:
                return self._torn_at(log, f, pos, size, "torn frame header")
            f.seek(pos)
            magic, length, crc = _FRAME.unpack(f.read(_FRAME.size))
            end = pos + _FRAME.size + length
            if magic != FRAME_MAGIC:
                f.seek(pos)
                if not any(_chunks(f)):
                    return pos  # zero-filled tail of a crash
                raise HistoryError(f"{log}: corrupt at byte {pos} (bad frame marker)")
            if end > size:
                return self._torn_at(log, f, pos, size, "frame longer than the file")
            payload = f.read(length)
            if zlib.crc32(payload) != crc:
                if end == size:
                    return self._torn_at(log, f, pos, size, "checksum mismatch")
                raise HistoryError(f"{log}: corrupt at byte {pos} (checksum mismatch)")
            try:
                self._read_payload(memoryview(payload))
            except (ValueError, KeyError, UnicodeDecodeError) as err:
                raise HistoryError(f"{log}: corrupt frame at byte {pos}: {err}") from None
            pos = end
        return pos

    @staticmethod
    def _torn_at(log: Path, f: Any, pos: int, size: int, why: str) -> int:
        """``pos`` starts what looks like a torn last frame: return it, unless a valid frame
        follows (then the frame at ``pos`` was damaged, e.g. in its length field: an error)."""
        found = _valid_frame_after(f, pos + 1, size)
        if found is not None:
            raise HistoryError(
                f"{log}: corrupt at byte {pos} ({why}, yet a valid frame follows at byte "
                f"{found}: the frame header is damaged; nothing was cut)"
            )
        return pos

    def _read_payload(self, payload: memoryview) -> None:
        (hlen,) = _U32.unpack_from(payload, 0)
        header = json.loads(bytes(payload[4 : 4 + hlen]).decode("utf-8"))
        if header["id_base"] != len(self._ids):
            raise ValueError(f"id_base {header['id_base']} != {len(self._ids)} ids so far")
        for pid in header["new_ids"]:
            self._index[pid] = len(self._ids)
            self._ids.append(pid)
        m = int(header["m"])
        off = 4 + hlen
        need = m * (12 + 8 + (8 if header["has_length"] else 0))
        if len(payload) - off != need:
            raise ValueError("payload size does not match its header")

        def take(dtype: str, width: int) -> np.ndarray:
            nonlocal off
            arr = np.frombuffer(payload, dtype=dtype, count=m, offset=off)
            off += width * m
            return arr

        idx = take("<u4", 4).astype(np.int64)
        n = take("<u4", 4).astype(np.int64)
        nc = take("<u4", 4).astype(np.int64)
        rs = take("<f8", 8).astype(np.float64)
        ls = take("<f8", 8).astype(np.float64) if header["has_length"] else None
        if m and int(idx.max()) >= len(self._ids):
            raise ValueError("cell refers to an undeclared prompt")
        self._add_block(
            header["step"], header["epoch"], idx, n, nc, rs, ls, header.get("epoch_steps")
        )

    @classmethod
    def from_arrays(
        cls,
        ids: Sequence[str],
        n: Any,
        n_correct: Any,
        reward_sum: Any,
        length_sum: Any = None,
        step: int = 0,
        complete: Sequence[bool | None] | None = None,
    ) -> RewardHistory:
        """A memory-only history from [I, E] arrays (all cells count as recorded at ``step``).

        ``complete``: per epoch, whether it is whole (None: unknown, the heuristics of
        :meth:`epoch_complete` apply), kept as the epoch's step count: the one recorded step,
        or one more than recorded for an epoch that is not whole (saved with the history)."""
        n_np = np.asarray(_np(n), dtype=np.int64)
        nc_np = np.asarray(_np(n_correct), dtype=np.int64)
        rs_np = np.asarray(_np(reward_sum), dtype=np.float64)
        ls_np = None if length_sum is None else np.asarray(_np(length_sum), dtype=np.float64)
        if n_np.ndim != 2 or n_np.shape[0] != len(ids):
            raise HistoryError(f"from_arrays: n must be [I={len(ids)}, E], got {n_np.shape}")
        h = cls(None)
        h._ids = [str(i) for i in ids]
        h._index = {pid: j for j, pid in enumerate(h._ids)}
        if len(h._index) != len(h._ids):
            raise HistoryError("from_arrays: duplicate ids")
        if complete is not None and len(complete) != n_np.shape[1]:
            raise HistoryError(
                f"from_arrays: complete has {len(complete)} entries for {n_np.shape[1]} epochs"
            )
        for e in range(n_np.shape[1]):
            rows = np.flatnonzero(n_np[:, e] > 0)
            whole = None if complete is None else complete[e]
            if len(rows):
                h._add_block(
                    step,
                    e,
                    rows,
                    n_np[rows, e],
                    nc_np[rows, e],
                    rs_np[rows, e],
                    None if ls_np is None else ls_np[rows, e],
                    None if whole is None else (1 if whole else 2),
                )
        # The dense arrays are already known: cache them (no densify on first use).
        h._dense_np = {
            "n": np.ascontiguousarray(n_np),
            "n_correct": np.ascontiguousarray(nc_np),
            "reward_sum": np.ascontiguousarray(rs_np),
            "length_sum": None if ls_np is None else np.ascontiguousarray(ls_np),
        }
        return h

    # ------------------------------------------------------------------ reading (HistoryLike)
    _FIELDS = ("n", "n_correct", "reward_sum", "length_sum")

    def _dense_field(self, name: str) -> np.ndarray | None:
        """The [I, E] numpy array of one field, densified from the blocks on first use."""
        if name in self._dense_np:
            return self._dense_np[name]
        num_i = len(self._ids)
        num_e = max((b.epoch for b in self._blocks), default=-1) + 1
        if name == "length_sum" and not (
            self._blocks and all(b.length_sum is not None for b in self._blocks)
        ):
            self._dense_np[name] = None
            return None
        dtype = np.int64 if name in ("n", "n_correct") else np.float64
        # Epoch-major [E, I] while scattering (a block writes one row, near-sequentially), then
        # one transposing copy to [I, E]: ~2.5x faster than scattering into columns.
        out = np.zeros((num_e, num_i), dtype)
        for b in self._blocks:
            # a block's prompt indices are unique, so a fancy-index += adds each cell once
            out[b.epoch, b.idx] += getattr(b, name)
        dense = np.ascontiguousarray(out.T)
        self._dense_np[name] = dense
        return dense

    def numpy_arrays(
        self, fields: Sequence[str] | None = None, epochs: int | None = None
    ) -> HistoryArrays:
        """The history as numpy arrays (no torch): a :class:`HistoryArrays` whose fields not in
        ``fields`` (default: all) are left as None, so that only what is needed is built.

        With ``epochs``, the first ``epochs`` epochs (as :meth:`head`); without, the arrays
        answer completeness questions as this history does (pass both to
        :func:`whole_epochs`)."""
        fields = self._FIELDS if fields is None else tuple(fields)
        unknown = set(fields) - set(self._FIELDS)
        if unknown:
            raise HistoryError(f"numpy_arrays: unknown fields {sorted(unknown)}")
        got = {name: self._dense_field(name) if name in fields else None for name in self._FIELDS}
        if got["n"] is None:
            got["n"] = self._dense_field("n")  # the shape and presence always come along
        num_e = int(got["n"].shape[1])
        last = None if num_e == 0 else self.epoch_complete(num_e - 1)
        arrays = HistoryArrays(ids=self.ids, **got, last_epoch_complete=last)
        if epochs is None:
            return arrays
        cut = _head(arrays, epochs)
        return HistoryArrays(
            ids=cut.ids,
            n=cut.n,
            n_correct=None if got["n_correct"] is None else cut.n_correct,
            reward_sum=None if got["reward_sum"] is None else cut.reward_sum,
            length_sum=cut.length_sum,
            last_epoch_complete=cut.last_epoch_complete,
        )

    def _arrays(self) -> HistoryArrays:
        if self._dense is not None:
            return self._dense
        torch = _torch()
        ls = self._dense_field("length_sum")
        self._dense = HistoryArrays(
            ids=self.ids,
            n=torch.from_numpy(self._dense_field("n")),
            n_correct=torch.from_numpy(self._dense_field("n_correct")),
            reward_sum=torch.from_numpy(self._dense_field("reward_sum")),
            length_sum=None if ls is None else torch.from_numpy(ls),
        )
        return self._dense

    @property
    def ids(self) -> list[str]:
        if self._ids_cache is None or len(self._ids_cache) != len(self._ids):
            self._ids_cache = list(self._ids)
        return self._ids_cache

    @property
    def n(self) -> Any:
        return self._arrays().n

    @property
    def n_correct(self) -> Any:
        return self._arrays().n_correct

    @property
    def reward_sum(self) -> Any:
        return self._arrays().reward_sum

    @property
    def length_sum(self) -> Any:
        return self._arrays().length_sum

    @property
    def num_epochs(self) -> int:
        return max(self._epoch_totals, default=-1) + 1

    @property
    def num_prompts(self) -> int:
        return len(self._ids)

    @property
    def num_rollouts(self) -> int:
        return int(sum(t[0] for t in self._epoch_totals.values()))

    @property
    def committed_step(self) -> int | None:
        """The last step made durable by :meth:`commit` (or found on disk), None if none."""
        return self._committed_step

    def __len__(self) -> int:
        return len(self._ids)

    def epoch_steps(self, epoch: int) -> tuple[int, int | None]:
        """(steps recorded for ``epoch``, steps the epoch has in all or None if not recorded)."""
        steps = {b.step for b in self._blocks if b.epoch == epoch}
        expected = _max_known(b.epoch_steps for b in self._blocks if b.epoch == epoch)
        return len(steps), expected

    def epoch_complete(self, epoch: int) -> bool | None:
        """Whether every step of ``epoch`` is recorded; None when that cannot be told.

        With the epoch's step count recorded (the trainer's ``epoch_steps``; ``steps_per_epoch``
        for rollout logs): its steps are all there. Without it (histories written before limr
        recorded it): an epoch followed by a later one is whole (the trainer starts epoch k + 1
        only after the last step of epoch k), and the last one is whole when it has at least as
        many steps as the epoch before it (None for a single epoch).
        """
        recorded, expected = self.epoch_steps(epoch)
        if expected is not None:
            return recorded >= expected
        if epoch < self.num_epochs - 1:
            return True
        if epoch == 0:
            return None
        before, _ = self.epoch_steps(epoch - 1)
        return None if before == 0 else recorded >= before

    def epoch_mean_accuracy(self, epoch: int) -> float:
        """Fraction of correct rollouts over all rollouts of ``epoch`` (nan if it has none)."""
        tot = self._epoch_totals.get(epoch)
        return _mean(tot[1], tot[0]) if tot else float("nan")

    def epoch_mean_reward(self, epoch: int) -> float:
        """Mean reward over all rollouts of ``epoch`` (nan if it has none)."""
        tot = self._epoch_totals.get(epoch)
        return _mean(tot[2], tot[0]) if tot else float("nan")

    def head(self, epochs: int) -> HistoryArrays:
        """The first ``epochs`` epochs (LIMR scores its first 21)."""
        return _head(self, epochs)

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"RewardHistory({len(self._ids)} prompts, {self.num_epochs} epochs{where})"


def iter_cells(history: Any) -> Iterator[dict[str, Any]]:
    """One dict per (prompt, epoch) cell with rollouts, prompt by prompt (for export); with
    ``"epoch_complete"`` where the history can tell whether the cell's epoch is whole (so that
    the export, read back, scores the same whole epochs)."""
    whole = [epoch_complete(history, e) for e in range(_np(history.n).shape[1])]
    if isinstance(history, RewardHistory):
        history = history.numpy_arrays()
    n = _np(history.n)
    nc = _np(history.n_correct)
    rs = _np(history.reward_sum)
    ls = getattr(history, "length_sum", None)
    ls = None if ls is None else _np(ls)
    for i, pid in enumerate(history.ids):
        for e in np.flatnonzero(n[i] > 0).tolist():
            cell = {
                "id": pid,
                "epoch": e,
                "n": int(n[i, e]),
                "n_correct": int(nc[i, e]),
                "reward_sum": float(rs[i, e]),
            }
            if ls is not None:
                cell["length_sum"] = float(ls[i, e])
            if whole[e] is not None:
                cell["epoch_complete"] = bool(whole[e])
            yield cell


def epoch_complete(history: Any, epoch: int) -> bool | None:
    """Whether ``epoch`` of any HistoryLike is whole; None when the history cannot tell.

    Uses the history's own ``epoch_complete`` (:meth:`RewardHistory.epoch_complete`,
    :meth:`HistoryArrays.epoch_complete`); a history without one has whole epochs before its
    last, and an unknown last.
    """
    method = getattr(history, "epoch_complete", None)
    if method is not None:
        return method(epoch)
    return True if epoch < int(history.n.shape[1]) - 1 else None


def whole_epochs(history: Any, arrays: Any = None) -> tuple[Any, dict[str, Any]]:
    """The history cut to its whole epochs, and what was left out: what selectors score.

    LIM, LINEAR and the other curve selectors compare prompts epoch by epoch, so an epoch that a
    run left partly recorded (stopped mid-epoch, or ``max_steps`` not a multiple of the steps per
    epoch) leaves the prompts it had not reached yet without a value there, with nothing later to
    fill it from: they would go unscored while RAND still draws from them. LIMR's released script
    scores whole epochs only, and so does limr:

    - trailing epochs without any rollout are left out;
    - the last epoch is left out when it is partial (:func:`epoch_complete`: with the trainer's
      recorded ``epoch_steps``, some of its steps are missing; in an older history, it has fewer
      steps than the epoch before); an epoch followed by a later one is whole, and so is one
      whose completeness the history cannot tell;
    - a partial epoch that is the only one is kept (nothing else would be left to score).

    Args:
        history: any HistoryLike (torch or numpy arrays); it answers the completeness questions.
        arrays: optionally, the arrays to cut instead of ``history``'s own (e.g.
            ``history.numpy_arrays()``, to stay torch-free).

    Returns:
        (view, info): ``arrays`` (default ``history``) itself when every epoch is kept, else its
        first k epochs (a :class:`HistoryArrays` view); ``info`` = {"epochs_recorded": E,
        "epochs_dropped": E - k, "partial_epoch": None, or {"epoch", "steps" recorded, "of" (its
        steps in all, or None), "prompts" rolled out in it, "dropped"}}.
    """
    target = history if arrays is None else arrays
    num_e = int(target.n.shape[1])
    info: dict[str, Any] = {"epochs_recorded": num_e, "epochs_dropped": 0, "partial_epoch": None}
    if num_e == 0:
        return target, info
    n = _np(target.n)
    nonempty = np.flatnonzero(n.sum(axis=0) > 0)
    if len(nonempty) == 0:
        return target, info
    keep = int(nonempty[-1]) + 1  # trailing epochs without rollouts go
    last = keep - 1
    if epoch_complete(history, last) is False:
        steps = getattr(history, "epoch_steps", None)
        recorded, expected = steps(last) if steps is not None else (None, None)
        dropped = last > 0
        info["partial_epoch"] = {
            "epoch": last,
            "steps": recorded,
            "of": expected,
            "prompts": int((n[:, last] > 0).sum()),
            "dropped": dropped,
        }
        if dropped:
            keep = last
    info["epochs_dropped"] = num_e - keep
    if keep == num_e:
        return target, info
    return _head(target, keep), info


# ---------------------------------------------------------------------------------------------
# LIM without torch (what `limr score` runs for the built-in `lim`)

LIM_CHUNK_ROWS = 1 << 15
"""Rows per block, as :data:`limr.selectors.curves.CHUNK_ROWS`."""


def lim_scores(
    history: Any, metric: str = "accuracy", whole: bool = True
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """LIM (LIMR eq. 2-3) of every prompt with numpy only: the arithmetic of the ``lim``
    selector (:mod:`limr.selectors.lim`, ``missing="drop"``) step for step.

        s_i = 1 - sum_k (r_i^k - r_avg^k)^2 / sum_k (1 - r_avg^k)^2

    r_i^k is prompt i's accuracy (``metric="reward"``: mean raw reward) in epoch k; a missing
    r_i^k takes r_i^(k+1) (one backward pass); prompts still missing an epoch are left out;
    r_avg is the mean curve of the others. Only whole epochs are scored (:func:`whole_epochs`,
    ``whole=False`` scores every recorded epoch).

    The same operations in the same order as the torch selector, in float64; the only
    difference is the order of the floating-point additions inside the BLAS / reduction kernels
    (torch's depend on the CPU's vector width), so scores agree to ~1e-14, not bit for bit (the
    test suite checks both, and that they keep the same prompts).

    Returns:
        (ids of the scored prompts in history order, their scores [I'] float64, info): info has
        the fields ``limr score`` reports: ``epochs``, ``epochs_recorded``, ``epochs_dropped``,
        ``partial_epoch``, ``n_prompts``, ``n_scored``, ``unscored``, ``avg_curve``,
        ``filled_cells``, ``metric``.
    """
    if metric not in ("accuracy", "reward"):
        raise HistoryError(f"metric must be accuracy or reward, got {metric!r}")
    field = "n_correct" if metric == "accuracy" else "reward_sum"
    arrays = history.numpy_arrays(("n", field)) if isinstance(history, RewardHistory) else history
    if whole:
        view, epochs = whole_epochs(history, arrays)
    else:
        view = arrays
        num_e = int(arrays.n.shape[1])
        epochs = {"epochs_recorded": num_e, "epochs_dropped": 0, "partial_epoch": None}
    n = _np(view.n)
    num = _np(getattr(view, field))
    num_i, num_e = n.shape
    values = np.empty((num_i, num_e), np.float64)
    complete = np.empty(num_i, bool)
    total = np.zeros(num_e, np.float64)
    filled = 0
    for lo in range(0, num_i, LIM_CHUNK_ROWS):
        hi = min(num_i, lo + LIM_CHUNK_ROWS)
        n_c = n[lo:hi]
        present = n_c > 0
        v = values[lo:hi]
        np.divide(num[lo:hi], np.maximum(n_c, 1), out=v, casting="unsafe")
        if num_e > 1:
            fill = present[:, 1:] > present[:, :-1]  # missing at k, present at k + 1
            k = int(fill.sum())
            if k:
                filled += k
                v[:, :-1] = np.where(fill, v[:, 1:], v[:, :-1])  # reads before it writes
                present[:, :-1] |= fill
        c = present.sum(axis=1, dtype=np.int32) == num_e
        complete[lo:hi] = c
        total += c.astype(np.float64) @ v
    count = int(complete.sum())
    avg = total / count if count else np.full(num_e, np.nan)
    rows = np.flatnonzero(complete)
    scores = np.full(num_i, np.nan)
    if count:
        denom = float(((1.0 - avg) ** 2).sum())
        dist = ((values - avg) ** 2).sum(axis=1)
        if denom == 0.0:
            # every prompt perfect in every epoch (the average is 1): all follow it exactly
            scores = np.where(dist == 0, 1.0, -np.inf)
        else:
            scores = 1.0 - dist / denom
    ids = list(view.ids)
    scored_ids = ids if count == num_i else [ids[j] for j in rows.tolist()]
    info = {
        "selector": "lim",
        "metric": metric,
        "n_prompts": num_i,
        "n_scored": count,
        "unscored": num_i - count,
        "epochs": num_e,
        "avg_curve": avg.tolist(),
        "filled_cells": filled,
        "dropped_missing": num_i - count,
        **epochs,
    }
    return scored_ids, scores[rows] if count != num_i else scores, info


# ---------------------------------------------------------------------------------------------


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bool]:
    """True for each non-zero byte block of the rest of ``f``, False for all-zero ones."""
    while block := f.read(size):
        yield block.count(0) != len(block)


def _valid_frame_after(f: Any, start: int, size: int, chunk: int = 1 << 20) -> int | None:
    """The offset of the first whole frame with a valid checksum at or after ``start``, or None.

    Scans for FRAME_MAGIC a chunk at a time (memory O(chunk + the largest frame checked))."""
    pos = start
    tail = len(FRAME_MAGIC) - 1
    while pos < size:
        f.seek(pos)
        block = f.read(chunk + tail)
        if not block:
            return None
        at = block.find(FRAME_MAGIC)
        while at >= 0:
            cand = pos + at
            if cand + _FRAME.size <= size:
                f.seek(cand)
                magic, length, crc = _FRAME.unpack(f.read(_FRAME.size))
                if cand + _FRAME.size + length <= size and length >= 4:
                    if zlib.crc32(f.read(length)) == crc:
                        return cand
            at = block.find(FRAME_MAGIC, at + 1)
        pos += chunk
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder
    finally:
        os.close(fd)


def find_history(path: str | Path) -> Path | None:
    """The history folder at ``path`` (a history folder, one of its logs, or a run folder),
    else None."""
    path = Path(path)
    if path.is_file() and (path.name == LOG_NAME or _SHARD.match(path.name)):
        return path.parent
    if log_files(path):
        return path
    if log_files(path / HISTORY_DIRNAME):
        return path / HISTORY_DIRNAME
    return None
