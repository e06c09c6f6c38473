"""Runs the jobs of a ``limr run`` (:meth:`limr.pipeline.Pipeline.plan`): in the ``limr run``
process one after the other (``run.workers: 1``), or as a dependency graph over worker processes.

Scheduling: a job starts as soon as the jobs it waits for are done, FULL runs first (every other
training job waits for its seed's FULL), then the other training jobs, then the evaluations, each
group in plan order. Selections are computed by the scheduling process itself (seconds). Each
worker is a ``spawn``-ed process that lives for the whole run and takes one job at a time; it sets
its torch threads (``trainer.num_threads``, 1 by default) before importing torch, writes each
job's output to ``run_dir/logs/<job>.log`` and ignores Ctrl-C: the scheduler handles it (and
SIGTERM) by terminating the workers. A failed job stops the scheduling of new jobs; the running
ones finish, then the run stops with an error that names the job and its log. Finished jobs are
never lost: every job's output is written atomically and a re-run skips it.

Results do not depend on the number of workers: each arm seeds itself (``run.seed`` = its seed)
and runs in a fresh Trainer, whichever process it lands in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limr.config import ConfigError, LimrConfig
from limr.pipeline import N_STAGES

if TYPE_CHECKING:
    from limr.pipeline import Job, Pipeline

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STOP_GRACE_S = 5.0


class JobError(RuntimeError):
    """A job of ``limr run`` failed; the message names it and its log. ``limr run`` exits 1."""


# ---------------------------------------------------------------------------------------------
# how many workers, threads, GPUs


def cpu_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def uses_gpu(cfg: LimrConfig) -> bool:
    acc = cfg.trainer.accelerator
    if acc in ("gpu", "cuda"):
        return True
    if acc != "auto":
        return False
    import torch

    return torch.cuda.is_available()


def resolve_workers(cfg: LimrConfig) -> int:
    """``run.workers``, or its default: one per CPU core (divided by ``trainer.num_threads``) when
    each arm is one CPU process, else 1 (an arm on GPUs or several processes uses them all)."""
    t = cfg.trainer
    procs = t.devices * t.num_nodes
    if cfg.run.workers is None:
        if procs > 1 or uses_gpu(cfg):
            return 1
        return max(1, cpu_cores() // max(1, t.num_threads or 1))
    if cfg.run.workers > 1 and procs > 1:
        raise ConfigError(
            f"run.workers={cfg.run.workers} with trainer.devices x trainer.num_nodes = {procs} "
            "processes per arm: an arm that runs several processes must have the machine to "
            "itself; use run.workers=1, or run each arm as its own job (limr run --only, "
            "docs/SCALING.md)"
        )
    return cfg.run.workers


def worker_threads(cfg: LimrConfig, workers: int) -> int | None:
    """torch threads of each worker: ``trainer.num_threads``, or 1 with several workers."""
    if cfg.trainer.num_threads:
        return cfg.trainer.num_threads
    return 1 if workers > 1 else None


def gpu_assignment(cfg: LimrConfig, n: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each of ``n`` workers: one visible GPU each, round robin
    (workers share GPUs when there are more workers than GPUs); None when not on GPUs."""
    if n <= 1 or not uses_gpu(cfg):
        return [None] * n
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [x.strip() for x in visible.split(",") if x.strip()]
    else:
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())]
    if not ids:
        return [None] * n
    return [ids[k % len(ids)] for k in range(n)]


# ---------------------------------------------------------------------------------------------
# locks


