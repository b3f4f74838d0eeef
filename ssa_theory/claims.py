"""The paper's claims as data: each experiment turns its exported results into ``Claim`` rows.

A claim row puts what the paper says beside our headline number, its 95% CI over seeds and a
verdict computed by a stated rule from the saved results, never typed by hand. ``reproduce``
prints these rows, and ``paper_repro.md`` opens with the same table (``ssa_theory.report``).

Every rule states its smallest effect before the data: a comparison is "reproduced" only when it is
both clear (the 95% CI excludes no effect) and at least that large (the point estimate). The
helpers below are the two forms every rule uses: ``smaller`` for a ratio of positive measures,
``larger`` for a difference; ``decide`` turns a rule's outcome into a verdict, and says
``ONE_SEED`` where one seed leaves no interval to judge by. ``tests/test_claims.py`` checks that
every rule says "not reproduced" on data of its control kind (no effect) and ``ONE_SEED`` on one seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ssa_theory.stats import interval, mean_ci, ratio_ci


@dataclass(frozen=True)
class Claim:
    """One paper claim beside our measurement.

    ``value`` [``lo``, ``hi``] is the headline number and its 95% CI (NaN with one seed);
    ``verdict`` comes from the experiment's rule (its ``claims`` function documents it); ``placebo`` is
    that rule's verdict on the placebo, which must not be "reproduced": a rule that passes its placebo
    is a defect of the rule, and where it does, a "reproduced" verdict becomes ``PLACEBO_PASSED``.
    """

    id: str
    experiment: str
    paper: str
    measure: str
    value: float
    lo: float
    hi: float
    verdict: str
    placebo: str = ""  # the same rule on a vanilla twin (another initialisation) against vanilla; "" not run
    # the rule's empirical false-positive rate and its power at the declared effect, in words (``Calibration``)
    calibration: str = ""
    # the same question against the strongest simple alternative: a learned global temperature (or value
    # gain) of matched range in vanilla's place; "" where the experiment has none
    against_global: str = ""
    # the rule on the scrambled mechanism (ssa_theory.scramble) in SSA's place, against vanilla and against
    # the global temperature; "" not run
    scrambled: str = ""
    scrambled_global: str = ""
    # the mechanism: how much SSA's temperature varies across tokens or positions (``spread_words``)
    spread: str = ""

    def __post_init__(self) -> None:
        if self.placebo.startswith("reproduced") and self.verdict.startswith("reproduced"):
            # a rule that passes its placebo cannot pass the claim: the verdict says so, not the rule's word
            object.__setattr__(self, "verdict", PLACEBO_PASSED)
        # the scrambled mechanism passing says that the gain needs no selectivity: against vanilla the outcome
        # stands as a temperature's; against the global temperature the rule cannot tell selectivity apart
        if self.scrambled.startswith("reproduced") and self.verdict.startswith("reproduced"):
            object.__setattr__(self, "verdict", self.verdict + SCRAMBLED_TOO)
        if self.scrambled_global.startswith("reproduced") and self.against_global.startswith("reproduced"):
            object.__setattr__(self, "against_global", SCRAMBLED_PASSED)

    def scrambled_words(self) -> str:
        """The scrambled twin's two verdicts in one cell; "" where it was not run."""
        if not self.scrambled_global:
            return self.scrambled
        return f"vs vanilla: {self.scrambled}; vs global: {self.scrambled_global}"

    def interval(self) -> str:
        """The headline and its interval in words; never an infinite bound printed as evidence."""
        if not math.isfinite(self.value):
            return "— (no estimate: the event was not reached)"
        if math.isnan(self.lo) or math.isnan(self.hi):
            return f"{self.value:.4g} (— no interval: one seed or no spread)"
        if math.isinf(self.lo) or math.isinf(self.hi):
            return f"{self.value:.4g} (— interval unbounded: too few seeds reached the event)"
        return f"{self.value:.4g} [{self.lo:.4g}, {self.hi:.4g}]"


DETERMINISTIC = "cannot fail (deterministic optimum)"
DETERMINISTIC_TOL = 1e-3  # a twin within this relative difference of vanilla on every seed reached its optimum


def twin_reading(verdict: str, twin: Sequence[float], vanilla: Sequence[float]) -> str:
    """The placebo twin's verdict, or ``DETERMINISTIC`` where the twin agrees with vanilla on every seed
    within ``DETERMINISTIC_TOL`` (relative): training reached the same optimum from either draw, so the
    twin samples no noise and its "not reproduced" is no evidence."""
    a, b = np.asarray(twin, dtype=float), np.asarray(vanilla, dtype=float)
    if a.size and np.all(np.abs(a - b) <= DETERMINISTIC_TOL * np.maximum(np.abs(a), np.abs(b))):
        return DETERMINISTIC
    return verdict


MIN_SPREAD = 0.05  # below this coefficient of variation of tau across tokens, SSA acted as one global temperature


