"""Where nodes run: local processes, Docker containers, remote hosts over SSH, or a simulation
in the controller's process."""

from __future__ import annotations

from harness.backends.base import Backend, BackendError

BACKENDS = ("local", "docker", "ssh", "sim")


def make_backend(name: str, **kwargs) -> Backend:
    if name == "local":
        from harness.backends.local import LocalBackend

        return LocalBackend(**kwargs)
    if name == "docker":
        from harness.backends.docker import DockerBackend

        return DockerBackend(**kwargs)
    if name == "ssh":
        from harness.backends.ssh import SshBackend

        return SshBackend(**kwargs)
    if name == "sim":
        from harness.backends.sim import SimBackend

        return SimBackend(**kwargs)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "BackendError", "make_backend"]
