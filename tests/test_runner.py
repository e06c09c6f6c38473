"""``limr run`` with worker processes (limr/runner.py): arms trained concurrently give exactly the
numbers of arms trained one after the other; a failed job stops the run naming its log; Ctrl-C
stops the workers; a re-run skips finished arms and resumes the rest; ``--plan`` / ``--only``.

One reference run (one process, ``run.workers=1``) is shared by the tests; every run here is the
quick config with three arms and seed 0 (which also checks that seed 0 is a seed like another).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from limr.cli import main
from limr.config import load_config
from limr.pipeline import Pipeline
from limr.runner import JobError, execute_job, resolve_workers

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "configs/quick.yaml"
ARMS = ("full", "lim", "curriculum")
OVERRIDES = [
    # the shipped tiny base as a plain model folder: these runs never warm up a tiny model
    f"model.name_or_path={ROOT / 'limr/data/tiny_base'}",
    "trainer.progress=false",
    "run.seeds=[0]",
    f"run.arms=[{','.join(ARMS)}]",
    "eval.max_problems=20",
]

pytestmark = pytest.mark.slow


def _cfg(run_dir: Path, *extra: str):
    return load_config(QUICK, [*OVERRIDES, f"run.run_dir={run_dir}", *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The three arms trained one after the other in this process."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    Pipeline(_cfg(run_dir, "run.workers=1"), log=lambda _line: None).run()
    return run_dir


def _numbers(run_dir: Path) -> dict:
    """Everything an arm's result is made of: final weights' digest, per-step training metrics
    (not timings), reward history, held-out curve, and eval.json."""
    from limr.history import RewardHistory
    from limr.models import load_policy
    from limr.train import weights_digest

    out: dict = {"eval": json.loads((run_dir / "eval.json").read_text())}
    for arm in ARMS:
        d = run_dir / "arms" / f"{arm}-s0"
        policy, _ = load_policy(str(d / "final"))
        metrics = {}
        for line in (d / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            metrics[row["step"]] = {k: v for k, v in row.items() if not k.startswith("time/")}
        h = RewardHistory.load(d / "history")
        out[arm] = {
            "weights": weights_digest(policy),
            "metrics": metrics,
            "history": (list(h.ids), h.n.tolist(), h.n_correct.tolist(), h.reward_sum.tolist()),
            "heldout": (d / "heldout.jsonl").read_text().splitlines(),
        }
    return out


def _assert_same_numbers(run_dir: Path, reference: Path) -> None:
    got, want = _numbers(run_dir), _numbers(reference)
    for arm in ARMS:
        for key in ("weights", "metrics", "history"):
            assert got[arm][key] == want[arm][key], f"{arm}: {key} differs"
        # a resumed arm evaluates its checkpoint step twice; read_heldout keeps the last
        assert sorted(set(got[arm]["heldout"])) == sorted(set(want[arm]["heldout"]))
    assert got["eval"] == want["eval"]


def _mtimes(run_dir: Path) -> dict[str, int]:
    return {
        p.parent.name: p.stat().st_mtime_ns for p in (run_dir / "arms").glob("*/train_summary.json")
    }


def fail_lim(cfg, name, base_path):
    """A worker's job function whose LIM arm fails (a module-level function: workers import it)."""
    if name == "lim-s0":
        raise RuntimeError("injected failure")
    return execute_job(cfg, name, base_path)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def _interrupt_after_full(run_dir: Path, out_path: Path) -> tuple[int, str]:
    """``limr run`` with two workers in a subprocess, Ctrl-C (to its whole process group, as a
    terminal sends it) as soon as FULL has finished; its exit status and output."""
    cmd = [sys.executable, "-m", "limr", "run", str(QUICK), *OVERRIDES,
           f"run.run_dir={run_dir}", "run.workers=2"]  # fmt: skip
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while not (run_dir / "arms" / "full-s0" / "train_summary.json").exists():
            assert proc.poll() is None, out_path.read_text()
            assert time.time() < deadline, out_path.read_text()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return rc, out_path.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")
