"""The release rule: what a policy domain may publish of one window's counts.

1. Optional differential privacy: noise is added to every recomputed count, before anything
   else: Laplace of scale sensitivity/epsilon, or Gaussian of standard deviation
   sensitivity * sqrt(2 ln(1.25/delta)) / epsilon (epsilon <= 1). The noise source is
   injected: the core draws no random numbers.
2. A cell below k (default 11) is suppressed.
3. A count is rounded DOWN to a multiple of the resolution (default 5): a released 10 with
   k=11 means 11 to 14 referrals.
4. Marginal totals (per value of one dimension, and the grand total) are sums of the RELEASED
   cells, so no total minus released cells can reveal a suppressed one: changing any
   suppressed count leaves every released number as it was.
5. Corrected releases: after the first release of a window, a cell is recomputed only when its
   true count moved by at least k since it was last computed; otherwise its previous released
   value (or its suppression) is kept. Two releases of one window therefore differ only in
   cells where at least k referrals arrived, so differencing them never isolates one person:
   fewer than k late referrals leave the release exactly as it was.

Counts are of referrals, so k and the noise's sensitivity hold per referral; a person with
several referrals in one window adds to several counts (``sensitivity`` bounds that for the
noise). With Laplace noise, releasing only the cells seen in the data whose noisy count
reaches k is (epsilon, delta)-DP with delta about exp(-epsilon (k - 1)) / 2 per release; with
Gaussian noise, delta is the one configured plus that term. Epsilon (and delta) add up over the
releases a consumer reads (basic composition), which ``charge`` keeps in a ledger.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from refmesh.aggregate.cells import DIMS, cell_from_key, cell_key, kind_of
from refmesh.aggregate.state import Ledger, _int_map, _json
from refmesh.aggregate.windows import Window, label
from refmesh.aggregate.wire import record_of
from refmesh.errors import AggregateError, ConfigError

BUDGET_EXHAUSTED = "epsilon_budget_exhausted"
MECHANISMS = ("laplace", "gaussian")


@dataclass(frozen=True)
class Release:
    """One release of one window: what was published and what it was computed from.

    ``released``: cell key -> released count of the referral and outcome cells that passed (the
    marginals and total are derived from these, in ``cells``). ``basis``: cell key -> the true
    count each cell was last computed from (for the k-move rule of corrections; internal, keep
    it encrypted like the counts). ``recomputed``: the keys computed afresh in this revision.
    """

    revision: int
    k: int
    resolution: int
    epsilon: float | None  # spent on this release (noise added to a recomputed cell), or None
    released: dict = field(hash=False)
    basis: dict = field(hash=False, repr=False)
    recomputed: tuple[str, ...] = field(default=(), compare=False)  # not stored
    mechanism: str | None = None  # laplace or gaussian when noise was added, else None
    delta: float | None = None  # the Gaussian mechanism's delta

    @cached_property
    def cells(self) -> list[dict]:
        """The Aggregate cells: total, marginals, then the released cells and outcomes."""
        return _with_marginals(self.released)

    def to_bytes(self) -> bytes:
        return json.dumps({"revision": self.revision, "k": self.k, "resolution": self.resolution,
                           "epsilon": self.epsilon, "released": self.released,
                           "basis": self.basis, "mechanism": self.mechanism,
                           "delta": self.delta},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Release:
        doc = _json(data, "stored release")
        try:
            ints = [doc[n] for n in ("revision", "k", "resolution")]
            epsilon = doc["epsilon"]
            released = _int_map(doc["released"], "stored release")
            basis = _int_map(doc["basis"], "stored release")
            mechanism, delta = doc.get("mechanism"), doc.get("delta")
        except (KeyError, TypeError, AttributeError) as exc:
            raise AggregateError(f"stored release lacks {exc}") from None
        if not all(isinstance(i, int) and i >= 0 for i in ints) or not all(
                v is None or isinstance(v, (int, float)) for v in (epsilon, delta)) or not (
                mechanism is None or mechanism in MECHANISMS):
            raise AggregateError("stored release: revision, k, resolution, epsilon, delta or "
                                 "mechanism invalid")
        return cls(*ints, epsilon, released, basis, (), mechanism, delta)


def check_rule(k: int = 11, resolution: int = 5, epsilon: float | None = None,
               sensitivity: int = 1, mechanism: str = "laplace",
               delta: float | None = None) -> None:
    """Raise ConfigError naming the first parameter of the release rule that is not valid."""
    if not isinstance(k, int) or k < 2:
        raise ConfigError(f"k must be an integer of at least 2, not {k!r}")
    if not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"resolution must be a positive integer, not {resolution!r}")
    if epsilon is not None and (not isinstance(epsilon, (int, float)) or not epsilon > 0
                                or math.isinf(epsilon)):
        raise ConfigError(f"epsilon must be a positive number, not {epsilon!r}")
    if not isinstance(sensitivity, int) or sensitivity < 1:
        raise ConfigError(f"sensitivity must be a positive integer, not {sensitivity!r}")
    if mechanism not in MECHANISMS:
        raise ConfigError(f"noise mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    if mechanism == "gaussian" and epsilon is not None:
        if epsilon > 1:
            raise ConfigError(f"the Gaussian mechanism holds for epsilon <= 1, not {epsilon}; "
                              "use laplace or a smaller epsilon")
        if not isinstance(delta, (int, float)) or not 0 < delta < 1:
            raise ConfigError(f"the Gaussian mechanism needs a delta between 0 and 1 (e.g. "
                              f"1e-6), not {delta!r}")


def noise_scale(epsilon: float, sensitivity: int = 1, mechanism: str = "laplace",
                delta: float | None = None) -> float:
    """The Laplace scale b, or the Gaussian standard deviation sigma, of the noise added to a
    count: b = sensitivity/epsilon; sigma = sensitivity * sqrt(2 ln(1.25/delta)) / epsilon
    (Dwork and Roth 2014, theorem A.1, for epsilon <= 1)."""
    if mechanism == "gaussian":
        return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    return sensitivity / epsilon


def laplace(u: float, scale: float) -> float:
    """A Laplace(0, scale) sample from ``u`` uniform in (-0.5, 0.5) (inverse CDF); the agent
    supplies ``u`` from a cryptographic source (secrets.SystemRandom)."""
    if not -0.5 < u < 0.5:
        raise ValueError("u must lie strictly between -0.5 and 0.5")
    return -scale * math.copysign(1.0, u) * math.log1p(-2 * abs(u))


def _protect(n: int, k: int, resolution: int, epsilon, noise, scale: float) -> int | None:
    """The released value of a true count ``n``, or None when suppressed."""
    value = float(n) + noise(scale) if epsilon is not None else n
    if not math.isfinite(value):
        raise ValueError(f"the noise source returned {value}; it must return finite numbers")
    if value < k:
        return None
    rounded = math.floor(value / resolution) * resolution
    return rounded if rounded > 0 else None


def release(counts: Mapping[str, int], *, k: int = 11, resolution: int = 5,
            previous: Release | None = None, epsilon: float | None = None,
            noise: Callable[[float], float] | None = None, sensitivity: int = 1,
            mechanism: str = "laplace", delta: float | None = None) -> Release:
    """Apply the release rule (module doc) to one window's ``counts``.

    ``previous``: the last release of this window, for a corrected release (revision + 1, same
    k and resolution); a cell is then recomputed only if its count moved by >= k since.
    ``noise(scale)`` returns one sample of the ``mechanism``'s noise of that scale (Laplace:
    Laplace(0, scale); Gaussian: Normal(0, scale)); required when ``epsilon`` is set.
    """
    check_rule(k, resolution, epsilon, sensitivity, mechanism, delta)
    if epsilon is not None and noise is None:
        raise ConfigError("epsilon is set but no noise source was given: pass noise= (e.g. "
                          "laplace over a cryptographic uniform source)")
    scale = noise_scale(epsilon, sensitivity, mechanism, delta) if epsilon is not None else 0.0
    if previous is not None and (previous.k, previous.resolution) != (k, resolution):
        raise ConfigError(f"a corrected release keeps the rule of the first (k={previous.k}, "
                          f"resolution={previous.resolution}); changing it would let the two "
                          "be differenced")
    basis = dict(previous.basis) if previous else {}
    released = dict(previous.released) if previous else {}
    recomputed = []
    for key in sorted(set(counts) | set(basis)):
        n = counts.get(key, 0)
        cell_from_key(key)
        if previous is not None and abs(n - basis.get(key, 0)) < k:
            continue  # keep the previous value: fewer than k referrals moved
        recomputed.append(key)
        basis[key] = n
        value = _protect(n, k, resolution, epsilon, noise, scale)
        if value is None:
            released.pop(key, None)
        else:
            released[key] = value
    spent = epsilon if epsilon is not None and (recomputed or previous is None) else None
    noisy = spent is not None
    return Release(0 if previous is None else previous.revision + 1, k, resolution,
                   float(spent) if noisy else None, released, basis, tuple(recomputed),
                   mechanism if noisy else None,
                   float(delta) if noisy and mechanism == "gaussian" else None)


def covers(total: Mapping, cell: Mapping) -> bool:
    """Whether marginal or total ``total`` sums ``cell``: every dimension ``total`` fixes
    matches, and, unless the only fixed dimension is finalStatus (whose outcome values are
    their own), ``cell`` is a referral cell (outcomes count only in finalStatus marginals)."""
    fixed = [d for d in DIMS if total.get(d) is not None]
    if kind_of(cell) == "outcome" and fixed != ["finalStatus"]:
        return False
    return kind_of(cell) in ("cell", "outcome") and all(cell.get(d) == total[d] for d in fixed)


def _with_marginals(released: Mapping[str, int]) -> list[dict]:
    base = sorted(((cell_from_key(key), n) for key, n in released.items()),
                  key=lambda pair: (kind_of(pair[0]) == "outcome", cell_key(pair[0])))
    sums: dict[tuple[str, str], int] = {}
    for cell, n in base:
        for d in (DIMS if kind_of(cell) == "cell" else ("finalStatus",)):
            if cell[d] is not None:
                sums[(d, cell[d])] = sums.get((d, cell[d]), 0) + n
    total = {**dict.fromkeys(DIMS), "count": sum(n for c, n in base if kind_of(c) == "cell")}
    marginals = [{**dict.fromkeys(DIMS), d: v, "count": n} for (d, v), n in
                 sorted(sums.items(), key=lambda item: (DIMS.index(item[0][0]), item[0][1]))]
    return [total, *marginals, *({**cell, "count": n} for cell, n in base)]


def charge(ledger: Mapping[str, float], consumer: str, epsilon: float | None,
           budget: float | None) -> tuple[Ledger, bool]:
    """(new ledger, True) after charging ``epsilon`` to ``consumer``; (ledger unchanged, False)
    when that would exceed ``budget``. Nothing is charged for a release without noise."""
    if epsilon is None:
        return dict(ledger), True
    if budget is None:
        raise ConfigError("a release with noise needs an epsilon budget per consumer")
    spent = ledger.get(consumer, 0.0) + epsilon
    if spent > budget * (1 + 1e-9):  # tolerance: 0.1 + 0.1 + 0.1 must fit a budget of 0.3
        return dict(ledger), False
    return {**ledger, consumer: spent}, True


@dataclass(frozen=True)
class Refused:
    """A release that may not be published (audited as ReleaseRefused with ``reason``)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Publish:
    """Publish ``record`` (an unsigned Aggregate dict: sign it with ``sign_release``) on
    ``topic(region)``; then store ``release`` (as the window's ``previous``) and ``ledger``."""

    record: dict = field(hash=False)
    release: Release
    ledger: Ledger = field(hash=False)


