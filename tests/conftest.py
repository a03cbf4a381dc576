import os

import pytest

try:
    import torch
except ImportError as e:  # the suite run by an interpreter without the project: one clear line, not a traceback
    torch = None
    MISSING = (f"the tests need the project and its test extras installed in this interpreter ({e.name} is missing "
               f"from it): pip install -e \".[dev,words,ray,weights,stats]\" && python -m pytest (the README's test command)")
else:
    MISSING = None
    # Small, repeatable CPU work: tests never depend on how many cores the machine has.
    torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_configure(config):
    if MISSING:
        pytest.exit(MISSING, returncode=4)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature and word caches go to a per-session temp folder, never to the user's ~/.cache."""
    monkeypatch.setenv("HEADBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