def test_concurrent_interrupted_and_failed_runs_resume_to_the_sequential_numbers(
    tmp_path, reference
):
    run_dir = tmp_path / "run"
    # 1. two workers: FULL and CURRICULUM train at the same time; Ctrl-C once FULL is done
    rc, text = _interrupt_after_full(run_dir, tmp_path / "out.txt")
    assert rc == 130, text
    assert "interrupted" in text and "Traceback" not in text, text
    lines = text.splitlines()
    full_end = next(i for i, x in enumerate(lines) if x.startswith("[2/6] FULL (seed 0): "))
    started = [x for x in lines[:full_end] if x.endswith(".log)")]
    assert any("FULL (seed 0) ... (worker" in x for x in started), text
    assert any("CURRICULUM (seed 0) ... (worker" in x for x in started), text  # in parallel
    pids = re.search(r"worker processes \(pids ([\d, ]+);", text).group(1)
    deadline = time.time() + 30  # a loaded machine may take a while to reap them
    while any(_alive(int(p)) for p in pids.split(", ")) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(int(p)) for p in pids.split(", ")), text  # the workers are gone
    full_done = _mtimes(run_dir)["full-s0"]

    # 2. the same run again, with a LIM arm that fails on purpose: the error names the job and
    # its log; the job running beside it (CURRICULUM, resumed) finishes; nothing is lost
    lines = []
    with pytest.raises(JobError) as err:
        Pipeline(_cfg(run_dir, "run.workers=2"), log=lines.append).run(job_fn=fail_lim)
    message = str(err.value)
    log = run_dir / "logs" / "lim-s0.log"
    assert "lim-s0" in message and "LIM (seed 0)" in message and str(log) in message
    assert "RuntimeError: injected failure" in message
    assert "injected failure" in log.read_text()  # the traceback is in the job's log
    assert any("FULL (seed 0): done before" in x for x in lines)
    done = _mtimes(run_dir)
    assert done["full-s0"] == full_done and "curriculum-s0" in done and "lim-s0" not in done

    # 3. and again, in one process: only what is missing runs; the numbers of every arm, the
    # final evaluation included, are exactly those of the arms trained one after the other
    Pipeline(_cfg(run_dir, "run.workers=1"), log=lambda _line: None).run()
    after = _mtimes(run_dir)
    assert all(after[arm] == mtime for arm, mtime in done.items())
    assert (run_dir / "report.md").exists()
    _assert_same_numbers(run_dir, reference)


def test_plan_jobs_file_and_only(tmp_path, reference, capsys):
    args = ["run", str(QUICK), *OVERRIDES, "run.workers=1"]
    jobs_file = tmp_path / "jobs.json"
    fresh = tmp_path / "fresh"
    assert main([*args, f"run.run_dir={fresh}", "--jobs-file", str(jobs_file)]) == 0
    out = capsys.readouterr().out
    assert f"limr run {fresh}/config.yaml --only full-s0" in out
    plan = json.loads(jobs_file.read_text())
    by_name = {j["name"]: j for j in plan["jobs"]}
    assert list(by_name) == [
        "full-s0", "selections-s0", "lim-s0", "curriculum-s0",
        "eval-base", "eval-full-s0", "eval-lim-s0", "eval-curriculum-s0", "report",
    ]  # fmt: skip
    assert by_name["lim-s0"]["after"] == ["selections-s0"]
    assert by_name["curriculum-s0"]["after"] == []
    assert by_name["eval-lim-s0"]["after"] == ["lim-s0"]
    assert by_name["full-s0"]["command"][-2:] == ["--only", "full-s0"]
    assert not any(j["done"] for j in plan["jobs"])
    assert not (fresh / "arms").exists()  # planning trains nothing
    # a job whose prerequisites are not done is refused; one that needs nothing runs
    assert main(["run", str(fresh / "config.yaml"), "--only", "lim-s0"]) == 2
    assert "needs selections-s0" in capsys.readouterr().err
    assert main(["run", str(fresh / "config.yaml"), "--only", "eval-base"]) == 0
    assert json.loads((fresh / "eval" / "base.json").read_text()) == json.loads(
        (reference / "eval" / "base.json").read_text()
    )
    assert main(["run", str(fresh / "config.yaml"), "--only", "nope"]) == 2
    assert "no job 'nope'" in capsys.readouterr().err
    # on a finished run every job is done; --only says so and changes nothing
    before = _mtimes(reference)
    assert main([*args, f"run.run_dir={reference}", "--only", "lim-s0,eval-lim-s0"]) == 0
    assert "done before" in capsys.readouterr().out
    assert _mtimes(reference) == before


