"""Executors: run one picklable top-level function over a list of items, one result per item, in input order.

The search loop evaluates candidates only through :class:`Executor.map`::

    with get_executor("local", n_workers=2) as ex:
        results = ex.map(evaluate_candidate, archs, labels=[f"net_{i}" for i in range(len(archs))])
    # results[i] belongs to archs[i]; results[i].ok is False for a failed candidate

``fn(item, device=...)`` is called with a keyword ``device``: ``"cpu"``, or ``"cuda:0"`` in a worker process
whose ``CUDA_VISIBLE_DEVICES`` was set to its GPU id(s) before anything (torch included) was imported there.
Extra settings go in with :func:`functools.partial` over a top-level function (a partial pickles; a lambda or
a closure does not).

Kinds
-----
``local`` (default)
    One slot: in-process and sequential (device ``cuda:0`` when CUDA is available, else ``cpu``). Several
    slots (``gpu_list=[0, 1, 2, 3]``: one slot per ``gpus_per_job`` GPUs; or ``n_workers=N`` CPU slots with
    ``cpus_per_job`` torch threads each, 1 by default): one long-lived worker process per slot, started with
    multiprocessing's ``spawn`` context (fork after torch is initialised is unsafe) and fed one item at a
    time from a shared pending queue, so a slow candidate holds back only its own slot. A worker that dies
    (``os._exit``, SIGKILL, the OOM killer) turns its item into a failure record naming the exit code
    (or, with ``retries=k``, re-runs it up to k times); a replacement worker takes its slot and the other
    items are not affected. ``timeout`` seconds per item, counted from when the worker has unpacked the
    item and calls ``fn`` (a fresh worker's start-up and imports do not count): the worker is killed and the
    item recorded as a timeout. Ctrl-C kills the workers and re-raises KeyboardInterrupt. Workers are not
    daemonic, so ``fn`` may start its own processes (DataLoader workers).
``ray``
    One Ray task per item with ``num_cpus=cpus_per_job`` and ``num_gpus=gpus_per_job`` (Ray sets
    ``CUDA_VISIBLE_DEVICES`` for the task, so the device is again ``cuda:0``). ``ray_address``: ``None``
    starts a local Ray instance (``n_workers * cpus_per_job`` CPUs when ``n_workers`` is given), ``"auto"``
    joins the cluster this machine belongs to, ``"HOST:PORT"`` joins that head node (GCS port, 6379 by
    default), ``"ray://HOST:10001"`` uses Ray Client. A task whose worker or node dies is re-submitted up to
    ``retries`` times (default 1); a task running longer than ``timeout`` seconds is force-cancelled and
    recorded as a timeout. Exceptions raised by ``fn`` are failures and are not retried (they are
    deterministic). Files that ``fn`` writes land on the node that ran it: give the search a save folder on
    storage every node shares (on SLURM, the shared home/scratch file system).

Pointing cnas at an existing cluster (for the README): start Ray on the nodes (``ray start --head
--port=6379`` on one, ``ray start --address=HEAD_IP:6379`` on the others; on SLURM, one ``srun`` per node in
an ``sbatch`` script doing exactly that, then run the search in the same allocation), install cnas in the same
environment on every node, and run the search with ``--executor ray --ray_address auto`` on a node of the
cluster (or ``--ray_address HEAD_IP:6379``).

Deviations from the original
----------------------------
The original wrote ``python train.py ...`` lines into a bash file run in waves separated by ``wait`` (every
wave waits for its slowest job; single-exit jobs even lacked ``&`` and ran one after the other), and its
SLURM path submitted jobs without waiting for them, with a personal account hard-coded. Its results were
read back by position, so one failed job shifted every later result onto the wrong arch. Here the workers are
fed from a queue (no waves), every result carries its index, and a failure is a record in its own place.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import multiprocessing.util  # noqa: F401 - imported before our atexit hook is registered, see _atexit_stop_pools
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait as _mp_wait
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from cnas.errors import ConfigError

KINDS = ("local", "ray")
#: Ray's default GCS port, used when ``ray_address`` names a host without a port.
RAY_DEFAULT_PORT = 6379
#: Seconds to wait for a TCP connection to a Ray head before calling it unreachable (ray.init itself retries
#: an unreachable address for minutes).
RAY_CONNECT_TIMEOUT = 5.0
_POLL = 0.5  # seconds between progress refreshes while nothing finishes


@dataclass
class TaskResult:
    """The outcome of ``fn(items[index])``."""

    index: int  # position in the input list
    ok: bool
    value: Any = None  # fn's return value when ok
    error: str | None = None  # one paragraph: exception type + message; traceback tail (when not ok)
    seconds: float = 0.0
    attempts: int = 1
    worker: str = ""  # "local", "proc-1 cuda:0", "ray node 1a2b3c4d pid 123"
    label: str = ""  # the item's label (e.g. "iter_2/net_5"), "" when none was given


@runtime_checkable
class Executor(Protocol):
    def map(self, fn: Callable, items: Sequence, labels: Sequence[str] | None = None) -> list[TaskResult]: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------- helpers


def format_error(exc: BaseException, frames: int = 3) -> str:
    """One paragraph: ``Type: message (traceback tail: file.py:12 in f; ...)``."""
    msg = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(msg) > 1000:
        msg = msg[:997] + "..."
    tail = traceback.extract_tb(exc.__traceback__)[-frames:]
    if not tail:
        return msg
    where = "; ".join(f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in tail)
    return f"{msg} (traceback tail: {where})"


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = ", e.g. by the out-of-memory killer" if -code == signal.SIGKILL else ""
        return f"exit code {code}: killed by {name}{extra}"
    return f"exit code {code}"


def _labels(labels: Sequence[str] | None, n: int) -> list[str]:
    if labels is None:
        return [""] * n
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} items")
    return labels


def _named(label: str, index: int) -> str:
    return f"item {index}" + (f" ({label})" if label else "")


def _check_picklable(fn: Callable) -> None:
    try:
        pickle.dumps(fn)
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same thing
        raise TypeError(f"the executor's fn must be picklable (a top-level function or a functools.partial "
                        f"of one), got {fn!r}: {err}") from err


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class _Progress:
    """A tqdm bar over items with done/failed/running counts in its postfix; silent when disabled or when stderr
    is not a terminal (:func:`cnas.progress.progress_bar`)."""

    def __init__(self, total: int, enabled: bool, desc: str = "candidates"):
        self.bar = None
        self.done = self.failed = self.running = 0
        if enabled and total:
            from cnas.progress import progress_bar

            self.bar = progress_bar(total=total, desc=desc, unit="net", dynamic_ncols=True, file=sys.stderr)
            self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix(done=self.done, failed=self.failed, running=self.running, refresh=False)

    def running_now(self, n: int) -> None:
        if n != self.running:
            self.running = n
            if self.bar is not None:
                self._postfix()
                self.bar.refresh()

    def finished(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.bar is not None:
            self._postfix()
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _recorder(results: list, labels: list[str], attempts: list[int], bar: "_Progress") -> Callable[[TaskResult], None]:
    """Store a finished result at its index with its label and attempt count, and advance the progress bar."""

    def record(res: TaskResult) -> None:
        res.label = labels[res.index]
        res.attempts = attempts[res.index]
        results[res.index] = res
        bar.finished(res.ok)

    return record


class _BaseExecutor:
    def map(self, fn: Callable, items: Sequence, labels: Sequence[str] | None = None) -> list[TaskResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- in-process


def _default_device() -> str:
    try:
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


class InProcessExecutor(_BaseExecutor):
    """Sequential, in this process. An exception raised by ``fn`` becomes a failure record; Ctrl-C propagates.

    No timeout and no protection against a crash of the process itself: use a worker process
    (:class:`ProcessPoolExecutor`, which :func:`get_executor` picks when a timeout is asked for) for those.
    """

    def __init__(self, device: str | None = None, progress: bool = True):
        self.device = device or _default_device()
        self.progress = progress

    def map(self, fn: Callable, items: Sequence, labels: Sequence[str] | None = None) -> list[TaskResult]:
        items = list(items)
        labels = _labels(labels, len(items))
        bar = _Progress(len(items), self.progress)
        out: list[TaskResult] = []
        try:
            for i, item in enumerate(items):
                bar.running_now(1)
                t0 = time.perf_counter()
                try:
                    value = fn(item, device=self.device)
                    res = TaskResult(i, True, value=value)
                except Exception as err:  # noqa: BLE001 - a failed candidate is a record, not a crash
                    res = TaskResult(i, False, error=format_error(err))
                res.seconds = time.perf_counter() - t0
                res.worker, res.label = "local", labels[i]
                out.append(res)
                bar.running_now(0)
                bar.finished(res.ok)
        finally:
            bar.close()
        return out


# ------------------------------------------------------------------------------------- worker processes


@dataclass(frozen=True)
class Slot:
    """Where one local worker runs: its device string for ``fn``, environment and torch threads."""

    device: str = "cpu"
    env: tuple[tuple[str, str], ...] = ()
    threads: int | None = 1
    name: str = "cpu"


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _environ(env: dict[str, str]):
    """Temporarily set environment variables (a spawned child inherits them from its first instruction)."""
    with _ENV_LOCK:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _worker_main(conn, env: dict[str, str], device: str, threads: int | None, name: str) -> None:
    """Body of a local worker process: ready, then (index, payload) -> result until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and kills the workers
    os.environ.update(env)
    _set_threads(threads)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if msg is None:
            return
        index, payload = msg
        t0 = time.perf_counter()
        try:
            fn, item = pickle.loads(payload)  # the first item imports fn's modules: start-up, not the item's work
            _set_threads(threads)  # fn may have changed it for the previous item
            conn.send(("started", index))
            t0 = time.perf_counter()
            value = fn(item, device=device)
            reply = ("ok", index, value, time.perf_counter() - t0)
        except BaseException as err:  # noqa: BLE001 - SystemExit too: the parent must hear of it
            reply = ("err", index, format_error(err), time.perf_counter() - t0)
        try:
            conn.send(reply)
        except Exception as err:  # noqa: BLE001 - e.g. an unpicklable return value
            conn.send(("err", index, f"the return value could not be sent back: {format_error(err)}",
                       time.perf_counter() - t0))


