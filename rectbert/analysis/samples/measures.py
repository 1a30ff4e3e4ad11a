"""The sampling scores of one method's completions at one visible count (a row of
samples.json). Per row:

- consistent_fraction: the share of completions whose full token set is the token set of
  some shape of the scene (oracle.consistent: a search, certain when it says yes). On the
  oracle's own posterior samples, all consistent by construction, it measures the search's
  hit rate: a model's fraction is at most about that. This is the score that sees the joint
  law (`oracle_marginals` has every marginal right and is rarely a shape).
- mmd: the squared maximum mean discrepancy (unbiased) between the completions and a second,
  independent set of posterior samples (the other replica's), kernel exp(-d / TAU) with d
  the number of differing tokens; the oracle's row is the estimator's floor (0 in
  expectation). At 8 completions per example it separates mode-seeking from sampling but
  cannot tell the posterior from its marginals (measured: docs, joint samples).
- pairwise_tv: the total variation between the empirical joint laws of two hidden points
  (i, j) in the completions and in the second set of posterior samples, averaged over every
  pair of hidden points: the joint structure at order two (the marginals alone miss it). From
  a few samples per example it is biased upwards: the oracle's row (its first set against
  its second) is the floor a method is read against.
- diversity: the mean fraction of hidden tokens on which two completions of one example
  differ (argmax: 0); beside the oracle's, how spread the completions are.
- accuracy: the share of hidden tokens equal to the truth.

Standard errors are over examples. Scenes the oracle does not support get accuracy and
diversity only (consistent_fraction and mmd null).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rectbert.analysis import oracle_curve
from rectbert.analysis.samples.settings import Method, ScoreConfig

TAU = 2.0  # kernel length, in differing tokens


def _hamming(a_SxL, b_TxL):
    return (a_SxL[:, None, :] != b_TxL[None, :, :]).sum(-1)


def mmd2(x_SxL, y_TxL, tau: float = TAU) -> float:
    """Unbiased squared MMD between two sets of token vectors, kernel exp(-hamming / tau)."""
    kxx, kyy = np.exp(-_hamming(x_SxL, x_SxL) / tau), np.exp(-_hamming(y_TxL, y_TxL) / tau)
    kxy = np.exp(-_hamming(x_SxL, y_TxL) / tau)
    s, t = len(x_SxL), len(y_TxL)
    within_x = (kxx.sum() - np.trace(kxx)) / (s * (s - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (t * (t - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def diversity(x_SxL, hidden_L) -> float:
    """Mean over pairs of completions of the fraction of hidden tokens where they differ."""
    s, h = len(x_SxL), max(int(np.sum(hidden_L)), 1)
    d = _hamming(x_SxL[:, hidden_L], x_SxL[:, hidden_L])
    return float((d.sum() - np.trace(d)) / (s * (s - 1)) / h)


def pairwise_tv(x_SxL, y_TxL, hidden_L) -> float:
    """Mean over pairs i < j of hidden positions of 0.5 * sum |p_x(a, b) - p_y(a, b)|, the
    empirical laws of (token i, token j) in x's rows and in y's; NaN under 2 hidden."""
    h = np.flatnonzero(hidden_L)
    if h.size < 2:
        return float("nan")
    i, j = np.triu_indices(h.size, 1)
    x, y = np.asarray(x_SxL, np.int64), np.asarray(y_TxL, np.int64)
    base = int(max(x.max(), y.max())) + 1
    pair = np.arange(i.size) * base * base  # each pair's codes apart from the others'
    codes = [pair + a[:, h[i]] * base + a[:, h[j]] for a in (x, y)]  # [S, pairs], [T, pairs]
    weight = np.concatenate(
        [np.full(codes[0].size, 1 / len(x)), np.full(codes[1].size, -1 / len(y))]
    )
    _, which = np.unique(np.concatenate([c.ravel() for c in codes]), return_inverse=True)
    return float(0.5 * np.abs(np.bincount(which.ravel(), weight)).sum() / i.size)


def _mean_stderr(x) -> tuple[float | None, float | None]:
    """The oracle curve's mean and standard error over the finite entries (unscored examples
    are NaN); None when there are none."""
    x = np.asarray(x, np.float64)
    return oracle_curve.mean_stderr(x[np.isfinite(x)]) if np.isfinite(x).any() else (None, None)


def row(m: Method, visible: int, c, ok, cfg: ScoreConfig) -> dict:
    """One row of samples.json: the method's scores over the examples (module doc)."""
    comp, hidden = c.made[m.label], np.asarray(c.batch.mask)
    examples, per_example = comp.shape[:2]
    truth = np.asarray(c.batch.tokens)[:, None]
    acc = ((comp == truth) & hidden[:, None]).sum((1, 2)) / (hidden.sum(1) * per_example)
    r = {"method": m.method, "order": m.order, "visible": visible, "examples": examples}
    r["samples_per_example"] = per_example
    r["temperature"] = cfg.temperature if m.sampled else None
    r["sampler"] = dataclasses.asdict(m.cfg) if m.cfg is not None else None  # how, in full
    r["accuracy"], r["accuracy_stderr"] = _mean_stderr(acc)
    div = [diversity(comp[e], hidden[e]) for e in range(examples)]
    r["diversity"], r["diversity_stderr"] = _mean_stderr(div)
    r["consistent_fraction"] = r["consistent_fraction_stderr"] = None
    r["mmd"] = r["mmd_stderr"] = r["pairwise_tv"] = r["pairwise_tv_stderr"] = None
    if c.posterior is not None:
        found, ref = c.posterior.found, c.posterior.tokens[:, 1]
        frac = np.where(found, ok[m.label].mean(1), np.nan)
        r["consistent_fraction"], r["consistent_fraction_stderr"] = _mean_stderr(frac)
        mm = [mmd2(comp[e], ref[e]) if found[e] else np.nan for e in range(examples)]
        r["mmd"], r["mmd_stderr"] = _mean_stderr(mm)
        tv = [
            pairwise_tv(comp[e], ref[e], hidden[e]) if found[e] else np.nan for e in range(examples)
        ]
        r["pairwise_tv"], r["pairwise_tv_stderr"] = _mean_stderr(tv)
        r["scored_examples"] = int(found.sum())  # consistency and MMD: over these
    return r
