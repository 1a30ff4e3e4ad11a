"""Batch makers: the presentation regime, token correctness, held-out disjointness."""

import jax
import jax.numpy as jnp
import numpy as np

from rectbert import codebook, shapes, tasks, train

PRIOR = dict(min_side=32.0, max_side=192.0, aspect=None, contains_center=False)


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
    task = tasks.SquaresTask(mask=tasks.MaskSpec(count=13), presentations=2)
    b = jax.jit(task.train_batch, static_argnums=2)(jax.random.key(0), 5, 32)
    assert b.tokens.shape == (32, 64) and np.all(np.asarray(b.mask).sum(1) == 13)
    images = np.asarray(b.tokens).reshape(32, 8, 8)
    for img in images:
        rows, cols = np.nonzero(img)
        side = rows.max() - rows.min() + 1
        assert side == cols.max() - cols.min() + 1 and img.sum() == side * side
    np.testing.assert_array_equal(np.asarray(b.points[0, 9]), [1.5, 1.5])  # pixel (1, 1)


def test_grid_tokens_equal_quantised_numpy_patches_and_eval_is_held_out():
    rects = shapes.sample_rects(jax.random.key(1), 40)
    centroids, _ = codebook.fit_codebook(jax.random.key(2), rects, 12)
    task = tasks.GridTask(
        mask=tasks.MaskSpec(count=34),
        centroids=centroids,
        prior=PRIOR,
        train_rects=rects[:30],
        eval_examples=16,
    )
    b = task.train_batch(jax.random.key(3), 0, 8)
    img = np.asarray(shapes.downsample(rects[:30]))
    c = np.asarray(centroids)
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
    held = np.asarray(task.eval_rects(train.eval_key(0)))
    assert not np.any(np.all(np.isclose(held[:, None], np.asarray(rects[:30])[None]), -1))


def test_grid_metrics_floor_when_every_token_is_right():
    rects = shapes.sample_rects(jax.random.key(1), 40)
    centroids, _ = codebook.fit_codebook(jax.random.key(2), rects, 12)
    task = tasks.GridTask(
        mask=tasks.MaskSpec(count=34), centroids=centroids, prior=PRIOR, eval_examples=16
    )
    key = train.eval_key(0)
    batch = task.eval_set(key)
    m = task.eval_extra(batch.tokens, batch, key)
    assert float(m["eval/pixel_mse"]) == float(m["eval/codebook_pixel_mse"]) > 0
    # brute force: decode each true token, average overlapping patches, compare to the image
    images = np.asarray(shapes.downsample(task.eval_rects(key)))
    recon = np.zeros_like(images)
    count = np.zeros((16, 16))
    dec = np.asarray(centroids)[np.asarray(batch.tokens)]
    for i in range(13):
        for j in range(13):
            recon[:, i : i + 4, j : j + 4] += dec[:, i * 13 + j].reshape(-1, 4, 4)
            count[i : i + 4, j : j + 4] += 1
    want = np.mean((recon / count - images) ** 2)
    np.testing.assert_allclose(float(m["eval/codebook_pixel_mse"]), want, rtol=1e-5)
    wrong = jnp.where(batch.mask, (batch.tokens + 1) % 12, batch.tokens)
    assert float(task.eval_extra(wrong, batch, key)["eval/pixel_mse"]) > want