class _Worker:
    def __init__(self, ctx, slot: Slot, serial: int):
        self.slot = slot
        self.name = f"proc-{serial} {slot.name}"
        self.conn, child = ctx.Pipe(duplex=True)
        env = dict(slot.env)
        self.proc = ctx.Process(target=_worker_main, args=(child, env, slot.device, slot.threads, self.name),
                                name=f"cnas-{self.name.replace(' ', '-')}")
        with _environ(env):
            self.proc.start()
        child.close()
        self.ready = False
        self.task: tuple[int, float, int] | None = None  # (index, start time, attempt)
        self.started = False  # the worker has unpacked the task and runs fn: its timeout counts from then

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self, wait: float) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(wait)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def _shutdown(workers: list, wait: float) -> None:
    for w in workers:
        if w is not None:
            w.stop(wait)
    workers.clear()


_LIVE_POOLS: "weakref.WeakSet[ProcessPoolExecutor]" = weakref.WeakSet()


def _atexit_stop_pools() -> None:
    """Stop the workers of pools nobody closed. Registered after multiprocessing's own exit hook, so it runs
    first: that hook joins every non-daemonic child and would wait forever for idle workers."""
    for pool in list(_LIVE_POOLS):
        with contextlib.suppress(Exception):
            pool._kill_all()


