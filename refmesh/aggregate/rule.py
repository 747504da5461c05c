"""The release rule: what a policy domain may publish of one window's counts.

1. Optional differential privacy: integer noise is added to every count the window holds,
   before anything else, drawn exactly (refmesh.aggregate.sampling: discrete Laplace or
   discrete Gaussian) at the scale ``privacy.calibrate`` derives from the rule: the sensitivity
   of one person (L1 = 3m, L2 = sqrt(3) m, m from the per-person cap), epsilon and delta. The
   random source is injected: the core draws nothing itself.
2. A cell whose (noisy) count is below the threshold is suppressed: k (default 11) without
   noise; with noise the larger threshold tau >= k that pays for cells only one person is in
   (``privacy``), so that their appearing is covered by delta.
3. A count is rounded DOWN to a multiple of the resolution (default 5): a released 10 with
   k=11 and no noise means 11 to 14 referrals.
4. Marginal totals (per value of one dimension, and the grand total) are sums of the RELEASED
   cells, so no total minus released cells can reveal a suppressed one: changing any
   suppressed count leaves every released number as it was. With noise they are functions of
   the noisy released cells (post-processing: no further privacy cost).
5. Revisions on a fixed schedule (refmesh.aggregate.job: the first when the window is due,
   then ``revisions`` corrections spread evenly until it is final): each recomputes every
   cell from the window's counts at that time with fresh noise, and is charged to the ledger.
   Whether and when a revision appears depends on the clock only, never on the counts.

Guarantees. Without noise: no released number depends on a count below k, and a person whose
cells all stay below k leaves every release (every revision, marginal and total) exactly as it
would be without them. With noise: each release is (epsilon, delta)-DP for adding or removing
one person (``privacy``; delta includes the threshold's term); the releases of a region
compose by basic composition (``ledger``), and the ledger refuses a release that would pass the
region's epsilon or delta budget.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from refmesh.aggregate.cells import DIMS, cell_from_key, cell_key, kind_of
from refmesh.aggregate.ledger import Ledger, charge, spent, window_spent
from refmesh.aggregate.privacy import MECHANISMS, Noise
from refmesh.aggregate.state import _int_map, _json
from refmesh.aggregate.windows import Window, label
from refmesh.aggregate.wire import NOISE_FIELDS, ACCOUNT_FIELDS, record_of
from refmesh.errors import AggregateError, ConfigError

BUDGET_EXHAUSTED = "epsilon_budget_exhausted"
DELTA_BUDGET_EXHAUSTED = "delta_budget_exhausted"
Sampler = Callable[[Noise], int]  # one integer noise sample of a release's noise


@dataclass(frozen=True)
class Release:
    """One release of one window: what was published, with everything needed to publish the
    same record again (a crash between storing and publishing).

    ``released``: cell key -> released count of the referral and outcome cells that passed (the
    marginals and total are derived from these, in ``cells``). ``noise``: the record's noise
    fields (``wire.NOISE_FIELDS``: mechanism, epsilon, delta, sensitivity, scale...), None
    without noise. ``account``: the ledger after it (``wire.ACCOUNT_FIELDS``), None without noise.
    """

    revision: int
    k: int
    resolution: int
    released: dict = field(hash=False)
    threshold: int = 0  # the (noisy) count a cell needed; 0: max(k, resolution)
    final_revision: int = 0  # the window's last scheduled revision
    noise: dict | None = field(default=None, hash=False)
    account: dict | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not self.threshold:
            object.__setattr__(self, "threshold", max(self.k, self.resolution))

    @property
    def epsilon(self) -> float | None:
        return None if self.noise is None else self.noise.get("epsilon")

    @property
    def delta(self) -> float | None:
        return None if self.noise is None else self.noise.get("delta")

    @property
    def mechanism(self) -> str | None:
        return None if self.noise is None else self.noise.get("mechanism")

    @cached_property
    def cells(self) -> list[dict]:
        """The Aggregate cells: total, marginals, then the released cells and outcomes."""
        return with_marginals(self.released)

    def to_bytes(self) -> bytes:
        return json.dumps({"revision": self.revision, "k": self.k, "resolution": self.resolution,
                           "released": self.released, "threshold": self.threshold,
                           "finalRevision": self.final_revision, "noise": self.noise,
                           "account": self.account},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Release:
        """A stored release, checked; one stored before revisions were scheduled (with the
        k-move rule's ``basis``, and epsilon, mechanism and delta at the top) is read too."""
        doc = _json(data, "stored release")
        try:
            ints = [doc[n] for n in ("revision", "k", "resolution")]
            released = _int_map(doc["released"], "stored release")
            threshold, final = doc.get("threshold", 0), doc.get("finalRevision", ints[0])
            noise, account = doc.get("noise"), doc.get("account")
            if "basis" in doc and doc.get("epsilon") is not None:  # the form before issue 13
                noise = {"mechanism": doc.get("mechanism") or "laplace",
                         "epsilon": doc["epsilon"], "delta": doc.get("delta")}
        except (KeyError, TypeError, AttributeError) as exc:
            raise AggregateError(f"stored release lacks {exc}") from None
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                   for i in (*ints, threshold, final)) or not _fields(noise, NOISE_FIELDS) \
                or not _fields(account, ACCOUNT_FIELDS) or (
                noise is not None and noise.get("mechanism") not in MECHANISMS):
            raise AggregateError("stored release: revision, k, resolution, threshold, noise "
                                 "or account invalid")
        return cls(*ints, released, threshold, final, noise, account)


def _fields(doc, names: tuple[str, ...]) -> bool:
    """None, or an object of known names whose values are numbers (or the mechanism)."""
    if doc is None:
        return True
    return isinstance(doc, dict) and set(doc) <= set(names) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v)) or (n == "mechanism" and isinstance(v, str))
        for n, v in doc.items())


