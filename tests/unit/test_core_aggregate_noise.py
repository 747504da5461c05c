"""refmesh.aggregate.sampling and .privacy: exact integer noise, and what a release costs.

The samplers' distributions are checked against their exact probability mass functions on
draws from a seeded generator (deterministic: the same draws every run). Tolerances are stated
where they are used: a chi-square statistic below the p = 1e-4 critical value of its degrees
of freedom (Wilson-Hilferty), and moments within 5 standard errors.
"""
from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from refmesh.aggregate import privacy, sampling
from refmesh.errors import ConfigError

Z_1E4 = 3.719  # the standard normal's upper 1e-4 quantile


def chi2_critical(df: int, z: float = Z_1E4) -> float:
    """Wilson-Hilferty: the chi-square quantile of ``df`` degrees of freedom at normal ``z``."""
    c = 2 / (9 * df)
    return df * (1 - c + z * math.sqrt(c)) ** 3


def chi_square(draws: list[int], pmf) -> tuple[float, int]:
    """(statistic, degrees of freedom) over the bins with an expected count >= 5, the rest of
    each tail pooled into one bin."""
    n, counts = len(draws), {}
    for x in draws:
        counts[x] = counts.get(x, 0) + 1
    support = [x for x in range(-2000, 2001) if n * pmf(x) >= 5]
    low, high = min(support), max(support)
    bins = [(x, n * pmf(x), counts.get(x, 0)) for x in range(low, high + 1)]
    below = 1 - sum(pmf(x) for x in range(low, 2001))
    above = 1 - sum(pmf(x) for x in range(-2000, high + 1))
    bins.append(("<", n * below, sum(c for x, c in counts.items() if x < low)))
    bins.append((">", n * above, sum(c for x, c in counts.items() if x > high)))
    stat = sum((seen - want) ** 2 / want for _, want, seen in bins if want > 0)
    return stat, len(bins) - 1


def laplace_pmf(scale: Fraction):
    r = math.exp(-1 / scale)
    return lambda x: (1 - r) / (1 + r) * r ** abs(x)


def gaussian_pmf(sigma2: Fraction):
    s2 = float(sigma2)
    norm = sum(math.exp(-x * x / (2 * s2)) for x in range(-4000, 4001))
    return lambda x: math.exp(-x * x / (2 * s2)) / norm


def moments_close(draws: list[int], variance: float) -> None:
    """Mean 0 and the exact variance, each within 5 standard errors (the fourth moment of
    these distributions is below 10 variance^2, which bounds the variance's error)."""
    n = len(draws)
    mean = sum(draws) / n
    second = sum(x * x for x in draws) / n
    assert abs(mean) < 5 * math.sqrt(variance / n), mean
    assert abs(second - variance) < 5 * math.sqrt(10 * variance ** 2 / n), (second, variance)


# --- Bernoulli(exp(-gamma)) -----------------------------------------------------------------

def test_bernoulli_takes_one_uniform_integer_and_is_exact():
    # every outcome of randbelow(d) counted once: exactly numerator of them say True
    p = Fraction(3, 7)
    assert sum(sampling.bernoulli(p, lambda n, i=i: i) for i in range(7)) == 3
    with pytest.raises(ValueError):
        sampling.bernoulli(Fraction(3, 2), random.Random(0).randrange)


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp_has_probability_exp_minus_gamma(gamma):
    rng = random.Random(20260913)
    n = 20_000
    hits = sum(sampling.bernoulli_exp(gamma, rng.randrange) for _ in range(n))
    p = math.exp(-gamma)
    # 5 binomial standard errors (and exactly all for gamma = 0)
    assert abs(hits / n - p) <= 5 * math.sqrt(p * (1 - p) / n), (hits / n, p)


def test_the_samplers_take_exact_parameters_only():
    rng = random.Random(1).randrange
    with pytest.raises(TypeError, match="exact"):
        sampling.discrete_laplace(2.5, rng)  # a float: refused, never rounded silently
    with pytest.raises(TypeError):
        sampling.discrete_gaussian(1.5, rng)
    with pytest.raises(ValueError):
        sampling.bernoulli_exp(Fraction(-1), rng)
    with pytest.raises(ValueError):
        sampling.discrete_laplace(Fraction(0), rng)


# --- discrete Laplace and discrete Gaussian -------------------------------------------------

@pytest.mark.parametrize("scale", [Fraction(12), Fraction(7, 3), Fraction(1, 2)])
def test_discrete_laplace_matches_its_pmf(scale):
    rng = random.Random(1000 + scale.numerator)
    draws = [sampling.discrete_laplace(scale, rng.randrange) for _ in range(20_000)]
    assert all(isinstance(x, int) for x in draws)
    stat, df = chi_square(draws, laplace_pmf(scale))
    assert stat < chi2_critical(df), (stat, df)
    r = math.exp(-1 / scale)
    moments_close(draws, 2 * r / (1 - r) ** 2)
    # symmetric: as many draws above 0 as below, within 5 standard errors
    pos, neg = sum(x > 0 for x in draws), sum(x < 0 for x in draws)
    assert abs(pos - neg) < 5 * math.sqrt(pos + neg)


