"""Command line: ``python -m ssa_theory`` or ``ssa-theory``.

Every usage error (unknown experiment, unknown or ill-typed ``--set`` key, impossible or
non-finite value, unwritable ``--out``, missing CUDA) is one line on stderr and exit code 2, with
nothing written. A run whose model diverges (``ssa_theory.train``) is one line and exit code 1,
with nothing saved.

Threads: every computing command sets PyTorch's CPU threads to ``--threads`` (default 1). These
models are small, so extra threads buy little, while several processes sharing a few cores with
PyTorch's default (one thread per core each) can run 10-20x slower; and the thread count changes
the last bits of CPU results, so it is part of a run's hash.

Each verb is one module of this package with ``add(subparsers, epilog)`` (its options) and the
function it sets as the parser's ``execute`` default (its work), in the layout of
lm-evaluation-harness's ``_cli/``; ``_common`` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ssa_theory import __version__
from ssa_theory.cli import bench, card, listing, reproduce, run, show_config, sweep
from ssa_theory.cli._common import PROG, Parser
from ssa_theory.config import UsageError
from ssa_theory.train import Diverged

EXAMPLES = f"""\
examples:
  {PROG} list                                     what can be run, and which paper claim each checks
  {PROG} list --strategies                        every temperature strategy (built-in or plug-in) and its source
  {PROG} run graph_transition --quick             a smoke run in seconds
  {PROG} run graph_transition                     the default preset (what paper_repro.md reports)
  {PROG} run graph_transition --seeds 8 --set n_nodes=24 --set max_degree=7
  {PROG} run denoising --set p_noisy=0.5 --set sweep_sigma=2,10
  {PROG} run norm_spikiness --set ssa_variant=ssa_q_tok --set sweep_weight_decay=
  {PROG} config graph_transition --quick          the resolved config, with types
  {PROG} export graph_transition                  run (or reuse) and copy tables/figures into experiments/ and figures/
  {PROG} reproduce                                every experiment, committed tables, figures and paper_repro.md
  {PROG} reproduce --quick                        the same as a smoke test, into runs/reproduce-quick/
  {PROG} sweep graph_transition --grid smoothing=0.02,0.05,0.1 --seeds 2 --quick --executor dask --workers 2
  {PROG} collect runs/sweeps/graph_transition-HASH  tidy tables and a figure of a sweep
  {PROG} card ssa_q_pos --quick                   one strategy's report card: every ablation task, beside vanilla, global, ssa
  {PROG} bench attention                          every attention variant against the fused SDPA kernel
  {PROG} bench module                             the public SelectiveAttention against nanoGPT's attention
  {PROG} bench seeds graph_transition --seeds 16  time 16 batched seeds against 1

Runs go to runs/NAME/<hash of the resolved config>/ (config.json, env.json, metrics.json,
tables/, figures/, done). A finished run is reused unless --force.
"""



VERBS = (listing, run, reproduce, sweep, card, show_config, bench)  # the order ``--help`` lists them in


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Controlled experiments on attention temperature and contextual sparsity "
                    "(Selective Attention, Zhang et al., NeurIPS 2024).", epilog=EXAMPLES,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for verb in VERBS:
        verb.add(sub, examples_of(verb))
    return parser


# the commands each verb module adds (its --help shows only their examples)
COMMANDS = {listing: ("list",), run: ("run", "export"), reproduce: ("reproduce",), sweep: ("sweep", "collect"),
            card: ("card",), show_config: ("config",), bench: ("bench",)}


def examples_of(verb) -> str:
    """The examples of ``EXAMPLES`` that use one of ``verb``'s commands, and the closing note on runs."""
    lines = EXAMPLES.strip("\n").splitlines()
    mine = [ln for ln in lines if any(ln.strip().startswith(f"{PROG} {c} ") or ln.strip() == f"{PROG} {c}"
                                      for c in COMMANDS[verb])]
    return "examples:\n" + "\n".join(mine) + "\n\n" + EXAMPLES.strip("\n").split("\n\n")[-1] + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        rc = args.execute(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"{PROG}: error: {e}; nothing was saved (a smaller --set lr=... usually helps)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no run directory was left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stdout = open(os.devnull, "w")
        return 0
    return rc if isinstance(rc, int) else 0
