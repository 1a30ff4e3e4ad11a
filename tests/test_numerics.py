"""Numerics at the edges of a setting's range: sampling at a tiny temperature is argmax (the
limit, exactly), and at temperature >= 1 draws exactly what the old formula drew."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert.analysis.samples import sampler
from rectbert.data.tasks import Batch

# [2, 3, 5] logits, distinct within each row; the large ones overflow logits / 1e-38 (and two
# overflowing ones tie at inf, with the true max not the first of them)
LOGITS = np.array(
    [
        [[-7.0, 12.0, 3.25, 12.5, 0.0], [0.5, -0.25, 0.75, 0.0, 0.6], [40.0, -40.0, 41.0, 1, 2]],
        [[1e-3, 2e-3, 0.0, -1e-3, 5e-4], [-3.0, -2.0, -1.0, -4.0, -5.0], [9.0, 8.0, 7, 6, 5]],
    ],
    np.float32,
)
TINY = [1e-38, 1e-30, 1e-6]


def old_draw(key, logits_BxLxK, temperature: float):
    """The sampler's draw before tiny temperatures were made safe (a copy)."""
    logits = logits_BxLxK.astype(jnp.float32) / temperature
    tokens = jax.random.categorical(key, logits, axis=-1)
    logp = jax.nn.log_softmax(logits, -1)
    return tokens.astype(jnp.int32), jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]


@pytest.mark.parametrize("temperature", TINY)
def test_a_tiny_temperature_draws_the_argmax_with_its_probability_one(temperature):
    greedy = LOGITS.argmax(-1)
    draw = jax.jit(lambda k: sampler._draw(k, jnp.asarray(LOGITS), temperature))
    for i in range(50):
        tokens, logp = draw(jax.random.key(i))
        np.testing.assert_array_equal(tokens, greedy)
        # the tempered distribution puts (all but) all its mass on the argmax
        assert np.all(np.isfinite(logp)) and np.all(np.abs(np.asarray(logp)) < 1e-6), logp


@pytest.mark.parametrize("temperature", [1.0, 2.5, 1e30])
def test_at_temperature_one_and_above_the_draws_are_bit_identical_to_before(temperature):
    scale = np.array([1.0, 3.0, 0.3], np.float32)[:, None, None, None]
    logits = jnp.asarray(LOGITS[None] * scale)  # [3, 2, 3, 5]
    for i in range(20):
        key = jax.random.key(100 + i)
        new_tokens, new_logp = sampler._draw(key, logits, temperature)
        old_tokens, old_logp = old_draw(key, logits, temperature)
        np.testing.assert_array_equal(new_tokens, old_tokens)
        assert np.asarray(new_logp).tobytes() == np.asarray(old_logp).tobytes()


def test_at_temperature_one_the_draws_follow_the_softmax():
    # hand-computed: softmax of (0, log 2, log 5) is (1/8, 2/8, 5/8)
    n = 40000
    logits = jnp.broadcast_to(jnp.log(jnp.array([1.0, 2.0, 5.0])), (n, 1, 3))
    tokens, _ = sampler._draw(jax.random.key(7), logits, 1.0)
    freq = np.bincount(np.asarray(tokens).ravel(), minlength=3) / n
    np.testing.assert_allclose(freq, [1 / 8, 2 / 8, 5 / 8], atol=0.01)


def chained(params, batch: Batch):
    """A 'model' whose logits at each of 4 positions depend on the visible tokens: each
    visible token k adds (k + 1) / 3 to token k's logit (distinct values throughout)."""
    del params
    base = jnp.array([[0.0, 1.0, 2.5], [2.0, 0.5, 1.25], [1.5, 0.25, 3.0], [0.75, 2.25, 0.1]])
    seen = jax.nn.one_hot(batch.tokens, 3) * ~batch.mask[..., None]  # [B, L, 3]
    bonus = seen.sum(1, keepdims=True) * jnp.array([1.0, 2.0, 3.0]) / 3.1
    return 40.0 * (base[None] + bonus)  # large: logits / 1e-38 overflows


@pytest.mark.parametrize("method", ["independent", "joint"])
@pytest.mark.parametrize("temperature", TINY)
def test_sampling_at_a_tiny_temperature_is_greedy_decoding(method, temperature):
    n = 64
    mask = np.ones((n, 4), bool)
    mask[: n // 2, 1] = False  # half the examples show token 1 at position 1
    tokens = np.where(mask, 0, 1).astype(np.int32)
    batch = Batch(jnp.zeros((n, 4, 2)), jnp.asarray(tokens), jnp.asarray(mask))
    key = jax.random.key(3)

    def draws(t):
        cfg = sampler.SampleConfig(method=method, order="random", temperature=t)
        return np.asarray(sampler.sample(chained, None, batch, key, cfg))

    greedy = draws(0.0)  # independent: each position's argmax; joint: greedy, random order
    if method == "independent":  # by hand: the rows' argmax, given position 1's token or not
        np.testing.assert_array_equal(greedy[n // 2 :], np.tile([2, 0, 2, 1], (n // 2, 1)))
    np.testing.assert_array_equal(draws(temperature), greedy)