def decide_release(counts: Mapping[str, int], *, domain: str, region: str, window: Window,
                   previous: Release | None = None, ledger: Mapping[str, float] | None = None,
                   k: int = 11, resolution: int = 5, epsilon: float | None = None,
                   budget: float | None = None, noise: Callable[[float], float] | None = None,
                   sensitivity: int = 1, mechanism: str = "laplace",
                   delta: float | None = None) -> Publish | Refused | None:
    """What to do for a window that is due: Publish the first release or a correction,
    Refused when the region's epsilon budget would be exceeded, or None when a correction
    would change nothing (fewer than k referrals moved in every cell). The consumer charged
    is the region: every reader of the region's topic sees every release."""
    rel = release(counts, k=k, resolution=resolution, previous=previous, epsilon=epsilon,
                  noise=noise, sensitivity=sensitivity, mechanism=mechanism, delta=delta)
    if previous is not None and not rel.recomputed:
        return None
    ledger, ok = charge(ledger or {}, region, rel.epsilon, budget)
    if not ok:
        return Refused(BUDGET_EXHAUSTED, f"epsilon {rel.epsilon} for {label(window)} would "
                                         f"exceed the budget {budget} of region {region}")
    return Publish(record_of(rel, domain=domain, region=region, window=window), rel, ledger)
