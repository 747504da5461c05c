"""The regional body's report: one self-contained HTML page (inline CSS, charts as embedded PNG
images drawn with matplotlib's Agg backend) from verified releases. No I/O: the CLI writes the
page; the series come from the pure ``refmesh.aggregate.table``.
"""
from __future__ import annotations

import base64
import html
import io
import re

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from refmesh.aggregate import DECISIONS, DIMS, kind_of, label, table
from refmesh.aggregate.windows import iso

COLOURS = {"forwarded": "#2b6cb0", "refused": "#dd6b20"}  # blue / orange: colour-blind safe
BAR = "#2f7f7a"
INK, MUTED, GRID = "#1a202c", "#5a6472", "#e2e8f0"
HEADINGS = {"citizenship": "Citizenship", "gender": "Gender", "ageBand": "Age",
            "exploitationType": "Exploitation", "trmStage": "TRM stage",
            "recipientRole": "Receiving agency", "finalStatus": "Status"}
#: Countries often seen in the region's referrals; others are shown by their ISO code.
COUNTRIES = {
    "AE": "United Arab Emirates", "BD": "Bangladesh", "BH": "Bahrain", "EG": "Egypt",
    "ET": "Ethiopia", "GH": "Ghana", "ID": "Indonesia", "IN": "India", "JO": "Jordan",
    "KE": "Kenya", "KW": "Kuwait", "LB": "Lebanon", "LK": "Sri Lanka", "MA": "Morocco",
    "MM": "Myanmar", "NG": "Nigeria", "NP": "Nepal", "OM": "Oman", "PH": "Philippines",
    "PK": "Pakistan", "QA": "Qatar", "SA": "Saudi Arabia", "SD": "Sudan", "SO": "Somalia",
    "UG": "Uganda", "VN": "Viet Nam", "YE": "Yemen",
}


def words(value: str | None) -> str:
    """ForcedLabour -> Forced labour; accepted -> Accepted; ET -> Ethiopia (ET); None -> all."""
    if value is None:
        return "all"
    if value in COUNTRIES:
        return f"{COUNTRIES[value]} ({value})"
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", value)
    if spaced != value:
        spaced = spaced[:1] + spaced[1:].lower()
    return spaced[:1].upper() + spaced[1:]


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _month(period: str) -> str:
    """2026-09 -> Sep 2026."""
    year, month = period.split("-")
    return f"{MONTHS[int(month) - 1]} {year}"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=144, facecolor="white")
    return out.getvalue()


def _style(ax) -> None:
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=10, length=0)
    ax.set_axisbelow(True)


def trend_chart(trend: dict[str, dict[str, int]]) -> bytes:
    """Stacked bars per month: released referrals forwarded and refused, total on top."""
    fig = Figure(figsize=(8.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    months = [_month(m) for m in trend]
    bottom = [0] * len(months)
    for decision in DECISIONS:
        values = [v[decision] for v in trend.values()]
        ax.bar(months, values, bottom=bottom, color=COLOURS[decision], width=0.62,
               label=decision.capitalize())
        bottom = [b + v for b, v in zip(bottom, values)]
    top = max(bottom, default=0) or 1
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:,}", (x, total), xytext=(0, 4), textcoords="offset points",
                    ha="center", fontsize=10, color=INK, fontweight="bold")
    ax.set_ylim(0, top * 1.18)
    ax.yaxis.grid(True, color=GRID)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylabel("referrals", color=MUTED)
    ax.legend(frameon=False, loc="upper left", ncols=2, fontsize=10)
    _style(ax)
    return _png(fig)


def bar_chart(values: dict[str, int], colour: str = BAR, limit: int = 12) -> bytes:
    """Horizontal bars, largest on top, with the count at the end of each bar."""
    items = list(values.items())[:limit]
    # Narrow on purpose: the page shows two side by side, so a wide figure would be shrunk
    # and its labels with it.
    fig = Figure(figsize=(4.4, 0.45 + 0.4 * max(len(items), 1)), layout="constrained")
    ax = fig.add_subplot()
    names = [words(k) for k, _ in items][::-1]
    counts = [v for _, v in items][::-1]
    ax.barh(names, counts, color=colour, height=0.62)
    top = max(counts, default=0) or 1
    for y, n in enumerate(counts):
        ax.annotate(f"{n:,}", (n, y), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=11, color=INK)
    ax.set_xlim(0, top * 1.2)
    ax.xaxis.set_visible(False)
    _style(ax)
    ax.spines["bottom"].set_visible(False)
    ax.tick_params(axis="y", labelsize=11, colors=INK)
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a202c;
 background:#f4f6f8;margin:0;line-height:1.45}
