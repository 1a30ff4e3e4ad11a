"""The suite's own XLA flags (tests/conftest.py): the default tier's faster-compiling flags,
and a flag this jaxlib does not know left out, not handed to XLA (which aborts at one)."""

import os
import subprocess
import sys

import pytest

from tests import conftest

UNKNOWN = "--xla_no_such_flag_at_all=true"


@pytest.fixture
def fresh(monkeypatch):
    """No answer handed down (set, so that monkeypatch restores what the test leaves)."""
    monkeypatch.setenv("RECTBERT_TEST_XLA_KNOWS", "")
    monkeypatch.delenv("RECTBERT_TEST_XLA_FLAGS", raising=False)
    monkeypatch.setenv("RECTBERT_TEST_XLA_BASE", "")


def runs_with(flag: str) -> bool:
    """The reference: whether XLA computes something with `flag` set."""
    env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    code = "import jax.numpy as jnp; assert float(jnp.arange(4.0).sum()) == 6.0"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    return done.returncode == 0


@pytest.mark.slow  # processes of their own
def test_a_flag_is_asked_of_xla_once_a_run_and_the_answer_handed_down(fresh, monkeypatch):
    assert runs_with(UNKNOWN) is False  # the reference refuses it too
    assert conftest._knows(UNKNOWN) is False
    assert os.environ["RECTBERT_TEST_XLA_KNOWS"] == f"{UNKNOWN} no"
    # the flag used: whatever this jaxlib says (the suite runs without it where refused)
    knows = runs_with(conftest.EMITTERS)
    assert conftest._knows(conftest.EMITTERS) is knows
    assert (
        os.environ["RECTBERT_TEST_XLA_KNOWS"] == f"{conftest.EMITTERS} {'yes' if knows else 'no'}"
    )

    def asked(*args, **kwargs):
        raise AssertionError("asked again")

    monkeypatch.setattr(subprocess, "run", asked)
    for answer in ("no", "yes"):  # a worker takes the controller's answer as it is
        monkeypatch.setenv("RECTBERT_TEST_XLA_KNOWS", f"{UNKNOWN} {answer}")
        assert conftest._knows(UNKNOWN) is (answer == "yes")
    with pytest.raises(AssertionError, match="asked again"):  # an answer of another flag
        conftest._knows(conftest.EMITTERS)


def test_the_default_tier_adds_the_emitters_flag_only_where_xla_knows_it(fresh, monkeypatch):
    for knows in (True, False):
        monkeypatch.setattr(conftest, "_knows", lambda flag, knows=knows: knows)
        want = [conftest.LEVEL_0] + [conftest.EMITTERS] * knows
        assert conftest._xla_flags("not slow").split() == want
        assert conftest._xla_flags("slow") == ""
    monkeypatch.setenv("RECTBERT_TEST_XLA_BASE", "--mine")
    assert conftest._xla_flags("slow") == "--mine"
    monkeypatch.setenv("RECTBERT_TEST_XLA_FLAGS", "--given")
    assert conftest._xla_flags("not slow") == "--mine --given"
