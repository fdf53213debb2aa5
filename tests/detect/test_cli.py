"""`optml detect` and `optml tune` through the real command."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).parent / "corpus"


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copy(CORPUS / name, target)
    return target


def test_detect_prints_each_parameter_where_and_why(tmp_path, run_optml):
    script = _copy("sk_make_pipeline.py", tmp_path)
    proc = run_optml("detect", script.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "svc__C" in out and "svc__gamma" in out
    assert "13:45" in out  # line:column of the SVC literal C=10.0
    assert "loguniform [0.001, 1000.0]" in out
    assert "sklearn.svm.SVC.C (metadata.csv:" in out
    assert "metric: score (maximize)" in out


def test_detect_writes_a_spec_that_optml_run_runs(tmp_path, run_optml):
    script = _copy("sk_svc_basic.py", tmp_path)
    original = script.read_text()
    proc = run_optml(
        "detect",
        script.name,
        "--spec",
        "study.yaml",
        "--write",
        "tuned.py",
        "--trials",
        "3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load((tmp_path / "study.yaml").read_text())
    assert spec["objective"] == {"function": "tuned.py:optml_objective"}
    assert spec["metric"] == {"name": "score", "direction": "maximize"}
    assert set(spec["space"]) == {"svc__C", "svc__kernel"}
    assert 'optml_params["svc__C"]' in (tmp_path / "tuned.py").read_text()
    run = run_optml(
        "run",
        "study.yaml",
        "--storage",
        f"sqlite:///{tmp_path / 'o.db'}",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "3/3" in run.stdout
    assert script.read_text() == original


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "from sklearn.svm import SVC\nmodel = SVC(C=1.0\n",
            r"bad.py:\d+:\d+: not valid Python",
        ),
        (
            "from sklearn.svm import SVC\nfrom sklearn.datasets import load_iris\n"
            "X, y = load_iris(return_X_y=True)\nprint(SVC().fit(X, y).score(X, y))\n",
            "bad.py: nothing to tune: no literal argument of a class in the metadata table "
            r"\(frameworks imported: scikit-learn\)",
        ),
        (
            "from sklearn.svm import SVC\nfrom sklearn.datasets import load_iris\n"
            "X, y = load_iris(return_X_y=True)\nSVC(C=2.0).fit(X, y)\n",
            r"bad.py: no metric found: mark it with optml.report\(value\)",
        ),
    ],
    ids=["syntax", "nothing-to-tune", "no-metric"],
)
@pytest.mark.parametrize("command", ["detect", "tune"])
def test_unusable_scripts_get_one_line(tmp_path, run_optml, source, message, command):
    (tmp_path / "bad.py").write_text(source)
    proc = run_optml(command, "bad.py", cwd=tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "bad_optml.py").exists()


def test_bad_metadata_csv_through_the_cli(tmp_path, run_optml):
    _copy("sk_svc_basic.py", tmp_path)
    (tmp_path / "extra.csv").write_text("Layer,ParamName\n")
    proc = run_optml("detect", "sk_svc_basic.py", "--metadata", "extra.csv", cwd=tmp_path)
    assert proc.returncode == 2
    assert "extra.csv: the header lacks Hptype" in proc.stderr


def _tune(run_optml, tmp_path: Path, name: str, trials: int, workers: int, *extra: str):
    script = _copy(name, tmp_path)
    original = script.read_text()
    proc = run_optml(
        "tune",
        name,
        "--trials",
        str(trials),
        "--workers",
        str(workers),
        "--storage",
        f"sqlite:///{tmp_path / 'o.db'}",
        "--seed",
        "0",
        *extra,
        cwd=tmp_path,
        timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert script.read_text() == original
    assert (tmp_path / f"{script.stem}_optml.py").exists()
    from optml.study import load_study

    study = load_study(script.stem, storage=f"sqlite:///{tmp_path / 'o.db'}")
    states = [t.state.name for t in study.get_trials()]
    assert len(states) == trials, states
    # A sampled learning rate may make a network diverge (a NaN loss fails that trial): the
    # rewritten script runs when at least one trial completes.
    assert "COMPLETE" in states, [t.error for t in study.get_trials()]
    return study, proc


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "sk_svc_basic.py",
        "sk_pipeline_cv.py",
        "sk_dict_models.py",
        "sk_main_report.py",
        "sk_hist_gb.py",
    ],
)
def test_tune_scikit_learn_end_to_end(tmp_path, run_optml, name):
    study, proc = _tune(run_optml, tmp_path, name, 3, 2)
    assert "Best:" in proc.stdout


@pytest.mark.slow
def test_tune_pytorch_end_to_end(tmp_path, run_optml):
    study, _ = _tune(run_optml, tmp_path, "torch_sequential.py", 2, 1)
    assert {p for p in study.get_trials()[0].params} == {
        "linear_out_features",
        "dropout_p",
        "sgd_lr",
        "sgd_momentum",
        "dataloader_batch_size",
        "epochs",
    }


@pytest.mark.slow
def test_tune_keras_end_to_end(tmp_path, run_optml):
    pytest.importorskip("keras")
    study, _ = _tune(run_optml, tmp_path, "keras_functional.py", 2, 1, "--algorithm", "random")
    assert "units" in study.get_trials()[0].params


def test_tune_data_replaces_the_path_the_script_reads(tmp_path, run_optml):
    data = tmp_path / "other.csv"
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}" for i in range(60))
    data.write_text("a,b,label\n" + rows + "\n")
    script = tmp_path / "model.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            from sklearn.neighbors import KNeighborsClassifier

            table = np.loadtxt("missing.csv", delimiter=",", skiprows=1)
            X, y = table[:, :2], table[:, 2]
            knn = KNeighborsClassifier(n_neighbors=5)
            print(knn.fit(X[:40], y[:40]).score(X[40:], y[40:]))
            """
        )
    )
    proc = run_optml(
        "tune",
        "model.py",
        "--data",
        "other.csv",
        "--trials",
        "2",
        "--workers",
        "1",
        "--storage",
        f"sqlite:///{tmp_path / 'o.db'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert repr(str(data)) in (tmp_path / "model_optml.py").read_text()
    assert "missing.csv" in script.read_text()
