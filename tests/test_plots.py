"""The figures are written, have the expected layout, and show the right pixels."""

import matplotlib.image as mpimg
import numpy as np

from rectbert import plots


def test_downsampled_rectangle_figure(tmp_path):
    path = plots.downsampled_rectangle([64.0, 32.0, 192.0, 96.0], str(tmp_path / "d.png"))
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[1] > 1.5 * img.shape[0]  # two panels side by side
    # both panels are mostly black (the canvas) with a white rectangle
    gray = img[..., :3].mean(-1)
    assert 0.05 < (gray > 0.9).mean() < 0.6 and (gray < 0.1).mean() > 0.3


def test_codebook_tiles_figure(tmp_path):
    centroids = np.zeros((20, 16), np.float32)
    centroids[1] = 1.0
    path = plots.codebook_tiles(centroids, str(tmp_path / "c.png"), counts_K=np.arange(20))
    img = mpimg.imread(path)
    assert img.shape[1] > 3 * img.shape[0]  # two rows of ten tiles
