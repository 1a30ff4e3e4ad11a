"""The figures are written, have the expected layout, and show the right pixels."""

import warnings

import matplotlib.image as mpimg
import numpy as np

from rectbert.analysis import report
from rectbert.viz import panels
from tests.conftest import RECT


def test_downsampled_rectangle_figure(tmp_path):
    path = report.shape_figure(RECT, np.array([64.0, 32.0, 192.0, 96.0]), str(tmp_path / "d.png"))
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[1] > 1.5 * img.shape[0]  # two panels side by side
    # both panels are mostly black (the canvas) with a white rectangle
    gray = img[..., :3].mean(-1)
    assert 0.05 < (gray > 0.9).mean() < 0.6 and (gray < 0.1).mean() > 0.3


def test_codebook_tiles_figure(tmp_path):
    centroids = np.zeros((20, 16), np.float32)
    centroids[1] = 1.0
    path = panels.codebook_tiles(centroids, str(tmp_path / "c.png"), counts_K=np.arange(20))
    img = mpimg.imread(path)
    assert img.shape[1] > 3 * img.shape[0]  # two rows of ten tiles


def test_oracle_figure_draws_right_and_wrong_predictions_without_warnings(tmp_path):
    # matplotlib warns when an unfilled marker ("x": a wrong prediction) gets an edge colour
    rect = np.array([60.0, 70.0, 150.0, 180.0])
    outlines = [RECT.outlines(rect)]
    samples = [[RECT.outlines(rect + d) for d in (-2.0, 0.0, 3.0)]]
    points = np.array([[[80.0, 90.0], [120.0, 100.0], [200.0, 200.0]]])
    tokens = np.array([[1, 2, 0]])
    mask = np.array([[False, True, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = panels.oracle_posterior(
            outlines,
            samples,
            points,
            tokens,
            mask,
            np.array([[1, 2, 3]]),  # model: one right, one wrong
            np.array([[1, 5, 0]]),  # oracle: one wrong, one right
            str(tmp_path / "o.png"),
        )
    assert mpimg.imread(path).ndim == 3
