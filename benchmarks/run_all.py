"""Measure every speed and memory target of ssa_theory on this machine; write benchmarks/RESULTS.md.

    python benchmarks/run_all.py                  # everything (about 2 hours on 2 CPU cores)
    python benchmarks/run_all.py --skip-jobs1     # without the one-job reproduce (about 40 minutes)
    python benchmarks/run_all.py --skip-default   # without the default `reproduce` from scratch
    python benchmarks/run_all.py --runs DIR       # keep the from-scratch --jobs 2 runs in DIR (a fresh folder),
                                                  # so that `reproduce --out DIR` then exports them

Each measurement is a ratio taken side by side in one process, or a wall time / peak memory of a
command run in a fresh process, and is printed beside its target with the command that gives it.
Nothing here is a test: shared machines are noisy, so the numbers are evidence, not gates.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ssa_theory"]


def sh(args: list[str], **kw) -> str:
    """Run a command; its stdout (stderr is passed through for progress)."""
    print("$", " ".join(args[2:] if args[:3] == CLI else args), file=sys.stderr, flush=True)
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT, **kw).stdout


def timed(args: list[str], env: dict | None = None, log: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak resident MiB of the largest process) of one command in a fresh process; its
    stderr goes to ``log`` when given."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "err = open(sys.argv[1], 'w') if sys.argv[1] else None; "
             "subprocess.run(sys.argv[2:], check=True, stdout=subprocess.DEVNULL, stderr=err); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = sh([sys.executable, "-c", probe, str(log or ""), *args], env={**os.environ, **(env or {})})
    wall, kib = out.split()
    return float(wall), float(kib) / 1024


def tables_in(text: str) -> list[str]:
    """Every Markdown table in a command's output, in order (runs of lines that start with '|')."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append("\n".join(current) + "\n")
            current = []
    return tables


def table_after(text: str) -> str:
    """The Markdown table in a command's output (header, rule and rows)."""
    return "\n".join(line for line in text.splitlines() if line.startswith("|")) + "\n"


def machine() -> str:
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"- machine: {cpu}, {os.cpu_count()} logical cores, {platform.platform()}\n"
            f"- python {platform.python_version()}, torch {torch.__version__} (CPU), measured {time.strftime('%Y-%m-%d')}\n")


