"""Run directories: where every result lives, and the only place figures are drawn from.

``run NAME`` writes ``OUT/NAME/<hash>/`` where the hash is taken over the experiment's name and
version, the versions of the shared tasks and of the core (``ssa_theory.core``), the resolved
config, the member seeds, the device type and the CPU threads:

    config.json    resolved config, experiment name and version, seeds, preset
    env.json       python / library versions, device, CPU capability, float32 matmul precision,
                   deterministic algorithms, the project's git commit when it runs from a checkout
    metrics.json   headline numbers: means over seeds, per-seed values, 95% CIs
    tables/*.csv, tables/*.md
    arrays/*.npz   raw results the figures are drawn from
    figures/*.png, figures/*.pdf
    done           written last

Concurrency and faults. Each run hash has a lock, ``OUT/.locks/NAME-HASH.lock`` (``filelock``: an OS
lock that dies with its process). Whoever holds it computes the run in a hidden sibling directory
``.HASH.partial-HOST-PID`` and moves it into place only when complete; a second process asking for
the same hash waits for the lock and then reuses the finished run, so a hash is computed once. A
finished run is swapped in by one rename: ``rename(2)`` when there is none yet, and under ``--force``
an atomic exchange of the two directories (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere the old
run is renamed aside first, a moment without a run that only readers outside this module can see,
since ``execute`` itself waits on the lock). So ``OUT/NAME/HASH`` is always either absent or a
complete run. A partial directory whose lock nobody holds belongs to a dead process and is removed
by the next run under the same ``OUT``; a live one is never touched. JSON files are written to a
temporary file and moved into place with ``os.replace``, so a kill mid-write leaves the old file.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ssa_theory import __version__, core
from ssa_theory.config import UsageError
from ssa_theory.progress import Progress
from ssa_theory.stats import interval
from ssa_theory.train import Diverged

DONE = "done"


def run_hash(payload: Mapping[str, Any]) -> str:
    """Short, stable hash of a JSON-able description of a run."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None  # JSON has no NaN or infinity
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and ``os.replace``: a reader (or a kill)
    sees the old file or the new one, never a truncated one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (NaN and infinities become null), written atomically."""
    write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


SOURCE_PATHS = ("ssa_theory", "pyproject.toml")  # what "+dirty" looks at: the code, not the results


def git_commit(root: Path | None = None) -> str | None:
    """The commit of this project's checkout, with ``+dirty`` if its code (``SOURCE_PATHS``) differs.

    None when the package does not run from the top of a git checkout of its own (an installed
    wheel, or a copy inside some other repository, whose commit would say nothing about this code).
    Committed results and docs are not code: regenerating them does not make the tree dirty.
    """
    root = Path(__file__).resolve().parent.parent if root is None else Path(root)
    git = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=5,  # noqa: E731
                                    check=True).stdout.strip()
    try:
        top = git("rev-parse", "--show-toplevel")
        if Path(top).resolve() != root.resolve() or not (root / "pyproject.toml").is_file():
            return None
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def env_info(device: torch.device) -> dict[str, Any]:
    import matplotlib
    import networkx
    import scipy

    info = {
        "ssa_theory": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "matplotlib": matplotlib.__version__,
        "networkx": networkx.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        # which vectorised CPU kernels torch picked (e.g. AVX512 or AVX2): it decides the last bits of CPU results
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch_threads": torch.get_num_threads(),
        "core_version": core.VERSION,
        "git_commit": git_commit(),
    }
    return info


# --- tables --------------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return "—"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
            return f"{x:.3e}"
        return f"{x:.4f}"
    return str(x).replace("|", "\\|")  # a bare pipe would split the cell


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; floats to 4 decimals, NaN as an em dash."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def with_ci(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """For display: fold ``c``, ``c_lo``, ``c_hi`` columns into one ``c [lo, hi]`` string column."""
    out = df.copy()
    for c in columns:
        lo, hi = out.pop(f"{c}_lo"), out.pop(f"{c}_hi")
        out[c] = [
            _fmt(m) if (isinstance(a, float) and math.isnan(a)) else f"{_fmt(m)} [{_fmt(a)}, {_fmt(b)}]"
            for m, a, b in zip(out[c], lo, hi)
        ]
    return out


def summarise(series: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics block of per-seed series: ``{name: mean, ..., "per_seed": series, "ci95": {name: [lo, hi]}}``.

    ``series`` maps a name to its per-seed values (S,), or to a mapping of such (e.g. one series per
    degree), which is summarised entry by entry.
    """
    def mean(v):
        return {k: mean(x) for k, x in v.items()} if isinstance(v, Mapping) else float(np.mean(v))

    def ci(name, v):  # a measure with a range (stats.RANGES, by name) gets an interval inside it
        return {k: ci(name, x) for k, x in v.items()} if isinstance(v, Mapping) else list(interval(name, v)[1:])

    return {**{k: mean(v) for k, v in series.items()}, "per_seed": dict(series),
            "ci95": {k: ci(k, v) for k, v in series.items()}}