atexit.register(_atexit_stop_pools)


class ProcessPoolExecutor(_BaseExecutor):
    """One long-lived ``spawn`` worker process per :class:`Slot`, fed one item at a time.

    Workers start on the first :meth:`map` and live until :meth:`close`, so torch is imported once per worker
    per search, not once per candidate.
    """

    #: a slot whose worker dies this many times in a row before saying it is ready is a broken environment
    MAX_START_FAILURES = 3

    def __init__(self, slots: Sequence[Slot], timeout: float | None = None, retries: int = 0,
                 progress: bool = True):
        import multiprocessing as mp

        if not slots:
            raise ConfigError("a process pool needs at least one worker slot")
        self.slots = list(slots)
        self.timeout = timeout
        self.retries = retries
        self.progress = progress
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * len(self.slots)
        self._serial = 0
        self._start_failures = [0] * len(self.slots)
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, 0.0)
        _LIVE_POOLS.add(self)

    @property
    def n_workers(self) -> int:
        return len(self.slots)

    def _start(self, i: int) -> _Worker:
        self._serial += 1
        w = _Worker(self._ctx, self.slots[i], self._serial)
        self._workers[i] = w
        return w

    def map(self, fn: Callable, items: Sequence, labels: Sequence[str] | None = None) -> list[TaskResult]:
        items = list(items)
        n = len(items)
        labels = _labels(labels, n)
        _check_picklable(fn)
        payloads = [pickle.dumps((fn, item)) for item in items]
        results: list[TaskResult | None] = [None] * n
        pending = deque(range(n))
        attempts = [0] * n
        bar = _Progress(n, self.progress)

        record = _recorder(results, labels, attempts, bar)

        try:
            for i in range(len(self.slots)):
                if pending and self._workers[i] is None:
                    self._start(i)
            while pending or any(w is not None and w.task for w in self._workers):
                # hand pending items to idle ready workers; start replacements for dead slots
                for i, w in enumerate(self._workers):
                    if not pending:
                        break
                    if w is None:
                        w = self._start(i)
                    if w.ready and w.task is None and w.proc.is_alive():
                        k = pending[0]
                        try:
                            w.conn.send((k, payloads[k]))
                        except OSError:  # it died after saying ready: its sentinel tells the loop below
                            continue
                        pending.popleft()
                        attempts[k] += 1
                        w.task, w.started = (k, time.monotonic(), attempts[k]), False
                live = [w for w in self._workers if w is not None]
                bar.running_now(sum(1 for w in live if w.task))
                waits = [w.conn for w in live] + [w.proc.sentinel for w in live]
                ready = set(_mp_wait(waits, timeout=self._wait_time(live)))
                now = time.monotonic()
                for i, w in enumerate(self._workers):
                    if w is None:
                        continue
                    if w.conn in ready or w.proc.sentinel in ready:
                        msg = None
                        try:
                            if w.conn.poll():
                                msg = w.conn.recv()
                        except (EOFError, OSError):
                            msg = None
                        if msg is not None:
                            self._handle(w, msg, record)
                            if w.ready:
                                self._start_failures[i] = 0
                            continue
                        if w.proc.sentinel in ready or not w.proc.is_alive():
                            self._died(i, w, pending, attempts, labels, record)
                            continue
                    if w.task is not None and w.started and self.timeout is not None \
                            and now - w.task[1] > self.timeout:
                        k, t0, _ = w.task
                        w.kill()
                        self._workers[i] = None
                        record(TaskResult(k, False, seconds=now - t0, worker=w.name,
                                          error=f"TimeoutError: {_named(labels[k], k)} ran longer than "
                                                f"the {self.timeout:g} s timeout; its worker was killed"))
        except BaseException:
            self._kill_all()
            raise
        finally:
            bar.close()
        return results  # type: ignore[return-value]

    def _wait_time(self, live: list[_Worker]) -> float:
        t = _POLL
        if self.timeout is not None:
            now = time.monotonic()
            for w in live:
                if w.task is not None and w.started:
                    t = min(t, max(0.0, w.task[1] + self.timeout - now) + 0.01)
        return t

    def _handle(self, w: _Worker, msg: tuple, record: Callable[[TaskResult], None]) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            return
        if kind == "started":  # the clock of a timeout starts here, after the worker's imports
            if w.task is not None and w.task[0] == msg[1]:
                w.task, w.started = (w.task[0], time.monotonic(), w.task[2]), True
            return
        _, index, payload, seconds = msg
        if w.task is None or w.task[0] != index:  # pragma: no cover - protocol violation
            raise RuntimeError(f"worker {w.name} answered for item {index} it was not given")
        w.task = None
        if kind == "ok":
            record(TaskResult(index, True, value=payload, seconds=seconds, worker=w.name))
        else:
            record(TaskResult(index, False, error=payload, seconds=seconds, worker=w.name))

    def _died(self, i: int, w: _Worker, pending: deque, attempts: list[int], labels: list[str],
              record: Callable[[TaskResult], None]) -> None:
        w.proc.join(5)
        code = w.proc.exitcode
        w.kill()
        self._workers[i] = None
        if w.task is None:
            if not w.ready:
                self._start_failures[i] += 1
                if self._start_failures[i] >= self.MAX_START_FAILURES:
                    raise RuntimeError(f"worker processes for slot {w.slot.name} die before starting "
                                       f"({_exit_text(code)}); check the environment (imports, CUDA) and that "
                                       f"the main script starts work under `if __name__ == '__main__':`")
            return
        k, t0, attempt = w.task
        if attempt <= self.retries:
            pending.appendleft(k)
            return
        record(TaskResult(k, False, seconds=time.monotonic() - t0, worker=w.name,
                          error=f"WorkerDied: worker {w.name} died ({_exit_text(code)}) while evaluating "
                                f"{_named(labels[k], k)}"))

    def _kill_all(self) -> None:
        for i, w in enumerate(self._workers):
            if w is not None:
                w.kill()
                self._workers[i] = None

    def close(self) -> None:
        self._finalizer.detach()
        _LIVE_POOLS.discard(self)
        _shutdown([w for w in self._workers if w is not None], wait=10.0)
        for i in range(len(self._workers)):
            self._workers[i] = None


