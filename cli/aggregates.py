"""`refmesh aggregates tail|export|report`: a regional body reads its region's statistics.

Each command reads the region's aggregate topic (gateways/aggregates_reader.py), verifies every
release against the signed directory and keeps the highest revision per domain and window
(refmesh.aggregate.table), then prints, exports or renders (gateways/aggregates_report.py).
A release that fails verification is named on stderr as a warning and left out.
"""
from __future__ import annotations

from collections.abc import Iterable

import click

from gateways import aggregates_reader as reader
from gateways import aggregates_report
from cli import common
from refmesh import aggregate
from refmesh.aggregate import table
from refmesh.directory import TrustedDirectory


@click.group("aggregates", cls=common.MeshGroup)
def aggregates() -> None:
    """Statistics releases for regional bodies: signed counts, never cases."""


def source_options(command):
    """--region, --directory, --anchor, and the broker's --config, --bootstrap and --broker."""
    for option in reversed((
            click.option("--region", required=True, metavar="REGION",
                         help="Region code, e.g. GCC: reads refmesh.region.REGION.aggregates."),
            common.directory_option(), common.anchor_option(), common.broker_options())):
        command = option(command)
    return command


class Source:
    """The region's topic on one broker, and the directory releases are checked against."""

    def __init__(self, region: str, directory_file: str, anchor_file: str,
                 broker: common.Broker) -> None:
        self.region = aggregate.check_region(region)
        self.bootstrap = broker.bootstrap
        self.directory: TrustedDirectory = common.trusted_directory(
            directory_file, anchor_file, common.now_ms())
        self.config = broker.consumer("aggregates-reader")
        self.latest = table.Latest()
        self.rejected = 0

    def missing(self) -> common.Failure:
        return common.Failure(f"no aggregate topic {aggregate.topic(self.region)} on "
                              f"{self.bootstrap}; check --region and --bootstrap (the topic is "
                              "created with the mesh's topics)", common.USAGE)

    def take(self, messages: Iterable[reader.Message]) -> list[dict]:
        """Verify messages; warn about the rejected ones; return the releases kept."""
        kept, rejected = table.accept(
            ((f"partition {m.partition} offset {m.offset}", m.value) for m in messages),
            self.directory, common.now_ms(), self.region, self.latest)
        for r in rejected:
            click.echo(f"warning: {r.where}: release rejected ({r.reason}): {r.detail}",
                       err=True)
        self.rejected += len(rejected)
        return kept

    def read(self) -> list[dict]:
        """Every verified release on the topic now, newest revision per domain and window."""
        messages = reader.read_all(self.config, self.region)
        if messages is None:
            raise self.missing()
        self.take(messages)
        return self.latest.releases()


def show(releases: Iterable[dict]) -> None:
    for agg in releases:
        for line in table.describe(agg):
            click.echo(line)


@aggregates.command("tail")
@source_options
@click.option("--once", is_flag=True, help="Print what is on the topic now, then exit.")
def tail(region: str, directory_file: str, anchor_file: str, broker: common.Broker,
         once: bool) -> None:
    """Print verified releases as they arrive (Ctrl-C stops), corrections included."""
    source = Source(region, directory_file, anchor_file, broker)
    if once:
        releases = source.read()
        show(releases)
        if not releases:
            click.echo(f"no verified release on {aggregate.topic(source.region)} yet")
        return
    batches = reader.follow(source.config, source.region)
    if batches is None:
        raise source.missing()
    try:
        for batch in batches:
            newest = {(a["domain"], a["windowStart"], a["windowEnd"]): a
                      for a in source.take(batch)}  # within a batch, only the last revision
            show(newest.values())
    except KeyboardInterrupt:
        pass
    finally:
        batches.close()


@aggregates.command("export")
@source_options
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="File to write [default: stdout].")
def export(region: str, directory_file: str, anchor_file: str, broker: common.Broker,
           fmt: str, out: str | None) -> None:
    """Export the released cells, marginals and totals with HTCDS/CTDC-style column names."""
    source = Source(region, directory_file, anchor_file, broker)
    rows = table.rows(source.read())
    text = table.to_csv(rows) if fmt == "csv" else table.to_json(rows)
    if out is None:
        click.echo(text, nl=False)
        return
    common.write_file(out, text.encode("utf-8"), mode=0o644)
    click.echo(f"wrote {len(rows)} rows to {out}", err=True)


@aggregates.command("report")
@source_options
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="report.html")
def report(region: str, directory_file: str, anchor_file: str, broker: common.Broker,
           out: str) -> None:
    """Write a self-contained HTML report: trend per month, breakdowns, the release rule."""
    source = Source(region, directory_file, anchor_file, broker)
    releases = source.read()
    page = aggregates_report.render(releases, region=source.region,
                                    generated_at=common.now_ms(), rejected=source.rejected)
    common.write_file(out, page.encode("utf-8"), mode=0o644)
    click.echo(f"wrote {out}: {len(releases)} release(s) of region {source.region}", err=True)
