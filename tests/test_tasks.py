"""Batch makers: the presentation regime, token correctness, held-out disjointness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert.data import keys, squares, tasks
from rectbert.data.scene_tasks import GridTask
from rectbert.geometry import shapes
from tests.conftest import RECT


def test_stream_shows_each_example_presentations_times_in_a_row_per_epoch():
    n, p, batch = 5, 3, 4
    steps = 2 * n * p // batch + 1
    stream = np.concatenate(
        [np.asarray(tasks.stream_indices(jax.random.key(0), s, batch, n, p)) for s in range(steps)]
    )
    for epoch in range(2):
        chunk = stream[epoch * n * p : (epoch + 1) * n * p]
        runs = chunk.reshape(n, p)
        assert np.all(runs == runs[:, :1])  # p in a row
        assert sorted(runs[:, 0]) == list(range(n))  # every example once per epoch
    # a pure function of the step
    again = tasks.stream_indices(jax.random.key(0), 3, batch, n, p)
    np.testing.assert_array_equal(np.asarray(again), stream[3 * batch : 4 * batch])


def test_squares_batches_are_squares_with_exact_masks():
    task = squares.SquaresTask(mask=tasks.MaskSpec(count=13), presentations=2)
    b = jax.jit(task.train_batch, static_argnums=1)(5, 32)
    assert b.tokens.shape == (32, 64) and np.all(np.asarray(b.mask).sum(1) == 13)
    images = np.asarray(b.tokens).reshape(32, 8, 8)
    for img in images:
        rows, cols = np.nonzero(img)
        side = rows.max() - rows.min() + 1
        assert side == cols.max() - cols.min() + 1 and img.sum() == side * side
    np.testing.assert_array_equal(np.asarray(b.points[0, 9]), [1.5, 1.5])  # pixel (1, 1)


def grid_task(**kw):
    task = GridTask(RECT, tasks.MaskSpec(count=34), num_clusters=12, eval_examples=16, **kw)
    return task.with_codebook(task.fit_codebook()[0])


def test_grid_tokens_equal_quantised_numpy_patches_and_eval_is_held_out():
    task = grid_task(num_train=30)
    b = task.train_batch(0, 8)
    img = np.asarray(shapes.downsample(task.train_params))
    c = np.asarray(task.codebook)
    tokens = np.asarray(b.tokens)
    for row in tokens:  # each batch row is the token map of one of the 30 training rects
        matches = []
        for n in range(30):
            want = [
                np.argmin(((img[n, i : i + 4, j : j + 4].ravel() - c) ** 2).sum(1))
                for i in range(13)
                for j in range(13)
            ]
            matches.append(np.array_equal(row, want))
        assert any(matches)
    held = np.asarray(task.eval_params)
    train_rects = np.asarray(task.train_params)
    assert not np.any(np.all(np.isclose(held[:, None], train_rects[None]), -1))


def test_grid_metrics_floor_when_every_token_is_right():
    task = grid_task()
    batch = task.eval_set()
    m = task.eval_extra(batch.tokens, batch)
    assert float(m["eval/pixel_mse"]) == float(m["eval/codebook_pixel_mse"]) > 0
    # brute force: decode each true token, average overlapping patches, compare to the image
    images = np.asarray(shapes.downsample(task.eval_params))
    recon = np.zeros_like(images)
    count = np.zeros((16, 16))
    dec = np.asarray(task.codebook)[np.asarray(batch.tokens)]
    for i in range(13):
        for j in range(13):
            recon[:, i : i + 4, j : j + 4] += dec[:, i * 13 + j].reshape(-1, 4, 4)
            count[i : i + 4, j : j + 4] += 1
    want = np.mean((recon / count - images) ** 2)
    np.testing.assert_allclose(float(m["eval/codebook_pixel_mse"]), want, rtol=1e-5)
    wrong = jnp.where(batch.mask, (batch.tokens + 1) % 12, batch.tokens)
    assert float(task.eval_extra(wrong, batch)["eval/pixel_mse"]) > want


def test_task_arrays_are_concrete_when_first_read_inside_jit():
    # a task's fixed arrays are cached on first use: first used inside a traced step they
    # must still be arrays, not tracers that leak into the next trace
    task = grid_task(num_train=10)
    first = jax.jit(lambda s: task.train_batch(s, 4).tokens)(0)
    again = jax.jit(lambda s: task.train_batch(s, 4).tokens)(0)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert isinstance(task.train_params, jax.Array)


def test_seeds_and_keys():
    # each purpose its own key; seeds beyond 32 bits would repeat others, so they are refused
    assert keys.valid_seed(0) and keys.valid_seed(2**32 - 1)
    assert not keys.valid_seed(2**32) and not keys.valid_seed(-1)
    drawn = {p: tuple(np.asarray(jax.random.key_data(keys.key(7, p)))) for p in keys._PURPOSES}
    assert len(set(drawn.values())) == len(drawn)
    with pytest.raises(ValueError, match="purpose"):
        keys.key(0, "nonsense")
