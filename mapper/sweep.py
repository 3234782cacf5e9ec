"""Batch sweeps: every (architecture, network, layer) is one search job.

Jobs run in parallel: processes on this machine (loky, see workers.py) or a Dask cluster
(`backend="dask"`, `scheduler="tcp://host:port"`; after Ctrl-C its unfinished jobs are
cancelled). Identical layers within a network are
searched once. Every result is written atomically as soon as its job finishes, so an
interrupted sweep (Ctrl-C or a killed process) leaves only complete files, and
`resume=True` skips jobs whose result exists with the same inputs hash.

Output folder:
    sweep.json                    format version and settings of the sweep
    <arch>/<network>/<layer>.json one result document per layer (the JSON of `search`)
    summary.csv                   one row per arch x layer, with energy per storage level
    summary.json                  network totals per arch
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .arch import Arch, Storage
from .model import utilization
from .problem import Layer, Network
from .progress import Board, Progress, QueueProgress, Reporter
from .result import TEMP_MARK, check_output, inputs_sha256, write_json, write_text
from .spec import MapperError, clip, load_json

FORMAT = 1          # bump when the folder layout or documents change incompatibly


@dataclass(frozen=True)
class Job:
    arch: Arch
    network: str
    layer: Layer
    settings: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> tuple:
        return (self.arch.name, self.network, self.layer.type, self.layer.shape_key())

    def hash(self) -> str:
        return inputs_sha256(self.layer, self.arch, search_settings(dict(self.settings)))


def search_settings(settings: dict[str, Any]) -> dict[str, Any]:
    from .search import search_settings as base
    return base({"budget": None, "patience": None, "top": 1, "workers": 1, **settings})


# Names from user files become folder and file names: only these characters are kept as
# they are; anything else (a '/', '..', a NUL, a leading dot) is replaced and the name
# gets a hash suffix, so two different names never share a file.
_SAFE = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]{0,63}")
RESERVED = {"sweep.json", "summary.csv", "summary.json"}


def file_name(name: str) -> str:
    """A file name for `name`: the name itself when it is plain (letters, digits, '_', '-',
    '.', '+', '=', at most 64, not starting with '.'), else a cleaned prefix plus the
    first 10 hex digits of its SHA-256."""
    name = str(name)
    if _SAFE.fullmatch(name) and name.casefold() not in RESERVED:
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_+=-]+", "_", name)[:40].strip("_") or "name"
    return f"{cleaned}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def result_path(out: Path, arch: str, network: str, layer: str) -> Path:
    path = out / file_name(arch) / file_name(network) / f"{file_name(layer)}.json"
    inside(out, path)
    return path


def inside(out: Path, path: Path) -> None:
    """Refuse a path that resolves outside `out` (e.g. through a symlinked folder in it)."""
    root = out.resolve()
    if not path.resolve().is_relative_to(root):
        raise MapperError(f"{path}: resolves outside --out {out} (a symlink?); refusing to write there")


def check_names(archs: list[Arch], networks) -> None:
    """Two archs or networks of one name (the same file given twice, or two files with the
    same `name:`), or two names that differ only in case (one file on a case-insensitive
    disk), would merge their results: an error before anything runs."""
    def unique(names, what):
        seen: dict[str, str] = {}
        for n in names:
            key = file_name(n).casefold()
            if key in seen:
                same = "given twice" if seen[key] == n else f"and '{clip(seen[key])}' differ only in case"
                raise MapperError(f"{what} '{clip(n)}' {same}: each {what} needs its own name")
            seen[key] = n
    unique([a.name for a in archs], "arch")
    unique([net.name for net, _ in networks], "network")
    for net, layers in networks:
        unique([l.name for l in layers], f"layer of network {net.name}")


def run_job(job: Job, progress=None) -> dict[str, Any]:
    """Search one layer (in a worker process or on a Dask worker); returns its document,
    with "interrupted": true if Ctrl-C stopped the search (its best so far). `progress` is
    a Progress, or a queue of the sweep's Board (from a worker process)."""
    from .search import interrupted, search
    settings = dict(job.settings)
    if progress is not None and not hasattr(progress, "update"):
        progress = QueueProgress(progress, label(job))
    res = search(job.layer, job.arch, workers=1, progress=progress, **settings)
    doc = res.documents()[0]
    doc["network"] = job.network
    if interrupted(res):
        doc["interrupted"] = True
    return doc