def check_rule(k: int = 11, resolution: int = 5) -> None:
    """Raise ConfigError naming the first parameter of the release rule that is not valid."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"k must be an integer of at least 2, not {k!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ConfigError(f"resolution must be a positive integer, not {resolution!r}")


def noise_fields(noise: Noise) -> dict:
    """What a release records of its noise, so that a reader can check the claim."""
    return {"mechanism": noise.mechanism, "epsilon": float(noise.epsilon),
            "delta": noise.delta, "maxPerPerson": noise.max_per_person,
            "sensitivityL1": noise.l1, "sensitivityL2": math.sqrt(noise.l2_squared),
            "noiseScale": noise.noise_scale,
            "rho": None if noise.rho is None else float(noise.rho)}


def _protect(n: int, threshold: int, resolution: int, noise: Noise | None,
             draw: Sampler | None) -> int | None:
    """The released value of a true count ``n``, or None when suppressed."""
    value = n
    if noise is not None:
        z = draw(noise)
        if isinstance(z, bool) or not isinstance(z, int):
            raise ValueError(f"the noise source returned {z!r}; it must return integers")
        value += z
    if value < threshold:
        return None
    return value // resolution * resolution  # > 0: threshold >= resolution


def release(counts: Mapping[str, int], *, k: int = 11, resolution: int = 5, revision: int = 0,
            final_revision: int = 0, noise: Noise | None = None, draw: Sampler | None = None,
            account: dict | None = None) -> Release:
    """Apply the release rule (module doc) to one window's ``counts``: every cell recomputed.

    ``noise``: the calibrated noise (``privacy.calibrate``), or None for none; ``draw(noise)``
    returns one sample of it (``privacy.sampler`` over a cryptographic ``randbelow``); required
    with ``noise``. ``account``: the ledger fields to record (``decide_release`` sets them).
    """
    check_rule(k, resolution)
    if noise is not None and draw is None:
        raise ConfigError("noise is set but no noise source was given: pass draw= (e.g. "
                          "privacy.sampler(secrets.randbelow))")
    if noise is not None and noise.threshold < max(k, resolution):
        raise ConfigError(f"the noise's threshold {noise.threshold} is below k={k} or the "
                          f"resolution {resolution}: calibrate it with this rule")
    threshold = noise.threshold if noise is not None else max(k, resolution)
    released = {}
    for key in sorted(counts):
        cell_from_key(key)
        value = _protect(counts[key], threshold, resolution, noise, draw)
        if value is not None:
            released[key] = value
    return Release(revision, k, resolution, released, threshold, final_revision,
                   None if noise is None else noise_fields(noise), account)


def covers(total: Mapping, cell: Mapping) -> bool:
    """Whether marginal or total ``total`` sums ``cell``: every dimension ``total`` fixes
    matches, and, unless the only fixed dimension is finalStatus (whose outcome values are
    their own), ``cell`` is a referral cell (outcomes count only in finalStatus marginals)."""
    fixed = [d for d in DIMS if total.get(d) is not None]
    if kind_of(cell) == "outcome" and fixed != ["finalStatus"]:
        return False
    return kind_of(cell) in ("cell", "outcome") and all(cell.get(d) == total[d] for d in fixed)


def with_marginals(released: Mapping[str, int]) -> list[dict]:
    """The rows of a release of ``released`` (cell key -> count): the total, the marginals
    (sums of the given cells), then the cells."""
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


@dataclass(frozen=True)
class Refused:
    """A release that may not be published (audited as ReleaseRefused with ``reason``)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Publish:
    """Publish ``record`` (an unsigned Aggregate dict: sign it with ``sign_release``) on
    ``topic(region)``; then store ``release`` and ``ledger``."""

    record: dict = field(hash=False)
    release: Release
    ledger: Ledger = field(hash=False)


def decide_release(counts: Mapping[str, int], *, domain: str, region: str, window: Window,
                   revision: int = 0, final_revision: int = 0,
                   ledger: Mapping[str, dict] | None = None, k: int = 11, resolution: int = 5,
                   noise: Noise | None = None, draw: Sampler | None = None,
                   budget: float | None = None, delta_budget: float | None = None
                   ) -> Publish | Refused:
    """Revision ``revision`` of ``window``: Publish it (charged to the region's ledger first),
    or Refused when it would pass the region's epsilon or delta budget (nothing is drawn then).
    The consumer charged is the region: every reader of the region's topic sees every release."""
    ledger = dict(ledger or {})
    account = None
    if noise is not None:
        after, over = charge(ledger, region, window[0], float(noise.epsilon), noise.delta,
                             budget, delta_budget)
        if over is not None:
            amount, limit = (float(noise.epsilon), budget) if over == "epsilon" else (
                noise.delta, delta_budget)
            return Refused(BUDGET_EXHAUSTED if over == "epsilon" else DELTA_BUDGET_EXHAUSTED,
                           f"{over} {amount:g} for {label(window)} revision {revision} would "
                           f"exceed the {over} budget {limit:g} of region {region}")
        ledger = after
        eps_total, delta_total = spent(ledger, region)
        eps_window, delta_window = window_spent(ledger, region, window[0])
        account = {"windowEpsilon": eps_window, "windowDelta": delta_window,
                   "epsilonRemaining": max(0.0, budget - eps_total),
                   "deltaRemaining": max(0.0, delta_budget - delta_total)}
    rel = release(counts, k=k, resolution=resolution, revision=revision,
                  final_revision=final_revision, noise=noise, draw=draw, account=account)
    return Publish(record_of(rel, domain=domain, region=region, window=window), rel, ledger)
