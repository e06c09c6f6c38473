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
:class:`HistoryError`. :meth:`RewardHistory.truncate` drops the steps after a checkpoint so that a
resumed run neither loses nor duplicates a cell (it rewrites the file via temp + fsync +
``os.replace``). The trainer must ``commit(step)`` before it saves the checkpoint of ``step``.

:func:`read_openrlhf_logs` reads LIMR/OpenRLHF rollout logs (``step_N.json`` files) as a stream.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG_NAME = "rewards.log"
"""File of a history folder."""
HISTORY_DIRNAME = "history"
"""Sub-folder of a run folder that holds its history (``run_dir/history``)."""
FILE_MAGIC = b"LIMR-REWARD-HISTORY v1\n"
FRAME_MAGIC = b"LRHF"
_FRAME = struct.Struct("<4sQI")  # magic, payload length, crc32
_U32 = struct.Struct("<I")


class HistoryError(ValueError):
    """A history that cannot be read (corrupt file, wrong format) or a misuse of the recorder."""


@dataclass(frozen=True)
class HistoryArrays:
    """A read-only history given by its arrays (satisfies :class:`limr.types.HistoryLike`).

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
    n: torch.Tensor
    n_correct: torch.Tensor
    reward_sum: torch.Tensor
    length_sum: torch.Tensor | None = None
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
    return HistoryArrays(
        ids=list(h.ids),
        n=h.n[:, :epochs],
        n_correct=h.n_correct[:, :epochs],
        reward_sum=h.reward_sum[:, :epochs],
        length_sum=None if ls is None else ls[:, :epochs],
        last_epoch_complete=last,
    )


@dataclass
class _Block:
    """The cells of one (step, epoch): prompt indices and their sums (numpy, [M] each)."""

    step: int
    epoch: int
    idx: np.ndarray  # [M] int64 index into RewardHistory.ids
    n: np.ndarray  # [M] int64
    n_correct: np.ndarray  # [M] int64
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
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype).reshape(-1)


class RewardHistory:
    """Per-prompt, per-epoch reward statistics, recorded step by step (HistoryLike).

    Args:
        path: a folder (created if missing) that holds ``rewards.log``; if it already holds a
            history, that history is loaded (a torn tail from a killed process is cut off).
            None keeps the history in memory only.

    Attributes (computed lazily from the recorded cells, then cached):
        ids: I prompt ids in order of first appearance.
        n, n_correct: [I, E] int64 rollouts and correct rollouts; epochs 0..E-1; ``n == 0`` means
            the prompt was not rolled out that epoch.
        reward_sum: [I, E] float64 sum of rewards.
        length_sum: [I, E] float64 sum of response lengths, or None if lengths were not recorded.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._blocks: list[_Block] = []  # committed first (in file order), then pending
        self._n_committed = 0  # blocks[:n_committed] are on disk
        self._committed_step: int | None = None
        self._ids_on_disk = 0
        self._epoch_totals: dict[int, list[float]] = {}  # epoch -> [n, n_correct, reward_sum]
        self._dense: HistoryArrays | None = None
        self.info: dict[str, Any] = {}
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise HistoryError(f"{self.path}: a reward history is a folder, not a file")
            self.path.mkdir(parents=True, exist_ok=True)
            log = self.path / LOG_NAME
            if log.exists():
                self._load_log(log, repair=True)

    # ------------------------------------------------------------------ recording
    def record(
        self,
        step: int,
        epoch: int,
        ids: Sequence[str],
        correct: torch.Tensor,
        rewards: torch.Tensor,
        lengths: torch.Tensor | None = None,
        epoch_steps: int | None = None,
    ) -> None:
        """Add one training step's N rollouts (``ids`` repeats a prompt's id for each sample).

        Args:
            step: the training step (cells of a step are committed and truncated together).
            epoch: the pass over the training prompts this step belongs to (0-based).
            ids: N prompt ids.
            correct: [N] bool, True where the final answer was right.
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
        index = self._index
        idx = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if (idx < 0).any():
            for pid in ids:
                if pid not in index:
                    index[pid] = len(self._ids)
                    self._ids.append(pid)
            idx = np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids))
        self._add_block(
            step, epoch, *_aggregate(idx, correct_np, rewards_np, lengths_np), epoch_steps
        )

    def _add_block(self, step, epoch, idx, n, nc, rs, ls, epoch_steps=None) -> None:
        es = None if epoch_steps is None else int(epoch_steps)
        self._blocks.append(_Block(int(step), int(epoch), idx, n, nc, rs, ls, es))
        tot = self._epoch_totals.setdefault(int(epoch), [0.0, 0.0, 0.0])
        tot[0] += float(n.sum())
        tot[1] += float(nc.sum())
        tot[2] += float(rs.sum())
        self._dense = None

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
            log = self.path / LOG_NAME
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
            self._dense = None
        if self._committed_step is not None and self._committed_step > step:
            self._committed_step = step
        if self.path is not None and (changed_disk or self._ids[: len(disk_ids)] != disk_ids):
            self._rewrite()

    def _rewrite(self) -> None:
        assert self.path is not None
        log = self.path / LOG_NAME
        tmp = log.with_name(LOG_NAME + ".tmp")
        self._ids_on_disk = 0
        with open(tmp, "wb") as f:
            f.write(FILE_MAGIC)
            for b in self._blocks[: self._n_committed]:
                f.write(self._frame(b))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, log)
        _fsync_dir(self.path)

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
        """Read a history folder (or its ``rewards.log``), in memory only (the file is untouched).

        A torn last frame is ignored; any other damage raises :class:`HistoryError`.
        """
        path = Path(path)
        log = path if path.is_file() else path / LOG_NAME
        if not log.is_file():
            raise HistoryError(f"{path}: no reward history here (expected {LOG_NAME})")
        h = cls(None)
        h._load_log(log, repair=False)
        h.path = None
        return h

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
                return pos  # torn frame header
            magic, length, crc = _FRAME.unpack(f.read(_FRAME.size))
            end = pos + _FRAME.size + length
            if magic != FRAME_MAGIC:
                f.seek(pos)
                if not any(_chunks(f)):
                    return pos  # zero-filled tail of a crash
                raise HistoryError(f"{log}: corrupt at byte {pos} (bad frame marker)")
            if end > size:
                return pos  # torn payload
            payload = f.read(length)
            if zlib.crc32(payload) != crc:
                if end == size:
                    return pos  # the last frame was torn
                raise HistoryError(f"{log}: corrupt at byte {pos} (checksum mismatch)")
            try:
                self._read_payload(memoryview(payload))
            except (ValueError, KeyError, UnicodeDecodeError) as err:
                raise HistoryError(f"{log}: corrupt frame at byte {pos}: {err}") from None
            pos = end
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
    ) -> RewardHistory:
        """A memory-only history from [I, E] arrays (all cells count as recorded at ``step``)."""
        n_np = np.asarray(n, dtype=np.int64)
        nc_np = np.asarray(n_correct, dtype=np.int64)
        rs_np = np.asarray(reward_sum, dtype=np.float64)
        ls_np = None if length_sum is None else np.asarray(length_sum, dtype=np.float64)
        if n_np.ndim != 2 or n_np.shape[0] != len(ids):
            raise HistoryError(f"from_arrays: n must be [I={len(ids)}, E], got {n_np.shape}")
        h = cls(None)
        h._ids = [str(i) for i in ids]
        h._index = {pid: j for j, pid in enumerate(h._ids)}
        if len(h._index) != len(h._ids):
            raise HistoryError("from_arrays: duplicate ids")
        for e in range(n_np.shape[1]):
            rows = np.flatnonzero(n_np[:, e] > 0)
            if len(rows):
                h._add_block(
                    step,
                    e,
                    rows,
                    n_np[rows, e],
                    nc_np[rows, e],
                    rs_np[rows, e],
                    None if ls_np is None else ls_np[rows, e],
                )
        # The dense arrays are already known: cache them (no densify on first use).
        h._dense = HistoryArrays(
            ids=h._ids,
            n=torch.from_numpy(np.ascontiguousarray(n_np)),
            n_correct=torch.from_numpy(np.ascontiguousarray(nc_np)),
            reward_sum=torch.from_numpy(np.ascontiguousarray(rs_np)),
            length_sum=None if ls_np is None else torch.from_numpy(np.ascontiguousarray(ls_np)),
        )
        return h

    # ------------------------------------------------------------------ reading (HistoryLike)
    def _arrays(self) -> HistoryArrays:
        if self._dense is not None:
            return self._dense
        num_i = len(self._ids)
        num_e = max((b.epoch for b in self._blocks), default=-1) + 1
        has_len = bool(self._blocks) and all(b.length_sum is not None for b in self._blocks)
        # Epoch-major [E, I] while scattering (a block writes one row, near-sequentially), then
        # one transposing copy to [I, E]: ~2.5x faster than scattering into columns.
        n = np.zeros((num_e, num_i), np.int64)
        nc = np.zeros((num_e, num_i), np.int64)
        rs = np.zeros((num_e, num_i), np.float64)
        ls = np.zeros((num_e, num_i), np.float64) if has_len else None
        for b in self._blocks:
            # a block's prompt indices are unique, so a fancy-index += adds each cell once
            n[b.epoch, b.idx] += b.n
            nc[b.epoch, b.idx] += b.n_correct
            rs[b.epoch, b.idx] += b.reward_sum
            if ls is not None:
                ls[b.epoch, b.idx] += b.length_sum
        n, nc, rs = (np.ascontiguousarray(a.T) for a in (n, nc, rs))
        ls = None if ls is None else np.ascontiguousarray(ls.T)
        self._dense = HistoryArrays(
            ids=list(self._ids),
            n=torch.from_numpy(n),
            n_correct=torch.from_numpy(nc),
            reward_sum=torch.from_numpy(rs),
            length_sum=None if ls is None else torch.from_numpy(ls),
        )
        return self._dense

    @property
    def ids(self) -> list[str]:
        return self._arrays().ids

    @property
    def n(self) -> torch.Tensor:
        return self._arrays().n

    @property
    def n_correct(self) -> torch.Tensor:
        return self._arrays().n_correct

    @property
    def reward_sum(self) -> torch.Tensor:
        return self._arrays().reward_sum

    @property
    def length_sum(self) -> torch.Tensor | None:
        return self._arrays().length_sum

    @property
    def num_epochs(self) -> int:
        return max(self._epoch_totals, default=-1) + 1

    @property
    def num_prompts(self) -> int:
        return len(self._ids)

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
    """One dict per (prompt, epoch) cell with rollouts, prompt by prompt (for export)."""
    n = history.n.numpy()
    nc = history.n_correct.numpy()
    rs = history.reward_sum.numpy()
    ls = history.length_sum
    ls = None if ls is None else ls.numpy()
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


def whole_epochs(history: Any) -> tuple[Any, dict[str, Any]]:
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

    Returns:
        (view, info): ``history`` itself when every epoch is kept, else its first k epochs (a
        :class:`HistoryArrays` view); ``info`` = {"epochs_recorded": E, "epochs_dropped": E - k,
        "partial_epoch": None, or {"epoch", "steps" recorded, "of" (its steps in all, or None),
        "prompts" rolled out in it, "dropped"}}.
    """
    num_e = int(history.n.shape[1])
    info: dict[str, Any] = {"epochs_recorded": num_e, "epochs_dropped": 0, "partial_epoch": None}
    if num_e == 0:
        return history, info
    nonempty = torch.nonzero(history.n.sum(dim=0) > 0).squeeze(1)
    if len(nonempty) == 0:
        return history, info
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
            "prompts": int((history.n[:, last] > 0).sum()),
            "dropped": dropped,
        }
        if dropped:
            keep = last
    info["epochs_dropped"] = num_e - keep
    if keep == num_e:
        return history, info
    return _head(history, keep), info


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bool]:
    """True for each non-zero byte block of the rest of ``f``, False for all-zero ones."""
    while block := f.read(size):
        yield block.count(0) != len(block)


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


