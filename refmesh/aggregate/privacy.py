"""What one release costs in privacy, from the rule alone: sensitivity, noise, threshold, delta.

**Sensitivity.** The domain counts, per person (pseudonymous subject id) and window, at most
``m`` decisions on referrals, ``m`` responses (accepted or rejected) and ``m`` ends (completed
or failed), each in exactly one cell (refmesh.domain, ``aggregate.cap``). Decision, response
and end cells are different cells (their finalStatus differs). Adding or removing one person
therefore changes a window's counts by at most

    L1 = 3m  (each counted event moves one count by one)
    L2 = sqrt(3) m  (worst case: each stage's m events in one cell: sqrt(m^2 + m^2 + m^2))

Marginals and the total are sums of released cells: functions of the noisy cells, they cost
nothing more (post-processing).

**Noise** on every count of the window, drawn exactly on the integers (``sampling``):

- discrete Laplace of scale b = L1/epsilon: epsilon-DP for the counts (the ratio of the
  densities at any output is at most exp(|x - y|_1 / b) <= exp(epsilon));
- discrete Gaussian of variance sigma^2 = L2^2 / (2 rho): rho-zCDP (Canonne, Kamath and Steinke
  2020, Theorem 14 with independent coordinates), converted with Bun and Steinke 2016,
  Proposition 1.3: rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta_g)), delta_g)-DP for every
  delta_g > 0. Given the release's epsilon, rho is the largest with
  rho + 2 sqrt(rho ln(1/delta_g)) <= epsilon: rho = (sqrt(ln(1/delta_g) + epsilon) -
  sqrt(ln(1/delta_g)))^2, and delta_g is half the release's delta.

**Threshold.** Only cells the window's counts hold (count >= 1) get noise, and a cell is
released only when its noisy count reaches the threshold tau (then rounded down to the
resolution). Which cells exist depends on the data: a person can bring cells that no one
else is in. Such a cell is released only if its noise lifts it to tau, and that is what delta
pays for. With q(tau) the largest probability, over the ways one person's <= m events per stage
can fall into new cells, that any new cell reaches tau (union bound, per stage the worst split
of m into cells c_1 + c_2 + ... <= m: sum_i P[Z >= tau - c_i]), the release is
(epsilon, delta_mech + e^epsilon q(tau))-DP: for every set S of outputs, with D' = D plus the
person, P_D'[S] <= e^epsilon P_D[S] + delta_mech + q(tau) and P_D[S] <= e^epsilon
(P_D'[S] + q(tau)) + delta_mech. tau is the smallest integer >= max(k, resolution) with
e^epsilon q(tau) <= the threshold's share of delta (all of it for Laplace, half for Gaussian).

Floating point appears only here, in computing parameters (exp, log, tail sums); it never
touches a sample. Every parameter is rounded towards more privacy (sigma^2 up, delta up by a
relative 1e-9).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from refmesh.aggregate.sampling import RandBelow, discrete_gaussian, discrete_laplace
from refmesh.errors import ConfigError

MECHANISMS = ("laplace", "gaussian")
STAGES = ("decision", "response", "end")  # the cells one referral can count in, one each
_UP = 1 + 1e-9  # relative rounding of computed deltas, towards more privacy
_SIGMA2_DENOMINATOR = 1 << 20


def exact(value, what: str) -> Fraction:
    """A setting's number as an exact Fraction (0.1 is 1/10, not the double nearest it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)) or \
            not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a positive number, not {value!r}")
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def sensitivity(max_per_person: int) -> tuple[int, int]:
    """(L1, L2 squared) of one person's contribution to one window's counts."""
    if isinstance(max_per_person, bool) or not isinstance(max_per_person, int) or \
            max_per_person < 1:
        raise ConfigError(f"the referrals counted per person and window must be a positive "
                          f"integer, not {max_per_person!r}")
    return len(STAGES) * max_per_person, len(STAGES) * max_per_person ** 2


@dataclass(frozen=True)
class Noise:
    """The noise of one release and what it costs: everything a reader needs to check it."""

    mechanism: str  # laplace or gaussian
    epsilon: Fraction  # the release's epsilon
    delta: float  # the release's delta: delta_mechanism + delta_threshold
    max_per_person: int  # m: events counted per person, window and stage
    l1: int  # L1 sensitivity, 3m
    l2_squared: int  # L2 sensitivity squared, 3m^2
    scale: Fraction  # Laplace: b; Gaussian: sigma^2
    rho: Fraction | None  # Gaussian: the zCDP rho of the counts
    threshold: int  # tau: the noisy count a cell needs to be released
    delta_mechanism: float  # Gaussian: the conversion's delta_g; Laplace: 0
    delta_threshold: float  # e^epsilon q(tau)

    @property
    def deviation(self) -> float:
        """The noise's standard deviation (Laplace: sqrt(2 r)/(1 - r), r = e^(-1/b))."""
        if self.mechanism == "gaussian":
            return math.sqrt(self.scale)
        r = math.exp(-1 / self.scale)
        return math.sqrt(2 * r) / (1 - r)

    @property
    def noise_scale(self) -> float:
        """What the record shows as noiseScale: Laplace b, Gaussian sigma."""
        return float(self.scale) if self.mechanism == "laplace" else math.sqrt(self.scale)


def laplace_tail(scale: Fraction, n: int) -> float:
    """P[X >= n] for X discrete Laplace of ``scale``."""
    r = math.exp(-1 / scale)
    if n >= 1:
        return r ** n / (1 + r)
    return 1 - r ** (1 - n) / (1 + r)


