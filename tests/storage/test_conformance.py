"""The storage contract, checked on every storage: memory, SQLite file, PostgreSQL server."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from optml.errors import DuplicateStudyError, StorageError, StudyNotFoundError
from optml.samplers._base import Metric
from optml.storage import InMemoryStorage, Storage, StudyRecord
from optml.trial import FINISHED_STATES, TrialState

S = TrialState


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.infra)])
def kind(request) -> str:
    return request.param


@pytest.fixture
def opener(kind, request) -> Callable[[], Storage]:
    """Opens the storage under test; for SQL, each call opens a new connection to the same data."""
    opened: list[Storage] = []
    if kind == "memory":
        shared = InMemoryStorage()

        def open_() -> Storage:
            return shared
    else:
        from optml.storage._sql import SQLStorage

        url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")

        def open_() -> Storage:
            opened.append(SQLStorage(url))
            return opened[-1]

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def storage(opener) -> Storage:
    return opener()


def new_study(storage: Storage, name: str = "s", direction: str = "minimize") -> StudyRecord:
    return storage.create_study(
        name,
        metrics=[Metric("loss", direction), Metric("time")],
        space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
        sampler={"name": "random"},
        seed=7,
    )


def finish(storage: Storage, study_id: int, value: float | None, state: S = S.COMPLETE, **fields):
    t = storage.create_trial(study_id, {"x": 0.5})
    storage.claim_trial(study_id)
    return storage.update_trial(study_id, t.number, state=state, value=value, **fields)


# -- studies ------------------------------------------------------------------------------
def test_create_and_load_study(storage):
    created = storage.create_study(
        "alpha",
        metrics=[Metric("acc", "maximize")],
        space={"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
        sampler={"name": "tpe", "n_startup": 5},
        seed=42,
        spec={"budget": {"trials": 20}},
        user_attrs={"owner": "me"},
    )
    loaded = storage.load_study("alpha")
    assert loaded == created
    assert loaded.name == "alpha" and loaded.seed == 42 and loaded.state == "CREATED"
    assert loaded.metrics == (Metric("acc", "maximize"),)
    assert loaded.space["lr"]["log"] is True
    assert loaded.sampler == {"name": "tpe", "n_startup": 5}
    assert loaded.spec == {"budget": {"trials": 20}}
    assert loaded.user_attrs == {"owner": "me"}
    assert loaded.created_at is not None and loaded.created_at.utcoffset() == timedelta(0)


def test_duplicate_and_missing_studies(storage):
    new_study(storage, "a")
    with pytest.raises(DuplicateStudyError, match="'a'"):
        new_study(storage, "a")
    with pytest.raises(StudyNotFoundError, match="'nope'"):
        storage.load_study("nope")
    with pytest.raises(StudyNotFoundError):
        storage.delete_study("nope")


def test_list_studies_oldest_first_with_counts_and_best(storage):
    assert storage.list_studies() == []
    low = new_study(storage, "low", "minimize")
    high = new_study(storage, "high", "maximize")
    new_study(storage, "empty")
    for v in (3.0, 1.0, 2.0):
        finish(storage, low.id, v)
        finish(storage, high.id, v)
    finish(storage, low.id, -5.0, state=S.FAILED)
    storage.create_trial(high.id, {"x": 0.1})
    listing = storage.list_studies()
    assert [s.name for s in listing] == ["low", "high", "empty"]
    assert listing[0].counts == {"COMPLETE": 3, "FAILED": 1}
    assert listing[0].best_value == 1.0 and listing[0].n_trials == 4
    assert listing[1].counts == {"COMPLETE": 3, "WAITING": 1}
    assert listing[1].best_value == 3.0 and listing[1].metric == Metric("loss", "maximize")
    assert listing[2].counts == {} and listing[2].best_value is None
    assert all(s.state == "CREATED" and s.created_at is not None for s in listing)


def test_delete_study_removes_its_trials_only(storage):
    a = new_study(storage, "a")
    b = new_study(storage, "b")
    finish(storage, a.id, 1.0)
    finish(storage, b.id, 2.0)
    storage.delete_study("a")
    with pytest.raises(StudyNotFoundError):
        storage.load_study("a")
    with pytest.raises(StudyNotFoundError):
        storage.get_trials(a.id)
    assert [t.value for t in storage.get_trials(b.id)] == [2.0]
    again = new_study(storage, "a")
    assert again.id != a.id
    assert storage.get_trials(again.id) == []
    assert storage.create_trial(again.id, {}).number == 0


def test_study_state_and_attrs(storage):
    study = new_study(storage)
    storage.set_study_state(study.id, "RUNNING")
    storage.set_study_attrs(study.id, {"a": 1, "b": [1, 2]})
    storage.set_study_attrs(study.id, {"b": "x"})
    loaded = storage.load_study("s")
    assert loaded.state == "RUNNING"
    assert loaded.user_attrs == {"a": 1, "b": "x"}
    assert storage.list_studies()[0].state == "RUNNING"


# -- trials -------------------------------------------------------------------------------
def test_trial_numbers_count_per_study(storage):
    a = new_study(storage, "a")
    b = new_study(storage, "b")
    numbers = [
        (
            storage.create_trial(a.id, {"x": i / 10}).number,
            storage.create_trial(b.id, {"x": i / 10}).number,
        )
        for i in range(5)
    ]
    assert numbers == [(i, i) for i in range(5)]
    assert [t.number for t in storage.get_trials(a.id)] == list(range(5))
    assert [t.params["x"] for t in storage.get_trials(b.id)] == [i / 10 for i in range(5)]


def test_create_trial_with_fields(storage):
    study = new_study(storage)
    start = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    t = storage.create_trial(
        study.id,
        {"x": 0.25, "kind": "rbf", "n": 3, "flag": True, "none": None},
        state=S.COMPLETE,
        value=0.5,
        metrics={"loss": 0.5, "time": 1.5},
        intermediate={0: 0.9, 10: 0.6},
        error=None,
        logs="ok",
        attempts=2,
        started_at=start,
        finished_at=start + timedelta(seconds=3),
        duration_s=3.0,
        worker="w-1",
        user_attrs={"note": "imported"},
    )
    got = storage.get_trial(study.id, t.number)
    assert got == t
    assert got.state is S.COMPLETE and got.value == 0.5
    assert got.params == {"x": 0.25, "kind": "rbf", "n": 3, "flag": True, "none": None}
    assert isinstance(got.params["n"], int) and isinstance(got.params["x"], float)
    assert got.intermediate == {0: 0.9, 10: 0.6}
    assert got.metrics == {"loss": 0.5, "time": 1.5}
    assert (got.logs, got.attempts, got.duration_s, got.worker) == ("ok", 2, 3.0, "w-1")
    assert got.started_at == start and got.finished_at == start + timedelta(seconds=3)
    assert got.user_attrs == {"note": "imported"}


def test_refused_create_takes_no_number(storage):
    study = new_study(storage)
    with pytest.raises(StorageError, match="unknown"):
        storage.create_trial(study.id, {}, colour="red")
    assert storage.create_trial(study.id, {}).number == 0


def test_claim_hands_out_lowest_waiting_trial_once(storage):
    study = new_study(storage)
    assert storage.claim_trial(study.id) is None
    for i in range(3):
        storage.create_trial(study.id, {"x": i / 10})
    storage.update_trial(study.id, 0, state=S.RUNNING)
    first = storage.claim_trial(study.id, worker="w1")
    assert first is not None and first.number == 1
    assert first.state is S.RUNNING and first.worker == "w1"
    assert first.started_at is not None and first.started_at.utcoffset() == timedelta(0)
    assert storage.get_trial(study.id, 1) == first
    second = storage.claim_trial(study.id, worker="w2")
    assert second is not None and second.number == 2
    assert storage.claim_trial(study.id) is None


def test_update_trial(storage):
    study = new_study(storage)
    storage.create_trial(study.id, {"x": 0.1})
    running = storage.claim_trial(study.id)
    step = storage.update_trial(study.id, 0, intermediate={1: 0.7})
    assert step.intermediate == {1: 0.7} and step.state is S.RUNNING
    assert step.started_at == running.started_at
    done = storage.update_trial(
        study.id,
        0,
        state="COMPLETE",
        value=0.3,
        metrics={"loss": 0.3, "time": 2.0},
        finished_at=datetime.now(UTC),
        duration_s=2.0,
    )
    assert done.state is S.COMPLETE and done.value == 0.3
    assert storage.get_trial(study.id, 0) == done
    with pytest.raises(StorageError, match="unknown"):
        storage.update_trial(study.id, 0, params={"x": 1})
    with pytest.raises(StorageError, match="no trial 5"):
        storage.update_trial(study.id, 5, value=1.0)
    with pytest.raises(StorageError, match="no trial 5"):
        storage.get_trial(study.id, 5)


@pytest.mark.parametrize("state", FINISHED_STATES)
def test_finished_trials_are_immutable(storage, state):
    study = new_study(storage)
    done = finish(storage, study.id, 1.0, state=state, error="boom")
    for change in ({"value": 2.0}, {"state": S.RUNNING}, {"error": None}, {"logs": "x"}):
        with pytest.raises(StorageError, match="immutable"):
            storage.update_trial(study.id, done.number, **change)
    tagged = storage.update_trial(study.id, done.number, user_attrs={"seen": True})
    assert tagged.user_attrs == {"seen": True}
    assert storage.get_trial(study.id, done.number) == done.with_changes(user_attrs={"seen": True})


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_best_trial(storage, direction):
    study = new_study(storage, direction=direction)
    assert storage.get_best_trial(study.id) is None
    finish(storage, study.id, 5.0)  # 0
    finish(storage, study.id, -100.0, state=S.FAILED)  # 1: not COMPLETE
    finish(storage, study.id, 100.0, state=S.PRUNED)  # 2: not COMPLETE
    finish(storage, study.id, None)  # 3: no value
    finish(storage, study.id, math.nan)  # 4: NaN never wins
    finish(storage, study.id, 2.0)  # 5
    finish(storage, study.id, 8.0)  # 6
    finish(storage, study.id, 2.0)  # 7: ties with 5
    finish(storage, study.id, 8.0)  # 8: ties with 6
    storage.create_trial(study.id, {"x": 0.0})  # 9: WAITING
    best = storage.get_best_trial(study.id)
    assert best is not None
    assert (best.number, best.value) == ((5, 2.0) if direction == "minimize" else (6, 8.0))


@pytest.mark.parametrize("direction, extreme", [("minimize", -math.inf), ("maximize", math.inf)])
def test_infinite_values_are_kept_but_never_best(storage, direction, extreme):
    # Older versions recorded infinite values COMPLETE; they stay readable, and rank nowhere
    # (optml.ranking), so the finite trial is best.
    study = new_study(storage, direction=direction)
    finish(storage, study.id, 1.0)
    finish(storage, study.id, extreme)
    assert storage.get_trial(study.id, 1).value == extreme
    best = storage.get_best_trial(study.id)
    assert best is not None and best.number == 0 and best.value == 1.0
    assert storage.list_studies()[0].best_value == 1.0


def test_nan_and_inf_round_trip(storage):
    study = new_study(storage)
    t = finish(
        storage,
        study.id,
        math.nan,
        metrics={"loss": math.nan, "time": math.inf, "neg": -math.inf},
        user_attrs={"curve": [1.0, math.nan]},
    )
    storage.create_trial(study.id, {"x": 0.5})
    storage.claim_trial(study.id)
    storage.update_trial(study.id, 1, intermediate={0: math.nan, 1: 0.5})
    got = storage.get_trial(study.id, t.number)
    assert math.isnan(got.value)
    assert math.isnan(got.metrics["loss"])
    assert got.metrics["time"] == math.inf and got.metrics["neg"] == -math.inf
    assert math.isnan(got.user_attrs["curve"][1])
    inter = storage.get_trial(study.id, 1).intermediate
    assert math.isnan(inter[0]) and inter[1] == 0.5
    assert storage.get_best_trial(study.id) is None
    assert storage.list_studies()[0].best_value is None


def test_counts_and_state_filter(storage):
    study = new_study(storage)
    finish(storage, study.id, 1.0)
    finish(storage, study.id, 2.0)
    finish(storage, study.id, None, state=S.FAILED)
    storage.create_trial(study.id, {})
    storage.create_trial(study.id, {})
    storage.claim_trial(study.id)
    assert storage.count_trials(study.id) == {
        "COMPLETE": 2,
        "FAILED": 1,
        "RUNNING": 1,
        "WAITING": 1,
    }
    assert [t.number for t in storage.get_trials(study.id, [S.COMPLETE, S.WAITING])] == [0, 1, 4]
    assert [t.number for t in storage.get_trials(study.id, [S.RUNNING])] == [3]
    assert storage.get_trials(study.id, []) == []


def test_unknown_study_id(storage):
    for call in (
        lambda: storage.create_trial(999, {}),
        lambda: storage.claim_trial(999),
        lambda: storage.get_trials(999),
        lambda: storage.get_trial(999, 0),
        lambda: storage.update_trial(999, 0, value=1.0),
        lambda: storage.count_trials(999),
        lambda: storage.get_best_trial(999),
        lambda: storage.set_study_state(999, "RUNNING"),
        lambda: storage.set_study_attrs(999, {"a": 1}),
    ):
        with pytest.raises(StudyNotFoundError):
            call()


def test_returned_objects_are_snapshots(storage, kind):
    study = new_study(storage)
    params = {"x": 0.5, "nested": {"k": 1}}
    t = storage.create_trial(study.id, params, user_attrs={"tags": ["a"]})
    params["x"] = 9.0
    assert storage.get_trial(study.id, 0).params["x"] == 0.5
    t.params["nested"]["k"] = 2
    t.user_attrs["tags"].append("b")
    got = storage.get_trial(study.id, 0)
    assert got.params["nested"] == {"k": 1} and got.user_attrs == {"tags": ["a"]}
    got.params["x"] = 3.0
    assert storage.get_trial(study.id, 0).params["x"] == 0.5


def test_datetimes_are_utc(storage, kind):
    study = new_study(storage)
    local = timezone(timedelta(hours=5, minutes=30))
    start = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=local)
    storage.create_trial(study.id, {}, started_at=start)
    for got in (
        storage.get_trial(study.id, 0).started_at,
        storage.get_trials(study.id)[0].started_at,
    ):
        assert got == start
        if kind != "memory":
            assert got.tzinfo is UTC


def test_changes_are_durable_when_methods_return(kind, opener):
    if kind == "memory":
        pytest.skip("memory storage lives in one process")
    first = opener()
    study = new_study(first)
    finish(first, study.id, 1.5)
    first.create_trial(study.id, {"x": 0.1})
    first.set_study_state(study.id, "RUNNING")
    second = opener()
    assert second.load_study("s").state == "RUNNING"
    assert [t.state for t in second.get_trials(study.id)] == [S.COMPLETE, S.WAITING]
    assert second.get_best_trial(study.id).value == 1.5
    claimed = second.claim_trial(study.id, worker="other")
    assert claimed is not None and first.claim_trial(study.id) is None
    assert first.create_trial(study.id, {}).number == 2


# -- several controllers on one study -------------------------------------------------------
def test_reserve_counts_the_stored_budget_in_the_same_transaction(storage) -> None:
    study = new_study(storage)
    storage.set_study_budget(study.id, 5)
    assert storage.load_study("s").budget == 5
    first = storage.reserve_trials(study.id, [({"x": i / 10}, None) for i in range(3)], worker="a")
    second = storage.reserve_trials(study.id, [({"x": i / 9}, None) for i in range(3)], worker="b")
    assert [t.number for t in first.trials] == [0, 1, 2] and not first.budget_spent
    assert [t.number for t in second.trials] == [3, 4] and second.budget_spent
    assert all(t.state is S.RUNNING and t.heartbeat_at is not None for t in second.trials)
    assert [t.worker for t in storage.get_trials(study.id)] == ["a"] * 3 + ["b"] * 2
    # A queued trial is inside the budget already: claiming it is not refused.
    storage.set_study_budget(study.id, 6)
    storage.create_trial(study.id, {"x": 0.5})
    assert storage.reserve_trials(study.id, [({"x": 0.6}, None)], worker="a").budget_spent
    assert storage.claim_trial(study.id, worker="a").number == 5


def test_reserve_refuses_a_point_another_controller_took(storage) -> None:
    study = new_study(storage)
    got = storage.reserve_trials(
        study.id, [({"x": 0.1}, "k1"), ({"x": 0.2}, "k2"), ({"x": 0.1}, "k1")], worker="a"
    )
    assert [t.params for t in got.trials] == [{"x": 0.1}, {"x": 0.2}] and got.taken == [2]
    again = storage.reserve_trials(study.id, [({"x": 0.1}, "k1"), ({"x": 0.3}, "k3")], worker="b")
    assert again.taken == [0] and [t.number for t in again.trials] == [2]
    storage.create_trial(study.id, {"x": 0.4}, key="k4")  # an enqueued point is taken too
    assert storage.reserve_trials(study.id, [({"x": 0.4}, "k4")], worker="b").taken == [0]


def test_changed_trials_returns_only_what_changed_since(storage) -> None:
    study = new_study(storage)
    for i in range(3):
        storage.create_trial(study.id, {"x": i / 10})
    everything, seq = storage.changed_trials(study.id, 0)
    assert [t.number for t in everything] == [0, 1, 2]
    assert storage.changed_trials(study.id, seq) == ([], seq)
    storage.update_trial(study.id, 1, state=S.FAILED, error="boom")
    changed, seq2 = storage.changed_trials(study.id, seq)
    assert [(t.number, t.state) for t in changed] == [(1, S.FAILED)] and seq2 > seq
    claimed = storage.claim_trial(study.id, worker="w")
    storage.heartbeat(study.id, "w")  # a heartbeat is not a change
    changed, seq3 = storage.changed_trials(study.id, seq2)
    assert [(t.number, t.state) for t in changed] == [(claimed.number, S.RUNNING)]
    assert storage.changed_trials(study.id, seq3) == ([], seq3)


def _lapse(storage, study_id: int, number: int, seconds: float) -> None:
    past = datetime.now(UTC) - timedelta(seconds=seconds)
    storage.update_trial(study_id, number, heartbeat_at=past, started_at=past)


def test_a_lapsed_heartbeat_makes_a_trial_stale_and_a_fresh_one_does_not(storage) -> None:
    study = new_study(storage)
    storage.reserve_trials(study.id, [({"x": 0.1}, None), ({"x": 0.2}, None)], worker="h:1")
    storage.reserve_trials(study.id, [({"x": 0.3}, None)], worker="h:2")
    _lapse(storage, study.id, 0, 100)
    _lapse(storage, study.id, 2, 100)
    storage.heartbeat(study.id, "h:2")  # owner h:2 is alive: its trial 2 is fresh again
    stale = storage.mark_stale(study.id, 30)
    assert [(t.number, t.state, t.user_attrs["stale"]) for t in stale] == [(0, S.STALE, 1)]
    assert storage.get_trial(study.id, 1).state is S.RUNNING  # slow but heartbeating
    assert not S.STALE.is_finished
    # Any live controller runs it again; its old owner can no longer write to it.
    again = storage.claim_trial(study.id, worker="h:3")
    assert (again.number, again.state, again.worker) == (0, S.RUNNING, "h:3")
    from optml.errors import LostTrialError

    with pytest.raises(LostTrialError, match="trial 0 .* no\\s+longer by 'h:1'"):
        storage.update_trial(study.id, 0, owner="h:1", state=S.COMPLETE, value=1.0)
    done = storage.update_trial(study.id, 0, owner="h:3", state=S.COMPLETE, value=1.0)
    assert done.state is S.COMPLETE
    # A dead owner (known dead: a gone process of this machine) is stale at once.
    assert [t.number for t in storage.mark_stale(study.id, 30, dead_owners=["h:1"])] == [1]
    # The fail policy records it FAILED, saying why.
    failed = storage.mark_stale(study.id, 30, dead_owners=["h:2"], fail=True)
    assert failed[0].state is S.FAILED and "stopped heartbeating" in failed[0].error


def test_runs_decide_the_study_state_and_carry_stop_requests(storage) -> None:
    study = new_study(storage)
    a = storage.start_run(study.id, "h:1")
    b = storage.start_run(study.id, "h:2")
    assert storage.load_study("s").state == "RUNNING"
    assert storage.heartbeat(study.id, "h:1", a) is False
    assert sorted(storage.live_runs(study.id, 30)) == ["h:1", "h:2"]
    assert storage.request_stop(study.id, 30) == 2
    assert storage.heartbeat(study.id, "h:1", a) is True
    assert storage.end_run(a, "INTERRUPTED", 30) == "RUNNING"  # b still runs
    assert storage.load_study("s").state == "RUNNING"
    assert storage.end_run(b, "INTERRUPTED", 30) == "INTERRUPTED"
    assert storage.load_study("s").state == "INTERRUPTED"
    c = storage.start_run(study.id, "h:3")  # a later run is not stopped by an earlier request
    assert storage.heartbeat(study.id, "h:3", c) is False
    assert storage.end_run(c, "COMPLETE", 30) == "COMPLETE"
    assert storage.request_stop(study.id, 30) == 0
    assert storage.live_runs(study.id, 30) == []
    storage.start_run(study.id, "h:4")  # then killed: no heartbeat within a short grace
    time.sleep(0.05)
    assert storage.live_runs(study.id, 0.01) == [] and storage.live_runs(study.id, 30) == ["h:4"]


def test_concurrent_reservations_share_one_budget_and_each_point_once(kind, opener) -> None:
    import threading

    if kind == "memory":
        stores = [opener()] * 4
    else:
        stores = [opener() for _ in range(4)]
    study = new_study(stores[0])
    stores[0].set_study_budget(study.id, 30)
    grid = [{"x": i / 40} for i in range(40)]
    errors: list[BaseException] = []

    def controller(store: Storage, offset: int) -> None:
        try:
            for i in range(20):
                point = grid[(offset + i) % 40]  # overlapping proposals
                if store.reserve_trials(
                    study.id, [(point, repr(point))], worker=str(offset)
                ).budget_spent:
                    return
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=controller, args=(s, 5 * i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    trials = stores[0].get_trials(study.id)
    assert [t.number for t in trials] == list(range(30))
    assert len({t.params["x"] for t in trials}) == 30


def test_trials_handed_out_share_nothing_mutable_with_storage(storage) -> None:
    """A caller that changes a trial it was given (its dicts; the trial itself is frozen)
    changes nothing stored, nested values included."""
    sid = new_study(storage).id
    storage.create_trial(sid, {"x": 0.5, "layers": [8, 16]}, user_attrs={"tags": ["a"]})
    storage.update_trial(sid, 0, state=S.RUNNING)
    for got in (
        storage.get_trial(sid, 0),
        storage.get_trials(sid)[0],
        storage.changed_trials(sid, 0)[0][0],
        storage.update_trial(sid, 0, intermediate={1: 0.5}),
    ):
        got.params["x"] = 9.0
        got.params["layers"].append(32)
        got.user_attrs["tags"].append("b")
        got.intermediate[2] = 0.1
    again = storage.get_trial(sid, 0)
    assert again.params == {"x": 0.5, "layers": [8, 16]}
    assert again.user_attrs == {"tags": ["a"]}
    assert again.intermediate == {1: 0.5}


def test_changed_trials_are_those_changed_since_in_number_order(storage) -> None:
    sid = new_study(storage).id
    for i in range(6):
        storage.create_trial(sid, {"x": i / 10})
    _, since = storage.changed_trials(sid, 0)
    storage.update_trial(sid, 4, state=S.RUNNING)
    storage.update_trial(sid, 1, state=S.RUNNING)
    storage.update_trial(sid, 4, state=S.COMPLETE, value=1.0, metrics={"loss": 1.0, "time": 1})
    storage.update_trial(sid, 1, intermediate={0: 0.5})  # changed last, listed first
    changed, now = storage.changed_trials(sid, since)
    assert [(t.number, t.state) for t in changed] == [(1, S.RUNNING), (4, S.COMPLETE)]
    assert now > since
    assert storage.changed_trials(sid, now) == ([], now)


# -- several trials written together ------------------------------------------------------
def test_update_trials_writes_each_as_update_trial_would(kind, opener) -> None:
    storage = opener()
    study = new_study(storage)
    made = storage.reserve_trials(study.id, [({"x": i / 10}, None) for i in range(4)], worker="w")
    _, seq = storage.changed_trials(study.id, 0)
    now = datetime.now(UTC)
    written = storage.update_trials(
        study.id,
        {
            0: {"state": S.COMPLETE, "value": 0.5, "metrics": {"loss": 0.5}, "finished_at": now},
            2: {"intermediate": {1: 0.25}},
            3: {"state": S.FAILED, "error": "boom", "host": "h", "runner": "r"},
        },
        owner="w",
    )
    assert list(written) == [0, 2, 3]
    assert written[0].state is S.COMPLETE and written[0].value == 0.5
    assert written[0].finished_at == now and written[0].params == made.trials[0].params
    assert written[2].state is S.RUNNING and written[2].intermediate == {1: 0.25}
    assert (written[3].state, written[3].error, written[3].host) == (S.FAILED, "boom", "h")
    # What came back is what is stored (and durable: another connection reads it).
    again = opener()
    assert [again.get_trial(study.id, n) for n in (0, 2, 3)] == list(written.values())
    assert again.get_trial(study.id, 1) == made.trials[1]
    # Each write took a change number of its own.
    changed, seq2 = again.changed_trials(study.id, seq)
    assert [t.number for t in changed] == [0, 2, 3] and seq2 >= seq + 3
    assert storage.update_trials(study.id, {}) == {}


def test_update_trials_leaves_alone_the_trials_the_owner_lost(storage) -> None:
    study = new_study(storage)
    storage.reserve_trials(study.id, [({"x": i / 10}, None) for i in range(3)], worker="w")
    storage.update_trial(study.id, 1, state=S.STALE)
    taken = storage.claim_trial(study.id, worker="other")
    assert taken is not None and taken.number == 1
    written = storage.update_trials(
        study.id,
        {n: {"state": S.COMPLETE, "value": float(n)} for n in range(3)},
        owner="w",
    )
    assert written[1] is None
    assert [written[n].state for n in (0, 2)] == [S.COMPLETE, S.COMPLETE]  # type: ignore[union-attr]
    assert storage.get_trial(study.id, 1) == taken
    # A single trial takes the same rule.
    assert storage.update_trials(study.id, {1: {"value": 3.0}}, owner="w") == {1: None}


def test_update_trials_refuses_what_update_trial_refuses(kind, storage) -> None:
    study = new_study(storage)
    storage.reserve_trials(study.id, [({"x": i / 10}, None) for i in range(3)], worker="w")
    storage.update_trial(study.id, 2, state=S.COMPLETE, value=1.0)
    before = storage.get_trials(study.id)
    with pytest.raises(StorageError, match="immutable"):
        storage.update_trials(study.id, {0: {"value": 0.1}, 2: {"value": 2.0}})
    with pytest.raises(StorageError, match="no trial 7"):
        storage.update_trials(study.id, {0: {"value": 0.1}, 7: {"value": 2.0}})
    with pytest.raises(StorageError, match="unknown"):
        storage.update_trials(study.id, {0: {"value": 0.1}, 1: {"params": {"x": 1}}})
    if kind != "memory":  # one transaction: a refusal changes nothing
        assert storage.get_trials(study.id) == before
