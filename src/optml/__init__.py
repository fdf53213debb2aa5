"""OptML: hyperparameter tuning on a laptop or a cluster with the same study file."""

__version__ = "0.1.0"