@pytest.mark.parametrize("sigma2", [Fraction(360), Fraction(3, 2)])
def test_discrete_gaussian_matches_its_pmf(sigma2):
    rng = random.Random(2000 + sigma2.numerator)
    draws = [sampling.discrete_gaussian(sigma2, rng.randrange) for _ in range(20_000)]
    pmf = gaussian_pmf(sigma2)
    stat, df = chi_square(draws, pmf)
    assert stat < chi2_critical(df), (stat, df)
    variance = sum(x * x * pmf(x) for x in range(-4000, 4001))  # slightly below sigma2
    assert variance <= sigma2
    moments_close(draws, variance)
    pos, neg = sum(x > 0 for x in draws), sum(x < 0 for x in draws)
    assert abs(pos - neg) < 5 * math.sqrt(pos + neg)


def test_a_seeded_source_gives_the_same_draws():
    one = [sampling.discrete_laplace(Fraction(6), random.Random(7).randrange) for _ in range(3)]
    two = [sampling.discrete_laplace(Fraction(6), random.Random(7).randrange) for _ in range(3)]
    assert one == two


# --- what a release costs -------------------------------------------------------------------

def test_sensitivity_of_one_person_from_the_cap():
    assert privacy.sensitivity(1) == (3, 3)
    assert privacy.sensitivity(2) == (6, 12)  # L2 = 2 sqrt(3)
    with pytest.raises(ConfigError, match="per person"):
        privacy.sensitivity(0)


def test_laplace_scale_is_l1_over_epsilon_exactly():
    noise = privacy.calibrate(epsilon=0.5, delta=1e-6, max_per_person=2)
    assert (noise.mechanism, noise.l1, noise.scale, noise.rho) == ("laplace", 6, 12, None)
    assert noise.epsilon == Fraction(1, 2) and noise.delta_mechanism == 0
    assert privacy.calibrate(epsilon=0.3, delta=1e-6).scale == Fraction(20)  # 6 / (3/10)


@pytest.mark.parametrize("epsilon", [0.25, 1.0, 3.0])
def test_gaussian_is_calibrated_through_zcdp(epsilon):
    noise = privacy.calibrate(epsilon=epsilon, delta=1e-6, mechanism="gaussian")
    assert noise.rho == Fraction(noise.l2_squared) / (2 * noise.scale)  # rho = L2^2/(2 sigma^2)
    assert noise.delta_mechanism == 5e-7
    spent = privacy.zcdp_epsilon(noise.rho, noise.delta_mechanism)
    assert spent <= epsilon and spent > 0.999 * epsilon  # Bun-Steinke: tight, never over


@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_the_threshold_is_the_smallest_that_pays_for_new_cells(mechanism, m):
    noise = privacy.calibrate(epsilon=1.0, delta=1e-6, mechanism=mechanism, max_per_person=m)
    share = 1e-6 if mechanism == "laplace" else 5e-7

    def risk(tau):
        return math.e * privacy.new_cell_risk(mechanism, noise.scale, tau, m)

    assert noise.threshold >= 11 and risk(noise.threshold) <= share
    assert risk(noise.threshold - 1) > share  # one lower would not pay
    assert noise.delta == pytest.approx(noise.delta_mechanism + noise.delta_threshold)
    assert noise.delta <= 1e-6


def test_new_cell_risk_is_the_worst_split_of_each_stage():
    """Against every way of putting one person's m events of a stage into new cells."""
    scale, tau = Fraction(6), 20
    tail = lambda n: privacy.laplace_tail(scale, n)  # noqa: E731
    for m in range(1, 6):
        worst = max(sum(tail(tau - c) for c in parts)
                    for r in range(1, m + 1)
                    for parts in itertools.product(range(1, m + 1), repeat=r)
                    if sum(parts) <= m)
        assert privacy.new_cell_risk("laplace", scale, tau, m) == pytest.approx(3 * worst)


def test_tails_match_the_pmfs():
    for scale in (Fraction(6), Fraction(7, 3)):
        pmf = laplace_pmf(scale)
        for n in (-3, 0, 1, 5, 20):
            assert privacy.laplace_tail(scale, n) == pytest.approx(
                sum(pmf(x) for x in range(n, 3000)))
    pmf = gaussian_pmf(Fraction(90))
    for n in (-4, 0, 1, 10, 40):
        assert privacy.gaussian_tail(Fraction(90), n) == pytest.approx(
            sum(pmf(x) for x in range(n, 4000)), rel=1e-9)


def test_accuracy_bound():
    assert privacy.accuracy_bound(0.0, 0.0) == 0.5
    assert privacy.accuracy_bound(1.0, 0.0) == pytest.approx(math.e / (1 + math.e))  # 0.731
    assert privacy.accuracy_bound(1.0, 1e-6) == pytest.approx((math.e + 1e-6) / (1 + math.e))
    assert privacy.accuracy_bound(50.0, 0.5) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"epsilon": 0, "delta": 1e-6}, "epsilon must be a positive number"),
    ({"epsilon": math.inf, "delta": 1e-6}, "epsilon must be a positive number"),
    ({"epsilon": 1.0, "delta": None}, "delta between 0 and 1"),
    ({"epsilon": 1.0, "delta": 1.0}, "delta between 0 and 1"),
    ({"epsilon": 1.0, "delta": 1e-6, "mechanism": "uniform"}, "not one of laplace, gaussian"),
])
def test_calibration_refuses_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        privacy.calibrate(**kwargs)