# --- a run in progress ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunContext:
    """What an experiment's ``run`` gets: its seeds, device, and writers into the run directory."""

    path: Path
    seeds: list[int]
    device: torch.device
    quiet: bool = False
    out: Path | None = None  # the root of run directories this run lives under (for runs it is collected from)

    def progress(self, label: str, total: int) -> Progress:
        return Progress(label, total, enabled=not self.quiet)

    def write_table(self, name: str, df: pd.DataFrame, display: pd.DataFrame | None = None) -> None:
        """``tables/NAME.csv`` (full precision) and ``tables/NAME.md`` (``display``, default ``df``)."""
        d = self.path / "tables"
        d.mkdir(exist_ok=True)
        df.to_csv(d / f"{name}.csv", index=False)
        (d / f"{name}.md").write_text(markdown_table(df if display is None else display))

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        write_json(self.path / "metrics.json", metrics)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        """``arrays/NAME.npz``: raw arrays the figures are drawn from."""
        d = self.path / "arrays"
        d.mkdir(exist_ok=True)
        np.savez_compressed(d / f"{name}.npz", **arrays)

    def save_frame(self, name: str, df: pd.DataFrame) -> None:
        """``arrays/NAME.csv``: raw long-form results (curves, theory grids) the figures are drawn from."""
        d = self.path / "arrays"
        d.mkdir(exist_ok=True)
        df.to_csv(d / f"{name}.csv", index=False)


def read_table(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "tables" / f"{name}.csv")


def load_frame(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "arrays" / f"{name}.csv")


