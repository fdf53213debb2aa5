"""The rewritten script: literals read from the parameters, data loaded once per worker."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from optml.detect import detect, rewrite


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """The scripts below write their load counter to the working directory."""
    monkeypatch.chdir(tmp_path)

SCRIPT = textwrap.dedent(
    '''
    """Counts how often its data is loaded."""
    import numpy as np
    from sklearn.linear_model import Ridge

    COUNTER = "loads.txt"  # a line each time the data is read

    np.random.seed(0)
    open(COUNTER, "a").write("load\\n")
    X = np.random.rand(50, 3)
    y = X @ [1.0, 2.0, 3.0]
    ALPHA = 0.5
    model = Ridge(alpha=ALPHA)  # the tuned estimator
    X_scaled = X * 2
    model.fit(X_scaled, y)
    score = model.score(X_scaled, y)
    '''
)


def _load(tmp_path, code):
    path = tmp_path / "tuned.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("tuned_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_loads_once_and_each_trial_reads_its_values(tmp_path):
    found = detect("model.py", source=SCRIPT)
    assert [hp.name for hp in found.hyperparameters] == ["alpha"]
    code = rewrite(found)
    assert "# the tuned estimator" in code
    module = _load(tmp_path, code)
    loads = tmp_path / "loads.txt"
    assert loads.read_text() == "load\n"  # at import: once per worker
    first = module.optml_objective(alpha=0.5)
    second = module.optml_objective(alpha=1e4)
    assert loads.read_text() == "load\n"  # the trials did not load it again
    assert first > second  # a huge ridge penalty fits worse
    assert module.model.alpha == 1e4  # module-level names still bound, as in the script


def test_statement_depending_on_a_hyperparameter_stays_in_the_trial(tmp_path):
    source = SCRIPT.replace("X_scaled = X * 2", "X_scaled = X * ALPHA")
    module = _load(tmp_path, rewrite(detect("model.py", source=source)))
    assert not hasattr(module, "X_scaled")
    module.optml_objective(alpha=2.0)
    assert (module.X_scaled == module.X * 2.0).all()


def test_in_place_change_keeps_the_data_in_the_trial(tmp_path):
    source = SCRIPT.replace("X_scaled = X * 2", "X *= 2\nX_scaled = X")
    module = _load(tmp_path, rewrite(detect("model.py", source=source)))
    module.optml_objective(alpha=1.0)
    module.optml_objective(alpha=1.0)
    # X was generated again in each trial, so it was doubled once, not twice
    assert module.X.max() <= 2.0


def test_seed_is_repeated_at_the_start_of_each_trial(tmp_path):
    source = SCRIPT.replace(
        "model.fit(X_scaled, y)", "model.fit(X_scaled + np.random.rand(50, 3), y)"
    )
    module = _load(tmp_path, rewrite(detect("model.py", source=source)))
    assert module.optml_objective(alpha=0.5) == module.optml_objective(alpha=0.5)


def test_report_wins_over_the_framework_rule():
    source = SCRIPT + "import optml.detect\noptml.detect.report(1 - score, direction='minimize')\n"
    found = detect("model.py", source=source)
    assert found.metric.explicit and found.metric.direction == "minimize"
    assert "optml_runtime.record(1 - score)" in rewrite(found)


def test_report_is_a_no_op_outside_a_run():
    from optml.detect import report

    assert report(0.25) == 0.25
    assert report(0.9, direction="maximize") == 0.9


def test_exit_in_the_main_block_returns_to_the_worker(tmp_path):
    source = textwrap.dedent(
        """
        import sys
        from sklearn.svm import SVC

        def main():
            model = SVC(C=1.0).fit([[0], [1]], [0, 1])
            print(model.score([[0], [1]], [0, 1]))
            return 0

        if __name__ == "__main__":
            sys.exit(main())
        """
    )
    code = rewrite(detect("model.py", source=source))
    assert "sys.exit" not in code
    assert _load(tmp_path, code).optml_objective(svc__C=3.0) == 1.0


def test_objects_a_trial_changes_are_built_in_each_trial(tmp_path):
    source = SCRIPT + "history = []\nhistory.append(score)\n"
    module = _load(tmp_path, rewrite(detect("model.py", source=source)))
    module.optml_objective(alpha=1.0)
    module.optml_objective(alpha=2.0)
    assert module.history == [module.score]  # one trial's list, not both


def test_a_model_object_is_not_hoisted():
    from pathlib import Path

    script = Path(__file__).parent / "corpus" / "keras_model_add.py"
    code = rewrite(detect(script))
    head, objective = code.split("def optml_objective", 1)
    assert "rng = np.random.default_rng(1)" in head  # the data still loads once per worker
    assert "model = Sequential()" in objective  # model.add would grow a shared model otherwise


def test_a_summed_pytorch_metric_is_the_final_sum(tmp_path):
    source = textwrap.dedent(
        """
        import torch
        from torch import nn

        torch.manual_seed(0)
        X, y = torch.randn(64, 4), torch.randn(64)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        val_loss = 0.0  # a starting value, not the metric
        for batch in range(4):
            rows = slice(16 * batch, 16 * batch + 16)
            val_loss += nn.functional.mse_loss(model(X[rows]).squeeze(1), y[rows]).item()
        val_loss /= 4
        """
    )
    found = detect("model.py", source=source)
    assert found.metric.name == "val_loss" and found.metric.line == 13
    module = _load(tmp_path, rewrite(found))
    result = module.optml_objective(linear_out_features=16, sgd_lr=0.01)
    assert result == module.val_loss > 0
