"""What the training loop shows while it runs: progress lines (steps/s, ETA) and profiles."""

from __future__ import annotations

import contextlib
import os
import time

import jax

from rectbert.rate import eta


class Profiler:
    """A jax.profiler trace of the steps after `start` up to `stop`, written under
    `workdir`/profile: TensorBoard's profiler reads the directory (`tensorboard
    --logdir=WORKDIR/profile`, Profile tab), Perfetto (ui.perfetto.dev) opens the
    perfetto_trace.json.gz beside the xplane.pb. Steps a resumed run does not take are not
    traced; a trace open when the loop ends early (signal, error) is closed and kept."""

    def __init__(self, workdir: str, steps: tuple[int, int] | None, first: int, progress):
        self.dir = os.path.join(workdir, "profile")
        if jax.process_count() > 1:  # each process its own trace (same host: same file names)
            self.dir = os.path.join(self.dir, f"process_{jax.process_index()}")
        self.steps, self.progress, self.on = steps, progress, False
        if steps is not None and first >= steps[1]:
            progress.say(f"--profile_steps: steps {steps[0]}:{steps[1]} were run before: no trace")
        elif steps is not None and first > steps[0]:
            progress.say(f"--profile_steps: resumed at step {first}: the trace starts there")

    def before(self, step: int, state) -> None:
        if self.steps is not None and not self.on and self.steps[0] <= step < self.steps[1]:
            jax.block_until_ready(state)  # steps still queued are not this window's
            jax.profiler.start_trace(self.dir, create_perfetto_trace=True)
            self.on, self.first, self.last = True, step, step

    def after(self, done: int, state) -> None:
        self.last = done
        if self.on and done >= self.steps[1]:
            jax.block_until_ready(state)  # the trace holds the steps' device work
            self._stop(done)

    def _stop(self, done: int) -> None:
        self.on = False
        jax.profiler.stop_trace()
        self.progress.say(
            f"profile of steps {self.first + 1}..{done} in {self.dir} (tensorboard "
            f"--logdir={self.dir}, or perfetto_trace.json.gz in ui.perfetto.dev)"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.on:  # ended early (signal, error): keep what was traced
            try:
                self._stop(self.last)
            except Exception as e:  # noqa: BLE001 -- never hide the error that ended the loop
                self.progress.say(f"--profile_steps: the trace could not be written ({e})")
        return False


class Progress:
    """What the loop prints (process 0), with steps/s and ETA."""

    def __init__(self, cfg, start: int, main: bool):
        self.cfg, self.start, self.main = cfg, start, main
        self.t_start = self.t_window = time.time()
        self.steps_from = start

    def say(self, text: str) -> None:
        if self.main:
            print(text, flush=True)

    def steps_per_sec(self, done: int) -> float:
        now = time.time()
        sps = (done - self.steps_from) / max(now - self.t_window, 1e-9)
        self.t_window, self.steps_from = now, done
        return sps

    def line(self, done: int, means: dict, sps: float) -> None:
        self.say(
            f"step {done}/{self.cfg.num_steps}  loss {means['train/loss']:.4f}  "
            f"acc {means['train/masked_accuracy']:.3f}  {sps:.1f} steps/s  "
            f"ETA {eta((self.cfg.num_steps - done) / sps)}"
        )

    @contextlib.contextmanager
    def paused(self):
        t = time.time()
        yield
        self.t_window += time.time() - t

    def end_of_process(self, step: int, scalars) -> None:
        """With several processes each says where it ended and its last training loss
        (replicated, so they must agree)."""
        if jax.process_count() > 1:
            loss = float(scalars["train/loss"]) if scalars is not None else float("nan")
            print(
                f"process {jax.process_index()}/{jax.process_count()}: step {step}, "
                f"train/loss {loss:.6f}",
                flush=True,
            )
