"""Shared test fixtures."""

from __future__ import annotations

import importlib.util

import pytest


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)


@pytest.fixture(autouse=True, scope="session")
def _private_config_dir(tmp_path_factory):
    """Keep the signing key optml creates (see optml._trust) out of the user's home."""
    import os

    os.environ["OPTML_CONFIG_DIR"] = str(tmp_path_factory.mktemp("optml-config"))


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance in this process for a module's Ray tests (starting one takes
    seconds and hundreds of MB): 2 CPUs, 2 fake GPUs, a small object store, no dashboard, its
    files in a temporary directory; shut down after the module. A RayExecutor built with no
    address runs on it; its GCS address is yielded for other processes."""
    import shutil
    import signal
    import tempfile

    ray = pytest.importorskip("ray")
    temp_dir = tempfile.mkdtemp(prefix="optml-ray-test-", dir="/tmp")
    handler = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit
    try:
        ray.init(
            address="local",
            num_cpus=2,
            num_gpus=2,
            object_store_memory=100 * 2**20,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            _temp_dir=temp_dir,
        )
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, handler)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, handler)
        shutil.rmtree(temp_dir, ignore_errors=True)
