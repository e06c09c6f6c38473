"""RewardHistory: counts per (prompt, epoch), durable commits, torn tails and damaged frames,
truncate on resume, shards of several processes merged on read, saving, no torch on import, and
LIM without torch (equal to the selector's). The readers of other frameworks' rollout logs are
tested in test_importers.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from limr.history import (
    LOG_NAME,
    HistoryArrays,
    HistoryError,
    RewardHistory,
    epoch_complete,
    find_history,
    iter_cells,
    whole_epochs,
)
from limr.types import HistoryLike

ROOT = Path(__file__).resolve().parent.parent


def _record(h: RewardHistory, step: int, epoch: int, rows: list[tuple[str, bool, float]]) -> None:
    h.record(
        step,
        epoch,
        [r[0] for r in rows],
        torch.tensor([r[1] for r in rows]),
        torch.tensor([r[2] for r in rows]),
    )


def _same(a, b) -> None:
    assert a.ids == b.ids
    for name in ("n", "n_correct", "reward_sum"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_record_accumulates_counts_per_prompt_and_epoch():
    h = RewardHistory()
    # step 1, epoch 0: prompt a: 2 samples, one right (+1) one wrong (-0.5); b: 1 wrong (-1)
    _record(h, 1, 0, [("a", True, 1.0), ("a", False, -0.5), ("b", False, -1.0)])
    # step 2, epoch 1: b twice right; a is absent this epoch
    _record(h, 2, 1, [("b", True, 1.0), ("b", True, 1.0)])
    assert isinstance(h, HistoryLike)
    assert h.ids == ["a", "b"]
    assert h.n.tolist() == [[2, 0], [1, 2]]
    assert h.n_correct.tolist() == [[1, 0], [0, 2]]
    assert h.reward_sum.tolist() == [[0.5, 0.0], [-1.0, 2.0]]
    assert h.length_sum is None
    assert h.num_epochs == 2
    assert h.epoch_mean_accuracy(0) == pytest.approx(1 / 3)
    assert h.epoch_mean_accuracy(1) == 1.0
    assert h.epoch_mean_reward(0) == pytest.approx(-0.5 / 3)
    assert h.head(1).n.tolist() == [[2], [1]]
    cells = list(iter_cells(h))
    assert cells[0] == {"id": "a", "epoch": 0, "n": 2, "n_correct": 1, "reward_sum": 0.5,
                        "epoch_complete": True}  # fmt: skip
    assert len(cells) == 3


def test_lengths_are_summed():
    h = RewardHistory()
    h.record(1, 0, ["a", "a"], torch.tensor([1, 0]), torch.tensor([1.0, 0.0]), torch.tensor([3, 5]))
    assert h.length_sum.tolist() == [[8.0]]


def test_commit_then_reopen_gives_the_same_history(tmp_path):
    h = RewardHistory(tmp_path / "hist")
    _record(h, 1, 0, [("x", True, 1.0), ("y", False, -1.0)])
    _record(h, 2, 0, [("z", True, 1.0), ("x", False, -0.5)])
    h.commit(2)
    _record(h, 3, 1, [("x", True, 1.0)])  # recorded, never committed: lost on a crash
    again = RewardHistory(tmp_path / "hist")
    assert again.committed_step == 2
    assert again.n.tolist() == [[2], [1], [1]]
    assert RewardHistory.load(tmp_path / "hist").ids == ["x", "y", "z"]
    assert find_history(tmp_path / "hist") == tmp_path / "hist"
    h.commit(3)
    _same(RewardHistory.load(tmp_path / "hist"), h)


def test_commit_writes_only_steps_up_to_the_given_one(tmp_path):
    h = RewardHistory(tmp_path)
    _record(h, 1, 0, [("a", True, 1.0)])
    _record(h, 2, 0, [("b", True, 1.0)])
    h.commit(1)
    assert RewardHistory.load(tmp_path).ids == ["a"]
    h.commit(2)
    assert RewardHistory.load(tmp_path).ids == ["a", "b"]


def test_recording_a_committed_step_again_is_refused(tmp_path):
    h = RewardHistory(tmp_path)
    _record(h, 1, 0, [("a", True, 1.0)])
    h.commit(1)
    with pytest.raises(HistoryError, match="truncate"):
        _record(h, 1, 0, [("a", True, 1.0)])


def test_truncate_then_replay_neither_loses_nor_duplicates(tmp_path):
    steps = {
        1: (0, [("a", True, 1.0), ("b", False, -1.0)]),
        2: (0, [("c", True, 1.0)]),
        3: (1, [("a", False, -0.5), ("d", True, 1.0)]),
        4: (1, [("b", True, 1.0)]),
    }
    ref = RewardHistory()
    for s, (e, rows) in steps.items():
        _record(ref, s, e, rows)
    h = RewardHistory(tmp_path)
    for s, (e, rows) in steps.items():
        _record(h, s, e, rows)
        h.commit(s)
    # The process died after step 4; the checkpoint is from step 2.
    resumed = RewardHistory(tmp_path)
    resumed.truncate(2)
    assert resumed.ids == ["a", "b", "c"]
    assert RewardHistory.load(tmp_path).ids == ["a", "b", "c"]
    for s in (3, 4):
        _record(resumed, s, *steps[s])
        resumed.commit(s)
    _same(resumed, ref)
    _same(RewardHistory.load(tmp_path), ref)


def test_truncate_drops_pending_steps_too(tmp_path):
    h = RewardHistory(tmp_path)
    _record(h, 1, 0, [("a", True, 1.0)])
    h.commit(1)
    _record(h, 2, 0, [("b", True, 1.0)])
    h.truncate(1)
    assert h.ids == ["a"]
    _record(h, 2, 0, [("c", False, 0.0)])
    h.commit(2)
    assert RewardHistory.load(tmp_path).ids == ["a", "c"]


def test_every_cut_of_the_file_reads_as_a_prefix_of_whole_steps(tmp_path):
    """A process killed while appending leaves a file cut anywhere: it must read as whole steps."""
    src = tmp_path / "src"
    h = RewardHistory(src)
    expected = []
    for s in range(1, 5):
        _record(h, s, s // 3, [(f"p{s}", s % 2 == 0, 1.0), ("common", True, 1.0)])
        h.commit(s)
        expected.append(RewardHistory.load(src).n.sum().item())
    data = (src / LOG_NAME).read_bytes()
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    for cut in range(len(data)):
        (cut_dir / LOG_NAME).write_bytes(data[:cut])
        got = RewardHistory.load(cut_dir)
        total = got.n.sum().item() if got.num_prompts else 0
        assert total in [0, *expected], cut
    # Reopening for writing cuts the torn tail so that later appends stay readable.
    (cut_dir / LOG_NAME).write_bytes(data[:-3])
    h2 = RewardHistory(cut_dir)
    assert h2.committed_step == 3
    _record(h2, 4, 1, [("p4", True, 1.0), ("common", True, 1.0)])
    h2.commit(4)
    _same(RewardHistory.load(cut_dir), RewardHistory.load(src))


def test_damage_before_the_end_is_an_error(tmp_path):
    h = RewardHistory(tmp_path)
    for s in (1, 2):
        _record(h, s, 0, [(f"p{s}", True, 1.0)])
        h.commit(s)
    good = (tmp_path / LOG_NAME).read_bytes()
    # a crash can leave the file extended with zeros: that tail is ignored
    (tmp_path / LOG_NAME).write_bytes(good + bytes(100))
    assert RewardHistory.load(tmp_path).ids == ["p1", "p2"]
    (tmp_path / LOG_NAME).write_bytes(good + b"garbage that is not a frame")
    with pytest.raises(HistoryError, match="bad frame marker"):
        RewardHistory.load(tmp_path)
    data = bytearray(good)
    data[40] ^= 0xFF  # inside the first frame
    (tmp_path / LOG_NAME).write_bytes(bytes(data))
    with pytest.raises(HistoryError, match="corrupt"):
        RewardHistory.load(tmp_path)
    (tmp_path / LOG_NAME).write_bytes(b"something else entirely")
    with pytest.raises(HistoryError, match="not a limr reward history"):
        RewardHistory.load(tmp_path)
    with pytest.raises(HistoryError, match="no reward history"):
        RewardHistory.load(tmp_path / "nowhere")


_WRITER = """
import sys, torch
from limr.history import RewardHistory
h = RewardHistory(sys.argv[1])
step = (h.committed_step or 0) + 1
print("ready", flush=True)
while True:
    ids = [f"p{i}" for i in range(200) for _ in range(4)]
    h.record(step, step // 10, ids, torch.ones(800, dtype=torch.bool), torch.ones(800))
    h.commit(step)
    step += 1
"""


def test_a_process_killed_while_committing_leaves_a_readable_history(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    h = RewardHistory(tmp_path)
    assert h.committed_step is not None and h.committed_step >= 1
    # Each committed step added 4 correct rollouts to every one of the 200 prompts.
    assert int(h.n.sum()) == 800 * h.committed_step
    assert torch.equal(h.n, h.n_correct)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from("abcde"), st.booleans(), st.sampled_from([1.0, -0.5, -1.0])),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 3),
)
def test_history_equals_a_naive_count(tmp_path_factory, steps, steps_per_epoch):
    folder = tmp_path_factory.mktemp("h")
    h = RewardHistory(folder)
    naive: dict[tuple[str, int], list[float]] = {}
    for s, rows in enumerate(steps, 1):
        e = (s - 1) // steps_per_epoch
        _record(h, s, e, rows)
        if s % 2 == 0:
            h.commit(s)
        for pid, ok, r in rows:
            cell = naive.setdefault((pid, e), [0, 0, 0.0])
            cell[0] += 1
            cell[1] += ok
            cell[2] += r
    h.commit(len(steps))
    for hist in (h, RewardHistory.load(folder)):
        got = {
            (c["id"], c["epoch"]): [c["n"], c["n_correct"], c["reward_sum"]]
            for c in iter_cells(hist)
        }
        assert got.keys() == naive.keys()
        for key, (n, nc, rs) in naive.items():
            assert got[key][:2] == [n, nc]
            assert got[key][2] == pytest.approx(rs)


def test_from_arrays_matches_recorded():
    h = RewardHistory.from_arrays(
        ["a", "b"], [[2, 0], [1, 2]], [[1, 0], [0, 2]], [[0.5, 0], [-1, 2]]
    )
    ref = RewardHistory()
    _record(ref, 1, 0, [("a", True, 1.0), ("a", False, -0.5), ("b", False, -1.0)])
    _record(ref, 2, 1, [("b", True, 1.0), ("b", True, 1.0)])
    _same(h, ref)
    assert h.epoch_mean_accuracy(0) == ref.epoch_mean_accuracy(0)


# ------------------------------------------------------------------ whole epochs


def _train_like(h: RewardHistory, pool: int, batch: int, max_steps: int, epoch_steps=True):
    """Record what the trainer records: epochs of pool // batch steps (drop_last) of a seeded
    permutation, stopping after max_steps steps (possibly mid-epoch)."""
    steps = pool // batch
    gen = torch.Generator().manual_seed(0)
    for step in range(max_steps):
        epoch, pos = divmod(step, steps)
        perm = torch.randperm(pool, generator=torch.Generator().manual_seed(epoch))
        ids = [f"p{j}" for j in perm[pos * batch : (pos + 1) * batch].tolist() for _ in range(2)]
        correct = torch.rand(len(ids), generator=gen) < 0.5
        h.record(
            step, epoch, ids, correct, correct.float(), epoch_steps=steps if epoch_steps else None
        )
        h.commit(step)


def test_epoch_steps_tell_a_partial_last_epoch_and_survive_reopening(tmp_path):
    # smollm2_gpu.yaml in small: 32 steps an epoch, max_steps 60 -> epoch 1 has 28 of 32 steps
    h = RewardHistory(tmp_path / "hist")
    _train_like(h, pool=128, batch=4, max_steps=60)
    assert h.epoch_steps(0) == (32, 32) and h.epoch_steps(1) == (28, 32)
    assert h.epoch_complete(0) is True and h.epoch_complete(1) is False
    again = RewardHistory.load(tmp_path / "hist")
    assert again.epoch_steps(1) == (28, 32) and again.epoch_complete(1) is False
    view, info = whole_epochs(again)
    assert view.n.shape == (128, 1)
    assert info["epochs_recorded"] == 2 and info["epochs_dropped"] == 1
    assert info["partial_epoch"] == {
        "epoch": 1, "steps": 28, "of": 32, "prompts": 112, "dropped": True
    }  # fmt: skip
    # truncating back into epoch 0 keeps what is known about it
    h.truncate(20)
    assert h.epoch_steps(0) == (21, 32) and h.epoch_complete(0) is False
    # a whole last epoch is kept as it is
    full = RewardHistory()
    _train_like(full, pool=128, batch=4, max_steps=64)
    view, info = whole_epochs(full)
    assert view is full and info["epochs_dropped"] == 0 and info["partial_epoch"] is None


def test_whole_epochs_without_recorded_epoch_steps():
    # a history written before limr recorded epoch_steps: the last epoch is partial when it has
    # fewer steps than the one before it
    old = RewardHistory()
    _train_like(old, pool=64, batch=8, max_steps=13, epoch_steps=False)
    assert old.epoch_steps(1) == (5, None)
    assert old.epoch_complete(0) is True and old.epoch_complete(1) is False
    view, info = whole_epochs(old)
    assert view.n.shape[1] == 1 and info["partial_epoch"]["of"] is None
    whole = RewardHistory()
    _train_like(whole, pool=64, batch=8, max_steps=16, epoch_steps=False)
    assert whole.epoch_complete(1) is True
    # one partial epoch, the only one: kept (nothing else to score), and said so
    single = RewardHistory()
    _train_like(single, pool=64, batch=8, max_steps=3)
    view, info = whole_epochs(single)
    assert view is single and info["epochs_dropped"] == 0
    assert info["partial_epoch"]["dropped"] is False and info["partial_epoch"]["steps"] == 3
    # without step counts at all it cannot tell: an unknown last epoch counts as whole
    assert RewardHistory().epoch_complete(0) is None
    arrays = RewardHistory.from_arrays(
        ["a", "b"], [[1, 1], [1, 0]], [[0, 1], [1, 0]], [[0, 1], [1, 0]]
    )
    assert whole_epochs(arrays)[1]["epochs_dropped"] == 0
    # trailing epochs without any rollout are left out
    empty_tail = RewardHistory.from_arrays(["a"], [[2, 2, 0]], [[1, 1, 0]], [[1, 1, 0]])
    view, info = whole_epochs(empty_tail)
    assert view.n.shape[1] == 2 and info["epochs_dropped"] == 1


def test_head_knows_whether_it_ends_on_a_whole_epoch():
    h = RewardHistory()
    _train_like(h, pool=64, batch=8, max_steps=20)  # epochs 0, 1 whole; epoch 2: 4 of 8 steps
    assert h.head(2).last_epoch_complete is True  # cut before the partial epoch
    assert h.head(3).last_epoch_complete is False and h.head(5).last_epoch_complete is False
    assert whole_epochs(h.head(3))[0].n.shape[1] == 2
    arrays = HistoryArrays(["a"], h.n[:1], h.n_correct[:1], h.reward_sum[:1])
    assert epoch_complete(arrays, 0) is True and epoch_complete(arrays, 2) is None


# ------------------------------------------------------------------ damaged frame headers


def _three_steps(folder: Path) -> bytes:
    h = RewardHistory(folder)
    for s in (1, 2, 3):
        _record(h, s, 0, [(f"p{s}", True, 1.0), ("common", s % 2 == 0, -0.5)])
        h.commit(s)
    return (folder / LOG_NAME).read_bytes()


def _frame_starts(data: bytes) -> list[int]:
    from limr.history import _FRAME, FILE_MAGIC

    pos, starts = len(FILE_MAGIC), []
    while pos < len(data):
        starts.append(pos)
        _, length, _ = _FRAME.unpack_from(data, pos)
        pos += _FRAME.size + length
    return starts


@pytest.mark.parametrize("new_length", [10**6, 2**63, 3])
def test_a_damaged_length_in_a_middle_frame_is_an_error_not_a_torn_tail(tmp_path, new_length):
    """The checksum covers the payload only: a middle frame whose length field is damaged
    used to read as a torn tail, and reopening for training cut the valid frames after it."""
    good = _three_steps(tmp_path / "src")
    starts = _frame_starts(good)
    assert len(starts) == 3
    data = bytearray(good)
    data[starts[1] + 4 : starts[1] + 12] = new_length.to_bytes(8, "little")  # frame 2's length
    (tmp_path / "bad").mkdir()
    log = tmp_path / "bad" / LOG_NAME
    log.write_bytes(bytes(data))
    with pytest.raises(HistoryError, match=f"corrupt at byte {starts[1]}"):
        RewardHistory.load(tmp_path / "bad")
    with pytest.raises(HistoryError, match="corrupt"):
        RewardHistory(tmp_path / "bad")  # reopening for training
    assert log.read_bytes() == bytes(data)  # nothing was cut
    # the same damage in the last frame is a torn tail: ignored, and cut on reopening
    data = bytearray(good)
    data[starts[2] + 4 : starts[2] + 12] = (10**6).to_bytes(8, "little")
    log.write_bytes(bytes(data))
    assert RewardHistory.load(tmp_path / "bad").ids == ["p1", "common", "p2"]
    assert RewardHistory(tmp_path / "bad").committed_step == 2
    assert log.stat().st_size == starts[2]


def test_damaged_frame_marker_or_payload_in_the_middle_is_an_error(tmp_path):
    good = _three_steps(tmp_path / "src")
    starts = _frame_starts(good)
    (tmp_path / "bad").mkdir()
    for offset in (starts[1], starts[1] + 14, starts[1] + 30):
        data = bytearray(good)
        data[offset] ^= 0xFF
        (tmp_path / "bad" / LOG_NAME).write_bytes(bytes(data))
        with pytest.raises(HistoryError, match="corrupt"):
            RewardHistory.load(tmp_path / "bad")


# ------------------------------------------------------------------ shards, save, numpy


def test_shards_of_several_processes_are_merged_on_read(tmp_path):
    run = tmp_path / "run"
    ranks = [RewardHistory(run / "history", shard=f"rank{r}") for r in range(3)]
    ref = RewardHistory()
    for step in (1, 2):
        rows = {0: [("a", True, 1.0)], 1: [("b", False, -1.0), ("a", False, -0.5)], 2: []}
        for r, h in enumerate(ranks):
            if rows[r]:
                _record(h, step, step - 1, rows[r])
            h.commit(step)
        _record(ref, step, step - 1, rows[0] + rows[1])
    names = sorted(p.name for p in (run / "history").iterdir())
    assert names == ["rewards.rank0.log", "rewards.rank1.log"]  # rank 2 recorded nothing
    assert find_history(run) == run / "history"
    merged = RewardHistory.load(run)
    _same(merged, ref)
    assert merged.info["shards"] == names and merged.committed_step == 2
    # a shard reopened by its process continues it
    again = RewardHistory(run / "history", shard="rank1")
    assert again.committed_step == 2 and again.ids == ["b", "a"]
    with pytest.raises(HistoryError, match="shard name"):
        RewardHistory(run / "history", shard="../x")


def test_save_writes_a_whole_history_or_nothing(tmp_path):
    h = RewardHistory()
    _record(h, 1, 0, [("x", True, 1.0), ("y", False, -1.0)])
    _record(h, 2, 1, [("y", True, 1.0), ("z", True, 1.0)])
    h.commit(1)  # pending cells are saved too
    out = h.save(tmp_path / "run" / "history")
    assert sorted(p.name for p in out.iterdir()) == [LOG_NAME]
    _same(RewardHistory.load(out), h)
    with pytest.raises(HistoryError, match="already exists"):
        h.save(out)
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no leftovers
    assert h.first_epochs(1).ids == ["x", "y"] and h.first_epochs(1).num_epochs == 1


def test_numpy_arrays_equal_the_torch_ones_and_cut_like_head():
    h = RewardHistory()
    _train_like(h, pool=16, batch=4, max_steps=10)  # epoch 2 partial
    arrays = h.numpy_arrays()
    for name in ("n", "n_correct", "reward_sum"):
        assert (getattr(arrays, name) == getattr(h, name).numpy()).all()
    assert arrays.last_epoch_complete is False
    cut, head = h.numpy_arrays(("n", "n_correct"), epochs=2), h.head(2)
    assert (cut.n == head.n.numpy()).all() and cut.reward_sum is None
    assert cut.last_epoch_complete is head.last_epoch_complete is True
    assert whole_epochs(h, arrays)[1] == whole_epochs(h)[1]


def test_importing_the_history_imports_no_torch():
    code = (
        "import sys, limr.history, limr.importers, limr.cli.score, limr.cli.history\n"
        "print(sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ LIM without torch


def _random_history(seed: int, prompts: int, epochs: int, partial: bool) -> RewardHistory:
    gen = torch.Generator().manual_seed(seed)
    n = torch.randint(1, 9, (prompts, epochs), generator=gen)
    n[torch.rand(prompts, epochs, generator=gen) < 0.15] = 0  # missing cells, some twice in a row
    nc = torch.minimum(torch.randint(0, 9, (prompts, epochs), generator=gen), n)
    rs = nc - 0.5 * (n - nc)
    h = RewardHistory()
    ids = [f"p{i}" for i in range(prompts)]
    for e in range(epochs):
        rows = torch.nonzero(n[:, e] > 0).squeeze(1).tolist()
        last = partial and e == epochs - 1
        for half in (rows[: len(rows) // 2], [] if last else rows[len(rows) // 2 :]):
            step = 2 * e + (half is not rows[: len(rows) // 2])
            if half:
                idx = h.intern([ids[i] for i in half])
                h.add_cells(step, e, idx, n[half, e].numpy(), nc[half, e].numpy(),
                            rs[half, e].double().numpy(), epoch_steps=2)  # fmt: skip
    return h


@pytest.mark.parametrize("seed", range(6))
def test_torch_free_lim_gives_the_selectors_scores(seed):
    """limr score's numpy LIM against the lim selector: the same prompts scored, the same
    average curve and scores up to the order of floating-point additions (torch's reduction
    kernels depend on the CPU's vector width, so bit-for-bit is not a property even torch has
    across machines), and the same prompts kept at every threshold."""
    import limr.selectors  # noqa: F401
    from limr.history import lim_scores
    from limr.registry import SELECTORS

    prompts, epochs = [(1, 1), (7, 2), (300, 5), (2000, 21), (40000, 3), (50, 12)][seed]
    h = _random_history(seed, prompts, epochs, partial=seed % 2 == 1)
    for metric in ("accuracy", "reward"):
        for whole in (True, False):
            sel = SELECTORS.build("lim", metric=metric, whole_epochs=whole).select(h)
            ids, scores, info = lim_scores(h, metric, whole)
            assert ids == sel.ids
            ref = sel.scores.numpy()
            assert scores.shape == ref.shape
            assert (abs(scores - ref) <= 1e-12).all()
            assert (abs(torch.tensor(info["avg_curve"]) - torch.tensor(sel.info["avg_curve"]))
                    <= 1e-15).all()  # fmt: skip
            for key in ("epochs", "epochs_recorded", "epochs_dropped", "partial_epoch",
                        "unscored", "n_prompts", "n_scored", "filled_cells"):  # fmt: skip
                assert info[key] == sel.info[key], key
            for t in (-2.0, 0.0, 0.3, 0.6, 0.9):
                assert ((scores >= t) == (ref >= t)).all()
    # every prompt perfect in every epoch: all follow the average exactly
    perfect = RewardHistory.from_arrays(["a", "b"], [[2, 2], [1, 1]], [[2, 2], [1, 1]],
                                        [[2, 2], [1, 1]])  # fmt: skip
    assert lim_scores(perfect)[1].tolist() == [1.0, 1.0]


def test_score_record_writes_nonfinite_scores_as_json_can_hold_them():
    import json

    from limr.history import score_record

    assert score_record("id", "a", 0.25) == {"id": "a", "score": 0.25}
    assert score_record("prompt", "p", 1) == {"prompt": "p", "score": 1.0}
    for value, name in ((-float("inf"), "-inf"), (float("inf"), "inf"), (float("nan"), "nan")):
        rec = score_record("id", "a", value)
        assert rec == {"id": "a", "score": None, "nonfinite": name}
        assert json.loads(json.dumps(rec, allow_nan=False)) == rec
