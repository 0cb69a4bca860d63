"""Which server and Traffic Manager ports an env instance uses, from its config, Hydra job and role.

A CARLA server started with ``-carla-rpc-port=P`` listens on P (RPC), P+1 (sensor streaming) and P+2
(multi-GPU secondary servers). Parallel Hydra jobs on one machine each get their own server at
``port + job_num * port_stride`` and their own Traffic Manager ports; within a job, the train and eval
envs share the server but never a Traffic Manager (the reference's eval env shared one and broke CARLA).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("train", "eval")
HOST_VAR, PORT_VAR = "CARLA_HOST", "CARLA_PORT"


@dataclass(frozen=True)
class CarlaPorts:
    host: str
    port: int  # the server's RPC port (streaming is port + 1)
    tm_port: int  # this env's own Traffic Manager

    @property
    def streaming_port(self) -> int:
        return self.port + 1

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (streaming {self.streaming_port}, traffic manager {self.tm_port})"


def resolve_ports(host: str, port: int, tm_port: int, stride: int, job_num: int = 0, role: str = "train",
                  environ: Mapping[str, str] | None = None) -> CarlaPorts:
    """``CARLA_HOST`` / ``CARLA_PORT`` replace the configured host / base port; the job offset applies
    on top, so one variable moves a whole sweep. The eval env's TM port is the train one + 1."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if job_num < 0:
        raise ValueError(f"job_num must be >= 0, got {job_num}")
    environ = os.environ if environ is None else environ
    host = environ.get(HOST_VAR) or host
    if environ.get(PORT_VAR):
        try:
            port = int(environ[PORT_VAR])
        except ValueError:
            raise ValueError(f"{PORT_VAR} must be a port number, got {environ[PORT_VAR]!r}") from None
    offset = job_num * stride
    ports = CarlaPorts(host=host, port=port + offset, tm_port=tm_port + offset + (role == "eval"))
    for name, value in (("server port", ports.port + 2), ("traffic manager port", ports.tm_port)):
        if not 1 <= value <= 65535:
            raise ValueError(f"{name} {value} for job {job_num} is out of range; lower the base port "
                             f"or env.port_stride ({stride})")
    return ports
