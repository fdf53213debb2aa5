"""OptML: hyperparameter tuning on a laptop or a cluster with the same study file.

>>> import optml
>>> study = optml.create_study(space={"x": {"uniform": [-2, 2]}}, storage="memory://", seed=1)
>>> study.optimize(lambda x: (x - 1) ** 2, n_trials=10, executor="serial")
>>> len(study.trials)
10
"""

from optml.detect._report import report
from optml.errors import OptMLError
from optml.samplers import Metric
from optml.space import Categorical, Float, Int, Space
from optml.study import Study, create_study, load_study
from optml.trial import Trial, TrialState

__version__ = "0.1.0"

__all__ = [
    "Categorical",
    "Float",
    "Int",
    "Metric",
    "OptMLError",
    "Space",
    "Study",
    "Trial",
    "TrialState",
    "__version__",
    "create_study",
    "load_study",
    "report",
]
