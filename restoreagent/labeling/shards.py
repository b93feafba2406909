"""Resumable, sharded output of a per-unit job as a Hugging Face ``datasets`` folder.

A job turns units ``0..N-1`` (one labeled sample, or one labeled sample's SFT examples) into
rows. The folder it writes::

    OUT/manifest.json                         config (identity), counts, status
    OUT/data/train-0000000-0000064.parquet    one finished shard: the rows of units [0, 64)
    OUT/.work/unit-0000123.parquet            a finished unit of an unfinished shard
    OUT/.lock                                 held (flock) while a process works on OUT
    OUT/README.md, OUT/card.png               the dataset card (written when complete)

Only the driver process writes, and every file is written to a temporary name and renamed, so
killing the driver at any moment (even ``kill -9``) leaves only whole files. A re-run of the
same command skips the finished shards and units and does the rest. A re-run with a different
configuration is refused. A different ``N`` or shard size is fine: shards whose range no longer
fits are split back into units, which are then regrouped.

``datasets.load_dataset(OUT)`` or :func:`load` reads the result (README.md's YAML header names
the data files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RestoreAgentError
from ..imageio import atomic_write_bytes, atomic_write_text

MANIFEST = "manifest.json"
DATA_DIR = "data"
WORK_DIR = ".work"
LOCK = ".lock"
_SHARD_RE = re.compile(r"^train-(\d{7})-(\d{7})\.parquet$")
_UNIT_RE = re.compile(r"^unit-(\d{7})\.parquet$")


@dataclass
class Job:
    """What a sharded run needs; ``work`` must be a picklable top-level function."""

    out: Path
    kind: str  # "labeled" or "sft": written into the manifest, checked on resume
    config: dict  # everything that determines the rows (JSON-serialisable)
    n_units: int
    shard_size: int
    features: Any  # datasets.Features
    make_payload: Callable[[int], Any]  # runs in the driver, just before the unit is dispatched
    work: Callable[[Any], list[dict]]  # runs in a worker: payload -> rows of the unit
    unit_column: str = "sample_id"
    desc: str = "units"
    info: dict = field(default_factory=dict)  # extra manifest fields (not part of the identity)


def shard_ranges(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def shard_name(a: int, b: int) -> str:
    return f"train-{a:07d}-{b:07d}.parquet"


def shard_range(path) -> tuple[int, int]:
    """The sample range ``[a, b)`` a shard file holds, read from its name (the inverse of :func:`shard_name`)."""
    m = _SHARD_RE.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path}: not a shard file name (train-AAAAAAA-BBBBBBB.parquet)")
    return int(m.group(1)), int(m.group(2))


def unit_name(i: int) -> str:
    return f"unit-{i:07d}.parquet"


def data_files(out) -> list[Path]:
    """The finished shard files of a dataset folder, in order."""
    d = Path(out) / DATA_DIR
    return sorted(p for p in d.glob("train-*.parquet") if _SHARD_RE.match(p.name)) if d.is_dir() else []


def read_manifest(out) -> dict | None:
    p = Path(out) / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise RestoreAgentError(f"{p}: not a readable manifest ({e})") from None


def load(out, cache_dir=None):
    """Load a finished dataset folder (labeled or SFT) as a ``datasets.Dataset``."""
    import datasets

    out = Path(out)
    man = read_manifest(out)
    if man is None:
        raise RestoreAgentError(f"{out}: no {MANIFEST}; not a restoreagent dataset folder")
    if man.get("status") != "complete":
        raise RestoreAgentError(f"{out}: the run is not finished ({man.get('done', 0)} of {man.get('n')} done); re-run the command to finish it")
    files = [str(p) for p in data_files(out)]
    cache_dir = cache_dir or str(out / ".cache")
    return datasets.Dataset.from_parquet(files, cache_dir=cache_dir, keep_in_memory=False)


# ---- manifest and lock ------------------------------------------------------------------------


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            sa, sb = json.dumps(a), json.dumps(b)
            if len(sa) > 60 or len(sb) > 60:
                out.append(f"{prefix}{k} differs")
            else:
                out.append(f"{prefix}{k}: {sa} -> {sb}")
    return out


def _check_out(job: Job) -> dict | None:
    out = job.out
    if out.exists() and not out.is_dir():
        raise RestoreAgentError(f"{out}: exists and is not a folder")
    man = read_manifest(out)
    if man is None:
        if out.exists() and any(p.name not in (LOCK,) for p in out.iterdir()):
            raise RestoreAgentError(f"{out}: folder exists, is not empty and has no {MANIFEST}; choose a new --out")
        return None
    if man.get("kind") != job.kind:
        raise RestoreAgentError(f"{out}: holds a {man.get('kind')!r} dataset, not {job.kind!r}; choose another --out")
    if man.get("config") != job.config:
        changes = _diff(man.get("config", {}), job.config)
        raise RestoreAgentError(
            f"{out} was made with a different configuration ({'; '.join(changes[:6])}); "
            f"re-run with the same options to resume, or choose another --out (or delete {out}) to start over"
        )
    return man


class _Lock:
    """An exclusive flock on OUT/.lock: a second process on the same folder is refused."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except BlockingIOError:
            os.close(self.fd)
            raise RestoreAgentError(f"{self.path.parent}: another process is writing this dataset right now") from None
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the flock


# ---- writing ----------------------------------------------------------------------------------


