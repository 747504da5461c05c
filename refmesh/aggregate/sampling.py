"""Exact samplers of integer noise: Bernoulli(exp(-gamma)), discrete Laplace, discrete Gaussian.

Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy", NeurIPS 2020,
Algorithms 1 (Bernoulli(exp(-gamma)) by rational arithmetic), 2 (discrete Laplace) and 3
(discrete Gaussian). Every step is integer or ``fractions.Fraction`` arithmetic over uniform
integers from an injected source, ``randbelow(n)`` -> uniform in [0, n) (the edge passes
``secrets.randbelow``; tests pass a seeded ``random.Random(seed).randrange``). No floating
point is involved, so the attack on the textbook floating-point Laplace sampler (Mironov,
"On significance of the least significant bits for differential privacy", CCS 2012: the
set of doubles an inverse-CDF sample can take depends on the true value) does not apply: the
outputs are integers with exactly the stated distributions.

- ``discrete_laplace(scale)``: P[X = x] = (e^(1/scale) - 1) / (e^(1/scale) + 1) * e^(-|x|/scale)
  for every integer x.
- ``discrete_gaussian(sigma2)``: P[X = x] proportional to e^(-x^2 / (2 sigma2)).

The core draws nothing itself: the release job passes ``sampler(randbelow)``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

RandBelow = Callable[[int], int]  # randbelow(n): a uniform integer in [0, n)


def _fraction(value, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, Fraction)):
        raise TypeError(f"{what} must be an int or a Fraction (exact), not {value!r}")
    return Fraction(value)


def bernoulli(p: Fraction, randbelow: RandBelow) -> bool:
    """True with probability ``p`` (a Fraction in [0, 1]): one uniform integer."""
    if not 0 <= p <= 1:
        raise ValueError(f"a probability lies in [0, 1], not {p}")
    return randbelow(p.denominator) < p.numerator


def bernoulli_exp(gamma, randbelow: RandBelow) -> bool:
    """True with probability exp(-gamma), gamma >= 0 rational (CKS 2020, Algorithm 1)."""
    gamma = _fraction(gamma, "gamma")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, not {gamma}")
    return _bernoulli_exp(gamma.numerator, gamma.denominator, randbelow)


def _bernoulli_exp(num: int, den: int, randbelow: RandBelow) -> bool:
    """Bernoulli(exp(-num/den)) on integers (no Fraction normalisation in the loops)."""
    if num > den:  # exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma)))
        whole = num // den
        for _ in range(whole):
            if not _bernoulli_exp(1, 1, randbelow):
                return False
        num -= whole * den
    # gamma in [0, 1]: A_k ~ Bernoulli(gamma / k) until the first A_K = 0; P[K odd] = e^-gamma
    k = 1
    while randbelow(den * k) < num:
        k += 1
    return k % 2 == 1


def discrete_laplace(scale, randbelow: RandBelow) -> int:
    """An integer X with P[X = x] proportional to exp(-|x| / scale), scale = t/s > 0 rational
    (CKS 2020, Algorithm 2)."""
    scale = _fraction(scale, "scale")
    if scale <= 0:
        raise ValueError(f"the scale must be positive, not {scale}")
    return _discrete_laplace(scale.numerator, scale.denominator, randbelow)


def _discrete_laplace(t: int, s: int, randbelow: RandBelow) -> int:
    while True:
        u = randbelow(t)
        if not _bernoulli_exp(u, t, randbelow):
            continue
        v = 0  # geometric: P[V = v] = (1 - e^-1) e^(-v)
        while _bernoulli_exp(1, 1, randbelow):
            v += 1
        y = (u + t * v) // s  # geometric with parameter 1 - e^(-s/t)
        negative = randbelow(2) == 1
        if negative and y == 0:
            continue  # so that 0 is not counted twice
        return -y if negative else y


def discrete_gaussian(sigma2, randbelow: RandBelow) -> int:
    """An integer X with P[X = x] proportional to exp(-x^2 / (2 sigma2)), sigma2 > 0 rational
    (CKS 2020, Algorithm 3: discrete Laplace proposals of scale t = floor(sigma) + 1, accepted
    with probability exp(-(|Y| - sigma2/t)^2 / (2 sigma2)))."""
    sigma2 = _fraction(sigma2, "sigma2")
    if sigma2 <= 0:
        raise ValueError(f"the variance must be positive, not {sigma2}")
    a, b = sigma2.numerator, sigma2.denominator  # sigma2 = a/b
    t = math.isqrt(a * b) // b + 1
    while True:
        y = _discrete_laplace(t, 1, randbelow)
        # (|y| - a/(b t))^2 / (2 a/b) = (|y| b t - a)^2 / (2 a b t^2), in integers
        if _bernoulli_exp((abs(y) * b * t - a) ** 2, 2 * a * b * t * t, randbelow):
            return y