# ------------------------------------------------------------------------------------------------- Ray


def _ray_call(fn: Callable, item: Any, threads: int | None, board: Any = None, key: Any = None) -> tuple:
    """Body of one Ray task: never raises for ``fn``'s own errors, so only system failures are retried.

    ``board``: a :class:`_StartBoard` actor told when the task starts (for timeouts counted from the start).
    """
    import ray

    if board is not None:
        board.mark.remote(key)
    ctx = ray.get_runtime_context()
    worker = f"ray node {ctx.get_node_id()[:8]} pid {os.getpid()}"
    device = "cuda:0" if ray.get_gpu_ids() else "cpu"
    _set_threads(threads)
    t0 = time.perf_counter()
    try:
        return ("ok", fn(item, device=device), time.perf_counter() - t0, worker)
    except BaseException as err:  # noqa: BLE001 - SystemExit too
        return ("err", format_error(err), time.perf_counter() - t0, worker)


class _StartBoard:
    """A Ray actor (no CPU) collecting which tasks have started, so a timeout excludes queueing and worker start."""

    def __init__(self):
        self.marks: list = []

    def mark(self, key) -> None:
        self.marks.append(key)

    def drain(self) -> list:
        marks, self.marks = self.marks, []
        return marks


def _check_reachable(address: str) -> None:
    """A one-line ConfigError for a Ray head that does not answer (ray.init would retry it for minutes)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host:
        host, port = hostport, str(RAY_DEFAULT_PORT)
    try:
        port_n = int(port)
    except ValueError:
        raise ConfigError(f"--ray_address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT") from None
    try:
        with socket.create_connection((host.strip("[]"), port_n), timeout=RAY_CONNECT_TIMEOUT):
            pass
    except OSError as err:
        raise ConfigError(f"--ray_address {address!r}: no Ray head answers at {host}:{port_n} ({err}); start one "
                          f"with `ray start --head --port={port_n}` or leave --ray_address out for a local Ray "
                          f"instance") from None


class RayExecutor(_BaseExecutor):
    """One Ray task per item on a local Ray instance or an existing cluster (see the module docstring).

    At most as many tasks are in flight as the cluster's nodes can run at once (capped by ``n_workers`` when
    given). With a timeout, tasks report their start to a small actor (no CPU), so the clock excludes queueing
    and worker start-up. A Ray connection
    this process already holds (``ray.is_initialized()``) is reused and left open by :meth:`close`; one this
    executor made is shut down by :meth:`close`.
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None, gpus_per_job: float | None = None,
                 cpus_per_job: float = 1, timeout: float | None = None, retries: int = 1, progress: bool = True):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'cnas[ray]' (or \"ray[default]>=2.9\")") \
                from None
        self._ray = ray
        self.address = address
        self.n_workers = n_workers
        self.cpus_per_job = cpus_per_job
        self.timeout = timeout
        self.retries = retries
        self.progress = progress
        self._owns = False
        self._board = None
        if address is not None and address != "auto":
            _check_reachable(address)
        if not ray.is_initialized():
            self._init(address)
            self._owns = True
        gpus = self._cluster_gpus()
        if gpus_per_job is None:
            gpus_per_job = 1 if gpus > 0 else 0
        self.gpus_per_job = gpus_per_job
        self.capacity = self._capacity()
        if self.capacity < 1:
            where = "the local Ray instance" if address is None else f"the Ray cluster at {address}"
            self.close()
            raise ConfigError(f"no node of {where} has {cpus_per_job:g} CPU(s) and {gpus_per_job:g} GPU(s) for one "
                              f"job; lower --gpu / cpus per job or add nodes that have them")
        self._remote = ray.remote(_ray_call)

    def _init(self, address: str | None) -> None:
        ray = self._ray
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                                      logging_level="WARNING")
        if address is None:
            if self.n_workers is not None:
                kwargs["num_cpus"] = int(math.ceil(self.n_workers * self.cpus_per_job))
            # workers of a local instance import fn's module as this process does
            path = os.pathsep.join(p for p in sys.path if p)
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
            what = "a local Ray instance could not start" if address is None else f"--ray_address {address!r}"
            raise ConfigError(f"{what}: {' '.join(str(err).split())}") from None

    def _nodes(self) -> list[dict]:
        return [nd.get("Resources", {}) for nd in self._ray.nodes() if nd.get("Alive", nd.get("alive", False))]

    def _cluster_gpus(self) -> float:
        return max((r.get("GPU", 0.0) for r in self._nodes()), default=0.0)

    def _capacity(self) -> int:
        total = 0
        for r in self._nodes():
            fits = math.floor(r.get("CPU", 0.0) / self.cpus_per_job + 1e-9) if self.cpus_per_job > 0 else 10**6
            if self.gpus_per_job > 0:
                fits = min(fits, math.floor(r.get("GPU", 0.0) / self.gpus_per_job + 1e-9))
            total += max(0, fits)
        if self.n_workers is not None:
            total = min(total, self.n_workers)
        return total

    def map(self, fn: Callable, items: Sequence, labels: Sequence[str] | None = None) -> list[TaskResult]:
        ray = self._ray
        from ray import exceptions as rex

        items = list(items)
        n = len(items)
        labels = _labels(labels, n)
        _check_picklable(fn)
        results: list[TaskResult | None] = [None] * n
        pending = deque(range(n))
        attempts = [0] * n
        errors: list[list[str]] = [[] for _ in range(n)]
        # ref -> [index, submitted at, started at (None until the board says so)]
        inflight: dict[Any, list] = {}
        remote = self._remote.options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, max_retries=0)
        threads = max(1, int(self.cpus_per_job))
        cap = max(1, self._capacity())
        board = self._start_board() if self.timeout is not None else None
        bar = _Progress(n, self.progress)
        fn_ref = ray.put(fn)

        record = _recorder(results, labels, attempts, bar)

        try:
            while pending or inflight:
                while pending and len(inflight) < cap:
                    k = pending.popleft()
                    attempts[k] += 1
                    ref = remote.remote(fn_ref, items[k], threads, board, (k, attempts[k]))
                    inflight[ref] = [k, time.monotonic(), None]
                refs = list(inflight)
                ready, _ = ray.wait(refs, num_returns=1, timeout=self._wait_time(inflight))
                if ready:
                    rest = [r for r in refs if r not in ready]
                    if rest:
                        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                        ready = list(ready) + list(more)
                now = time.monotonic()
                if board is not None:
                    board = self._mark_started(board, inflight, attempts, now)
                for ref in ready:
                    k, t0, _ = inflight.pop(ref)
                    try:
                        kind, payload, seconds, worker = ray.get(ref)
                    except rex.RayTaskError as err:  # fn could not even be loaded on the worker
                        record(TaskResult(k, False, seconds=now - t0, worker="ray", error=format_error(err)))
                        continue
                    except rex.TaskCancelledError:  # pragma: no cover - only we cancel, and we drop the ref
                        record(TaskResult(k, False, seconds=now - t0, worker="ray", error="TaskCancelled"))
                        continue
                    except rex.RayError as err:  # the worker or its node died, or its result was lost
                        errors[k].append(" ".join(f"{type(err).__name__}: {err}".split())[:500])
                        if attempts[k] <= self.retries:
                            pending.appendleft(k)
                        else:
                            record(TaskResult(k, False, seconds=now - t0, worker="ray",
                                              error=f"WorkerDied: the Ray worker running {_named(labels[k], k)} "
                                                    f"died on {attempts[k]} attempt(s); last: {errors[k][-1]}"))
                        continue
                    if kind == "ok":
                        record(TaskResult(k, True, value=payload, seconds=seconds, worker=worker))
                    else:
                        record(TaskResult(k, False, error=payload, seconds=seconds, worker=worker))
                if self.timeout is not None:
                    for ref, (k, t0, started) in list(inflight.items()):
                        since = started if started is not None else (t0 if board is None else None)
                        if since is not None and now - since > self.timeout:
                            ray.cancel(ref, force=True)
                            del inflight[ref]
                            record(TaskResult(k, False, seconds=now - since, worker="ray",
                                              error=f"TimeoutError: {_named(labels[k], k)} ran longer than the "
                                                    f"{self.timeout:g} s timeout; its Ray task was cancelled"))
                running = [v for v in inflight.values() if v[2] is not None] if board is not None else inflight
                bar.running_now(len(running))
        except BaseException:
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        return results  # type: ignore[return-value]

    def _start_board(self):
        if self._board is None:
            self._board = self._ray.remote(num_cpus=0)(_StartBoard).remote()
        return self._board

    def _mark_started(self, board, inflight: dict, attempts: list[int], now: float):
        """Note the start time of tasks the board heard from; without a working board, count from submission."""
        try:
            marks = set(self._ray.get(board.drain.remote(), timeout=30))
        except Exception:  # noqa: BLE001 - the board's node died: fall back to submission times
            self._board = None
            for v in inflight.values():
                if v[2] is None:
                    v[2] = v[1]
            return None
        for v in inflight.values():
            if v[2] is None and (v[0], attempts[v[0]]) in marks:
                v[2] = now
        return board

    def _wait_time(self, inflight: dict) -> float:
        t = _POLL
        if self.timeout is not None:
            now = time.monotonic()
            for _, _, started in inflight.values():
                if started is not None:
                    t = min(t, max(0.0, started + self.timeout - now) + 0.01)
        return t

    def close(self) -> None:
        if self._board is not None:
            with contextlib.suppress(Exception):
                self._ray.kill(self._board)
            self._board = None
        if self._owns:
            self._owns = False
            self._ray.shutdown()