def check_folder(out: Path, resume: bool, files: list[Path]) -> None:
    """Check that --out is a new folder or one this format of sweep wrote, and that each of
    `files` (the paths the sweep writes) can be written there (writes nothing)."""
    marker = out / "sweep.json"
    if out.is_symlink():
        raise MapperError(f"--out {out}: is a symlink; give the folder itself (results are written only "
                          f"inside --out, never through a link)")
    if out.exists() and not out.is_dir():
        raise MapperError(f"--out {out}: exists and is not a folder")
    check_targets(out, [marker, *files])
    if marker.exists():
        try:
            meta = load_json(marker, "sweep results file")
        except MapperError as exc:
            raise MapperError(f"{exc}; choose another --out") from None
        if not isinstance(meta, dict):
            raise MapperError(f"{marker}: not a sweep results file; choose another --out")
        if meta.get("format") != FORMAT:
            raise MapperError(f"{out}: written by an incompatible version (format {meta.get('format')}, "
                              f"mapper {meta.get('version')}); this is format {FORMAT}: use another --out")
        if not resume:
            raise MapperError(f"--out {out}: already holds sweep results; add --resume to keep them and run "
                              f"only what is missing or changed, or choose another --out")
    elif out.exists() and any(out.iterdir()) and resume:
        raise MapperError(f"{out}: not a sweep results folder (no sweep.json); use another --out")


