"""The paper's language-model experiment in miniature: SSA put into a Hugging Face Llama, fine-tuned on
passkey retrieval, and read from 1x to 32x the training length beside vanilla attention.

    python examples/hf_passkey_finetune.py                        # a small random Llama, a few minutes on a CPU
    python examples/hf_passkey_finetune.py --strategy log_n
    python examples/hf_passkey_finetune.py --model DIR --device cuda --steps 2000   # a local pretrained checkpoint

The data is ``ssa_theory``'s passkey task as token ids (no tokenizer): filler tokens, a KEY marker and
``--digits`` digit tokens at a random depth, then a QUERY marker and the digits again; the loss is the
cross-entropy of the answer digits only. Training lengths are drawn from ``n_min..n_max``; exact match
(every answer digit right under teacher forcing, which is greedy decoding's answer) is read at
``n_max`` times 1, 2, 4, 8, 16 and 32, with a Wilson 95% interval over the contexts.

Each strategy starts from the same model (the same random or pretrained weights) and sees the same
batches. With ``--model DIR``, the task's token ids (0 .. 20) are the checkpoint's own first ids:
the model learns the task from its weights, not from any text. What it shows and what it does not is
in the README ("Use it in a Hugging Face model").
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import time
from pathlib import Path

import torch
from scipy import stats

from ssa_theory import hf
from ssa_theory.experiments.passkey import PasskeyConfig, sequences
from ssa_theory.seeding import derive_seed, step_lengths


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="ssa", help="the strategy beside vanilla (default ssa)")
    p.add_argument("--model", type=Path, help="a local pretrained checkpoint (default: a small random Llama)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-min", type=int, default=16)
    p.add_argument("--n-max", type=int, default=64)
    p.add_argument("--digits", type=int, default=1)
    p.add_argument("--n-eval", type=int, default=64, help="contexts per length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--neutral", action="store_true",
                   help="start every new parameter at its neutral value (the model's own outputs; SSA's position "
                        "term then gets no gradient); default: where nn.SelectiveAttention starts them")
    p.add_argument("--out", type=Path, default=Path("runs/hf_passkey/result.csv"))
    p.add_argument("--smoke", action="store_true", help="a smoke test in seconds (a test runs it)")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.batch_size, args.n_min, args.n_max, args.n_eval = 20, 8, 12, 16, 8
    return args


def base_model(args, task: PasskeyConfig):
    from transformers import AutoModelForCausalLM, LlamaConfig

    if args.model is not None:
        model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="sdpa")
        if model.config.vocab_size < task.vocab:
            raise SystemExit(f"{args.model}: a vocabulary of {model.config.vocab_size} ids cannot hold the task's {task.vocab}")
        return model
    width = 32 if args.smoke else 64
    config = LlamaConfig(vocab_size=task.vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32 * args.n_max,
                         attention_dropout=0.0)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(args.seed, "init"))
        return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def batch(task: PasskeyConfig, g: torch.Generator, count: int, n: int, d: int, device):
    """Token ids (count, n) and labels: the answer digits, -100 elsewhere (transformers shifts them)."""
    tokens, _ = sequences(task, g, count, n, d)
    labels = torch.full_like(tokens, -100)
    labels[:, n - d:] = tokens[:, n - d:]
    return tokens.to(device), labels.to(device)


def train(model, task: PasskeyConfig, args) -> float:
    """Fine-tune on lengths n_min..n_max (the same schedule and batches for every strategy); the last loss."""
    g = torch.Generator().manual_seed(derive_seed(args.seed, "data"))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    lengths = step_lengths(args.seed, args.n_min, args.n_max, args.steps)
    model.train()
    for step, n in enumerate(lengths):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))  # cosine decay
        for group in opt.param_groups:
            group["lr"] = lr
        ids, labels = batch(task, g, args.batch_size, n, args.digits, args.device)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


@torch.no_grad()
def exact_match(model, task: PasskeyConfig, n: int, args) -> tuple[int, int]:
    """(contexts whose every answer digit is the argmax, contexts) at length n."""
    model.eval()
    g = torch.Generator().manual_seed(derive_seed(args.seed, "eval") + n)
    right = 0
    for start in range(0, args.n_eval, 16):
        count = min(16, args.n_eval - start)
        ids, _ = batch(task, g, count, n, args.digits, args.device)
        d = args.digits
        guess = model(input_ids=ids).logits[:, n - d - 1:n - 1].argmax(-1)  # position t predicts token t + 1
        right += int((guess == ids[:, n - d:]).all(-1).sum())
    return right, args.n_eval


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return ci.low, ci.high


def main() -> None:
    args = arguments()
    task = PasskeyConfig(digits=(args.digits,), n_min=max(args.n_min, 2 * args.digits + 3), n_max=args.n_max,
                         eval_lengths=(args.n_max,), decoys=0)  # the plain passkey: no decoy blocks
    base = base_model(args, task).to(args.device)
    ratios = (1, 2) if args.smoke else (1, 2, 4, 8, 16, 32)
    rows = []
    for strategy in dict.fromkeys(("vanilla", args.strategy)):
        model = copy.deepcopy(base)
        hf.apply(model, strategy, **({} if strategy == "vanilla" else {"neutral": args.neutral}))
        start = time.perf_counter()
        loss = train(model, task, args)
        print(f"{strategy}: {args.steps} steps in {time.perf_counter() - start:.0f} s, final loss {loss:.4f}", flush=True)
        for r in ratios:
            k, total = exact_match(model, task, r * args.n_max, args)
            lo, hi = wilson(k, total)
            rows.append({"strategy": strategy, "length": r * args.n_max, "times_train": r, "correct": k,
                         "contexts": total, "ci_lo": lo, "ci_hi": hi, "exact_match": k / total})
    print(f"\nexact match ({args.digits}-digit passkey, trained on n = {args.n_min}..{args.n_max}; 95% Wilson interval):")
    print(f"{'length':>8} " + " ".join(f"{s:>24}" for s in dict.fromkeys(r['strategy'] for r in rows)))
    for r in ratios:
        cells = [f"{x['exact_match']:.3f} [{x['ci_lo']:.2f}, {x['ci_hi']:.2f}]" for x in rows if x["times_train"] == r]
        print(f"{r * args.n_max:>8} " + " ".join(f"{c:>24}" for c in cells))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