# ---------------------------------------------------------------------------------------------- factory


def _gpu_slots(gpu_list: Sequence[int], gpus_per_job: int, threads: int | None) -> list[Slot]:
    ids: list[int] = []
    for g in gpu_list:
        try:
            gi = int(g)
        except (TypeError, ValueError):
            raise ConfigError(f"--gpu_list: {g!r} is not a GPU id (use integers such as --gpu_list 0 1)") from None
        if gi < 0 or str(gi) != str(g).strip():
            raise ConfigError(f"--gpu_list: {g!r} is not a GPU id (use integers >= 0 such as --gpu_list 0 1)")
        ids.append(gi)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--gpu_list {' '.join(map(str, ids))}: a GPU id is repeated")
    try:
        import torch

        count = torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        count = 0
    bad = [g for g in ids if g >= count]
    if bad:
        have = ("no CUDA device is visible" if count == 0
                else f"this machine has {count} CUDA device(s): ids 0..{count - 1}")
        raise ConfigError(f"--gpu_list: GPU id {bad[0]} does not exist ({have}); list existing ids or leave "
                          f"--gpu_list out to run on the CPU")
    if gpus_per_job < 1 or len(ids) % gpus_per_job:
        raise ConfigError(f"--gpu {gpus_per_job}: --gpu_list has {len(ids)} GPU(s), which must be a positive "
                          f"multiple of the GPUs per job")
    slots = []
    for j in range(0, len(ids), gpus_per_job):
        group = ids[j:j + gpus_per_job]
        visible = ",".join(map(str, group))
        slots.append(Slot(device="cuda:0", env=(("CUDA_VISIBLE_DEVICES", visible),), threads=threads,
                          name=f"cuda:{visible}"))
    return slots


