"""The OpenAPI 3.1 description of the gateway API (served at /openapi.json)."""
from __future__ import annotations

from refmesh import schemas

_ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                           "field": {"type": "string"}}, "required": ["error"]}
_STATES = schemas.contract("ReferralStatus").raw["fields"][1]["type"]["symbols"]
_REASONS = schemas.contract("ReferralStatus").raw["fields"][2]["type"][1]["symbols"]


def _errors(*codes: int) -> dict:
    text = {400: "Invalid body; `field` names the wrong field", 401: "Missing or wrong token",
            404: "No such referral", 409: "Transition not allowed by the closed loop",
            503: "The gateway cannot store data now; nothing was accepted"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}}
            for c in codes}


_LIST = {"200": {"description": "Referrals, newest first", "content": {"application/json": {
    "schema": {"type": "object", "properties": {"referrals": {"type": "array", "items": {
        "type": "object"}}}}}}}}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "refmesh gateway API", "version": "1",
             "description": "One agency's gateway. Referral bodies follow the Avro contract "
                            "schemas/Referral.avsc (HTCDS field names); the gateway fills in "
                            "referralId, senderAgency and createdAt when absent."},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    "security": [{"token": []}],
    "paths": {
        "/v1/referrals": {"post": {
            "summary": "Submit a referral (stored, then sent through the outbox)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "description": "A Referral record (schemas/Referral.avsc)",
                "required": ["caseRef", "subjectId", "recipientAgency", "trmStage", "purpose",
                             "legalBasis", "service"]}}}},
            "responses": {"202": {"description": "Accepted: stored in the outbox"},
                          **_errors(400, 401, 503)}}},
        "/v1/inbox": {"get": {"summary": "Referrals received", "responses": {
            **_LIST, **_errors(401)}}},
        "/v1/outbox": {"get": {"summary": "Referrals sent, with their state", "responses": {
            **_LIST, **_errors(401)}}},
        "/v1/referrals/{id}": {"get": {
            "summary": "One referral (as sent or as received) with its status history",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The referral"}, **_errors(401, 404)}}},
        "/v1/referrals/{id}/status": {"post": {
            "summary": "Change a referral's state (recipient: accepted, rejected, in_progress, "
                       "completed, failed; sender: revoked)",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["state"], "additionalProperties": False,
                "properties": {"state": {"enum": _STATES}, "reason": {"enum": _REASONS},
                               "detail": {"type": "string"}}}}}},
            "responses": {"200": {"description": "The status sent to the peer"},
                          **_errors(400, 401, 404, 409, 503)}}},
        "/healthz": {"get": {"summary": "Liveness (no token needed, no data)", "security": [],
                             "responses": {"200": {"description": "Relay and inbox running"},
                                           "503": {"description": "A worker thread died"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format"}, **_errors(401)}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1"}, **_errors(401)}}},
    },
}
