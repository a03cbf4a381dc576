"""Executors beyond this process: each cell of a run as one Ray task.

The runner's driver (``bench.run.runner.run``) stays the only writer of the results file: an executor's ``map``
yields ``(cell, rows)`` as each cell finishes and the driver appends the rows at once, so a run on a cluster
is resumable exactly like a local one (``pending_cells`` decides what runs). Ray is an optional extra.
"""
from __future__ import annotations

import logging
import os
import socket
import traceback
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .results import KEY_COLUMNS, ResultsWriter, environment
from .runner import Cell, LocalExecutor, RunConfig, cell_keys, execute_cell, pending_cells, plan_cells

RAY_MISSING = "the ray executor needs Ray: pip install -e .[ray]"


def _import_ray():
    """Ray, or a ValueError saying how to install it (the CLI turns a ValueError into one line, exit code 2)."""
    try:
        import ray
    except ImportError:
        raise ValueError(RAY_MISSING) from None
    return ray


def _run_cell_task(cfg: RunConfig, cell: Cell) -> List[dict]:
    """The body of one Ray task: ``execute_cell``, which runs the cell with ``cfg.threads`` torch threads (the
    task asked Ray for that many CPUs). A worker process is shared by the tasks scheduled on it one after
    another, so the thread count is set on every call (Ray sets OMP_NUM_THREADS, but torch may have read it)."""
    return execute_cell(cfg, cell)


def error_rows(cfg: RunConfig, cell: Cell, message: str, detail: str = "") -> List[dict]:
    """One status='error' row per expected key of a cell, like ``execute_cell`` makes for an exception.

    Used for what ``execute_cell`` cannot record itself: a task whose worker died, or an exception that
    crossed the process boundary (ValueError, which the local executor lets abort the run).
    """

    env = environment(cfg.device)
    rows = [{**key, "status": "error", "error": message, **env} for key in cell_keys(cfg, cell)]
    if rows and detail:
        rows[-1]["error"] = (message + " | " + detail.replace("\n", " "))[-600:]
    return rows


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once on a host:port nobody listens on (Ray itself retries such an address for many minutes)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}. Start one with "
                         "`ray start --head` (it prints the address to give), or leave --ray-address out to "
                         "start a local Ray") from None


def _describe(err: BaseException) -> tuple:
    """(one-line message, short detail) of an exception raised by ``ray.get`` for a task."""
    import ray.exceptions as rex

    cause = getattr(err, "cause", None) if isinstance(err, rex.RayTaskError) else None
    if cause is not None:
        text = str(cause).strip()
        msg = f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__, limit=3))
        return msg, tb[-400:]
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''} (ray task)", ""