def parse_gpu_list(text: str | Sequence | None) -> list[int] | None:
    """``--gpu_list`` (``"0 1 2 3"``, ``"0,1"`` or a list) as GPU ids; None when not given."""
    if text is None:
        return None
    items = str(text).replace(",", " ").split() if isinstance(text, (str, int)) else list(text)
    ids = []
    for g in items:
        if isinstance(g, bool) or not str(g).strip().isdigit():
            raise ConfigError(f"--gpu_list: {g!r} is not a GPU id (use integers >= 0 such as --gpu_list '0 1')")
        ids.append(int(g))
    if not ids:
        raise ConfigError("--gpu_list is empty; list GPU ids such as --gpu_list '0 1' or leave it out")
    return ids


def _check_flags(kind, n_workers, gpu_list, gpus_per_job, cpus_per_job, ray_address, timeout, retries) -> str:
    """The checks that :func:`check_executor_settings` and :func:`get_executor` share; the executor kind."""
    kind = str(kind).lower()
    if kind not in KINDS:
        raise ConfigError(f"--executor {kind!r}: choose one of {', '.join(KINDS)}")
    if n_workers is not None and (not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1):
        raise ConfigError(f"--n_workers must be an integer >= 1, got {n_workers!r}")
    if not (isinstance(cpus_per_job, (int, float)) and math.isfinite(cpus_per_job) and cpus_per_job > 0):
        raise ConfigError(f"CPUs per job must be positive, got {cpus_per_job!r}")
    if gpus_per_job is not None and not (isinstance(gpus_per_job, (int, float)) and math.isfinite(gpus_per_job)
                                         and gpus_per_job >= 0):
        raise ConfigError(f"--gpu (GPUs per job) must be a number >= 0, got {gpus_per_job!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout!r}")
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise ConfigError(f"--retries must be an integer >= 0, got {retries!r}")
    if kind == "ray" and gpu_list:
        raise ConfigError("--gpu_list applies to --executor local; Ray assigns GPUs itself (use --gpu for "
                          "GPUs per job)")
    if kind != "ray" and ray_address is not None:
        raise ConfigError("--ray_address needs --executor ray")
    if kind != "ray" and gpu_list:
        _whole_gpus(gpus_per_job)
    return kind


