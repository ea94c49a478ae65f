"""Process-wide settings made once, at the start of a command: threads and seeds."""

from __future__ import annotations

import os
import random
import socket
import sys


def configure_threads(n: int | None = None) -> int:
    """Use `n` threads in torch, OpenMP and BLAS (default: $OMP_NUM_THREADS when the user set it, else all cores).
    Oversubscription (several libraries each starting a thread per core) made small CPU runs ~20x slower in a
    probe, so this is set deliberately, before numpy or torch is first imported."""
    if n is None:
        user = os.environ.get("OMP_NUM_THREADS", "")
        n = int(user) if user.isdigit() and int(user) > 0 else (os.cpu_count() or 1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # torch reads OMP_NUM_THREADS when first imported; if it is already loaded, tell it directly.
    torch = sys.modules.get("torch")
    if torch is None:
        return n
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # can only be set before torch's first parallel work
        pass
    return n


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (called once per run)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def process_rank() -> int:
    """This process's rank under torchrun / accelerate launch (their RANK variable); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def process_count() -> int:
    """Processes of the launch (WORLD_SIZE); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
"""Addresses only this machine can reach: binding anything else makes a server visible to the network."""


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS


class TrainingDiverged(RuntimeError):
    """Every update of several steps in a row was skipped (NaN/inf loss or gradient): the run stops, resumable from
    its last checkpoint (GRPO), with a message saying what to change."""


def check_port_free(host: str, port: int) -> None:
    """Raise ValueError when `host:port` cannot be listened on (taken by another server, or not this machine's
    address): at start, before the index loads, not after "serving ..." was printed."""
    if port == 0:
        return
    address = host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        try:
            s.bind((address, port))
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e}): another server is using the port "
                             "(an earlier searche1 serve or view?); pick another with --port") from None


# the parts a training run never loads: the CLI, the viewer, the retrieval server and the demo's table
NOT_PRELOADED = ("searche1.cli", "searche1.view", "searche1.retrieval.server", "searche1.demo")


def import_package_now() -> None:
    """Import every module of searche1 that a long run may use, at its start. The recipes import lazily (so that
    `--help` stays fast): without this a run of hours would load a module when it first needs it, from the source
    as it is by then, and mix two versions of the code if src/ was edited meanwhile."""
    import importlib
    import pkgutil

    import searche1

    for module in pkgutil.walk_packages(searche1.__path__, "searche1."):
        if not module.name.startswith(NOT_PRELOADED):
            importlib.import_module(module.name)
