"""Masks: exact counts, uniform placement, the cosine schedule's range."""

import jax
import numpy as np
import pytest

from rectbert.data import masking


def test_exact_counts_and_uniform_positions():
    m = np.asarray(masking.sample_mask(jax.random.key(0), 4000, 64, count=13))
    assert np.all(m.sum(1) == 13)
    # each position is masked with probability 13/64; 4000 rows give a ~3 % std error
    freq = m.mean(0)
    assert np.all(np.abs(freq - 13 / 64) < 0.04)
    assert masking.count_for_ratio(0.2, 169) == 34 and masking.count_for_ratio(0.2, 24) == 5
    assert masking.count_for_ratio(0.2, 64) == 13 and masking.count_for_ratio(0.001, 64) == 1


def test_cosine_schedule_counts():
    m = np.asarray(masking.sample_mask(jax.random.key(1), 5000, 64, count=13, schedule="cosine"))
    counts = m.sum(1)
    assert counts.min() >= 1 and counts.max() <= 64
    # ratio = cos(pi/2 r), r ~ U(0,1): its mean is 2/pi
    assert abs(counts.mean() / 64 - 2 / np.pi) < 0.02
    with pytest.raises(ValueError, match="schedule"):
        masking.sample_mask(jax.random.key(1), 2, 4, count=1, schedule="linear")


def test_anycount_schedule_hides_every_count_from_1_to_L_minus_1_with_the_cosine_law():
    length, n = 24, 20_000
    m = np.asarray(masking.sample_mask(jax.random.key(2), n, length, count=5, schedule="anycount"))
    counts = m.sum(1)
    assert counts.min() == 1 and counts.max() == length - 1  # never none, never all
    # P(count <= c) = P(cos(pi/2 r) (L-1) <= c) = 1 - (2/pi) arccos(c / (L-1)), by hand
    c = np.arange(1, length)
    cdf = 1 - 2 / np.pi * np.arccos(c / (length - 1))
    pmf = np.diff(np.concatenate([[0.0], cdf]))
    freq = np.bincount(counts, minlength=length)[1:] / n
    assert np.all(np.abs(freq - pmf) <= 4 * np.sqrt(pmf / n) + 1e-3), (freq, pmf)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        masking.sample_mask(jax.random.key(1), 2, 1, count=1, schedule="anycount")


def test_anyorder_schedule_hides_every_count_from_1_to_L_minus_1_alike():
    length, n = 24, 23_000
    m = np.asarray(masking.sample_mask(jax.random.key(3), n, length, count=5, schedule="anyorder"))
    freq = np.bincount(m.sum(1), minlength=length + 1) / n
    assert freq[0] == 0 and freq[length] == 0  # never none, never all
    assert np.all(np.abs(freq[1:length] - 1 / 23) <= 4 * np.sqrt(1 / 23 / n)), freq
    with pytest.raises(ValueError, match="at least 2 tokens"):
        masking.sample_mask(jax.random.key(1), 2, 1, count=1, schedule="anyorder")