def _whole_gpus(gpus_per_job: float | None) -> int:
    gpj = 1 if gpus_per_job is None else gpus_per_job
    if gpj != int(gpj):
        raise ConfigError(f"--gpu {gpj}: local GPU jobs take whole GPUs")
    return int(gpj)


def check_executor_settings(kind: str = "local", n_workers: int | None = None,
                            gpu_list: Sequence[int] | None = None, gpus_per_job: float | None = None,
                            cpus_per_job: float = 1, ray_address: str | None = None, timeout: float | None = None,
                            retries: int | None = None) -> None:
    """Every check of :func:`get_executor` without starting anything (no worker, no Ray instance): the kind, the
    counts, the GPU ids against this machine's devices, and that a Ray head at ``ray_address`` answers.
    Raises a one-line :class:`ConfigError`."""
    kind = _check_flags(kind, n_workers, gpu_list, gpus_per_job, cpus_per_job, ray_address, timeout, retries)
    if kind == "ray":
        if ray_address is not None and ray_address != "auto":
            _check_reachable(ray_address)
    elif gpu_list:
        _gpu_slots(list(gpu_list), _whole_gpus(gpus_per_job), 1)


def get_executor(kind: str = "local", n_workers: int | None = None, gpu_list: Sequence[int] | None = None,
                 gpus_per_job: float | None = None, cpus_per_job: float = 1, ray_address: str | None = None,
                 timeout: float | None = None, retries: int | None = None, progress: bool = True) -> Executor:
    """Build an executor from the search's flags; bad settings raise a one-line :class:`ConfigError`.

    ``kind``: ``local`` or ``ray``. ``n_workers``: local: CPU worker processes (default 1: in-process), or
    with ``gpu_list`` at least one worker per GPU group (more share the groups round-robin); ray: at most
    this many tasks at once (default: what the cluster fits) and the CPUs of a local Ray instance.
    ``gpu_list``: local GPU ids (checked against ``torch.cuda.device_count()``), ``gpus_per_job`` of them
    per worker (default 1). Ray: GPUs per task (default 1 when the cluster has GPUs, else 0).
    ``cpus_per_job``: torch threads per local worker process / CPUs per Ray task. ``timeout``: seconds per item
    (None: no limit); locally it needs a worker process, so one slot with a timeout runs in one.
    ``retries``: re-runs of an item whose worker (or node) died (default: 0 local, 1 Ray); exceptions raised
    by ``fn`` are never retried.
    """
    kind = _check_flags(kind, n_workers, gpu_list, gpus_per_job, cpus_per_job, ray_address, timeout, retries)
    if kind == "ray":
        return RayExecutor(address=ray_address, n_workers=n_workers, gpus_per_job=gpus_per_job,
                           cpus_per_job=cpus_per_job, timeout=timeout, retries=1 if retries is None else retries,
                           progress=progress)

    threads = max(1, int(cpus_per_job))
    if gpu_list:
        groups = _gpu_slots(list(gpu_list), _whole_gpus(gpus_per_job), threads)
        n = max(n_workers or 1, len(groups))
        slots = [groups[i % len(groups)] for i in range(n)]
    else:
        n = n_workers or 1
        if n == 1 and timeout is None and not retries:
            return InProcessExecutor(progress=progress)
        slots = [Slot(device="cpu", env=(("OMP_NUM_THREADS", str(threads)), ("MKL_NUM_THREADS", str(threads))),
                      threads=threads, name="cpu")] * n
    return ProcessPoolExecutor(slots, timeout=timeout, retries=retries or 0, progress=progress)


__all__ = ["TaskResult", "Executor", "get_executor", "check_executor_settings", "parse_gpu_list",
           "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor", "Slot", "format_error", "KINDS"]