def test_workers_default_and_refusals(tmp_path, monkeypatch):
    import limr.runner as runner

    monkeypatch.setattr(runner, "cpu_cores", lambda: 8)
    assert resolve_workers(_cfg(tmp_path)) == 8  # quick: CPU, 1 thread per arm
    assert resolve_workers(_cfg(tmp_path, "trainer.num_threads=4")) == 2
    assert resolve_workers(_cfg(tmp_path, "run.workers=3")) == 3
    gpu = _cfg(tmp_path, "trainer.accelerator=gpu")
    assert resolve_workers(gpu) == 1  # an arm on GPUs: one at a time unless asked
    ddp = _cfg(tmp_path, "trainer.strategy=ddp", "trainer.devices=2")
    assert resolve_workers(ddp) == 1
    from limr.config import ConfigError

    with pytest.raises(ConfigError, match="run.workers=2 with trainer.devices"):
        resolve_workers(_cfg(tmp_path, "trainer.strategy=ddp", "trainer.devices=2",
                             "run.workers=2"))  # fmt: skip
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert runner.gpu_assignment(gpu, 3) == ["3", "5", "3"]
    assert runner.gpu_assignment(_cfg(tmp_path), 3) == [None] * 3


def test_a_changed_worker_count_continues_the_same_run(tmp_path):
    run_dir = tmp_path / "run"
    Pipeline(_cfg(run_dir, "run.workers=2"))._check_same_config()
    Pipeline(_cfg(run_dir, "run.workers=1", "trainer.progress=true"))._check_same_config()
    from limr.config import ConfigError

    with pytest.raises(ConfigError, match="another config"):
        Pipeline(_cfg(run_dir, "ppo.clip_eps=0.3"))._check_same_config()


def test_job_lock_refuses_a_second_holder(tmp_path):
    from limr.runner import job_lock

    lock = tmp_path / "locks" / "full-s0.lock"
    code = (
        "import sys, time; from pathlib import Path; from limr.runner import job_lock\n"
        "with job_lock(Path(sys.argv[1]), wait=False):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(JobError, match=f"pid {holder.pid}"):
            with job_lock(lock, wait=False):
                pass
    finally:
        holder.kill()
        holder.wait()
    with job_lock(lock, wait=False):  # free again once its holder is gone
        pass


def test_workers_take_training_jobs_before_any_evaluation(tmp_path):
    """The dispatch order: FULL, the subsample run and the probe first (the selections wait
    for them), then every other training job, then the evaluations, FULL's included (an
    evaluation of FULL taken first kept a resumed arm waiting behind a failed one)."""
    from limr.runner import _Scheduler

    cfg = _cfg(tmp_path / "run", "run.arms=[full,lim,curriculum,lim_subsample,lim_probe]")
    pipe = Pipeline(cfg, log=lambda _line: None)
    order = [j for j in _Scheduler(pipe, pipe.plan(), 2, None, execute_job).order
             if not j.in_parent]  # fmt: skip
    kinds = [j.kind for j in order]
    first_eval = kinds.index("eval")
    assert set(kinds[:first_eval]) == {"train", "probe"} and set(kinds[first_eval:]) == {"eval"}
    assert [j.name for j in order[:3]] == ["full-s0", "subsample-s0", "probe-s0"]
    assert {j.name for j in order[first_eval:]} >= {"eval-base", "eval-full-s0", "eval-lim-s0"}
