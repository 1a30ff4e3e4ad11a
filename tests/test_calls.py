"""Long computations as short calls (rectbert/analysis/calls.py, signals.responsive): a stop
seen during a compiled call, chunks that give what one call gives, progress with examples/s
and ETA, and a call that will not fit refused in one line before it runs."""

import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rectbert import files
from rectbert.analysis import calls
from rectbert.training import signals


@jax.jit
def _slow(x):
    """x + 1 after SECONDS of a host callback: one compiled call of a known length."""

    def wait(v):
        time.sleep(SECONDS)
        return v

    return jax.pure_callback(wait, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1


SECONDS = 1.5


def test_a_signal_stops_a_long_compiled_call_at_once():
    # the handler (signals.promptly) runs while the call is in flight, not after it ends
    x = jnp.zeros(3)
    assert signals.responsive(lambda a, b=0: a + b, 41, b=1) == 42  # the result handed back
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    start = time.time()
    with pytest.raises(signals.Interrupted), signals.promptly():
        signals.responsive(lambda: np.asarray(_slow(x)))
    assert time.time() - start < 1.2  # the call itself takes 1.5 s


def test_a_stopped_call_writes_nothing_after_its_caller_left(tmp_path):
    # the stage goes on computing in its worker once the signal stopped its caller (and let
    # the workdir's lock go): what it would write then is refused (files.check_live)
    path, done = tmp_path / "late.json", threading.Event()

    def stage():
        try:
            np.asarray(_slow(jnp.zeros(3)))
            files.write_atomic(str(path), "late")
        finally:
            done.set()

    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(signals.Interrupted), signals.promptly():
        signals.responsive(stage)
    assert done.wait(10) and not path.exists()


def test_a_worker_s_exception_reaches_the_caller():
    with pytest.raises(ZeroDivisionError):
        signals.responsive(lambda: 1 / 0)


@jax.jit
def _mapped(x_B, y_B, shift):
    return {"sum": x_B.sum(-1) + shift, "y": y_B * 2}


def test_chunks_give_what_one_call_gives_and_say_their_rate(monkeypatch):
    # 13 examples in calls of 4 (the last padded, then dropped): numpy's answer, and (EVERY
    # 0) a line for the compilation, then one after each call with examples/s and an ETA
    monkeypatch.setattr(calls, "EVERY", 0.0)
    calls._COMPILED.clear()  # compiled here: said once, first
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(13, 5)).astype(np.float32), rng.integers(0, 9, 13).astype(np.int32)
    lines = []
    out = calls.in_chunks(
        _mapped,
        (jnp.asarray(x), jnp.asarray(y)),
        (jnp.float32(0.5),),
        (),
        4,
        what="t",
        say=lines.append,
    )
    np.testing.assert_allclose(out["sum"], x.sum(-1) + 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out["y"], y * 2)
    assert [ln.split(":")[1].split()[0] for ln in lines] == [
        "compiled",
        "4/13",
        "8/13",
        "12/13",
        "13/13",
    ]
    assert all("examples/s" in ln and "ETA 0:00:0" in ln for ln in lines[1:]), lines


def test_no_examples_make_outputs_of_none():
    out = calls.in_chunks(
        _mapped, (jnp.zeros((0, 5)), jnp.zeros(0, jnp.int32)), (jnp.float32(0),), (), 4, what="t"
    )
    assert out["sum"].shape == (0,) and out["y"].shape == (0,) and out["y"].dtype == np.int32


def test_a_call_that_will_not_fit_is_refused_in_one_line_before_it_runs(monkeypatch):
    monkeypatch.setattr(calls, "free_bytes", lambda: 1000)
    calls._COMPILED.clear()
    ran = []

    def record(v):
        ran.append(1)
        return v

    @jax.jit
    def big(x_B):
        y = jax.pure_callback(record, jax.ShapeDtypeStruct(x_B.shape, x_B.dtype), x_B)
        return jnp.outer(y[0], y[0]).sum()[None]

    with pytest.raises(calls.TooLarge) as e:
        calls.in_chunks(big, (jnp.ones((2, 4096)),), (), (), 2, what="the thing")
    message = str(e.value)
    assert "\n" not in message and message.startswith("the thing needs") and "GiB" in message
    assert not ran  # refused from XLA's count, before the call


def test_free_memory_is_known_here():
    free = calls.free_bytes()
    assert free is not None and 0 < free < 2**50
