"""A bounded job queue: one worker thread, a few waiting jobs, and a clear "busy" beyond that.

Restoration is CPU-bound and the tools already use every core (torch's threads), so running two
jobs at once would only make both slower; one worker runs them in order. Requests never wait for a
job: they get its id at once and poll its progress, so one user's long job never blocks the page
for the others, and when ``max_waiting`` jobs are already queued a new one is refused with
:class:`Busy` instead of piling up.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class Busy(Exception):
    """The queue is full; the caller should try again shortly."""


@dataclass
class Job:
    id: str
    label: str
    run: Callable[[Job], object]
    status: str = "queued"  # queued | running | done | error
    done: int = 0  # progress: steps done of total
    total: int = 0
    stage: str = "waiting in the queue"
    result: object = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    seconds: float | None = None

    def progress(self, done: int, total: int, stage: str) -> None:
        self.done, self.total, self.stage = done, total, stage

    def to_json(self, position: int | None = None) -> dict:
        d = {"id": self.id, "label": self.label, "status": self.status, "done": self.done, "total": self.total,
             "stage": self.stage, "error": self.error, "seconds": self.seconds}
        if position is not None:
            d["position"] = position
        return d


class JobQueue:
    def __init__(self, max_waiting: int = 4, keep: int = 256):
        self.max_waiting = max_waiting
        self._queue: queue.Queue[Job] = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # recent jobs, for polling
        self._keep = keep
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._worker = threading.Thread(target=self._work, name="restoreagent-jobs", daemon=True)
        self._worker.start()

    def waiting(self) -> int:
        return sum(j.status == "queued" for j in self._jobs.values())

    def submit(self, label: str, run: Callable[[Job], object]) -> Job:
        with self._lock:
            n = self.waiting()
            if n >= self.max_waiting:
                raise Busy(f"busy: {n} jobs are already waiting (the limit is {self.max_waiting}); try again in a few seconds")
            job = Job(f"j{next(self._ids)}", label, run)
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
            self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many queued jobs are ahead of this one (0: next or running)."""
        with self._lock:
            ahead = [j for j in self._jobs.values() if j.status == "queued" and j.created <= job.created and j is not job]
        return len(ahead)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            job.status, job.stage = "running", "starting"
            t0 = time.perf_counter()
            try:
                job.result = job.run(job)
                job.status = "done"
                job.stage = "done"
            except Exception as e:  # a job's failure is its own: report it, keep serving
                job.status, job.error = "error", _one_line(e)
                log.warning("job %s (%s) failed: %s", job.id, job.label, traceback.format_exc())
            job.seconds = round(time.perf_counter() - t0, 3)


def _one_line(e: Exception) -> str:
    from ..errors import RestoreAgentError

    if isinstance(e, RestoreAgentError):
        return str(e)
    if isinstance(e, MemoryError):
        return "out of memory: try a smaller photo"
    return f"{type(e).__name__}: {e}"
