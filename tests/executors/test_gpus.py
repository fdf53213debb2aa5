"""GPUs per trial on the local and Dask backends, with the device list faked (OPTML_GPUS):
real worker processes, a real Dask cluster, real lock files held and freed by real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optml import TrialState, create_study
from optml.errors import GpuError, OptMLError
from optml.executors import LocalExecutor, make_executor
from optml.executors._gpus import GpuAllocator, visible_gpus
from optml.objectives import FunctionObjective


@pytest.fixture
def fake_gpus(monkeypatch, tmp_path):
    """Two fake devices, with lock files of their own (other tests, and other people on this
    machine, never see them)."""
    monkeypatch.setenv("OPTML_GPUS", "0,1")
    monkeypatch.setenv("OPTML_GPU_LOCKS", str(tmp_path / "locks"))
    return tmp_path


def record(x, data):
    """Write, from inside the trial's process, the devices it sees and when it ran; crash or
    hang where the point says so."""
    start = time.time()
    if x == "crash":
        os._exit(3)
    time.sleep(120 if x == "hang" else 0.4)
    Path(data, f"trial-{x}-{os.getpid()}.json").write_text(
        json.dumps(
            {"x": x, "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "t": [start, time.time()]}
        )
    )
    return 1.0


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in folder.glob("trial-*.json")]


def assert_no_shared_device(found: list[dict], n: int, devices: set[str]) -> None:
    assert len(found) == n, found
    for r in found:
        assert r["cvd"] is not None and len(r["cvd"].split(",")) == 1, r
        assert r["cvd"] in devices, r
    for i, a in enumerate(found):
        for b in found[i + 1 :]:
            overlap = a["t"][0] < b["t"][1] and b["t"][0] < a["t"][1]
            assert not (overlap and a["cvd"] == b["cvd"]), (a, b)
    # The devices were used side by side, not one after the other.
    assert {r["cvd"] for r in found} == devices


def held_elsewhere(lock_dir: Path, device: str) -> bool:
    """Whether some process holds ``device``'s lock (asked from a fresh process, which can only
    get it if nobody has it)."""
    code = (
        "import sys; from optml.executors._gpus import GpuAllocator as A; "
        f"l = A([{device!r}], {str(lock_dir)!r}).acquire(1); sys.exit(0 if l else 1)"
    )
    return subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 1


class Holder:
    """Another process holding devices, as another optml run would."""

    def __init__(self, lock_dir: Path, devices: list[str]) -> None:
        code = (
            "import sys, time; from optml.executors._gpus import GpuAllocator as A; "
            f"l = A({devices!r}, {str(lock_dir)!r}).acquire({len(devices)}); "
            "print('held' if l else 'busy', flush=True); time.sleep(120)"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


# -- discovery and the allocator ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OPTML_GPUS": "0,1"}, ["0", "1"]),
        ({"OPTML_GPUS": ""}, []),
        ({"OPTML_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0,1"}, ["3"]),
        ({"CUDA_VISIBLE_DEVICES": "2, 3"}, ["2", "3"]),
        ({"CUDA_VISIBLE_DEVICES": "GPU-8f2a,GPU-11b0"}, ["GPU-8f2a", "GPU-11b0"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
        ({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, ["0"]),
    ],
)
def test_the_device_list_honours_optml_gpus_then_cuda_visible_devices(env, expected) -> None:
    assert visible_gpus(env) == expected


def test_a_lease_excludes_other_processes_and_ends_with_its_holder(tmp_path) -> None:
    locks = tmp_path / "locks"
    holder = Holder(locks, ["0"])
    allocator = GpuAllocator(["0", "1"], str(locks))
    try:
        lease = allocator.acquire(1)
        assert lease is not None and lease.ids == ["1"]
        assert allocator.acquire(1) is None  # this process's own lease counts too
        lease.release()
        assert allocator.acquire(2) is None
    finally:
        holder.kill()  # SIGKILL: no chance to release anything itself
    both = allocator.acquire(2)
    assert both is not None and both.ids == ["0", "1"] and both.visible == "0,1"
    both.release()


# -- refusals ----------------------------------------------------------------------------------


def test_a_machine_without_gpus_refuses_a_study_that_asks_for_one(monkeypatch) -> None:
    monkeypatch.setenv("OPTML_GPUS", "")
    with pytest.raises(GpuError, match=r"asks for 1 GPU\(s\), but this machine offers 0") as e:
        LocalExecutor(2, gpus=1)
    assert "OPTML_GPUS=''" in str(e.value)
    monkeypatch.setenv("OPTML_GPUS", "0,1")
    with pytest.raises(GpuError, match=r"asks for 3 GPU\(s\), but this machine offers 2"):
        make_executor("local", 2, gpus=3)


def test_fractional_gpus_and_gpus_on_the_serial_backend_are_refused(fake_gpus) -> None:
    with pytest.raises(GpuError, match="0.5 — the local backend gives each trial whole GPUs"):
        LocalExecutor(2, gpus=0.5)
    with pytest.raises(OptMLError, match="execution.gpus applies to backend local or dask"):
        make_executor("serial", 1, gpus=1)


def test_devices_all_held_by_another_run_refuse_the_study_before_any_trial(fake_gpus) -> None:
    holder = Holder(fake_gpus / "locks", ["0", "1"])
    study = create_study(space={"x": [1, 2]}, storage="memory://")
    try:
        with pytest.raises(GpuError, match="are all held by other optml runs"):
            study.optimize(record, executor=LocalExecutor(2, gpus=1), data=str(fake_gpus))
    finally:
        holder.kill()
    assert not records(fake_gpus)


# -- the local executor --------------------------------------------------------------------------


@pytest.mark.slow
def test_local_gpu_trials_on_two_devices_never_share_one(fake_gpus) -> None:
    study = create_study(space={"x": [1, 2, 3, 4, 5, 6]}, storage="memory://")
    executor = LocalExecutor(4, gpus=1)
    assert executor.workers == 2  # one per device: the other trials wait
    study.optimize(record, executor=executor, data=str(fake_gpus))
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    assert_no_shared_device(records(fake_gpus), 6, {"0", "1"})
    assert not held_elsewhere(fake_gpus / "locks", "0")
    assert not held_elsewhere(fake_gpus / "locks", "1")


def test_local_gpu_trials_skip_a_device_another_run_holds(fake_gpus) -> None:
    holder = Holder(fake_gpus / "locks", ["0"])
    try:
        study = create_study(space={"x": [1, 2, 3]}, storage="memory://")
        study.optimize(record, executor=LocalExecutor(2, gpus=1), data=str(fake_gpus))
    finally:
        holder.kill()
    assert {r["cvd"] for r in records(fake_gpus)} == {"1"}


@pytest.mark.slow
def test_a_timed_out_or_crashed_gpu_trial_hands_its_device_to_the_next(
    fake_gpus, monkeypatch
) -> None:
    monkeypatch.setenv("OPTML_GPUS", "0")
    study = create_study(
        space={"x": ["hang", "crash", "a", "b"]}, sampler="grid", storage="memory://"
    )
    study.optimize(record, executor=LocalExecutor(1, gpus=1), data=str(fake_gpus), trial_timeout=8)
    states = {t.params["x"]: t.state for t in study.trials}
    assert states == {
        "hang": TrialState.TIMEOUT,
        "crash": TrialState.FAILED,
        "a": TrialState.COMPLETE,
        "b": TrialState.COMPLETE,
    }
    assert [r["cvd"] for r in records(fake_gpus)] == ["0", "0"]
    assert not held_elsewhere(fake_gpus / "locks", "0")


def test_a_cancelled_gpu_trial_hands_its_device_to_the_next(fake_gpus, monkeypatch) -> None:
    from optml.executors import TrialOutcome, TrialTask

    monkeypatch.setenv("OPTML_GPUS", "0")
    with LocalExecutor(1, gpus=1) as executor:
        executor.start(FunctionObjective(record))
        executor.submit(TrialTask(0, {"x": "hang"}, "value", data=str(fake_gpus)))
        executor.cancel(0)
        executor.submit(TrialTask(1, {"x": "a"}, "value", data=str(fake_gpus)))
        outcomes: list = []
        deadline = time.monotonic() + 60
        while not outcomes and time.monotonic() < deadline:
            outcomes += [e for e in executor.events(0.5) if isinstance(e, TrialOutcome)]
    assert [(o.number, o.state) for o in outcomes] == [(1, "COMPLETE")]
    assert [r["cvd"] for r in records(fake_gpus)] == ["0"]
    assert not held_elsewhere(fake_gpus / "locks", "0")


def test_a_trial_that_asks_for_no_gpu_sees_what_the_controller_sees(fake_gpus, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    study = create_study(space={"x": [1]}, storage="memory://")
    study.optimize(record, executor=LocalExecutor(1), data=str(fake_gpus))
    assert [r["cvd"] for r in records(fake_gpus)] == ["0,1"]


# -- Dask ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.infra
def test_a_local_dask_cluster_gives_gpu_trials_distinct_devices(fake_gpus) -> None:
    pytest.importorskip("distributed")
    from optml.executors import DaskExecutor

    executor = DaskExecutor(4, gpus=1)
    assert executor.workers == 2
    study = create_study(space={"x": [1, 2, 3, 4]}, storage="memory://")
    study.optimize(record, executor=executor, data=str(fake_gpus))
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    assert_no_shared_device(records(fake_gpus), 4, {"0", "1"})


def test_a_local_dask_cluster_on_a_machine_without_gpus_is_refused(monkeypatch) -> None:
    pytest.importorskip("distributed")
    from optml.executors import DaskExecutor

    monkeypatch.setenv("OPTML_GPUS", "")
    with pytest.raises(GpuError, match=r"asks for 1 GPU\(s\), but this machine offers 0"):
        DaskExecutor(2, gpus=1)
    with pytest.raises(GpuError, match="in_thread"):
        DaskExecutor(2, address="tcp://127.0.0.1:1", gpus=1, in_thread=True)


@pytest.mark.slow
@pytest.mark.infra
def test_a_dask_cluster_with_no_worker_offering_gpus_is_refused_before_any_trial() -> None:
    distributed = pytest.importorskip("distributed")
    from optml.executors import DaskExecutor

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        executor = DaskExecutor(address=cluster.scheduler_address, gpus=1)
        study = create_study(space={"x": [1]}, storage="memory://")
        with pytest.raises(GpuError) as e:
            study.optimize(record, executor=executor, data="/nonexistent")
        message = str(e.value)
        assert "asks for 1 GPU(s)" in message and cluster.scheduler_address in message
        assert "1 worker(s), offering the GPU resource 0" in message
        assert study.trials == []


@pytest.fixture
def gpu_cluster(fake_gpus):
    """A scheduler and one `dask worker` of 4 threads offering GPU=2, on a host whose device
    list is faked to 0,1."""
    pytest.importorskip("distributed")
    from executors.test_dask_cluster import dask_cluster

    workers = ("--nthreads", "4", "--resources", "GPU=2")
    with dask_cluster(fake_gpus, 1, *workers, env=dict(os.environ)) as (address, _):
        yield address


@pytest.mark.slow
@pytest.mark.infra
def test_dask_gpu_trials_on_one_worker_get_distinct_devices_and_give_them_back(
    gpu_cluster, fake_gpus
) -> None:
    from optml.executors import DaskExecutor

    study = create_study(
        space={"x": ["a", "b", "crash", "hang", "c", "d", "e"]}, sampler="grid", storage="memory://"
    )
    executor = DaskExecutor(4, address=gpu_cluster, gpus=1)
    # A generous limit: a trial process starting under a loaded Dask worker can take seconds.
    study.optimize(record, executor=executor, data=str(fake_gpus), trial_timeout=12)
    states = {t.params["x"]: t.state for t in study.trials}
    assert states.pop("crash") is TrialState.FAILED
    assert states.pop("hang") is TrialState.TIMEOUT
    assert set(states.values()) == {TrialState.COMPLETE}
    assert_no_shared_device(records(fake_gpus), 5, {"0", "1"})
    # The Dask worker lives on: the crashed and timed-out trials' devices were given back.
    assert not held_elsewhere(fake_gpus / "locks", "0")
    assert not held_elsewhere(fake_gpus / "locks", "1")
    with (
        pytest.raises(GpuError, match=r"asks for 3 GPU\(s\), but the best-provided worker"),
        DaskExecutor(address=gpu_cluster, gpus=3) as refused,
    ):
        refused.start(FunctionObjective(record))