# ---------------------------------------------------------------------------------------------
# LIMR / OpenRLHF rollout logs

_STEP_FILE = re.compile(r"^step_(\d+)\.jsonl?$")


def iter_json_array(path: str | Path, chunk_chars: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a JSON array file one at a time.

    Memory is O(chunk_chars + the largest element), not O(file): the file is read in chunks and
    each element is decoded as soon as it is complete.
    """
    decoder = json.JSONDecoder()
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        buf = ""
        pos = 0
        eof = False
        want = chunk_chars

        def more() -> bool:
            nonlocal buf, pos, eof, want
            if eof:
                return False
            chunk = f.read(want)
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not more():
                    return ""

        if skip_ws() != "[":
            raise HistoryError(f"{path}: expected a JSON list of rollouts")
        pos += 1
        if skip_ws() == "]":
            return
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as err:
                # Incomplete element: read more (growing the read so that one huge element costs
                # O(its size) overall), or fail at the end of the file.
                if more():
                    want = max(want, len(buf))
                    continue
                raise HistoryError(f"{path}: not valid JSON near character {err.pos}") from None
            want = chunk_chars
            pos = end
            yield obj
            c = skip_ws()
            if c == ",":
                pos += 1
                skip_ws()
            elif c == "]":
                return
            else:
                raise HistoryError(f"{path}: expected ',' or ']' after an element")


def _iter_step_records(path: Path) -> Iterator[Any]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise HistoryError(f"{path}:{lineno}: not valid JSON: {err.msg}") from None
    else:
        yield from iter_json_array(path)


def step_files(folder: str | Path) -> list[tuple[int, Path]]:
    """The ``step_N.json`` / ``step_N.jsonl`` files of a folder, sorted by N."""
    folder = Path(folder)
    found = []
    for p in folder.iterdir():
        m = _STEP_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def read_openrlhf_logs(
    folder: str | Path,
    steps_per_epoch: int,
    max_epochs: int | None = None,
    *,
    first_step: int = 1,
    correct_reward: float = 1.0,
    prompt_field: str = "prompt",
    reward_field: str = "reward",
    response_field: str = "response",
) -> RewardHistory:
    """Read LIMR/OpenRLHF rollout logs into a memory-only history keyed by prompt text.

    The folder holds ``step_N.json`` files (N from ``first_step``), each a JSON list of
    ``{prompt, response, reward, ...}``; step N belongs to epoch ``(N - first_step) //
    steps_per_epoch``. A rollout is correct when its reward equals ``correct_reward`` (LIMR: +1;
    -0.5 and -1 both count as wrong). Ids are the stripped prompt texts. Lengths are response
    lengths in characters.

    Memory: files are parsed one element at a time (:func:`iter_json_array`), so the bound is
    O(one step's prompts + the largest rollout + prompts x epochs), whatever the logs' total size.
    """
    if steps_per_epoch < 1:
        raise HistoryError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
    folder = Path(folder)
    if not folder.is_dir():
        raise HistoryError(f"{folder}: not a folder of step_N.json rollout logs")
    files = step_files(folder)
    if not files:
        raise HistoryError(f"{folder}: no step_N.json files")
    h = RewardHistory(None)
    read: list[int] = []
    for step, path in files:
        if step < first_step:
            continue
        epoch = (step - first_step) // steps_per_epoch
        if max_epochs is not None and epoch >= max_epochs:
            continue
        # One step's rollouts aggregated per prompt: O(prompts in the step) memory.
        per_prompt: dict[str, list[float]] = {}
        for k, rec in enumerate(_iter_step_records(path)):
            try:
                prompt = rec[prompt_field].strip()
                reward = float(rec[reward_field])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise HistoryError(
                    f"{path}: rollout {k + 1} lacks a text {prompt_field!r} or a numeric "
                    f"{reward_field!r}"
                ) from None
            response = rec.get(response_field)
            length = len(response) if isinstance(response, str) else 0
            acc = per_prompt.get(prompt)
            if acc is None:
                per_prompt[prompt] = [1.0, float(reward == correct_reward), reward, length]
            else:
                acc[0] += 1.0
                acc[1] += reward == correct_reward
                acc[2] += reward
                acc[3] += length
        if per_prompt:
            for prompt in per_prompt:
                if prompt not in h._index:
                    h._index[prompt] = len(h._ids)
                    h._ids.append(prompt)
            idx = np.fromiter((h._index[p] for p in per_prompt), np.int64, len(per_prompt))
            sums = np.array(list(per_prompt.values()), dtype=np.float64).reshape(-1, 4)
            order = np.argsort(idx)
            h._add_block(
                step,
                epoch,
                idx[order],
                np.rint(sums[order, 0]).astype(np.int64),
                np.rint(sums[order, 1]).astype(np.int64),
                sums[order, 2].copy(),
                sums[order, 3].copy(),
                steps_per_epoch,
            )
        read.append(step)
    if not read:
        raise HistoryError(f"{folder}: no step files within the first {max_epochs} epochs")
    expected_last = read[-1]
    missing = sorted(set(range(first_step, expected_last + 1)) - set(read))
    h.info.update(
        source=str(folder),
        steps_read=len(read),
        first_step=read[0],
        last_step=read[-1],
        missing_steps=missing,
        steps_per_epoch=steps_per_epoch,
    )
    h._committed_step = read[-1]
    h._n_committed = len(h._blocks)
    return h


def find_history(path: str | Path) -> Path | None:
    """The history folder at ``path`` (a history folder, its log, or a run folder), else None."""
    path = Path(path)
    if path.is_file() and path.name == LOG_NAME:
        return path.parent
    if (path / LOG_NAME).is_file():
        return path
    if (path / HISTORY_DIRNAME / LOG_NAME).is_file():
        return path / HISTORY_DIRNAME
    return None
