"""Who is who on the broker: the Kafka principal of every actor of the mesh.

Each agency's gateway, each policy domain's agents and each regional reader authenticates to
Apache Kafka as its own SCRAM user, so that the broker's ACLs can give each exactly the rights
its role needs (README: Security on the broker). The names are derived here, once, from the
agency ids of the signed directory and the region codes.
"""
from __future__ import annotations

from refmesh.aggregate.wire import check_region
from refmesh.directory import check_agency_id

#: The operator's principal: creates topics and ACLs; a super user on the broker.
ADMIN = "admin"


def _safe(agency_id: str) -> str:
    return check_agency_id(agency_id).replace("/", ".")


def agency_principal(agency_id: str) -> str:
    """SCRAM user name of an agency's gateway, e.g. ``agency.BH.GOV.HOTLINE``."""
    return f"agency.{_safe(agency_id)}"


def domain_principal(domain_id: str) -> str:
    """SCRAM user name of a policy domain's agents, e.g. ``domain.BH.GOV.NCCTIP``."""
    return f"domain.{_safe(domain_id)}"


def region_principal(region: str) -> str:
    """SCRAM user name of a regional body's reader, e.g. ``region.GCC``."""
    return f"region.{check_region(region)}"
