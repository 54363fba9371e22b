"""The LR-transfer figure: a PNG is written for a table with diverged points and several panels."""

import math

import numpy as np
import pytest
from matplotlib.image import imread

from paramlab.sweep.plots import plot_lr_transfer


def test_writes_png(tmp_path):
    rows = []
    for param in ("sp", "mup"):
        for width in (16, 32):
            for lr in (0.01, 0.02, 0.04):
                loss = math.inf if lr == 0.04 and width == 32 else 2.0 + (math.log2(lr) + 6) ** 2 / width
                rows.append(
                    {"parametrization": param, "width": width, "learning_rate": lr, "seed": 0,
                     "final_loss": loss, "initial_loss": 5.5}
                )  # fmt: skip
    path = tmp_path / "lr.png"
    plot_lr_transfer(rows, path, title="test")
    image = imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 100  # two panels side by side
    assert np.std(image) > 0


def test_empty_records():
    with pytest.raises(ValueError, match="empty"):
        plot_lr_transfer([], "unused.png")


def test_panels_and_lines_come_in_natural_order():
    from paramlab.sweep.plots import _ordered

    assert _ordered(["mup, width 128", "mup, width 64", "mup, width 256", "mup, width 64"]) == [
        "mup, width 64", "mup, width 128", "mup, width 256",
    ]  # fmt: skip
    assert _ordered([16, 2, 4]) == [2, 4, 16]
