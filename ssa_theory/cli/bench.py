"""``bench``: attention variants against SDPA, the public module against nanoGPT's, batched seeds against one."""

from __future__ import annotations

import argparse

from ssa_theory.cli._common import FORMAT, compute, compute_options, count, experiment_options, member_seeds, resolve
from ssa_theory.config import UsageError


def _shape_options(p: argparse.ArgumentParser, variants: list[str] | None) -> None:
    """The attention benchmarks' shape, variants, rounds, device and threads."""
    for flag, default in (("--batch", 8), ("--heads", 4), ("--length", 1024), ("--d-head", 64)):
        p.add_argument(flag, type=count, default=default)
    p.add_argument("--variants", nargs="+", default=variants, metavar="NAME",
                   help=f"default: {' '.join(variants) if variants else 'every variant'}")
    p.add_argument("--repeats", type=count, default=5, help="timed rounds (default: 5)")
    compute_options(p)


def add(sub, epilog: str) -> None:
    p = sub.add_parser("bench", help="benchmarks: attention variants against SDPA; batched seeds against one",
                       epilog=epilog, formatter_class=FORMAT)
    bench = p.add_subparsers(dest="bench", metavar="WHAT", parser_class=type(p))
    bench.required = True
    b = bench.add_parser("attention", help="every attention variant against F.scaled_dot_product_attention",
                         description="Forward plus backward of causal self-attention: every named variant against a "
                         "reference layer on F.scaled_dot_product_attention(is_causal=True) with the same projections, "
                         "interleaved, median ratio.", epilog=epilog, formatter_class=FORMAT)
    _shape_options(b, variants=None)
    b = bench.add_parser("module", help="ssa_theory.nn.SelectiveAttention against a nanoGPT-style attention module",
                         description="Forward plus backward of the public (B, L, D) module of each variant against "
                         "nanoGPT's causal self-attention of the same shape (qkv nn.Linear, SDPA is_causal=True, output "
                         "nn.Linear), interleaved, median ratio; and the new parameters of each variant in a "
                         "GPT-2-small-shaped layer (D 768, 12 heads).", epilog=epilog, formatter_class=FORMAT)
    _shape_options(b, variants=["vanilla", "ssa"])
    b = bench.add_parser("lengths", help="ssa's module and ensemble-layer ratios at lengths 256, 1024 and 4096",
                         description="The public module against nanoGPT's attention and the ensemble layer against the "
                         "fused SDPA reference, forward plus backward, at each length, side by side.",
                         epilog=epilog, formatter_class=FORMAT)
    for flag, default in (("--batch", 8), ("--heads", 4), ("--d-head", 64)):
        b.add_argument(flag, type=count, default=default)
    b.add_argument("--lengths", nargs="+", type=count, default=[256, 1024, 4096], metavar="L")
    b.add_argument("--variant", default="ssa", metavar="NAME", help="default: ssa")
    b.add_argument("--repeats", type=count, default=3, help="timed rounds per length (default: 3)")
    compute_options(b)
    b = bench.add_parser("hf", help="a Hugging Face Llama after ssa_theory.hf.apply against its own sdpa path",
                         description="Forward plus backward of a tiny transformers Llama (hidden 256, 4 layers, batch 4, "
                         "length 512 by default) after ssa_theory.hf.apply(model, VARIANT) against the same model on "
                         "transformers' sdpa attention, interleaved, median ratio (needs the [hf] extra).",
                         epilog=epilog, formatter_class=FORMAT)
    for flag, default in (("--hidden", 256), ("--layers", 4), ("--heads", 4), ("--length", 512), ("--batch", 4)):
        b.add_argument(flag, type=count, default=default)
    b.add_argument("--variants", nargs="+", default=["vanilla", "ssa"], metavar="NAME", help="default: vanilla ssa")
    b.add_argument("--families", nargs="+", default=["llama"], metavar="FAMILY",
                   help="default: llama; also gpt_neox (Pythia's), gemma, gemma2, phi3")
    b.add_argument("--repeats", type=count, default=5, help="timed rounds (default: 5)")
    compute_options(b)
    b = bench.add_parser("seeds", help="time N batched seeds against 1, side by side",
                         description="Time the experiment's training with 1 seed and with N seeds, interleaved, "
                         "and report the median ratio. Defaults to the quick preset.", epilog=epilog, formatter_class=FORMAT)
    experiment_options(b)
    b.add_argument("--repeats", type=count, default=3, help="timed repetitions of each (default: 3)")
    p.set_defaults(execute=execute)