def spread_words(cv: Sequence[float], what: str = "tau across tokens") -> str:
    """The mechanism in words: the coefficient of variation of SSA's tau over the tokens (or positions)
    of an evaluation batch, the mean over seeds and its range; below ``MIN_SPREAD`` the words say that
    SSA acted as a global temperature."""
    cv = np.asarray(cv, dtype=float)
    cv = cv[np.isfinite(cv)]
    if not cv.size:
        return ""
    words = f"CV of {what} {cv.mean():.3g} (seeds {cv.min():.3g} to {cv.max():.3g})"
    return words + ("; nearly constant: SSA acted as a global temperature" if cv.mean() < MIN_SPREAD else "")


def coefficient_of_variation(tau) -> np.ndarray:
    """Per member: std / mean of tau (E, ...) over everything after the member axis."""
    t = np.asarray(tau, dtype=float).reshape(len(tau), -1)
    return t.std(1) / np.abs(t.mean(1))


def paired(a: Sequence[float], b: Sequence[float], bounded: bool = False) -> tuple[float, float, float]:
    """Mean and 95% CI of the per-seed differences ``a - b`` (models trained on the same seeds): a
    t-interval, or a bootstrap one for a difference of measures with a range (``bounded``)."""
    return interval("difference", np.asarray(a, dtype=float) - np.asarray(b, dtype=float), bounded)


ONE_SEED = "inconclusive (one seed)"
PLACEBO_PASSED = "inconclusive: the rule says 'reproduced' on its placebo too"
SCRAMBLED_TOO = " (as a temperature: the scrambled mechanism passes too)"
SCRAMBLED_PASSED = "inconclusive: the scrambled mechanism passes too (no selectivity needed)"


@dataclass(frozen=True)
class Effect:
    """A rule's comparison: ``value`` [``lo``, ``hi``] and whether it is clear and at least the declared
    size (``ok``; False where there is no interval)."""

    value: float
    lo: float
    hi: float
    ok: bool
    n: int  # seeds

    @property
    def ci(self) -> tuple[float, float, float]:
        return self.value, self.lo, self.hi