def _table(rows: list[dict], features):
    import pyarrow as pa

    return pa.Table.from_pylist([features.encode_example(r) for r in rows], schema=features.arrow_schema)


def _write_table(path: Path, table) -> None:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    atomic_write_bytes(path, buf.getvalue())


def _read_table(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path)


def _regroup_stale_shards(job: Job, ranges: list[tuple[int, int]]) -> None:
    """Shards whose range is not planned any more (N or shard size changed) go back to units."""
    import pyarrow as pa
    import pyarrow.compute as pc

    planned = set(ranges)
    work = job.out / WORK_DIR
    for p in data_files(job.out):
        m = _SHARD_RE.match(p.name)
        a, b = int(m.group(1)), int(m.group(2))
        if (a, b) in planned:
            continue
        table = _read_table(p)
        col = table.column(job.unit_column)
        for i in range(a, b):
            if i < job.n_units and not (work / unit_name(i)).exists():
                part = table.filter(pc.equal(col, pa.scalar(i, col.type)))
                _write_table(work / unit_name(i), part)
        p.unlink()


def _finish_shard(job: Job, a: int, b: int) -> None:
    import pyarrow as pa

    work = job.out / WORK_DIR
    parts = [_read_table(work / unit_name(i)) for i in range(a, b)]
    table = pa.concat_tables(parts).replace_schema_metadata(job.features.arrow_schema.metadata)
    _write_table(job.out / DATA_DIR / shard_name(a, b), table)
    for i in range(a, b):
        (work / unit_name(i)).unlink(missing_ok=True)


def _write_manifest(job: Job, status: str, done: int, started: float, extra: dict | None = None) -> None:
    man = {
        "format": 1,
        "kind": job.kind,
        "status": status,
        "n": job.n_units,
        "done": done,
        "shard_size": job.shard_size,
        "config": job.config,
        **job.info,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }
    if status == "complete":
        man["data_files"] = [f"{DATA_DIR}/{p.name}" for p in data_files(job.out)]
    atomic_write_text(job.out / MANIFEST, json.dumps(man, indent=1))


def run_job(job: Job, backend, progress: bool = True) -> dict:
    """Run (or resume) the job with ``backend`` (see :mod:`.backends`); returns run statistics."""
    from tqdm.auto import tqdm

    if job.n_units < 1:
        raise RestoreAgentError("nothing to do: the job has no units (samples)")
    if job.shard_size < 1:
        raise RestoreAgentError("--shard-size must be at least 1")
    job.out = Path(job.out)
    job.out.mkdir(parents=True, exist_ok=True)
    with _Lock(job.out):
        _check_out(job)
        (job.out / DATA_DIR).mkdir(exist_ok=True)
        (job.out / WORK_DIR).mkdir(exist_ok=True)
        for tmp in list((job.out / DATA_DIR).glob(".*.tmp")) + list((job.out / WORK_DIR).glob(".*.tmp")):
            tmp.unlink(missing_ok=True)  # half-written files of a killed run
        ranges = shard_ranges(job.n_units, job.shard_size)
        _regroup_stale_shards(job, ranges)
        done_shards = {r for r in ranges if (job.out / DATA_DIR / shard_name(*r)).exists()}
        work = job.out / WORK_DIR
        done_units = {int(m.group(1)) for p in work.iterdir() if (m := _UNIT_RE.match(p.name))}
        for a, b in ranges:  # a killed run may have finished every unit of a shard but not the shard
            if (a, b) not in done_shards and all(i in done_units for i in range(a, b)):
                _finish_shard(job, a, b)
                done_shards.add((a, b))
        todo = [i for a, b in ranges if (a, b) not in done_shards for i in range(a, b) if i not in done_units]
        done = job.n_units - len(todo)
        started = time.time()
        _write_manifest(job, "running", done, started)
        shard_of = {i: r for r in ranges for i in range(*r)}
        todo_set = set(todo)
        missing = {r: sum(1 for i in range(*r) if i in todo_set) for r in ranges if r not in done_shards}
        bar = tqdm(total=job.n_units, initial=done, desc=job.desc, unit="sample", disable=not progress, dynamic_ncols=True)
        computed = 0
        t0 = time.perf_counter()
        last_manifest = time.monotonic()

        def payloads() -> Iterator[tuple[int, Any]]:
            for i in todo:
                yield i, job.make_payload(i)

        for unit, rows in backend.map(job.work, payloads()):
            _write_table(work / unit_name(unit), _table(rows, job.features))
            computed += 1
            done += 1
            r = shard_of[unit]
            missing[r] -= 1
            if missing[r] == 0:
                _finish_shard(job, *r)
            bar.update(1)
            if missing[r] == 0 or time.monotonic() - last_manifest > 30:
                _write_manifest(job, "running", done, started)
                last_manifest = time.monotonic()
        bar.close()
        seconds = time.perf_counter() - t0
        stats = {"computed": computed, "seconds": seconds, "units_per_second": computed / seconds if seconds > 0 else 0.0}
        _write_manifest(job, "complete", job.n_units, started, {"last_run": stats})
        shutil.rmtree(work, ignore_errors=True)
        return stats


def write_card_files(out: Path, readme: str, png: bytes | None) -> None:
    atomic_write_text(Path(out) / "README.md", readme)
    if png is not None:
        atomic_write_bytes(Path(out) / "card.png", png)
