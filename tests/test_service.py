"""The service layer: safe upload names, runs in their own process that stop on a stored
request, trial pages."""

from __future__ import annotations

import time

import pytest

from optml.errors import OptMLError, SpecError
from optml.service import StudyService, safe_filename


@pytest.mark.parametrize(
    "name, safe",
    [
        ("data.csv", "data.csv"),
        ("../../etc/passwd", "passwd"),
        ("a b/..\\x.py", "x.py"),
        (".bashrc", "bashrc"),
        ("ü.csv", "_.csv"),
    ],
)
def test_safe_filename_stays_in_folder(name, safe):
    assert safe_filename(name) == safe


@pytest.mark.parametrize("name", ["", "..", "/", "...", "a/"])
def test_unusable_upload_name_refused(name):
    with pytest.raises(SpecError):
        safe_filename(name)


def test_upload_never_leaves_the_study_folder(tmp_path):
    service = StudyService(f"sqlite:///{tmp_path}/s.db", tmp_path / "files")
    path = service.save_upload("../../x", "../../evil.py", b"print(1)")
    assert path.resolve().is_relative_to((tmp_path / "files").resolve())
    assert path.name == "evil.py"
    with pytest.raises(SpecError, match="limit"):
        service.save_upload("s", "big.csv", b"0" * (20 * 1024 * 1024 + 1))


SPEC = {
    "name": "svc-lms",
    "objective": {"module": "optml.models.lms"},
    "metric": {"name": "test_error"},
    "space": {"learning_rate": {"loguniform": [1e-4, 0.1]}},
    "algorithm": "random",
    "budget": {"trials": 4},
    "execution": {"workers": 1, "backend": "serial"},
}


def _wait(service, name, until, within=60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        study = service.load(name)
        if until(study):
            return study
        time.sleep(0.2)
    raise AssertionError(f"study {name} did not get there within {within} s")


@pytest.mark.slow
def test_start_runs_in_its_own_process_and_is_refused_twice(tmp_path):
    service = StudyService(f"sqlite:///{tmp_path}/s.db", tmp_path / "files")
    service.create(SPEC)
    service.start("svc-lms")
    done = _wait(service, "svc-lms", lambda s: s.state == "COMPLETE")
    assert service.storage.count_trials(done.id) == {"COMPLETE": 4}
    assert not service.running(done)
    assert (service.folder("svc-lms") / "run.log").exists()
    page = service.trials_page("svc-lms", sort="value", limit=2)
    assert page.total == 4 and page.trials[0].value <= page.trials[1].value
    service.delete("svc-lms")
    assert not service.folder("svc-lms", create=False).exists()


@pytest.mark.slow
def test_stop_is_a_stored_request_and_resume_finishes(tmp_path):
    service = StudyService(f"sqlite:///{tmp_path}/s.db", tmp_path / "files")
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ndef objective(x):\n    time.sleep(0.5)\n    return x\n")
    spec = {
        "name": "slow",
        "objective": {"function": f"{slow}:objective"},
        "space": {"x": {"uniform": [0, 1]}},
        "algorithm": "random",
        "budget": {"trials": 12},
        "execution": {"workers": 1, "heartbeat": 0.5, "grace": 5},
    }
    service.create(spec)
    service.start("slow")
    _wait(service, "slow", lambda s: service.running(s))
    with pytest.raises(OptMLError, match="already running"):
        service.start("slow")
    with pytest.raises(OptMLError, match="running"):
        service.delete("slow")
    assert service.stop("slow") == 1
    stopped = _wait(service, "slow", lambda s: s.state == "INTERRUPTED" and not service.running(s))
    assert 0 < sum(service.storage.count_trials(stopped.id).values()) < 12
    service.resume("slow")
    done = _wait(service, "slow", lambda s: s.state == "COMPLETE", within=90)
    assert service.storage.count_trials(done.id) == {"COMPLETE": 12}


def test_a_study_whose_controllers_all_died_is_listed_interrupted(tmp_path):
    """The stored RUNNING of a study whose every controller is gone is not what a reader shows
    (optml studies, the studies page); a live controller keeps it RUNNING."""
    import optml

    storage = f"sqlite:///{tmp_path}/s.db"
    study = optml.create_study("s", space={"x": [1, 2]}, storage=storage)
    service = StudyService(storage, tmp_path / "files")
    dead_owner = "no-such-host:1"
    run = study.storage.start_run(study.id, dead_owner)
    study.storage.heartbeat(study.id, dead_owner, run)
    (listed,) = service.list_studies()
    assert listed.state == "RUNNING"  # its heartbeat is fresh: alive as far as anyone can tell
    from optml._process import controller_id

    study.storage.end_run(run, "RUNNING", grace_s=0.0)  # the run row ends, the study stays RUNNING
    assert study.storage.load_study("s").state == "RUNNING"
    (listed,) = service.list_studies()
    assert listed.state == "INTERRUPTED"
    assert study.state == "INTERRUPTED"
    study.storage.start_run(study.id, controller_id())
    (listed,) = service.list_studies()
    assert listed.state == "RUNNING"