def smaller(a: Sequence[float], b: Sequence[float], by: float) -> Effect:
    """``a`` below ``b`` by at least the fraction ``by``, per seed: the geometric mean of ``a / b`` and
    its t-interval on log ratios (``stats.ratio_ci``); ``ok`` when the interval lies below 1 and the
    ratio is at most ``1 - by``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    m, lo, hi = ratio_ci(a / b)
    return Effect(m, lo, hi, bool(not math.isnan(hi) and hi < 1 and m <= 1 - by), a.size)


def larger(a: Sequence[float], b: Sequence[float], by: float, bounded: bool = False) -> Effect:
    """``a`` above ``b`` by at least ``by``, paired by seed: the mean difference and its 95% interval (a
    bootstrap one for a measure with a range, ``bounded``); ``ok`` when the interval lies above 0 and
    the difference is at least ``by``."""
    m, lo, hi = paired(a, b, bounded)
    return Effect(m, lo, hi, bool(not math.isnan(lo) and lo > 0 and m >= by), len(a))


def decide(ok: bool, n_seeds: int, yes: str = "reproduced", no: str = "not reproduced") -> str:
    """The verdict of a rule whose outcome is ``ok``; ``ONE_SEED`` with fewer than two seeds."""
    return ONE_SEED if n_seeds < 2 else (yes if ok else no)


def clearly_above(x: Sequence[float] | np.ndarray, by: float) -> bool:
    """The test of a paired rule on per-seed differences ``x`` (log ratios for a ratio): their mean at
    least ``by`` and its t-interval above 0; False with one seed. For "below by", pass ``-x``."""
    m, lo, _ = mean_ci(np.asarray(x, dtype=float))
    return bool(not math.isnan(lo) and lo > 0 and m >= by)


class Above:
    """``clearly_above(sign * x, by)`` as an object: the same test, which ``calibrate`` can also apply to
    every resample at once (``many``: (draws, seeds) -> (draws,) booleans), the same arithmetic row by row."""

    def __init__(self, by: float, sign: float = 1.0) -> None:
        self.by, self.sign = by, sign

    def __call__(self, x) -> bool:
        return clearly_above(self.sign * np.asarray(x, dtype=float), self.by)

    def many(self, samples: np.ndarray) -> np.ndarray:
        from scipy.special import stdtrit

        x = self.sign * np.asarray(samples, dtype=float)
        n = x.shape[1]
        if n < 2:
            return np.zeros(x.shape[0], dtype=bool)
        m = x.mean(1)
        lo = m - stdtrit(n - 1, 0.975) * x.std(1, ddof=1) / math.sqrt(n)
        return (lo > 0) & (m >= self.by)


MIN_POWER = 0.5  # below this power at its declared effect a rule's verdict reads "not testable (power N%)"
N_DRAWS = 2000  # resamples behind a calibration (its own Monte Carlo interval is printed)


@dataclass(frozen=True)
class Calibration:
    """A rule's false-positive rate and power, estimated by resampling the committed per-seed noise.

    ``noise`` is a (seeds,) sample of the rule's per-seed statistic under no effect (for example the
    placebo twin's per-seed difference from vanilla: the same estimator, real seed-to-seed noise).
    Each draw resamples the seeds with replacement, centres them (no effect) and applies the rule; for
    power the effect is added first. ``fpr`` and ``power`` are the shares of draws the rule calls
    "reproduced", each with its exact binomial interval over the draws (Monte Carlo error only; the
    seeds are the rest of the uncertainty). ``how`` says where the noise came from."""

    fpr: float
    fpr_lo: float
    fpr_hi: float
    power: float
    power_lo: float
    power_hi: float
    draws: int
    how: str

    def testable(self) -> bool:
        return self.power >= MIN_POWER

    def words(self) -> str:
        return (f"FPR {self.fpr:.1%} [{self.fpr_lo:.1%}, {self.fpr_hi:.1%}], power {self.power:.0%} at the declared "
                f"effect ({self.how}, {self.draws} draws)")


def calibrate(noise, passes, effect: float, how: str, draws: int = N_DRAWS, seed: int = 0) -> Calibration | None:
    """``Calibration`` of a rule on per-seed statistics: ``passes(sample) -> bool`` is the rule on one
    (seeds,) sample of per-seed differences (log ratios for a ratio rule), ``effect`` the declared
    smallest effect on that scale (signed: the direction that counts as "reproduced"). None with
    fewer than two seeds of noise."""
    from ssa_theory.stats import binomial_ci

    x = np.asarray(noise, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    centred = x - x.mean()
    idx = rng.integers(0, x.size, (draws, x.size))
    if isinstance(passes, Above):  # every resample at once
        false, true = int(passes.many(centred[idx]).sum()), int(passes.many(centred[idx] + effect).sum())
    else:
        false = sum(bool(passes(centred[i])) for i in idx)
        true = sum(bool(passes(centred[i] + effect)) for i in idx)
    f, flo, fhi = binomial_ci(false, draws)
    p, plo, phi = binomial_ci(true, draws)
    return Calibration(f, flo, fhi, p, plo, phi, draws, how)


def ratio_calibration(a: Sequence[float], b: Sequence[float], by: float, how: str) -> Calibration | None:
    """``calibrate`` for a "``a`` below ``b`` by at least ``by``" rule (``smaller``): the noise is the
    rule's own per-seed log ratios (centred by ``calibrate``: a seed-resampling null of the committed
    runs), the declared effect twice the threshold, ``log(1 - 2 by)``."""
    x = np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float))
    return calibrate(x, Above(-math.log(1 - by), sign=-1.0), math.log(1 - 2 * by), how)


def null_runs(null: Sequence[float] | Mapping, seeds: int, passes, paired: bool = True) -> tuple[int, int]:
    """A rule's false positives over null runs (``skeleton.null_seeds``): run r reads the vanilla models of
    seeds ``[2 r S, 2 r S + S)`` in the claimed model's place against those of ``[2 r S + S, 2 (r + 1) S)``;
    ``passes(a, b)`` is the rule on one pair of (S,) groups (or of dicts of them). A rule on one group
    (``paired=False``: ``passes(a)``, e.g. a slope against permuted degrees) reads every group of S seeds
    as a run. (passes, runs)."""
    def group(lo: int):
        if isinstance(null, Mapping):
            return {k: np.asarray(v, dtype=float)[lo:lo + seeds] for k, v in null.items()}
        return np.asarray(null, dtype=float)[lo:lo + seeds]

    n = len(next(iter(null.values()))) if isinstance(null, Mapping) else len(null)
    if not paired:
        runs = n // seeds
        return sum(bool(passes(group(r * seeds))) for r in range(runs)), runs
    runs = n // (2 * seeds)
    hits = sum(bool(passes(group(2 * r * seeds), group(2 * r * seeds + seeds))) for r in range(runs))
    return hits, runs


def with_null_runs(power: Calibration | None, hits: int, runs: int, how: str) -> Calibration | None:
    """The false-positive rate from trained null runs (``null_runs``), with its exact binomial interval,
    beside the power at the declared effect from ``power`` (a seed-resampling ``Calibration``)."""
    from ssa_theory.stats import binomial_ci

    if power is None or runs < 1:
        return power
    f, lo, hi = binomial_ci(hits, runs)
    return Calibration(f, lo, hi, power.power, power.power_lo, power.power_hi, power.draws,
                       f"FPR: {hits}/{runs} {how}; power: {power.how}")


def gated(verdict: str, cal: Calibration | None) -> str:
    """A verdict read through its rule's power: "not testable (power N%)" where the power at the
    declared effect is below ``MIN_POWER`` and the rule did not pass; the verdict itself otherwise. A
    clear effect the other way (a rule's "not reproduced: REASON") stays in the words: low power to see
    the claimed effect does not hide a measured opposite one."""
    if cal is None or cal.testable() or verdict.startswith(("reproduced", "inconclusive", "not testable")):
        return verdict
    _, sep, reason = verdict.partition("not reproduced: ")
    return f"not testable (power {cal.power:.0%})" + (f"; {reason}" if sep and reason else "")
