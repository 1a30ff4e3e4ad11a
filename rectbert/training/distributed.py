"""Several hosts: joining a jax.distributed job (DistributedConfig). On a TPU VM jax discovers
the coordinator, the process count and this process's index; elsewhere they are given."""

from __future__ import annotations

import dataclasses
import sys

import jax

from rectbert import config
from rectbert.config import setting


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    distributed: bool = setting(False, "Call jax.distributed.initialize() (multi-host).")
    coordinator_address: str | None = setting(
        None, "host:port of process 0 (discovered on TPU VMs).", kind="str"
    )
    num_processes: int | None = setting(
        None, "Processes in the job (TPU VMs: discovered).", kind="int"
    )
    process_id: int | None = setting(
        None, "This process's index (TPU VMs: discovered).", kind="int"
    )

    def __post_init__(self):
        given = (self.coordinator_address, self.num_processes, self.process_id)
        fields = ("coordinator_address", "num_processes", "process_id")
        if not self.distributed:
            for name, value in zip(fields, given, strict=True):
                if value is not None:
                    raise config.error(self, name, "unset without --distributed (it is ignored)")
            return
        if any(v is not None for v in given) and any(v is None for v in given):
            allowed = "given with --num_processes and --process_id, or none of them (TPU VMs)"
            raise config.error(self, "coordinator_address", allowed)
        if self.coordinator_address is None:
            return
        host, _, port = self.coordinator_address.rpartition(":")
        config.validate(
            self,
            [
                (
                    bool(host) and port.isascii() and port.isdigit(),
                    "coordinator_address",
                    "host:port",
                ),
                (self.num_processes >= 1, "num_processes", "an integer >= 1"),
                (
                    lambda: 0 <= self.process_id < self.num_processes,
                    "process_id",
                    f"in [0, {self.num_processes - 1}]",
                ),
            ],
        )

    def start(self) -> None:
        """Join the job, when asked: before any other jax call of the process."""
        if not self.distributed:
            return
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes only
        try:
            jax.distributed.initialize(
                coordinator_address=self.coordinator_address,
                num_processes=self.num_processes,
                process_id=self.process_id,
            )
        except (RuntimeError, ValueError) as e:
            raise config.error(
                self, "distributed", f"a reachable job ({str(e).splitlines()[0]})"
            ) from None


def stop() -> None:
    """Leave the job, where this process joined one: jax.distributed.shutdown(), a barrier of
    every process. Process 0 hosts the job's coordination service, and a process whose
    service is gone aborts (SIGABRT, a C++ stack on its output): so process 0 must not exit
    while another is still leaving, as it did when one process stopped by a signal was
    still closing its checkpoint as process 0 exited. A failure to leave is one line; the
    exit goes on."""
    if not jax.distributed.is_initialized():
        return
    try:
        jax.distributed.shutdown()
    except Exception as e:  # noqa: BLE001 - the run's own exit line and code come first
        line = f"warning: leaving the distributed job failed: {e}".splitlines()[0]
        print(line, file=sys.stderr, flush=True)  # where the project's warnings go
