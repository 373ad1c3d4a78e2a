"""The GPU tier: every test here is marked `gpu` and skipped (with the reason) on a machine without CUDA.
On a GPU machine, `pytest -m gpu` (or `make test-gpu`) runs them; CI has no GPU and skips them."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    import torch

    cuda = torch.cuda.is_available()
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not cuda:
                item.add_marker(
                    pytest.mark.skip(reason="needs a CUDA GPU (the gpu tier; run with -m gpu on one)")
                )