class RayExecutor:
    """Runs each cell as one Ray task, on a local Ray or an existing cluster.

    Args:
        address: a cluster to connect to ("auto", "ray://host:10001", "host:6379"); None starts a local Ray
            (or reuses the one this process already started).
        num_cpus: CPUs of the local Ray (None: all of this machine's); ignored when connecting to a cluster.
        cpus_per_cell: CPUs each task requests. None (the default): the run's ``threads``, so a cell runs with
            the same thread count, and so the same floating-point path, as it would locally. A value other than
            the run's threads is an error: the row records the threads it ran with.
        gpus_per_cell: GPUs each task requests. None means: 1 when the run's device is CUDA (the cluster must
            have GPUs), 0 on CPU. An explicit value is requested as given (e.g. for a cluster that adds GPU
            nodes on demand).
        max_retries: how often Ray reruns a task whose worker died (a cell that raises is not retried).
        runtime_env: Ray's runtime environment for the tasks. None: nothing for a local Ray; for a cluster,
            this ``bench`` package is shipped as a py_module, so workers run the driver's code (torch, timm
            and the rest must be installed on the workers).
    """

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 cpus_per_cell: Optional[int] = None,
                 gpus_per_cell: Optional[float] = None, max_retries: int = 1,
                 runtime_env: Optional[Dict[str, object]] = None):
        _import_ray()  # fail before any work when Ray is missing
        if cpus_per_cell is not None and cpus_per_cell <= 0:
            raise ValueError(f"cpus_per_cell must be > 0, got {cpus_per_cell}")
        if gpus_per_cell is not None and gpus_per_cell < 0:
            raise ValueError(f"gpus_per_cell must be >= 0, got {gpus_per_cell}")
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.max_retries = max_retries
        self.runtime_env = runtime_env
        self._started = False  # whether this executor started the local Ray (and so shuts it down)

    # ------------------------------------------------------------------------------------------ cluster

    def connect(self) -> None:
        """Start or join Ray once per process (a no-op when this process is already connected)."""
        ray = _import_ray()
        if ray.is_initialized():
            return
        env = self.runtime_env
        if env is None and self.address is not None:
            import bench

            env = {"py_modules": [os.path.dirname(os.path.abspath(bench.__file__))]}
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, runtime_env=env)
        if self.address is None:
            ray.init(num_cpus=self.num_cpus, **kw)
            self._started = True
        else:
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, **kw)
            except ConnectionError as e:
                raise ValueError(
                    f"cannot connect to the Ray cluster at {self.address!r}: {e}. Start one with `ray start --head`, "
                    "or leave --ray-address out to start a local Ray. A cluster with token authentication (the "
                    "default of local clusters since Ray 2.59) needs RAY_AUTH_MODE=token and its token "
                    "(~/.ray/auth_token or RAY_AUTH_TOKEN) when the address is given explicitly; "
                    "--ray-address auto on a cluster node finds both") from None

    def shutdown(self) -> None:
        """Stop the local Ray this executor started (a cluster it joined keeps running)."""
        ray = _import_ray()
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def resources(self, cfg: RunConfig) -> Dict[str, float]:
        """The resource request of one task of this run: {'num_cpus': ..., 'num_gpus': ...}."""
        ray = _import_ray()
        cluster = ray.cluster_resources()
        gpus = self.gpus_per_cell
        if gpus is None:
            gpus = 1 if cfg.device.startswith("cuda") else 0
            if gpus and cluster.get("GPU", 0) < 1:
                raise ValueError(f"--device {cfg.device}: the Ray cluster has no GPU (resources: "
                                 f"{_fmt_resources(cluster)}); add GPU nodes or use --device cpu")
        if gpus and cfg.device.startswith("cuda:"):
            raise ValueError(f"--device {cfg.device}: with the ray executor use --device cuda; Ray gives each "
                             "cell its own GPU, which the task sees as cuda:0")
        cpus = cfg.threads if self.cpus_per_cell is None else self.cpus_per_cell
        if cpus != cfg.threads:
            raise ValueError(f"cpus_per_cell={cpus} but the run's cells use {cfg.threads} threads: give --threads "
                             f"{cpus} instead, so that the rows say what ran")
        if self.address is None and cluster.get("CPU", 0) < cpus:
            raise ValueError(f"each cell asks for {cpus} CPUs (--threads) but the local Ray has "
                             f"{cluster.get('CPU', 0):g}; give --threads {int(cluster.get('CPU', 0)) or 1} or fewer")
        return {"num_cpus": cpus, "num_gpus": gpus}

    # ------------------------------------------------------------------------------------------ running

    def map(self, cfg: RunConfig, cells: Sequence[Cell],
            progress: Optional[Callable[[str], None]] = None) -> Iterator[tuple]:
        """Submit every cell as a task and yield (cell, rows) as each finishes (in completion order).

        ``progress`` cannot cross into the workers; it hears, on the driver, how many cells are done and
        which finished last. A task that fails outside ``execute_cell`` (its worker died, or it raised a
        ValueError) yields status='error' rows for its cell; the other cells go on. Leaving the loop early
        (an exception or Ctrl-C in the driver) cancels the cells still queued or running.
        """
        for _, cell, rows in self.map_many([(cfg, cell) for cell in cells], progress):
            yield cell, rows

    def map_many(self, jobs: Sequence[Tuple[RunConfig, Cell]],
                 progress: Optional[Callable[[str], None]] = None) -> Iterator[tuple]:
        """``map`` over cells of several configurations at once (a study): yields (cfg, cell, rows).

        Submitting a whole study together keeps a cluster busy; configuration by configuration it would run
        only as many cells at a time as one configuration has.
        """
        jobs = list(jobs)
        if not jobs:
            return
        ray = _import_ray()
        self.connect()
        remote = ray.remote(_run_cell_task)
        pending: Dict[object, tuple] = {}
        refs: Dict[int, tuple] = {}  # id(cfg) -> (object ref of cfg, task with its resource request)
        for cfg, cell in jobs:
            if id(cfg) not in refs:
                res = self.resources(cfg)
                refs[id(cfg)] = (ray.put(cfg), remote.options(max_retries=self.max_retries, **res))
            cfg_ref, task = refs[id(cfg)]
            pending[task.remote(cfg_ref, cell)] = (cfg, cell)
        total, done = len(jobs), 0
        if progress:
            progress(f"{total} cells submitted to Ray")
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cfg, cell = pending.pop(ready[0])
                try:
                    rows = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # recorded in the results file, the run goes on
                    rows = error_rows(cfg, cell, *_describe(e))
                done += 1
                if progress:
                    progress(f"{done}/{total} done: {cell.label}")
                yield cfg, cell, rows
        finally:
            for ref in pending:
                ray.cancel(ref, force=False)


def run_many(configs: Sequence[RunConfig], executor=None, on_row: Optional[Callable[[dict], None]] = None,
             on_cell: Optional[Callable[[Cell], None]] = None, progress=None) -> List[dict]:
    """``runner.run`` for several configurations (a study) with all their pending cells submitted together.

    Rows go to each configuration's results file as they arrive; a cell that several configurations share
    (same results file, same row identifiers) runs once. An executor without ``map_many`` (the local one)
    runs the cells one after another, exactly as ``run`` would.
    """

    executor = executor or LocalExecutor()
    jobs, seen = [], set()
    for cfg in configs:
        for cell in pending_cells(cfg, plan_cells(cfg)):
            key = (cfg.results_path,) + tuple(tuple(str(k.get(c, "")) for c in KEY_COLUMNS)
                                               for k in cell_keys(cfg, cell))
            if key not in seen:
                seen.add(key)
                jobs.append((cfg, cell))
    if hasattr(executor, "map_many"):
        results = executor.map_many(jobs, progress)
    else:
        results = ((cfg, cell, rows) for cfg, cell in jobs for _, rows in executor.map(cfg, [cell], progress))
    writers: Dict[str, ResultsWriter] = {}
    out: List[dict] = []
    try:
        for cfg, cell, rows in results:
            if cfg.results_path not in writers:
                writers[cfg.results_path] = ResultsWriter(cfg.results_path)
            for row in rows:
                if writers[cfg.results_path].holds(row):  # measured before, in a cell partly done
                    continue
                writers[cfg.results_path].write(row)
                out.append(row)
                if on_row:
                    on_row(row)
            if on_cell:
                on_cell(cell)
    finally:
        for w in writers.values():
            w.close()
    return out


def _fmt_resources(res: Dict[str, float]) -> str:
    """'cpus=1, gpus=0' from a task request or 'CPU=2, GPU=0' from ray.cluster_resources()."""
    keep = ("num_cpus", "num_gpus", "CPU", "GPU")
    return ", ".join(f"{k.replace('num_', '')}={res[k]:g}" for k in keep if k in res) or "none"
