"""Where units of work run: this process, K local processes, or a Ray cluster.

Every backend has one method, ``map(fn, items)``: ``items`` yields ``(unit, payload)``; the
backend runs ``fn(payload)`` somewhere and yields ``(unit, rows)`` as results arrive (in any
order). At most a few units per worker are in flight, so payloads (image crops) are produced
only as fast as they are consumed.

Results do not depend on the backend or the number of workers: a unit's rows depend only on its
payload, and every worker computes with one torch/OpenCV thread (multi-threaded reductions may
differ in the last bit between thread counts; parallelism comes from the workers instead).
Each worker process prepares itself once (:func:`prepare_worker`): threads, ``sys.path`` and
the tools registered at run time in the driver, so plug-in and test tools exist there too; the
tool registry then builds each tool once per process.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import RestoreAgentError
from ..tools import registry

BACKENDS = ("local", "ray")
# Worker processes compute with one thread each (BLAS/OpenMP read these when they load, so they
# are set in the environment the workers start with): K workers x N threads would oversubscribe.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RESTOREAGENT_FFT_WORKERS": "1"}


@dataclass(frozen=True)
class WorkerEnv:
    """What a fresh worker process needs to compute like the driver does."""

    extra_specs: tuple = ()  # ToolSpecs registered at run time in the driver
    sys_path: tuple[str, ...] = ()
    threads: int = 1

    @classmethod
    def capture(cls) -> WorkerEnv:
        return cls(extra_specs=registry.extra_specs(), sys_path=tuple(p for p in sys.path if p))


_PREPARED: WorkerEnv | None = None


def set_threads(n: int) -> tuple[int, int]:
    """Set torch and OpenCV threads; returns the previous values."""
    import cv2
    import torch

    old = (torch.get_num_threads(), cv2.getNumThreads())
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    return old


def _exit_with_parent(parent: int) -> None:
    """A pool worker whose driver died (``kill -9``) exits instead of waiting forever.

    The pool's task queue is shared by every worker, so its pipe never reports end-of-file when
    the driver is gone; this thread watches the parent instead.
    """
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def prepare_pool_worker(env: WorkerEnv, parent: int) -> None:
    _exit_with_parent(parent)
    prepare_worker(env)


def prepare_worker(env: WorkerEnv) -> None:
    """Make this process ready to run units (idempotent)."""
    global _PREPARED
    if _PREPARED == env:
        return
    for k in THREAD_ENV:
        os.environ.setdefault(k, str(env.threads))
    for p in reversed(env.sys_path):
        if p not in sys.path and os.path.isdir(p):
            sys.path.insert(0, p)
    registered = {s.name: s for s in registry.extra_specs()}
    for spec in env.extra_specs:
        if registered.get(spec.name) != spec:
            registry.register(spec)
    set_threads(env.threads)
    _PREPARED = env


def _call(fn: Callable, unit: int, payload: Any) -> list[dict]:
    try:
        return fn(payload)
    except RestoreAgentError as e:
        raise RestoreAgentError(f"sample {unit}: {e}") from e
    except Exception as e:
        e.add_note(f"(while working on sample {unit}; finished samples are saved, re-run to resume)")
        raise


class InProcessBackend:
    """Runs every unit in this process (``--workers 1``)."""

    def __init__(self, env: WorkerEnv):
        self.env = env

    def map(self, fn: Callable, items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, list[dict]]]:
        old = set_threads(self.env.threads)
        try:
            for unit, payload in items:
                yield unit, _call(fn, unit, payload)
        finally:
            import cv2
            import torch

            torch.set_num_threads(old[0])
            cv2.setNumThreads(old[1])


def _pool_call(fn, unit, payload):
    return unit, _call(fn, unit, payload)


class ProcessBackend:
    """K local worker processes (spawn start method: safe with threads, torch and macOS)."""

    def __init__(self, workers: int, env: WorkerEnv):
        if workers < 1:
            raise RestoreAgentError("--workers must be at least 1")
        self.workers = workers
        self.env = env

    def map(self, fn: Callable, items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, list[dict]]]:
        saved = {k: os.environ.get(k) for k in THREAD_ENV}
        os.environ.update({k: str(self.env.threads) for k in THREAD_ENV})  # the workers inherit them
        try:
            yield from self._map(fn, iter(items))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _map(self, fn: Callable, it: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, list[dict]]]:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = mp.get_context("spawn")
        window = 2 * self.workers
        init = (self.env, os.getpid())
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=prepare_pool_worker, initargs=init) as ex:
            pending = set()
            try:
                while True:
                    while len(pending) < window:
                        nxt = next(it, None)
                        if nxt is None:
                            break
                        pending.add(ex.submit(_pool_call, fn, *nxt))
                    if not pending:
                        return
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        yield f.result()
            finally:
                for f in pending:
                    f.cancel()


def _ray_entry(fn, env, unit, payload):
    prepare_worker(env)
    return unit, _call(fn, unit, payload)


class RayBackend:
    """Units as Ray tasks (one CPU each) on a cluster: ``address`` or a local one started here."""

    def __init__(self, address: str | None, env: WorkerEnv, num_cpus: int | None = None):
        self.address = address
        self.env = env
        self.num_cpus = num_cpus

    def map(self, fn: Callable, items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, list[dict]]]:
        try:
            import ray
            import ray.exceptions
        except ImportError:
            raise RestoreAgentError("--backend ray needs Ray: pip install 'restoreagent[ray]'") from None
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if self.address:
                kwargs["address"] = self.address
            elif self.num_cpus:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                hint = ""
                if self.address and not os.environ.get("RAY_AUTH_MODE"):
                    hint = " (clusters use token authentication by default: set RAY_AUTH_MODE=token, with the cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN)"
                raise RestoreAgentError(f"cannot connect to Ray at {self.address or 'a new local cluster'}: {e}{hint}") from None
            started = True
        try:
            env_vars = {k: str(self.env.threads) for k in THREAD_ENV}
            remote = ray.remote(num_cpus=1, max_retries=2, runtime_env={"env_vars": env_vars})(_ray_entry)
            window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
            env_ref = ray.put(self.env)
            fn_ref = ray.put(fn)
            it = iter(items)
            pending: list = []
            while True:
                while len(pending) < window:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    pending.append(remote.remote(fn_ref, env_ref, *nxt))
                if not pending:
                    return
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = e.as_instanceof_cause()
                        if isinstance(cause, RestoreAgentError):
                            raise RestoreAgentError(str(cause).splitlines()[-1]) from None
                        raise
        finally:
            if started:
                ray.shutdown()


@dataclass
class BackendChoice:
    name: str = "local"
    workers: int = 1
    ray_address: str | None = None
    env: WorkerEnv = field(default_factory=WorkerEnv.capture)

    def build(self):
        if self.name not in BACKENDS:
            raise RestoreAgentError(f"unknown backend {self.name!r}; backends: {', '.join(BACKENDS)}")
        if self.workers < 1:
            raise RestoreAgentError("--workers must be at least 1")
        if self.name == "ray":
            return RayBackend(self.ray_address, self.env, num_cpus=self.workers if self.workers > 1 else None)
        if self.ray_address:
            raise RestoreAgentError("--ray-address needs --backend ray")
        return InProcessBackend(self.env) if self.workers == 1 else ProcessBackend(self.workers, self.env)