def _rank_zero() -> bool:
    """False in the extra processes of a multi-process training launch (they run the same job
    as rank 0, which holds its lock)."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


@contextlib.contextmanager
def job_lock(path: Path, *, wait: bool) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released when the process ends, however it ends).
    ``wait=False``: a job that another process holds is an error, not a second run of it."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): no protection, as before
        yield
        return
    if not _rank_zero():
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise JobError(
                f"{path.stem} is being run by another process (pid {holder}, lock {path}); "
                "wait for it, or stop it first"
            ) from None
        except OSError:  # a file system without locks (some network file systems): go on
            pass
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# running the jobs


def execute_job(cfg: LimrConfig, name: str, base_path: str | None) -> dict:
    """What a worker runs for one job (the default ``job_fn``)."""
    from limr.pipeline import Pipeline

    pipe = Pipeline(cfg)
    return pipe.execute(pipe.job(name), base_path)


def _priority(job: Job, index: int) -> tuple[int, int]:
    # what the selections wait for first: FULL, the cheap-LIM study's subsample run and probe
    # (not their evaluations: those come after every training job, as the others' do)
    if job.kind != "eval" and job.arm in ("full", "subsample", "probe"):
        return (0, index)
    if job.kind == "train":
        return (1, index)
    return (2, index)


def _start_line(job: Job) -> str:
    return f"[{job.stage}/{N_STAGES}] {job.label} ..."


def _end_line(job: Job, result: dict, seconds: float | None) -> str:
    summary = result.get("_summary", "") if isinstance(result, dict) else ""
    dt = f"{seconds:.1f} s" if seconds is not None else ""
    return f"[{job.stage}/{N_STAGES}] {job.label}: {', '.join(x for x in (summary, dt) if x)}"


def run_jobs(
    pipe: Pipeline,
    jobs: list[Job],
    *,
    workers: int,
    base_path: str | None,
    job_fn: Callable[[LimrConfig, str, str | None], dict] | None = None,
) -> dict[str, dict]:
    """Run every job of ``jobs`` that is not done yet; returns each job's result by name.

    ``workers`` 1: here, in plan order, output to the console. More: in that many worker
    processes (fewer when fewer jobs remain), see the module's docstring.
    """
    if workers <= 1:
        return _run_here(pipe, jobs, base_path, job_fn)
    return _Scheduler(pipe, jobs, workers, base_path, job_fn).run()


def _run_here(pipe: Pipeline, jobs: list[Job], base_path: str | None, job_fn) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for job in jobs:
        done = pipe.precheck(job)
        if done is not None:
            results[job.name] = done
            pipe.log(_end_line(job, done, None))
            continue
        pipe.log(_start_line(job))
        t0 = time.time()
        if job_fn is None or job.in_parent:
            out = pipe.execute(job, base_path)
        else:
            out = job_fn(pipe.cfg, job.name, base_path)
        results[job.name] = out
        pipe.log(_end_line(job, out, time.time() - t0))
    return results


class _Worker:
    def __init__(self, ctx: Any, index: int, cfg: LimrConfig, threads, gpu, job_fn) -> None:
        self.index = index
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, cfg, threads, gpu, job_fn, os.getpid()),
            name=f"limr-worker-{index}",
        )
        self.proc.start()
        child.close()
        self.job: Job | None = None
        self.t0 = 0.0
        self.alive = True

    def send(self, job: Job, log_path: Path, base_path: str | None) -> None:
        self.conn.send((job.name, str(log_path), base_path))
        self.job = job
        self.t0 = time.time()


class _Scheduler:
    def __init__(self, pipe: Pipeline, jobs: list[Job], workers: int, base_path, job_fn) -> None:
        self.pipe = pipe
        self.jobs = jobs
        index = {j.name: i for i, j in enumerate(jobs)}
        self.order = sorted(jobs, key=lambda j: _priority(j, index[j.name]))
        self.workers = workers
        self.base_path = base_path
        self.job_fn = job_fn
        self.done: dict[str, dict] = {}
        self.started: set[str] = set()
        self.failures: list[str] = []
        self.parent_error: BaseException | None = None
        self.pool: list[_Worker] = []
        self.bar: Any = None

    # -- output

    def emit(self, line: str) -> None:
        if self.bar is not None and self.pipe.log is print:
            self.bar.write(line)  # above the bar, which stays at the bottom
        else:
            self.pipe.log(line)

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _finish(self, job: Job, result: dict, seconds: float | None) -> None:
        self.done[job.name] = result
        self.emit(_end_line(job, result, seconds))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self._running_text())

    def _running_text(self) -> str:
        return ", ".join(w.job.name for w in self.pool if w.job is not None)

    # -- the loop

    def _ready(self, job: Job) -> bool:
        return job.name not in self.started and all(d in self.done for d in job.after)

    def _settle(self) -> None:
        """Finish here every ready job that needs no worker (done before, skipped, selections)."""
        changed = True
        while changed and not self.failures:
            changed = False
            for job in self.order:
                if not self._ready(job):
                    continue
                result = self.pipe.precheck(job)
                if result is None and not job.in_parent:
                    continue
                self.started.add(job.name)
                seconds = None
                if result is None:
                    self.emit(_start_line(job))
                    t0 = time.time()
                    try:
                        result = self.pipe.execute(job, self.base_path)
                    except Exception as err:  # noqa: BLE001 - re-raised once the workers stop
                        self.parent_error = err
                        self.failures.append(
                            f"{job.name} ({job.label}): {type(err).__name__}: {err}"
                        )
                        self.emit(
                            f"[{job.stage}/{N_STAGES}] {job.label}: "
                            f"FAILED: {type(err).__name__}: {err}"
                        )
                        return
                    seconds = time.time() - t0
                self._finish(job, result, seconds)
                changed = True

    def _dispatch(self) -> None:
        for job in self.order:
            if job.in_parent or not self._ready(job):
                continue
            idle = next((w for w in self.pool if w.alive and w.job is None), None)
            if idle is None:
                return
            log_path = self.pipe.log_path(job)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                idle.send(job, log_path, self.base_path)
            except OSError:  # the worker died while idle (e.g. killed for memory)
                idle.alive = False
                idle.proc.join(timeout=1.0)
                what = f"worker {idle.index} died ({_exit_text(idle.proc.exitcode)})"
                self.failures.append(f"{what} before {job.name} ({job.label}) could start")
                self.emit(f"[{job.stage}/{N_STAGES}] {job.label}: not started: {what}")
                return
            self.started.add(job.name)
            self.emit(f"{_start_line(job)} (worker {idle.index}, log {self._rel(log_path)})")
            if self.bar is not None:
                self.bar.set_postfix_str(self._running_text())

    def _collect(self) -> None:
        from multiprocessing.connection import wait

        running = [w for w in self.pool if w.job is not None]
        wait([w.conn for w in running] + [w.proc.sentinel for w in running], timeout=5.0)
        for w in running:
            msg = None
            if w.conn.poll():
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    msg = None
            elif w.proc.is_alive():
                continue
            job, log_path = w.job, self.pipe.log_path(w.job)
            # the worker's own clock: a first job's time leaves out the worker's start-up
            seconds = msg[3] if msg is not None else time.time() - w.t0
            w.job = None
            if msg is not None and msg[0] == "ok":
                self._finish(job, msg[2], seconds)
                continue
            if msg is not None:
                what = msg[2]
            else:
                w.alive = False
                w.proc.join(timeout=1.0)
                what = f"its worker process died ({_exit_text(w.proc.exitcode)})"
            self.failures.append(
                f"{job.name} ({job.label}) failed after {seconds:.0f} s: {what}\n"
                f"  its log: {log_path}"
            )
            self.emit(
                f"[{job.stage}/{N_STAGES}] {job.label}: FAILED after {seconds:.1f} s: {what} "
                f"(log {self._rel(log_path)})"
            )
            running_now = self._running_text()
            if running_now:
                self.emit(
                    f"      no new jobs start; waiting for the running ones to finish "
                    f"({running_now}); Ctrl-C stops them now (they resume on a re-run)"
                )

    def run(self) -> dict[str, dict]:
        import multiprocessing as mp

        cfg = self.pipe.cfg
        todo = [j for j in self.jobs if not j.in_parent and not self.pipe.is_done(j)]
        n = min(self.workers, len(todo))
        threads = worker_threads(cfg, self.workers)
        gpus = gpu_assignment(cfg, n)
        restore = _sigterm_as_interrupt()
        try:
            if n:
                ctx = mp.get_context("spawn")
                self.pool = [
                    _Worker(ctx, k + 1, cfg, threads, gpus[k], self.job_fn) for k in range(n)
                ]
                pids = ", ".join(str(w.proc.pid) for w in self.pool)
                self.emit(
                    f"[2-5/{N_STAGES}] {len(todo)} jobs on {n} worker processes (pids {pids}; "
                    f"{threads or 'default'} torch thread(s) each); their output: "
                    f"{self._rel(self.pipe.root / 'logs')}/<job>.log"
                )
                self.bar = _progress_bar(cfg, len(self.jobs))
            while True:
                self._settle()
                if not self.failures:
                    self._dispatch()
                if not any(w.job is not None for w in self.pool):
                    break
                self._collect()
        except KeyboardInterrupt:
            stopped = self._running_text()
            self._terminate()
            self.emit(
                "limr run: interrupted"
                + (f"; stopped {stopped}" if stopped else "")
                + ". Run the same command again to continue: finished jobs are kept, "
                "unfinished arms resume from their last checkpoint."
            )
            raise
        finally:
            self._shutdown()
            if self.bar is not None:
                self.bar.close()
            restore()
        if self.parent_error is not None:
            raise self.parent_error
        if self.failures:
            raise JobError(
                "; ".join(self.failures)
                + "\nFinished jobs are kept: fix the cause and run the same command again."
            )
        left = [j.name for j in self.jobs if j.name not in self.done]
        if left:  # cannot happen: every job's prerequisites are in the plan
            raise RuntimeError(f"limr run: jobs never became ready: {', '.join(left)}")
        return self.done

    def _terminate(self) -> None:
        for w in self.pool:
            if w.proc.is_alive():
                w.proc.terminate()  # SIGTERM: Lightning stops after the current step
        deadline = time.time() + STOP_GRACE_S
        for w in self.pool:
            w.proc.join(timeout=max(0.0, deadline - time.time()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=STOP_GRACE_S)

    def _shutdown(self) -> None:
        for w in self.pool:
            if w.proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
        deadline = time.time() + 2 * STOP_GRACE_S
        for w in self.pool:
            w.proc.join(timeout=max(0.0, deadline - time.time()))
        self._terminate()
        for w in self.pool:
            with contextlib.suppress(OSError):
                w.conn.close()


def _progress_bar(cfg: LimrConfig, total: int) -> Any:
    if not (cfg.trainer.progress and sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="job", desc="limr run", dynamic_ncols=True)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


def _sigterm_as_interrupt() -> Callable[[], None]:
    """Handle SIGTERM like Ctrl-C (terminate the workers) while the scheduler runs."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# the worker process


