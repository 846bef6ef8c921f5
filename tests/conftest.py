import os

import pytest
import torch

# Keep test numerics identical whatever the machine.
torch.set_num_threads(2)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def digits():
    from reconlab.data import load_dataset

    return load_dataset("digits")
