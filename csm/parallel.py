"""Worker pools for long sweeps: one BLAS thread per worker, and workers that die with csm.

:func:`process_pool` returns a :class:`concurrent.futures.ProcessPoolExecutor` whose workers

* start from a fresh interpreter (``spawn``: direct children of this process) with
  ``OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1`` set before NumPy loads, so
  ``k`` workers use ``k`` cores instead of ``k x cores`` threads fighting over them;
* exit when the process that created them disappears (``PR_SET_PDEATHSIG`` on Linux, and a
  watchdog thread that polls the parent's pid everywhere), so a ``kill -9`` of ``csm`` leaves
  no orphans.

Problems travel to the workers by pickling.  A problem may hold a module (e.g. the ReLU
engine holds its compiled kernel's module), which ``pickle`` refuses; importing this module
registers, for the pickler of :mod:`multiprocessing` (every ``ProcessPoolExecutor``), the
reduction of a module to its import by name (a module is a singleton per interpreter, so this
is exact).  Dask's cloudpickle already does the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing as mp
import os
import sys
import threading
import time
import types
from multiprocessing.reduction import ForkingPickler

from ._validation import positive_int

__all__ = ["process_pool", "executor_workers", "BLAS_ENV"]

#: Environment of every worker (one thread per BLAS / OpenMP pool).
BLAS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


def _reduce_module(module: types.ModuleType) -> tuple:
    return importlib.import_module, (module.__name__,)


ForkingPickler.register(types.ModuleType, _reduce_module)


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(interval)


def _init_worker(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except OSError:  # pragma: no cover - no libc: the watchdog still works
            pass
    if os.getppid() != parent:  # the parent died before we got here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    # BLAS pools already loaded (e.g. by the main module's imports): one thread as well
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A process pool of ``workers`` single-threaded workers that die with their parent.

    Raises :class:`~csm.InputError` unless ``workers`` is an integer >= 1.
    """
    workers = positive_int(workers, "workers")
    ctx = mp.get_context("spawn")
    old = {k: os.environ.get(k) for k in BLAS_ENV}
    os.environ.update(BLAS_ENV)  # inherited by the fresh worker interpreters
    try:
        pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                      initargs=(os.getpid(),))
        # start the workers now, while the environment is set
        list(pool.map(int, range(workers)))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


def executor_workers(executor: cf.Executor | None) -> int:
    """How many tasks ``executor`` runs at once (``None``: 1, work runs in this process).

    Read from :class:`concurrent.futures.ProcessPoolExecutor` / ``ThreadPoolExecutor``
    (``max_workers``) and from a Dask ``Client.get_executor()`` (the cluster's threads); any
    other executor: the number of CPUs.  Used to size the tasks of a sweep, never for
    correctness (results do not depend on it).
    """
    if executor is None:
        return 1
    n = getattr(executor, "_max_workers", None)  # concurrent.futures pools (stable since 3.2)
    if isinstance(n, int) and n >= 1:
        return n
    client = getattr(executor, "_client", None)  # distributed.ClientExecutor
    if client is not None:
        try:
            n = sum(int(v) for v in client.nthreads().values())
            if n >= 1:
                return n
        except Exception:  # pragma: no cover - a client without workers or an old API
            pass
    return os.cpu_count() or 1
