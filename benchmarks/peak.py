"""This device's measured matmul peak: the denominator of every MFU the benchmarks report."""

from __future__ import annotations

import time

import jax


def matmul_peak_tflops(dtype: str) -> float:
    """Best-case dense matmul rate of this device in `dtype` (TFLOP/s), measured here: the
    fastest of 10 runs (a peak is a best case; the median is noisy on a shared CPU)."""
    n = 8192 if jax.default_backend() != "cpu" else 2048
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    times = []
    for _ in range(10):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        times.append(time.perf_counter() - t)
    return 2.0 * n**3 / min(times) / 1e12
