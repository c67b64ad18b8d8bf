"""cnas.executors: order, failure records, worker death, timeouts, Ctrl-C, bad settings; local and Ray."""

import os
import signal
import threading
import time

import pytest
import torch

from cnas.errors import ConfigError, run_cli
from cnas.executors import Executor, InProcessExecutor, ProcessPoolExecutor, TaskResult, format_error, get_executor


def work(item, device="cpu"):
    """Stand-in for evaluating a candidate: a seeded little regression trained with SGD (float64, CPU).

    ``item`` flags: ``fail`` raises, ``die`` ends the process (``"exit"``: os._exit(9), ``"kill"``: SIGKILL),
    ``die_once`` SIGKILLs the process unless the marker file it names exists (and creates it), ``sleep`` waits,
    ``pidfile`` gets the process id first.
    """
    if item.get("pidfile"):
        with open(item["pidfile"], "w") as fh:
            fh.write(str(os.getpid()))
    if item.get("sleep"):
        time.sleep(item["sleep"])
    if item.get("die") == "exit":
        os._exit(9)
    if item.get("die") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if item.get("die_once"):
        if not os.path.exists(item["die_once"]):
            open(item["die_once"], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    if item.get("fail"):
        raise ValueError(f"bad candidate {item['seed']}")
    g = torch.Generator().manual_seed(item["seed"])
    x = torch.randn(64, 8, generator=g, dtype=torch.float64)
    y = x @ torch.randn(8, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(64, 1, generator=g,
                                                                                    dtype=torch.float64)
    w = torch.zeros(8, 1, dtype=torch.float64, requires_grad=True)
    for _ in range(30):
        loss = ((x @ w - y) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, w)
        with torch.no_grad():
            w -= 0.1 * grad
    return {"seed": item["seed"], "loss": float(((x @ w.detach() - y) ** 2).mean()), "w": w.detach().flatten().tolist(),
            "device": device, "threads": torch.get_num_threads(), "pid": os.getpid()}


def stats(res):
    """What must not depend on the executor."""
    return [(r.index, r.ok, r.value["seed"] if r.ok else None, r.value["loss"] if r.ok else None,
             r.value["w"] if r.ok else None) for r in res]


ITEMS = [{"seed": s} for s in range(6)]
ITEMS_WITH_FAILURE = ITEMS[:2] + [{"seed": 99, "fail": True}] + ITEMS[2:]


def check_aligned(items, res):
    assert [r.index for r in res] == list(range(len(items)))
    for item, r in zip(items, res):
        assert isinstance(r, TaskResult)
        if r.ok:
            assert r.value["seed"] == item["seed"]
            assert r.error is None
        else:
            assert r.value is None and r.error


# --------------------------------------------------------------------------------------- in-process


def test_in_process_order_values_and_labels():
    ex = get_executor(progress=False)
    assert isinstance(ex, InProcessExecutor) and isinstance(ex, Executor)
    labels = [f"net_{i}" for i in range(len(ITEMS_WITH_FAILURE))]
    with ex:
        res = ex.map(work, ITEMS_WITH_FAILURE, labels=labels)
    check_aligned(ITEMS_WITH_FAILURE, res)
    assert [r.label for r in res] == labels
    assert [r.ok for r in res] == [True, True, False, True, True, True, True]
    assert res[2].error.startswith("ValueError: bad candidate 99")
    assert "traceback tail" in res[2].error and "\n" not in res[2].error
    direct = work(ITEMS[3], device="cpu")
    assert res[4].value["loss"] == direct["loss"] and res[4].value["w"] == direct["w"]
    assert all(r.worker == "local" and r.attempts == 1 and r.seconds >= 0 for r in res)
    assert res[0].value["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_labels_must_match_items():
    with pytest.raises(ValueError):
        InProcessExecutor(progress=False).map(work, ITEMS, labels=["a"])


def test_format_error_is_one_paragraph():
    try:
        raise KeyError("multi\nline")
    except KeyError as err:
        text = format_error(err)
    assert "\n" not in text and text.startswith("KeyError") and "test_executors.py" in text


# ------------------------------------------------------------------------------------ worker processes


@pytest.fixture(scope="module")
def pool2():
    """Two CPU worker processes shared by the tests below (each worker start imports torch: seconds)."""
    with get_executor(n_workers=2, progress=False) as ex:
        yield ex


def test_two_workers_match_sequential_and_use_one_thread(pool2):
    assert isinstance(pool2, ProcessPoolExecutor) and isinstance(pool2, Executor) and pool2.n_workers == 2
    seq = get_executor(progress=False).map(work, ITEMS_WITH_FAILURE)
    par = pool2.map(work, ITEMS_WITH_FAILURE, labels=[str(i) for i in range(7)])
    again = pool2.map(work, ITEMS[:3])  # the same long-lived workers serve a second map
    check_aligned(ITEMS_WITH_FAILURE, par)
    assert stats(par) == stats(seq)
    assert "bad candidate 99" in par[2].error
    ok = [r for r in par if r.ok]
    assert {r.value["threads"] for r in ok} == {1}
    assert {r.value["device"] for r in ok} == {"cpu"}
    assert os.getpid() not in {r.value["pid"] for r in ok}
    assert {r.worker for r in ok} <= {w.name for w in pool2._workers}
    assert all(r.worker.startswith("proc-") and r.worker.endswith(" cpu") for r in ok)
    # the same two worker processes serve the second map (either may have served few or no items the first time)
    assert {r.worker for r in again} <= {w.name for w in pool2._workers}
    assert len({r.value["pid"] for r in again} | {r.value["pid"] for r in ok}) <= 2
    assert stats(again) == stats(get_executor(progress=False).map(work, ITEMS[:3]))


def test_dead_worker_is_a_failure_record_and_is_replaced(pool2):
    items = ITEMS[:2] + [{"seed": 50, "die": "kill"}] + ITEMS[2:4] + [{"seed": 51, "die": "exit"}] + ITEMS[4:]
    seq = get_executor(progress=False).map(work, ITEMS)
    res = pool2.map(work, items, labels=[f"net_{i}" for i in range(len(items))])
    after = pool2.map(work, ITEMS[:2])
    check_aligned(items, res)
    assert [r.ok for r in res] == [True, True, False, True, True, False, True, True]
    assert "WorkerDied" in res[2].error and "exit code -9: killed by SIGKILL" in res[2].error
    assert "net_2" in res[2].error
    assert "WorkerDied" in res[5].error and "exit code 9)" in res[5].error and "net_5" in res[5].error
    assert stats([r for r in res if r.ok]) == [(i,) + s[1:] for i, s in zip([0, 1, 3, 4, 6, 7], stats(seq))]
    assert stats(after) == stats(seq[:2])


def test_local_retry_after_worker_death_and_timeout(pool2, tmp_path):
    items = [ITEMS[0], {"seed": 7, "die_once": str(tmp_path / "marker")}, {"seed": 8, "sleep": 60}, ITEMS[1]]
    fresh = get_executor(n_workers=2, retries=1, timeout=3, progress=False)
    assert (fresh.retries, fresh.timeout) == (1, 3)
    fresh.close()
    pool2.retries, pool2.timeout = 1, 3  # the same settings on the warm pool saves two worker starts
    t0 = time.monotonic()
    try:
        res = pool2.map(work, items)
    finally:
        pool2.retries, pool2.timeout = 0, None
    assert time.monotonic() - t0 < 50
    check_aligned(items, res)
    assert [r.ok for r in res] == [True, True, False, True]
    assert [r.attempts for r in res] == [1, 2, 1, 1]
    assert res[1].value["seed"] == 7
    assert res[2].error.startswith("TimeoutError") and "3 s" in res[2].error


def test_single_slot_with_timeout_uses_a_worker_process():
    ex = get_executor(n_workers=1, timeout=30, progress=False)
    assert isinstance(ex, ProcessPoolExecutor)
    ex.close()


def test_ctrl_c_kills_the_workers(pool2, tmp_path):
    pidfile = tmp_path / "pid"
    items = [{"seed": 1, "sleep": 60, "pidfile": str(pidfile)}, {"seed": 2}]
    main = threading.get_ident()

    def interrupt():
        for _ in range(600):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ex = pool2
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            ex.map(work, items)
    finally:
        signal.signal(signal.SIGINT, old)
    assert all(w is None for w in ex._workers)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_unpicklable_fn_is_a_type_error():
    with get_executor(n_workers=2, progress=False) as ex, pytest.raises(TypeError, match="picklable"):
        ex.map(lambda item, device: item, [1, 2])


def test_progress_bar_counts(capsys, monkeypatch):
    monkeypatch.setattr("cnas.progress.is_terminal", lambda stream: True)  # bars are drawn on terminals only
    with get_executor(progress=True) as ex:
        ex.map(work, ITEMS_WITH_FAILURE[:3])
    err = capsys.readouterr().err
    assert "3/3" in err and "failed=1" in err and "done=2" in err


# ------------------------------------------------------------------------------------------ bad settings


@pytest.mark.parametrize("kwargs,needle", [
    (dict(gpu_list=[torch.cuda.device_count()]), "does not exist"),
    (dict(gpu_list=[0, 0]), "repeated"),
    (dict(gpu_list=["x"]), "not a GPU id"),
    (dict(n_workers=0), "--n_workers"),
    (dict(kind="slurm"), "--executor"),
    (dict(timeout=0), "--timeout"),
    (dict(retries=-1), "--retries"),
    (dict(ray_address="auto"), "--executor ray"),
    (dict(kind="ray", gpu_list=[0]), "--gpu_list"),
    (dict(kind="ray", ray_address="127.0.0.1:1"), "no Ray head answers"),
    (dict(kind="ray", ray_address="localhost:notaport"), "HOST:PORT"),
])
def test_bad_settings_are_one_line_and_exit_2(kwargs, needle, capsys):
    if kwargs.get("kind") == "ray":
        pytest.importorskip("ray")
    with pytest.raises(ConfigError, match=needle):
        get_executor(progress=False, **kwargs)

    def main(argv):
        get_executor(progress=False, **kwargs)

    with pytest.raises(SystemExit) as exc:
        run_cli(main, [], prog="cnas.search")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnas.search: error:") and needle in err


# ------------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_ex():
    ray = pytest.importorskip("ray")
    ex = get_executor("ray", n_workers=2, progress=False)
    try:
        yield ex
    finally:
        ex.close()
        assert not ray.is_initialized()


def test_ray_matches_local(ray_ex):
    assert isinstance(ray_ex, Executor) and ray_ex.capacity == 2 and ray_ex.gpus_per_job == 0
    seq = get_executor(progress=False).map(work, ITEMS_WITH_FAILURE)
    res = ray_ex.map(work, ITEMS_WITH_FAILURE, labels=[f"net_{i}" for i in range(7)])
    check_aligned(ITEMS_WITH_FAILURE, res)
    assert stats(res) == stats(seq)
    assert res[2].error.startswith("ValueError: bad candidate 99") and res[2].attempts == 1
    assert all(r.worker.startswith("ray node") for r in res)
    assert {r.value["threads"] for r in res if r.ok} == {1}
    assert res[6].label == "net_6"


def test_ray_retries_a_killed_worker_and_times_out(ray_ex, tmp_path):
    from cnas.executors import RayExecutor

    items = [{"seed": 9, "sleep": 60}, ITEMS[0], {"seed": 7, "die_once": str(tmp_path / "marker")},
             {"seed": 8, "die": "kill"}, ITEMS[1]]
    ex = RayExecutor(retries=1, timeout=5, progress=False)  # reuses the module's Ray instance
    res = ex.map(work, items)
    ex.close()
    import ray

    assert ray.is_initialized()  # not this executor's instance to shut down
    check_aligned(items, res)
    assert [r.ok for r in res] == [False, True, True, False, True], [r.error for r in res]
    assert res[0].error.startswith("TimeoutError") and res[0].attempts == 1
    assert res[2].attempts == 2 and res[2].value["seed"] == 7
    assert res[3].attempts == 2 and res[3].error.startswith("WorkerDied") and "2 attempt(s)" in res[3].error
    seq = get_executor(progress=False).map(work, [ITEMS[0], ITEMS[1]])
    assert [res[1].value["loss"], res[4].value["loss"]] == [r.value["loss"] for r in seq]


def test_ray_gpu_jobs_on_a_cpu_cluster_is_a_config_error(ray_ex):
    import ray

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("the test Ray instance has GPUs")
    with pytest.raises(ConfigError, match="GPU"):
        get_executor("ray", gpus_per_job=1, progress=False)


SLOW_IMPORT = '''import os
import time

if str(os.getpid()) != os.environ.get("CNAS_TEST_PARENT"):
    time.sleep(4)  # a worker's first import of this module: its start-up, not the item's work


def quick(item, device="cpu"):
    return item
'''


def test_timeout_counts_the_items_work_not_the_workers_imports(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "cnas_slow_import.py").write_text(SLOW_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CNAS_TEST_PARENT", str(os.getpid()))
    mod = importlib.import_module("cnas_slow_import")
    try:
        with get_executor(n_workers=1, timeout=2, progress=False) as ex:
            res = ex.map(mod.quick, [1, 2])
    finally:
        sys.modules.pop("cnas_slow_import", None)
    assert [r.ok for r in res] == [True, True], [r.error for r in res]
    assert [r.value for r in res] == [1, 2]