def concurrent(args: list[str], n: int) -> float:
    """Wall time of n copies of a command started together."""
    start = time.perf_counter()
    procs = [subprocess.Popen(a, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in args[:n]]
    for p in procs:
        if p.wait():
            raise SystemExit(f"{args} failed")
    return time.perf_counter() - start


SECTIONS = ("attention", "module", "lengths", "hf", "seeds", "threads", "reproduce", "suite", "gpu")


def bench_tables(kind: str, threads: int) -> tuple[str, list[str], str]:
    """``bench KIND --threads T --repeats 7``: (its command line, its Markdown tables, its full output)."""
    text = sh([*CLI, "bench", kind, "--threads", str(threads), "--repeats", "7"])
    return f"`python -m ssa_theory bench {kind} --threads {threads} --repeats 7`", tables_in(text), text


def section_attention(args) -> str:
    out = ("\n## Attention variants against `F.scaled_dot_product_attention(..., is_causal=True)`\n\n"
           "Forward plus backward of causal self-attention at batch 8, 4 heads, length 1024, head width 64, "
           "float32, same projections; median of the per-round ratios, rounds interleaved. Targets: "
           "`vanilla` <= 1.02x, `ssa` (query and value temperature, both terms) <= 1.10x.\n")
    for threads in (1, 2):
        cmd, tables, _ = bench_tables("attention", threads)
        out += f"\n{cmd}:\n\n" + tables[0]
    return out


PROFILE = ("import sys; from ssa_theory import bench; from ssa_theory.rundir import markdown_table; import torch; "
           "torch.set_num_threads(1); sys.stdout.write(markdown_table(bench.profile('ssa')))")


def section_module(args) -> str:
    out = ("\n## The public module against nanoGPT's attention, and new parameters\n\n"
           "`ssa_theory.nn.SelectiveAttention` against nanoGPT's causal self-attention of the same shape (qkv "
           "`nn.Linear`, SDPA `is_causal=True`, output `nn.Linear`): forward plus backward at batch 8, 4 heads, "
           "length 1024, head width 64, float32, rounds interleaved, median ratio. Target: `ssa` <= 1.05x.\n")
    for threads in (1, 2):
        cmd, tables, text = bench_tables("module", threads)
        out += f"\n{cmd}:\n\n" + tables[0]
        if threads == 2:
            out += ("\nNew parameters per variant in a GPT-2-small-shaped layer (D 768, 12 heads; the paper says under "
                    "0.5%), from the same command:\n\n" + tables[1])
            flash = [line for line in text.splitlines() if line.startswith("flash kernel")]
            out += "\n" + (flash[0] if flash else "") + "\n"
    out += ("\nWhere `ssa`'s extra time goes (`ssa_theory.bench.profile`: torch.profiler's self time per operator, "
            "ms per forward-plus-backward step, one thread, the same shape, `ssa` against `vanilla`):\n\n"
            + sh([sys.executable, "-c", PROFILE]))
    return out


def section_lengths(args) -> str:
    cmd = "python -m ssa_theory bench lengths --threads 1 --repeats 5"
    text = sh([*CLI, "bench", "lengths", "--threads", "1", "--repeats", "5"])
    return ("\n## `ssa` by context length: the module and the ensemble layer\n\n"
            "`ssa` (query and value temperature, both terms) at batch 8, 4 heads, head width 64, float32, one thread, "
            "forward plus backward, rounds interleaved, median ratio: the public module against nanoGPT's attention, "
            "and the experiments' ensemble layer against the fused SDPA reference of `bench attention`. Target at "
            "length 1024: <= 1.05x for both; the temperature's O(L d) cost beside attention's O(L^2 d) should make "
            f"the ratios fall toward 1 as the length grows.\n\n`{cmd}`:\n\n" + tables_in(text)[0])


def section_hf(args) -> str:
    out = ("\n## Hugging Face models after `ssa_theory.hf.apply`\n\n"
           "A random-weight transformers decoder of each family (hidden 256, 4 layers, 4 heads, batch 4, length 512, "
           "float32; GPT-NeoX is Pythia's family) after `ssa_theory.hf.apply(model, VARIANT)` against the same model "
           "on its own attention (`sdpa`; Gemma 2: `eager`, its only path with the logit soft-cap): forward plus "
           "backward of the language-model loss, rounds interleaved, median ratio, one thread. Target: `ssa` "
           "<= 1.10x.\n")
    try:
        import transformers  # noqa: F401
    except ImportError:
        return out + "\nNot measured: transformers is not installed (the `hf` extra).\n"
    families = ["llama", "gpt_neox", "gemma", "gemma2", "phi3"]
    cmd = [*CLI, "bench", "hf", "--threads", "1", "--repeats", "5", "--families", *families]
    return (out + f"\n`python -m ssa_theory bench hf --threads 1 --repeats 5 --families {' '.join(families)}`:\n\n"
            + tables_in(sh(cmd))[0])


def section_seeds(args) -> str:
    out = ("\n## Seeds as a batch dimension: 16 batched seeds against 1\n\n"
           "Quick preset, one thread, 2 timed rounds after a warm-up. A Python loop over seeds would take "
           "about 16x.\n\n")
    rows: list[str] = []
    for name in ("graph_transition", "denoising", "norm_spikiness", "dilution"):
        lines = table_after(sh([*CLI, "bench", "seeds", name, "--seeds", "16", "--repeats", "2"])).splitlines()
        rows += lines[2:] if rows else lines
    return out + "\n".join(rows) + "\n\n(`python -m ssa_theory bench seeds NAME --seeds 16 --repeats 2`)\n"


def section_threads(args) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        run = lambda t, i: [*CLI, "run", "graph_transition", "--quick", "--quiet", "--force", "--threads", str(t),
                            # noqa: E731
                            "--out", f"{tmp}/t{t}-{i}"]
        alone = {t: timed(run(t, 0))[0] for t in (1, 2)}
        together = {t: concurrent([run(t, i) for i in range(2)], 2) for t in (1, 2)}
    return ("\n## CPU threads\n\n"
            f"`python -m ssa_theory run graph_transition --quick --force --threads T` on {os.cpu_count()} cores, "
            "one process alone and two processes at once (wall time of the pair). PyTorch's own default is one "
            "thread per core; ours is `--threads 1`, and the test suite and `.ci/run` use one thread per process.\n\n"
            "| threads per process | one process, s | two processes at once, s |\n|---|---|---|\n"
            + "".join(f"| {t} | {alone[t]:.1f} | {together[t]:.1f} |\n" for t in (1, 2)))

def task_times(log: Path) -> dict[str, float]:
    """Each task's wall time in seconds from a parallel reproduce's log: ``[k/N done] LABEL done in m:ss``."""
    times = {}
    for line in log.read_text().splitlines():
        if line.startswith("[") and " done in " in line:
            label, took = line.split("] ", 1)[1].split("; in flight", 1)[0].rsplit(" done in ", 1)
            parts = [int(x) for x in took.split(":")]
            times[label] = float(sum(v * 60 ** i for i, v in enumerate(reversed(parts))))
    return times


def section_reproduce(args) -> str:
    parts: list[str] = []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts.append("\n## `reproduce`: wall time, balance and peak memory, from scratch\n\n"
                 f"Every experiment at one PyTorch thread per process on this {cores}-core machine. `--jobs N` runs N "
                 "tasks at once, each in its own process, longest first: every experiment is a task, except those "
                 "collected from runs of their own, whose runs are tasks too (the ablation's cells, one per variant "
                 "and task; the models of dilution, norm_spikiness, passkey and flipflop, one per strategy), the "
                 "experiment then only collecting and measuring them. Targets: at `--jobs 2` a wall time within 1.15x of (the sum of every task's "
                 "single-core time) / 2, and at most 0.55x of the `--jobs 1` time; no task over 1/10 of the sum.\n\n"
                 "| command | wall time | peak memory | target | met |\n|---|---|---|---|---|\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        shutil.copy(ROOT / "paper_repro.md", root / "paper_repro.md")
        wall, mib = timed([*CLI, "reproduce", "--quick", "--quiet", "--out", f"{tmp}/runs", "--to", str(root)])
        parts.append(f"| `python -m ssa_theory reproduce --quick` | {wall:.0f} s | {mib:.0f} MiB | < 90 s | "
                     f"{'yes' if wall < 90 else 'no'} |\n")
        if args.skip_default:
            parts.append("| `python -m ssa_theory reproduce --jobs 2` | not measured in this run | | | |\n")
            return "".join(parts)
        log = Path(tmp) / "jobs2.log"
        runs2 = str(args.runs) if args.runs else f"{tmp}/runs2"
        two, mib2 = timed([*CLI, "reproduce", "--jobs", "2", "--out", runs2, "--to", str(root)], log=log)
        times = task_times(log)
        work = sum(times.values())
        longest = max(times, key=times.get)
        parts.append(f"| `python -m ssa_theory reproduce --jobs 2` | {two / 60:.1f} min | {mib2:.0f} MiB | | |\n")
        one = None
        if not args.skip_jobs1:
            one, mib1 = timed([*CLI, "reproduce", "--jobs", "1", "--quiet", "--out", f"{tmp}/runs1", "--to", str(root)])
            parts.append(f"| `python -m ssa_theory reproduce --jobs 1` | {one / 60:.1f} min | {mib1:.0f} MiB | | |\n")
        ratio_work = two / (work / 2)
        parts.append(f"\n- tasks: {len(times)}; the sum of their single-core times: {work / 60:.1f} min; half of it: "
                     f"{work / 120:.1f} min\n- `--jobs 2` wall time over half the sum: {ratio_work:.3f} (target <= 1.15: "
                     f"{'met' if ratio_work <= 1.15 else 'not met'})\n- the longest task: {longest}, "
                     f"{times[longest] / 60:.2f} min, {times[longest] / work:.3f} of the sum (target <= 0.1: "
                     f"{'met' if times[longest] <= 0.1 * work else 'not met'})\n")
        if one is not None:
            parts.append(f"- `--jobs 2` over `--jobs 1`: {two / one:.3f} (target <= 0.55: {'met' if two <= 0.55 * one else 'not met'})\n")
            same = all((Path(f"{tmp}/runs1") / p.relative_to(runs2)).read_bytes() == p.read_bytes()
                       for p in sorted(Path(runs2).glob("*/*/tables/*.csv")))
            parts.append(f"- the `--jobs 2` tables equal the `--jobs 1` tables byte for byte: {'yes' if same else 'NO'}\n")
        else:
            parts.append("- `--jobs 1`: not measured in this run (`--skip-jobs1`)\n")
        parts.append(task_table(times))
    return "".join(parts)


def task_table(times: dict[str, float]) -> str:
    """Each task's wall time within a reproduce run: the experiments' own tasks, then the runs they are
    collected from, summed per experiment."""
    experiments = {k: v for k, v in times.items() if " cell " not in k and " model " not in k}
    by_task: dict[str, list[float]] = {}
    for k, v in times.items():
        if " cell " in k:
            by_task.setdefault(f"ablation cells on {k.split('task=', 1)[1].split()[0]}", []).append(v)
        elif " model " in k:
            by_task.setdefault(f"{k.split(' model ', 1)[0]} models", []).append(v)
    mmss = lambda t: f"{int(t // 60)}:{int(t % 60):02d}"  # noqa: E731
    return ("\nEach task's wall time on one core within that run: an experiment's own task (for one collected "
            "from runs, the collection and its measures), and the runs it is collected from, by experiment "
            "(their sum is what `Preset.minutes` records, for scheduling only; the ablation's cells, what "
            "`Ablation.minutes` records):\n\n"
            "| task | wall time (m:ss) |\n|---|---|\n"
            + "".join(f"| {n} | {mmss(t)} |\n" for n, t in experiments.items())
            + "".join(f"| {t} ({len(v)}) | sum {mmss(sum(v))}, mean {sum(v) / len(v):.0f} s, longest "
                      f"{max(v):.0f} s |\n" for t, v in by_task.items()))


def section_suite(args) -> str:
    """The default test suite, run exactly as the README writes it, without any thread variable."""
    unset = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = [line for line in proc.stdout.splitlines() if " passed" in line or " failed" in line][-1:]
    return ("\n## The default test suite\n\n`python -m pytest`, as the README writes it (no thread variable set; "
            f"`-n auto` in pyproject.toml runs one test process per core): {wall:.0f} s, exit code {proc.returncode}; "
            f"{summary[0].strip('= ') if summary else 'no summary line'}. Target: at most 180 s on the 2-core machine.\n")


def section_gpu(args) -> str:
    parts: list[str] = []
    import torch

    parts.append("\n## GPU\n\n")
    if torch.cuda.is_available():
        cmd = [*CLI, "bench", "attention", "--device", "cuda", "--repeats", "20"]
        parts.append(f"`python -m ssa_theory bench attention --device cuda --repeats 20` on {torch.cuda.get_device_name()}:\n\n"
                     + table_after(sh(cmd)))
        text = sh([*CLI, "bench", "module", "--device", "cuda", "--repeats", "20"])
        tables = tables_in(text)
        flash = [line for line in text.splitlines() if line.startswith("flash kernel")]
        parts.append("\n`python -m ssa_theory bench module --device cuda --repeats 20`:\n\n" + tables[0]
                     + "\n" + (flash[0] if flash else "") + "\n")
        with tempfile.TemporaryDirectory() as tmp:
            wall, mib = timed([*CLI, "reproduce", "--quick", "--quiet", "--device", "cuda", "--out", f"{tmp}/runs",
                               "--to", tmp])
        parts.append(f"\n`python -m ssa_theory reproduce --quick --device cuda`: {wall:.0f} s, peak host memory {mib:.0f} MiB\n")
    else:
        parts.append("No CUDA device on this machine: the GPU rows were not measured in this run.\n")
    return "".join(parts)


def _split(text: str) -> dict[str, str]:
    """The sections of an existing RESULTS.md, by the markers this script writes around each."""
    out = {}
    for name in SECTIONS:
        start, end = f"<!-- section: {name} -->\n", f"<!-- end section: {name} -->\n"
        if start in text and end in text:
            out[name] = text.split(start, 1)[1].split(end, 1)[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-default", action="store_true", help="skip the default reproduce from scratch")
    parser.add_argument("--skip-jobs1", action="store_true",
                        help="skip the default reproduce at --jobs 1 (over an hour here)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--runs", type=Path, default=None,
                        help="a fresh folder for the --jobs 2 runs from scratch (kept; default: a temporary one)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None,
                        help="measure only these sections and keep the others of --out as they are (each section "
                        "says when it was measured)")
    args = parser.parse_args()
    old = _split(args.out.read_text()) if args.only and args.out.is_file() else {}
    parts = ["# Benchmarks\n\n", "Written by `python benchmarks/run_all.py`; every number below comes from that script, "
             "each section from one run of it on the machine named in the section.\n"]
    for name in SECTIONS:
        if args.only and name not in args.only and name in old:
            text = old[name]
        else:
            text = f"\n{machine()}" + globals()[f"section_{name}"](args)
        parts.append(f"<!-- section: {name} -->\n{text}<!-- end section: {name} -->\n")
    args.out.write_text("".join(parts))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
