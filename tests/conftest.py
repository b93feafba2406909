import os

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("RESTOREAGENT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def astronaut_small() -> np.ndarray:
    """A real photo that scikit-image ships, 128x128, float32 RGB in [0, 1]."""
    import cv2
    from skimage import data

    img = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


@pytest.fixture
def astronaut_png(tmp_path, astronaut_small):
    from restoreagent.imageio import save_image

    return save_image(astronaut_small, tmp_path / "astronaut.png")


@pytest.fixture
def shipped_tools_only(monkeypatch):
    """The registry as shipped: tools other tests registered at run time are hidden for the test."""
    from restoreagent.tools import registry

    monkeypatch.setattr(registry, "_EXTRA_SPECS", {})
    registry.get_tool.cache_clear()
    yield
    registry.get_tool.cache_clear()