def _check_variants(names) -> None:
    """Every name a variant, else a one-line usage error naming the closest."""
    from ssa_theory.variants import get_variant

    for name in names:
        try:
            get_variant(name)
        except ValueError as e:
            raise UsageError(str(e)) from None


def execute(args: argparse.Namespace) -> None:
    import pandas as pd

    from ssa_theory import bench
    from ssa_theory.rundir import markdown_table

    if args.bench == "lengths":
        _check_variants([args.variant])
        device = compute(args)
        print(f"bench lengths: {args.variant}, batch {args.batch}, heads {args.heads}, d_head {args.d_head}, causal, "
              f"forward+backward, device {device}, {args.threads} thread(s), {args.repeats} rounds per length", flush=True)
        df = bench.lengths(lengths=tuple(args.lengths), batch=args.batch, heads=args.heads, d_head=args.d_head,
                           repeats=args.repeats, variant=args.variant, device=device)
        print(markdown_table(df), end="")
        return
    if args.bench in ("attention", "module", "hf"):
        _check_variants(args.variants or [])
        device = compute(args)
        if args.bench == "hf":
            try:
                import transformers  # noqa: F401
            except ImportError:
                raise UsageError("bench hf needs transformers: python -m pip install 'ssa_theory[hf]'") from None
            if args.hidden % args.heads:
                raise UsageError(f"--hidden {args.hidden} is not divisible by --heads {args.heads}")
            unknown = sorted(set(args.families) - set(bench.HF_FAMILIES))
            if unknown:
                raise UsageError(f"--families: no benchmark model for {unknown[0]!r}; choose from "
                                 f"{', '.join(bench.HF_FAMILIES)}")
            print(f"bench hf: transformers {', '.join(args.families)} (hidden {args.hidden}, {args.layers} layers, "
                  f"{args.heads} heads) after ssa_theory.hf.apply vs its own attention, batch {args.batch}, "
                  f"length {args.length}, forward+backward, "
                  f"device {device}, {args.threads} thread(s), {args.repeats} rounds", flush=True)
            df = bench.hf_model(hidden=args.hidden, layers=args.layers, heads=args.heads, length=args.length,
                                batch=args.batch, repeats=args.repeats, variants=args.variants, device=device,
                                families=args.families)
            print(markdown_table(df), end="")
            return
        if args.bench == "module":
            from ssa_theory.nn import parameter_counts

            print(f"bench module: SelectiveAttention vs nanoGPT's attention, batch {args.batch}, heads {args.heads}, "
                  f"length {args.length}, d_head {args.d_head}, causal, forward+backward, device {device}, "
                  f"{args.threads} thread(s), {args.repeats} rounds", flush=True)
            df = bench.module(batch=args.batch, heads=args.heads, length=args.length, d_head=args.d_head,
                              repeats=args.repeats, variants=args.variants, device=device)
            print(markdown_table(df), end="")
            print("\nnew parameters per variant in a GPT-2-small-shaped layer (D 768, 12 heads; the paper: under 0.5%):\n")
            from ssa_theory.variants import all_variants

            print(markdown_table(pd.DataFrame(parameter_counts(all_variants()))), end="")
            print(f"\nflash kernel on the plain causal path: {bench.flash_without_mask(device)}")
            return
        print(f"bench attention: batch {args.batch}, heads {args.heads}, length {args.length}, d_head {args.d_head}, "
              f"causal, forward+backward, device {device}, {args.threads} thread(s), {args.repeats} rounds", flush=True)
        df = bench.attention(batch=args.batch, heads=args.heads, length=args.length, d_head=args.d_head,
                             repeats=args.repeats, variants=args.variants, device=device)
        print(markdown_table(df), end="")
        return
    experiment, preset_name, preset, config = resolve(args, default_preset="quick")
    device = compute(args)
    n = len(member_seeds(args.seed, args.seeds or 8))
    print(f"bench seeds {experiment.name}, preset {preset_name}, device {device}, {args.threads} thread(s): "
          f"1 seed vs {n} seeds, {args.repeats} interleaved repeats", flush=True)
    df = bench.seeds(experiment, config, n_seeds=n, repeats=args.repeats, device=device, seed=args.seed)
    print(markdown_table(df), end="")
    print(f"\nratio {n} seeds / 1 seed: {df.ratio_to_1.iloc[-1]:.2f} (a Python loop over seeds would be about {n})")