def gaussian_tail(sigma2: Fraction, n: int) -> float:
    """P[X >= n] for X discrete Gaussian of variance parameter ``sigma2`` (summed exactly
    enough: the terms fall faster than geometrically beyond the mean)."""
    if n <= 0:
        return 1 - gaussian_tail(sigma2, 1 - n)
    s2 = float(sigma2)
    norm = 1 + 2 * _gauss_sum(s2, 1)
    return _gauss_sum(s2, n) / norm


def _gauss_sum(s2: float, start: int) -> float:
    total, z = 0.0, start
    while True:
        term = math.exp(-z * z / (2 * s2))
        total += term
        if term == 0 or term < total * 1e-18:
            return total
        z += 1


def tail(mechanism: str, scale: Fraction, n: int) -> float:
    return gaussian_tail(scale, n) if mechanism == "gaussian" else laplace_tail(scale, n)


def new_cell_risk(mechanism: str, scale: Fraction, threshold: int, max_per_person: int) -> float:
    """q(threshold): an upper bound on the probability that some cell only one person is in
    reaches ``threshold`` (union bound over the three stages, each at its worst split of m)."""
    best = [0.0] * (max_per_person + 1)  # best[j]: worst split of j events into new cells
    for j in range(1, max_per_person + 1):
        best[j] = max(tail(mechanism, scale, threshold - c) + best[j - c]
                      for c in range(1, j + 1))
    return len(STAGES) * best[max_per_person]


def gaussian_rho(epsilon: Fraction, delta_g: float) -> float:
    """The largest rho with rho + 2 sqrt(rho ln(1/delta_g)) <= epsilon (Bun and Steinke 2016,
    Proposition 1.3)."""
    log = math.log(1 / delta_g)
    return (math.sqrt(log + float(epsilon)) - math.sqrt(log)) ** 2


def zcdp_epsilon(rho: Fraction, delta_g: float) -> float:
    return float(rho) + 2 * math.sqrt(float(rho) * math.log(1 / delta_g))


def calibrate(*, epsilon, delta, mechanism: str = "laplace", k: int = 11,
              resolution: int = 5, max_per_person: int = 2) -> Noise:
    """The noise, threshold and delta of one release of epsilon ``epsilon`` and at most
    ``delta`` (module doc)."""
    if mechanism not in MECHANISMS:
        raise ConfigError(f"noise mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    eps = exact(epsilon, "epsilon")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(f"a release with noise needs a delta between 0 and 1 (e.g. 1e-6), "
                          f"not {delta!r}")
    l1, l2_squared = sensitivity(max_per_person)
    if mechanism == "laplace":
        scale, rho, delta_mech, share = Fraction(l1) / eps, None, 0.0, float(delta)
    else:
        delta_mech = share = float(delta) / 2
        rho_target = gaussian_rho(eps, delta_mech)
        # sigma^2 = L2^2 / (2 rho), rounded up to a multiple of 2^-20: rho can only shrink
        scale = Fraction(math.ceil(l2_squared / (2 * rho_target) * _SIGMA2_DENOMINATOR * _UP),
                         _SIGMA2_DENOMINATOR)
        rho = Fraction(l2_squared) / (2 * scale)
        if zcdp_epsilon(rho, delta_mech) > float(eps):
            raise ConfigError(f"no Gaussian noise fits epsilon {epsilon}, delta {delta}")
    factor = math.exp(float(eps)) * _UP

    def risk(tau: int) -> float:
        return factor * new_cell_risk(mechanism, scale, tau, max_per_person)

    low = max(k, resolution)
    high = low
    while risk(high) > share:  # grow, then bisect: the risk falls as tau grows
        high = low + 2 * (high - low + 1)
        if high > 10 ** 9:
            raise ConfigError(f"epsilon {epsilon} and delta {delta} need a threshold beyond "
                              "10^9; raise epsilon or delta")
    while low < high:
        mid = (low + high) // 2
        if risk(mid) > share:
            low = mid + 1
        else:
            high = mid
    delta_thr = risk(low)
    return Noise(mechanism, eps, delta_mech + delta_thr, max_per_person, l1, l2_squared,
                 scale, rho, low, delta_mech, delta_thr)


def accuracy_bound(epsilon: float, delta: float) -> float:
    """The best accuracy of any test, at a 50/50 prior, telling two neighbouring datasets
    apart from an (epsilon, delta)-DP output: (e^epsilon + delta) / (1 + e^epsilon).

    Any test with true-positive rate a and false-positive rate f satisfies a <= e^eps f + delta
    and, applied to the complement the other way, 1 - f <= e^eps (1 - a) + delta. Accuracy
    (a + 1 - f)/2 is largest where both hold with equality: f = (1 - delta)/(1 + e^eps) and
    a = e^eps f + delta = (e^eps + delta)/(1 + e^eps), so (1 + a - f)/2 =
    (e^eps + delta)/(1 + e^eps) (Kairouz, Oh and Viswanath 2015 give the whole region)."""
    e = math.exp(epsilon)
    return min(1.0, (e + delta) / (1 + e))


def sampler(randbelow: RandBelow):
    """``draw(noise)``: one exact integer sample of a release's noise, from ``randbelow``
    (the edge passes ``secrets.randbelow``)."""
    def draw(noise: Noise) -> int:
        if noise.mechanism == "gaussian":
            return discrete_gaussian(noise.scale, randbelow)
        return discrete_laplace(noise.scale, randbelow)

    return draw