def load_arrays(run_dir: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(Path(run_dir) / "arrays" / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def prepare_out(out: Path) -> None:
    """Make ``out`` (and parents) or fail with a ``UsageError``, removing any folder made here."""
    out = Path(out)
    created: list[Path] = []
    p = out
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        for c in created:  # innermost first
            try:
                c.rmdir()
            except OSError:
                pass
        reason = e.strerror or str(e)
        raise UsageError(f"cannot write run directories under {str(out)!r} ({reason}); pass --out with a writable directory") from None


def _host() -> str:
    """This machine's name as it may appear in a partial directory's name (no dots or dashes)."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


LOCK_SUFFIX = ".lock"
PARTIAL = ".partial-"


LOCKS = ".locks"


def _lock(base: Path, run_hash_: str):
    """The lock of run ``base/run_hash_``: ``OUT/.locks/NAME-HASH.lock`` (kept out of ``OUT/NAME/``,
    which holds only runs)."""
    import filelock

    locks = base.parent / LOCKS
    locks.mkdir(exist_ok=True)
    return filelock.FileLock(str(locks / f"{base.name}-{run_hash_}{LOCK_SUFFIX}"))


def _hash_of_partial(p: Path) -> str:
    return p.name[1:].partition(PARTIAL)[0]


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete every ``OUT/*/.HASH.partial-*`` whose run lock nobody holds (its process died); return them.

    A partial directory exists only while its process holds the lock of its hash, and an OS lock
    dies with its process, so a free lock means a dead owner, on this host or any other sharing the
    file system. A held lock is never waited for.
    """
    import filelock

    removed = []
    for p in sorted(Path(out).glob(f"*/.*{PARTIAL}*")):
        lock = _lock(p.parent, _hash_of_partial(p))
        try:
            with lock.acquire(timeout=0):
                if p.exists():
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        except filelock.Timeout:
            continue
        except OSError:  # a read-only or vanished parent: not ours to clean
            continue
    return removed


def run_payload(experiment, config, seeds: Sequence[int], device: torch.device) -> dict[str, Any]:
    """What a run's hash is taken over: everything that can change its numbers.

    The experiment's name and version, the versions of the shared tasks it uses and of the core
    (the layer, the training loop, the sampler: ``ssa_theory.core``), the resolved config, the
    member seeds, the device type, and the number of CPU threads (on a CPU, matrix products split
    their sums differently with more threads, so the last bits of results can differ). Where the
    config places a plug-in strategy (its ``variant_field``s, resolved), the text of the plug-in's
    module enters too (``variants.plugin_digests``), so that an edited formula is never reused.
    """
    from ssa_theory.variants import plugin_digests

    payload = {
        "experiment": experiment.name,
        "version": experiment.version,
        "tasks": {**experiment.tasks, **(experiment.depends(config) if experiment.depends else {})},
        "core": core.VERSION,
        "config": dataclasses.asdict(config),
        "seeds": list(seeds),
        "device": device.type,
        "threads": torch.get_num_threads(),
    }
    plugins = plugin_digests(getattr(config, "_variants", {}).values())
    if plugins:  # only then: a run of built-in strategies keeps its hash
        payload["plugins"] = plugins
    return payload


def run_dir(out: Path, experiment, config, seeds: Sequence[int], device: torch.device) -> Path:
    """Where the run of this experiment, config, seeds and device lives under ``out``."""
    return Path(out) / experiment.name / run_hash(run_payload(experiment, config, seeds, device))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux ``renameat2``); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: this kernel or file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(tmp: Path, final: Path) -> None:
    """Make the complete run ``tmp`` the run at ``final`` by rename; ``final`` is never a partial run.

    With no run at ``final``, one ``rename``. Over an existing run, an atomic exchange where the
    system offers one (then the old run, now at ``tmp``, is deleted); elsewhere the old run is
    renamed aside first. Called with the run's lock held.
    """
    if not final.exists():
        tmp.rename(final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # the old run
        return
    old = tmp.with_name(tmp.name + "-old")
    final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def run_lock(final: Path, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of the run at ``final``; say once that we wait when another process holds it."""
    import filelock

    lock = _lock(final.parent, final.name)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        if log is not None:
            log(f"waiting for another process computing {final}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def execute(experiment, config, *, seeds: list[int], device: torch.device, out: Path, preset: str,
            force: bool = False, quiet: bool = False) -> tuple[Path, bool]:
    """Run (or reuse) one experiment; return (run directory, reused?).

    One process computes a given hash at a time (``run_lock``); a second caller waits and reuses
    what the first made. ``force`` recomputes, and the old run stays in place until the new one is
    swapped in.
    """
    payload = run_payload(experiment, config, seeds, device)
    final = run_dir(out, experiment, config, seeds, device)
    if is_complete(final) and not force:
        return final, True
    base = final.parent
    prepare_out(base)
    remove_stale_partials(out)
    say = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    with run_lock(final, say):
        if is_complete(final) and not force:  # another process finished it while we waited
            return final, True
        tmp = base / f".{final.name}{PARTIAL}{_host()}-{os.getpid()}"
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            write_json(tmp / "config.json", {**payload, "preset": preset, "run_hash": final.name})
            write_json(tmp / "env.json", env_info(device))
            ctx = RunContext(tmp, list(seeds), device, quiet, Path(out))
            experiment.run(config, ctx)
            experiment.plot(tmp)
            (tmp / DONE).write_text("")
            swap_in(tmp, final)
        except Diverged as e:
            shutil.rmtree(tmp, ignore_errors=True)
            e.experiment = e.experiment or experiment.name  # a run collected from runs: the innermost names it
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, False
