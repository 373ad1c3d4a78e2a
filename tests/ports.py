"""A free TCP port for a test's rendezvous (MASTER_PORT), shared by the tests that start process groups."""

from __future__ import annotations

import random
import socket

from spurisweep.launch.job import PORT_RANGE


def free_port() -> int:
    """A free port below the kernel's ephemeral range (as launch.job.master_port picks), so that no client
    socket can be handed it between this check and rank 0's listen (port 0 would give an ephemeral one)."""
    low, high = PORT_RANGE
    for port in random.Random().sample(range(low, high), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")