def _watch_parent(parent_pid: int) -> None:
    """End this worker when the scheduler is gone (killed without a chance to stop us)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(70)
        time.sleep(1.0)


def _redirect_output(log_path: str, header: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)
    print(header, flush=True)


def _worker_main(conn, cfg: LimrConfig, threads, gpu, job_fn, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if threads:
        for var in THREAD_VARS:
            os.environ[var] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    if threads:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    import transformers

    import limr.pipeline  # noqa: F401 - the heavy imports, while the scheduler starts the others

    transformers.utils.logging.disable_progress_bar()
    fn = job_fn or execute_job
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        name, log_path, base_path = msg
        _redirect_output(
            log_path,
            f"==== limr run: job {name}, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
            f"{threads or torch.get_num_threads()} torch thread(s)"
            + (f", CUDA_VISIBLE_DEVICES={gpu}" if gpu is not None else "")
            + " ====",
        )
        t0 = time.time()
        try:
            result = fn(cfg, name, base_path)
        except BaseException as err:  # noqa: BLE001 - reported to the scheduler
            traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
            with contextlib.suppress(OSError):
                conn.send(("error", name, f"{type(err).__name__}: {err}", time.time() - t0))
            if not isinstance(err, Exception):
                return
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"==== {name} done in {time.time() - t0:.1f} s ====", flush=True)
        conn.send(("ok", name, result, time.time() - t0))
