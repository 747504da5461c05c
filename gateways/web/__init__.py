"""The case workers' web page (issue 7): sign in, inbox, send a referral with the policy preview,
consent, sent referrals with their timelines, erasure notices; English and Arabic.

``mount(app, gateway)`` adds it to the gateway's aiohttp application (gateways/gateway.py
``serve``); accounts are managed with `refmesh users` (cli/users.py).
"""
from gateways.web.app import mount

__all__ = ["mount"]