main{max-width:980px;margin:0 auto;padding:28px 20px 60px}
h1{font-size:1.7rem;margin:0 0 4px}h2{font-size:1.15rem;margin:0 0 12px}
.sub{color:#5a6472;margin:0 0 22px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;
 margin-bottom:18px}
.card,.panel{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card{padding:14px 16px}.card b{display:block;font-size:1.7rem}.card span{color:#5a6472}
.panel{padding:18px 20px;margin-bottom:18px}
.two{display:grid;grid-template-columns:repeat(auto-fit,minmax(400px,1fr));gap:18px}
.two .panel{margin-bottom:0}
img{max-width:100%;height:auto;display:block}
.rule{background:#fffaf0;border-left:4px solid #dd6b20}
.rule li{margin-bottom:6px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:6px 8px;border-bottom:1px solid #e2e8f0;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td:first-child{white-space:nowrap}
th{color:#5a6472;font-weight:600}
.tag{background:#feebc8;color:#7b341e;border-radius:4px;padding:1px 6px;font-size:.8rem}
details summary{cursor:pointer;font-weight:600}
.empty{color:#5a6472;font-style:italic}
"""


def _rule(releases: list[dict]) -> str:
    k, step = releases[0]["k"], releases[0]["resolution"]
    low = k // step * step  # the smallest number a release can show
    mixed = "" if len({(r["k"], r["resolution"]) for r in releases}) == 1 else (
        " (some releases use another rule: see the table below)")
    noisy = [r for r in releases if r["epsilon"] is not None]
    noise = ("<li><b>Random noise.</b> Releases that show an epsilon had random whole numbers "
             "added to every count before the steps above (differential privacy); the smaller "
             "epsilon, the more noise. A combination then needs a noisy count of at least the "
             "release's threshold (shown per period) to appear, so that one person's presence "
             "changes what is published only within the stated epsilon and delta. The table "
             "below shows each release's noise and the privacy budget the region has left."
             "</li>") if noisy else ""
    return f"""<section class="panel rule"><h2>How to read these numbers</h2><ul>
<li><b>What is counted.</b> Referrals decided by each policy domain (forwarded, or refused by
policy), by reporting country, citizenship, gender, age band, type of exploitation, TRM stage
and the role of the receiving agency; and the outcomes that receiving agencies report
(accepted, rejected, completed, failed). Never a case, a name or an identifier.</li>
<li><b>Small groups are left out.</b> No published number describes fewer than {k}
referrals{mixed}: a combination with fewer is suppressed, as the CTDC does.</li>
<li><b>Counts are rounded down</b> to a multiple of {step}: a published {low} stands for
{max(low, k)} to {low + step - 1} referrals.</li>
<li><b>Totals and breakdowns add up the published numbers only</b>, so no total can be used to
work out a suppressed group. They are lower bounds: the true figures are somewhat higher.</li>
<li><b>Corrections</b> of a period (marked <span class="tag">corrected</span>) come on a
fixed schedule, whatever arrived, and recount everything. Without noise they can differ from
the earlier release by a few referrals in a published combination; combinations below {k}
never enter any published number, so no comparison of releases points to one person in
them.</li>{noise}
</ul></section>"""


def _cards(releases: list[dict], trend: dict) -> str:
    forwarded = sum(v["forwarded"] for v in trend.values())
    refused = sum(v["refused"] for v in trend.values())
    latest = list(trend)[-1] if trend else None
    cards = [(f"{forwarded + refused:,}", "referrals published, all months"),
             (f"{forwarded:,}", "forwarded"), (f"{refused:,}", "refused by policy")]
    if latest:
        cards.append((f"{sum(trend[latest].values()):,}",
                      f"in {_month(latest)}, the latest month"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{v}</b><span>{html.escape(t)}</span></div>' for v, t in cards
    ) + "</div>"


def _period_table(releases: list[dict]) -> str:
    head = ("<tr><th>Period</th><th>Policy domain</th><th class=n>Forwarded</th>"
            "<th class=n>Refused</th><th class=n>Total</th><th>Rule</th><th></th></tr>")
    body = []
    for r in releases:
        margins = {c["finalStatus"]: c["count"] for c in r["cells"]
                   if kind_of(c) == "marginal" and c["finalStatus"] is not None}
        total = next(c["count"] for c in r["cells"] if kind_of(c) == "total")
        rule = f"k={r['k']}, rounded to {r['resolution']}"
        if r["epsilon"] is not None:
            rule += f", {r.get('mechanism') or 'laplace'} noise, epsilon {r['epsilon']:g}"
            if r.get("delta") is not None:
                rule += f", delta {r['delta']:.2g}"
            if r.get("threshold") is not None:
                rule += f", threshold {r['threshold']}"
            if r.get("epsilonRemaining") is not None:
                rule += (f" (region's budget left: epsilon {r['epsilonRemaining']:g}, "
                         f"delta {r['deltaRemaining']:.2g})")
        tag = f'<span class="tag">corrected, revision {r["revision"]}</span>' \
            if r["revision"] else ""
        body.append(f"<tr><td>{label((r['windowStart'], r['windowEnd']))}</td>"
                    f"<td>{html.escape(r['domain'])}</td>"
                    f"<td class=n>{margins.get('forwarded', 0):,}</td>"
                    f"<td class=n>{margins.get('refused', 0):,}</td>"
                    f"<td class=n><b>{total:,}</b></td><td>{rule}</td><td>{tag}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _cell_table(releases: list[dict]) -> str:
    rows = [(r, c) for r in releases for c in r["cells"] if kind_of(c) in ("cell", "outcome")]
    if not rows:
        return '<p class="empty">No combination reached the minimum group size.</p>'
    dims = [d for d in DIMS if d != "reportingCountry"  # leave out untabulated dimensions
            and any(c[d] is not None for _, c in rows)]
    head = "<tr><th>Period</th><th>Country</th>" + "".join(
        f"<th>{HEADINGS[d]}</th>" for d in dims) + "<th class=n>Count</th></tr>"
    body = "".join(
        f"<tr><td>{label((r['windowStart'], r['windowEnd']))}</td>"
        f"<td>{html.escape(c['reportingCountry'])}</td>"
        + "".join(f"<td>{html.escape(words(c[d]))}</td>" for d in dims)
        + f"<td class=n>{c['count']:,}</td></tr>" for r, c in rows)
    return (f"<details><summary>All published combinations ({len(rows)} rows)</summary>"
            f"<table>{head}{body}</table></details>")


def render(releases: list[dict], *, region: str, generated_at: int, rejected: int = 0) -> str:
    """The report page for the newest revision of each release (``table.Latest.releases``)."""
    trend = table.trend(releases)
    exploitation = table.breakdown(releases, "exploitationType")
    citizenship = table.breakdown(releases, "citizenship")
    outcomes = table.outcomes(releases)
    domains = sorted({r["domain"] for r in releases})
    periods = [label((r["windowStart"], r["windowEnd"])) for r in releases]
    title = f"Referral statistics, region {html.escape(region)}"
    sub = (f"{len(releases)} release(s) from {len(domains)} policy domain(s)"
           + (f", {min(periods)} to {max(periods)}" if periods else "")
           + f". Signatures verified; generated {iso(generated_at)}.")
    if rejected:
        sub += f" {rejected} release(s) failed verification and are not shown."
    parts = [f"<h1>{title}</h1><p class=sub>{html.escape(sub)}</p>"]
    if not releases:
        parts.append('<section class="panel"><p class="empty">No verified release on this '
                     "region's topic yet.</p></section>")
    else:
        parts.append(_cards(releases, trend))
        parts.append('<section class="panel"><h2>Referrals per month</h2>'
                     + _img(trend_chart(trend), "Referrals per month, forwarded and refused")
                     + "</section>")
        panels = [("By type of exploitation", exploitation), ("By citizenship", citizenship)]
        if outcomes:
            panels.append(("Outcomes reported by receiving agencies", outcomes))
        parts.append('<div class="two">' + "".join(
            f'<section class="panel"><h2>{name}</h2>'
            + (_img(bar_chart(data), name) if data else
               '<p class="empty">Nothing published yet.</p>') + "</section>"
            for name, data in panels) + "</div><p></p>")
        parts.append(_rule(releases))
        parts.append('<section class="panel"><h2>Per period and domain</h2>'
                     + _period_table(releases) + "</section>")
        parts.append('<section class="panel">' + _cell_table(releases) + "</section>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{title}</title><style>{CSS}</style></head><body><main>"
            + "".join(parts) + "</main></body></html>\n")
