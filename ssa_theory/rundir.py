"""Run directories: where every result lives, and the only place figures are drawn from.

``run NAME`` writes ``OUT/NAME/<hash>/`` where the hash is taken over the experiment's name and
version, the resolved config, the member seeds and the device type:

    config.json    resolved config, experiment name and version, seeds, preset
    env.json       python / library versions, device, git commit when available
    metrics.json   headline numbers: means over seeds, per-seed values, 95% CIs
    tables/*.csv, tables/*.md
    arrays/*.npz   raw results the figures are drawn from
    figures/*.png, figures/*.pdf
    done           written last

A run is computed in a hidden sibling directory ``.HASH.partial-HOST-PID`` and renamed into place
only when complete, so an interrupted or failed run leaves nothing behind; a complete directory is
reused unless forced. A process killed outright (SIGKILL, power loss) cannot clean up after itself:
the next run under the same ``OUT`` removes every partial directory whose process, on this host, is
no longer alive (a live one is never touched, so concurrent runs of one config stay safe).
"""

from __future__ import annotations

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
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ssa_theory import __version__
from ssa_theory.config import UsageError
from ssa_theory.progress import Progress
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
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, with ``+dirty`` if modified."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
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
        "torch_threads": torch.get_num_threads(),
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


# --- a run in progress ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunContext:
    """What an experiment's ``run`` gets: its seeds, device, and writers into the run directory."""

    path: Path
    seeds: list[int]
    device: torch.device
    quiet: bool = False

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete ``OUT/*/.HASH.partial-HOST-PID`` left by dead processes of this host; return them."""
    removed = []
    host = _host()
    for p in Path(out).glob("*/.*.partial-*"):
        h, _, pid = p.name.rpartition(".partial-")[2].rpartition("-")
        if h == host and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def run_payload(experiment, config, seeds: Sequence[int], device: torch.device) -> dict[str, Any]:
    """What a run's hash is taken over: everything that can change its numbers.

    The experiment's name and version, the versions of the shared tasks it uses, the resolved
    config, the member seeds, the device type, and the number of CPU threads (on a CPU, matrix
    products split their sums differently with more threads, so the last bits of results can differ).
    """
    return {
        "experiment": experiment.name,
        "version": experiment.version,
        "tasks": dict(experiment.tasks),
        "config": dataclasses.asdict(config),
        "seeds": list(seeds),
        "device": device.type,
        "threads": torch.get_num_threads(),
    }


def run_dir(out: Path, experiment, config, seeds: Sequence[int], device: torch.device) -> Path:
    """Where the run of this experiment, config, seeds and device lives under ``out``."""
    return Path(out) / experiment.name / run_hash(run_payload(experiment, config, seeds, device))


def execute(experiment, config, *, seeds: list[int], device: torch.device, out: Path, preset: str,
            force: bool = False, quiet: bool = False) -> tuple[Path, bool]:
    """Run (or reuse) one experiment; return (run directory, reused?)."""
    payload = run_payload(experiment, config, seeds, device)
    final = run_dir(out, experiment, config, seeds, device)
    if is_complete(final) and not force:
        return final, True
    base = final.parent
    prepare_out(base)
    remove_stale_partials(out)
    tmp = base / f".{final.name}.partial-{_host()}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write_json(tmp / "config.json", {**payload, "preset": preset, "run_hash": final.name})
        write_json(tmp / "env.json", env_info(device))
        ctx = RunContext(tmp, list(seeds), device, quiet)
        experiment.run(config, ctx)
        experiment.plot(tmp)
        (tmp / DONE).write_text("")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except Diverged as e:
        shutil.rmtree(tmp, ignore_errors=True)
        e.experiment = experiment.name
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, False