def check_targets(out: Path, files: list[Path]) -> None:
    """Refuse, before anything is written, a sweep whose files could not all be written: a
    file path that is a symlink, a folder or a special file (result.check_output), a folder
    on the way that is not a folder, or an --out that cannot be created or written."""
    for path in files:
        check_output(path, "sweep result")
        for folder in path.parents:
            if folder == out.parent:
                break
            if os.path.lexists(folder) and not folder.is_dir():
                raise MapperError(f"{folder}: is not a folder; cannot write {path.name} in it")
    ancestor = out
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MapperError(f"--out {out}: cannot write results ({ancestor} is not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise MapperError(f"--out {out}: cannot write results (folder {ancestor} is not writable)")


def remove_leftovers(out: Path) -> int:
    """Remove temporary files that an interrupted atomic write left behind; returns how many."""
    n = 0
    for tmp in out.rglob(f".*{TEMP_MARK}*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def sweep(archs: list[Arch], networks: list[tuple[Network, list[Layer]]], out: str | Path,
          settings: dict[str, Any], workers: int = 1, resume: bool = False, backend: str = "loky",
          scheduler: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run every job not already done; write per-layer documents and the summaries."""
    out = Path(out)
    progress = progress or Progress(enabled=False)
    check_names(archs, networks)
    frozen = tuple(sorted(settings.items()))
    jobs: dict[tuple, Job] = {}
    placements: list[tuple[Arch, str, Layer, tuple]] = []
    for arch in archs:
        for net, layers in networks:
            for layer in layers:
                job = Job(arch, net.name, layer, frozen)
                jobs.setdefault(job.key, job)
                placements.append((arch, net.name, layer, job.key))
    # every path is checked before any write
    check_folder(out, resume, [out / "summary.csv", out / "summary.json",
                               *(result_path(out, arch.name, net, layer.name) for arch, net, layer, _ in placements)])
    # a job (kept with its first placement) is done when its result exists with the same inputs hash
    todo, docs = [], {}
    for key, job in jobs.items():
        path = result_path(out, job.arch.name, job.network, job.layer.name)
        doc = reusable(_load(path), job) if resume else None
        if doc is not None:
            docs[key] = doc
        else:
            todo.append(job)
    client = _dask_client(scheduler, workers) if backend == "dask" and todo else None
    # everything is checked (and the scheduler reached): only now is anything written
    write_json(out / "sweep.json", {"format": FORMAT, "version": __version__, "settings": settings})
    remove_leftovers(out)
    done = 0
    interrupted = False
    if len(jobs) > len(todo):
        progress.update(f"sweep: {len(jobs) - len(todo)}/{len(jobs)} jobs already done, {len(todo)} to run",
                        force=True)
        progress.done()
    processes = 1 if workers <= 1 or len(todo) <= 1 else min(workers, len(todo))
    from .search import on_sigint
    stop: list[int] = []
    # One Ctrl-C: running searches keep their best (status budget, written with
    # "interrupted": true, so --resume redoes them), no new job starts, the summaries are
    # written and marked partial. A second Ctrl-C raises KeyboardInterrupt at once.
    with on_sigint(lambda: stop.append(1)):
        try:
            with Board(progress, "sweep jobs", len(todo), settings.get("time_limit"),
                       len(todo) if client is not None else processes) as board:
                feed = None if client is not None else (board if processes == 1 else board.queue())
                for job, doc in _execute(todo, workers, client, lambda: bool(stop), feed):
                    if doc is None:
                        continue                    # skipped after Ctrl-C
                    if doc.get("interrupted"):
                        interrupted = True
                        stop.append(1)
                    docs[job.key] = doc
                    _write_doc(out, job.arch, job.network, job.layer, doc)
                    done += 1
                    s = doc["search"]
                    board.finished(label(job), s["status"] + (f" ({s['reason']})" if s.get("reason") else ""))
        finally:
            if client is not None:
                _close(client, bool(stop))
        interrupted = interrupted or bool(stop)
    # every layer that shares a finished job gets its own document
    for arch, net, layer, key in placements:
        first = jobs[key]
        if key in docs and (first.arch, first.network, first.layer) != (arch, net, layer):
            path = result_path(out, arch.name, net, layer.name)
            existing = _load(path)
            if not isinstance(existing, dict) or existing.get("inputs_sha256") != docs[key]["inputs_sha256"] \
                    or existing.get("layer") != _plain(layer.describe()):
                doc = dict(docs[key])
                doc["layer"] = layer.describe()
                doc["reused_from"] = first.layer.name
                _write_doc(out, arch, net, layer, doc)
    summary = write_summaries(out, archs, networks, placements, docs)
    summary["interrupted"] = interrupted
    summary["jobs"] = {"total": len(jobs), "run": done, "skipped": len(jobs) - len(todo)}
    return summary


def _write_doc(out: Path, arch: Arch, net: str, layer: Layer, doc: dict) -> None:
    write_json(result_path(out, arch.name, net, layer.name), doc)


def reusable(doc: Any, job: Job) -> dict | None:
    """`doc` if it is a complete result of exactly this job (its inputs hash, the layer, arch
    and network it names, a mapping valid for them whose re-evaluated cost matches the one
    recorded), with the cost recomputed; None (search again) if anything is doubtful."""
    from .mapping import check, parse_mapping
    from .model import evaluate
    if not isinstance(doc, dict) or doc.get("inputs_sha256") != job.hash() or "interrupted" in doc:
        return None
    search = doc.get("search")
    cost = doc.get("cost")
    if doc.get("layer") != _plain(job.layer.describe()) or doc.get("arch") != _plain(job.arch.describe()) \
            or doc.get("network") != job.network or not isinstance(search, dict) or not isinstance(cost, dict):
        return None
    seconds = search.get("seconds")
    if search.get("status") not in ("optimal", "feasible", "budget") or isinstance(seconds, bool) \
            or not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
        return None
    try:
        mapping = parse_mapping(doc, job.arch, "resumed result")
        check(mapping, job.layer, job.arch, "resumed result")
        fresh = evaluate(job.layer, job.arch, mapping, validate=False)
    except (MapperError, KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None
    for key, value in (("energy_pj", fresh.energy_pj), ("cycles", fresh.cycles)):
        old = cost.get(key)
        if isinstance(old, bool) or not isinstance(old, (int, float)) or \
                not abs(old - value) <= 1e-9 * max(abs(value), 1.0):
            return None
    return {**doc, "cost": fresh.to_dict()}


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _load(path: Path) -> dict | None:
    try:
        return load_json(path, "result document") if path.exists() else None
    except MapperError:
        return None


def label(job: Job) -> str:
    return f"{job.arch.name}/{job.network}/{job.layer.name}"


def _execute(todo: list[Job], workers: int, client, stop, board=None):
    """Yield (job, document) as jobs finish, in any order (on a Dask cluster if `client`);
    after Ctrl-C (`stop()`), no job starts and a job skipped yields (job, None). `board` is
    the sweep's Board (jobs run here) or its queue (jobs in worker processes)."""
    if not todo:
        return
    if client is not None:
        yield from _execute_on_dask(todo, client, stop)
        return
    if workers <= 1 or len(todo) == 1:
        for job in todo:
            if stop():
                return
            yield job, run_job(job, None if board is None else Reporter(board, label(job)))
        return
    from .workers import SKIPPED, run
    for i, doc in run(_run_queued, [(job, board) for job in todo], workers, stop):
        yield todo[i], None if isinstance(doc, str) and doc == SKIPPED else doc


def _execute_on_dask(todo: list[Job], client, stop):
    """Yield (job, document) as the cluster's jobs finish. Ctrl-C (`stop()`, checked every
    0.1 s rather than at the next result) cancels every job not finished, so the cluster
    does not go on with them: a queued one never starts; a running one's result is
    dropped (a Dask worker cannot stop a running Python call; it ends at its time limit)."""
    futures = {client.submit(run_job, job, None, pure=False): job for job in todo}
    pending = set(futures)
    try:
        while pending and not stop():
            finished = [f for f in pending if f.done()]
            if not finished:
                time.sleep(0.1)
                continue
            for f in finished:
                pending.discard(f)
                yield futures[f], f.result()          # a job's error is raised here
                if stop():
                    return
    finally:
        if pending:
            client.cancel(list(pending), force=True)


def _run_queued(item: tuple[Job, Any]) -> dict[str, Any]:
    """run_job in a worker process, its progress sent to the sweep's Board queue."""
    job, queue = item
    return run_job(job, queue)


def _close(client, interrupted: bool) -> None:
    """Disconnect from the cluster. After Ctrl-C, the worker processes of a local cluster
    (ours) are killed first: their running searches were cancelled but go on in threads,
    and the nanny would wait 4 s for each before killing it."""
    if interrupted and client.cluster is not None:
        import os
        import signal
        for nanny in list(getattr(client.cluster, "workers", {}).values()):
            pid = getattr(getattr(getattr(nanny, "process", None), "process", None), "pid", None)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    client.close()


def _dask_client(scheduler: str | None, workers: int):
    """A client of the given scheduler (or of a local Dask cluster); fails within 8 s."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise MapperError("--backend dask needs Dask: pip install -e '.[dask]'") from None
    try:
        if scheduler:
            return Client(scheduler, timeout="8s")
        import logging
        return Client(processes=True, n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      silence_logs=logging.ERROR)     # not a warning per job cancelled after Ctrl-C
    except (OSError, TimeoutError) as exc:
        raise MapperError(f"--scheduler {scheduler}: cannot reach the Dask scheduler within 8 s ({exc})") from None
    except (ValueError, TypeError) as exc:
        raise MapperError(f"--scheduler {scheduler}: not a scheduler address such as tcp://HOST:8786 ({exc})") from None


#: summary.csv columns besides the storage levels': MAC, network, leakage and per-cycle (clock,
#: static) energy (with the levels they sum to energy_pj), and the outermost level (DRAM: its
#: accesses and leakage) vs the rest (the chip).
COMPONENTS = ("mac_energy_pj", "network_energy_pj", "leakage_energy_pj", "cycle_energy_pj",
              "dram_energy_pj", "chip_energy_pj")


def components(cost: dict[str, Any], arch: Arch) -> dict[str, float]:
    """The COMPONENTS of a result document's cost."""
    dram = cost.get("offchip_energy_pj")
    if dram is None:     # a document from before the chip / off-chip split
        dram = sum(t["energy_pj"] for t in cost["levels"].get(arch.levels[0].name, {}).values())
    return {"mac_energy_pj": cost.get("mac_energy_pj", 0.0),
            "network_energy_pj": sum(cost.get("network_energy_pj", {}).values()),
            "leakage_energy_pj": cost.get("leakage_energy_pj", 0.0),
            "cycle_energy_pj": cost.get("cycle_energy_pj", 0.0),
            "dram_energy_pj": dram, "chip_energy_pj": cost["energy_pj"] - dram}


def write_summaries(out: Path, archs: list[Arch], networks, placements, docs) -> dict[str, Any]:
    """summary.csv (one row per arch x layer) and summary.json (network totals per arch)."""
    levels = []
    for arch in archs:
        for level in arch.levels:
            if isinstance(level, Storage) and level.name not in levels:
                levels.append(level.name)
    # energy_pj = the energy_<level>_pj columns + mac + network + leakage + cycle = dram + chip
    fields = ["network", "arch", "layer", "macs", "performed_macs", "energy_pj", "pj_per_mac", "cycles",
              "utilization", "edp", "status", "reason", "seconds"] + [f"energy_{lv}_pj" for lv in levels] + list(COMPONENTS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    totals: dict[str, dict[str, dict[str, float]]] = {}
    owner: dict[tuple, tuple] = {}
    partial: set[tuple[str, str]] = set()
    for arch, net, layer, key in placements:
        owner.setdefault(key, (arch.name, net, layer.name))
    for arch, net, layer, key in placements:
        doc = docs.get(key)
        if doc is None:
            continue
        cost = doc["cost"]
        row = {"network": net, "arch": arch.name, "layer": layer.name, "macs": cost["macs"],
               "performed_macs": cost["performed_macs"],
               "energy_pj": cost["energy_pj"], "pj_per_mac": cost["pj_per_mac"], "cycles": cost["cycles"],
               "utilization": cost["utilization"], "edp": cost["edp"], "status": doc["search"]["status"],
               "reason": doc["search"].get("reason", ""),
               "seconds": doc["search"]["seconds"] if owner[key] == (arch.name, net, layer.name) else 0.0}
        for lv in levels:
            tensors = cost["levels"].get(lv)
            row[f"energy_{lv}_pj"] = sum(t["energy_pj"] for t in tensors.values()) if tensors is not None else ""
        row.update(components(cost, arch))
        writer.writerow(row)
        t = totals.setdefault(arch.name, {}).setdefault(net, {"energy_pj": 0.0, "cycles": 0, "macs": 0,
                                                               "performed_macs": 0, "layers": 0,
                                                               "batch": layer.samples})
        t["energy_pj"] += cost["energy_pj"]
        t["cycles"] += cost["cycles"]
        t["macs"] += cost["macs"]
        t["performed_macs"] += cost["performed_macs"]
        t["layers"] += 1
        if doc.get("interrupted"):
            partial.add((arch.name, net))       # its best so far, not a finished search
    write_text(out / "summary.csv", buf.getvalue())
    arch_by_name = {a.name: a for a in archs}
    summary: dict[str, Any] = {"version": __version__, "networks": {}}
    for arch_name, nets in totals.items():
        arch = arch_by_name[arch_name]
        for net, t in nets.items():
            seconds = t["cycles"] / (arch.clock_mhz * 1e6)
            n = t.pop("batch")
            summary["networks"].setdefault(net, {})[arch_name] = {
                **t, "latency_ms": 1e3 * seconds, "inferences_per_s": n / seconds,
                "inferences_per_j": n / (t["energy_pj"] * 1e-12), "pj_per_mac": t["energy_pj"] / t["macs"],
                "utilization": utilization(t["performed_macs"], t["cycles"], arch.pes),
                "clock_mhz": arch.clock_mhz,
                "complete": t["layers"] == sum(1 for a, nn, _, _ in placements if a.name == arch_name and nn == net)
                and (arch_name, net) not in partial,
            }
    write_json(out / "summary.json", summary)
    return summary
