"""The suite's own XLA flags (tests/conftest.py): the default tier's faster-compiling flags,
and a flag this jaxlib does not know left out, not handed to XLA (which aborts at one)."""

import subprocess

import pytest

from tests import conftest

UNKNOWN = "--xla_no_such_flag_at_all=true"


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache folder and no answer handed down: _knows must ask."""
    monkeypatch.setenv("RECTBERT_TEST_XLA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RECTBERT_TEST_XLA_KNOWS", raising=False)
    monkeypatch.delenv("RECTBERT_TEST_XLA_FLAGS", raising=False)
    return tmp_path / "cache"


@pytest.mark.slow  # processes of their own
def test_an_unknown_flag_is_refused_once_and_the_answer_kept(fresh, monkeypatch):
    assert conftest._knows(UNKNOWN) is False
    assert (fresh / ("knows-" + UNKNOWN.strip("-"))).read_text() == "no"
    assert conftest._knows(conftest.LEVEL_0) is True  # one it does know

    def no_probe(*args, **kwargs):
        raise AssertionError("asked again")

    monkeypatch.setattr(subprocess, "run", no_probe)
    monkeypatch.delenv("RECTBERT_TEST_XLA_KNOWS")  # a worker: the kept answer alone
    assert conftest._knows(UNKNOWN) is False
    assert conftest._knows(conftest.LEVEL_0) is True


@pytest.mark.slow  # a process of its own
def test_the_default_tier_adds_the_emitters_flag_only_where_xla_knows_it(fresh, monkeypatch):
    monkeypatch.setenv("RECTBERT_TEST_XLA_BASE", "")
    assert conftest._xla_flags("slow") == ""
    default = conftest._xla_flags("not slow").split()
    assert default[0] == conftest.LEVEL_0
    assert (conftest.EMITTERS in default) == conftest._knows(conftest.EMITTERS)
    monkeypatch.setattr(conftest, "EMITTERS", UNKNOWN)
    assert conftest._xla_flags("not slow") == conftest.LEVEL_0
    monkeypatch.setenv("RECTBERT_TEST_XLA_FLAGS", "--given")
    assert conftest._xla_flags("slow") == "--given"
