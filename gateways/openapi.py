"""The OpenAPI 3.1 description of the gateway API (served at /openapi.json)."""
from __future__ import annotations

from gateways import feed
from refmesh import schemas

_ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                           "field": {"type": "string"}}, "required": ["error"]}
_STATES = schemas.symbols("ReferralState")
_REASONS = schemas.symbols("StatusReason")


def _errors(*codes: int) -> dict:
    text = {400: "Invalid body or query parameter; `field` names it",
            401: "Missing or wrong token",
            404: "No such referral", 409: "Transition not allowed by the closed loop",
            422: "A date field holds no date of the calendar (YYYY-MM-DD); `field` names it",
            503: "The gateway cannot store data now; nothing was accepted"}
    return {str(c): {"description": text[c], "content": {"application/json": {"schema": _ERROR}}}
            for c in codes}


_CHANNELS = schemas.symbols("ConsentChannel")
# every route but /healthz: a token whose scopes do not allow it (refmesh.permissions)
_FORBIDDEN = {"403": {"description": "The token's scopes do not allow this",
                      "content": {"application/json": {"schema": _ERROR}}}}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
# referral ids are unique per sender: the sender names one when two referrals share an id
_REFERRAL = [*_ID, {"name": "sender", "in": "query", "required": False,
                    "description": "The referral's sender (agency id), needed only when two "
                                   "referrals here have the same id", "schema": {"type": "string"}}]
#: a referral's timeline: its statuses, and the erasure of its copies asked and confirmed
_TIMELINE = _STATES + ["erasure_requested", "erasure_confirmed"]
_HISTORY = {"type": "array", "description": "The referral's timeline, oldest first: each "
            "status (state, reason, detail, set_by, at), and the erasure of its copies: "
            "erasure_requested (for a referral sent here: the consent it relied on was "
            "withdrawn, and the policy domain asks its recipient to erase it; for one received: "
            "the domain asked, and the copy is erased), erasure_confirmed (the recipient erased "
            "its copy)", "items": {"type": "object", "properties": {
                "state": {"enum": _TIMELINE}, "reason": {"type": ["string", "null"]},
                "detail": {"type": ["string", "null"]}, "set_by": {"type": "string"},
                "at": {"type": "integer", "description": "epoch ms UTC"}}}}
_EVENT = {"type": "object", "description": "One entry of a referral's timeline, with ids and "
          "codes only, never case data: read the referral with GET /v1/referrals/{referral_id}"
          "?sender={sender}", "properties": {
              "cursor": {"type": "string", "description": "This entry's place in the feed: "
                         "pass it as `after` to read what follows"},
              "kind": {"enum": ["referral.received", "referral.sent", "status.changed",
                                "erasure.requested", "erasure.confirmed"]},
              "sender": {"type": "string", "description": "The referral's sender (agency id)"},
              "referral_id": {"type": "string"},
              "direction": {"enum": ["in", "out"], "description": "in: received here; out: "
                            "sent from here"},
              "state": {"enum": _TIMELINE},
              "reason": {"type": ["string", "null"], "description": "A StatusReason or "
                         "ErasureReason code"},
              "set_by": {"type": "string", "description": "The agency that set the state or "
                         "asked or confirmed the erasure"},
              "at": {"type": "integer", "description": "When, by that agency's clock (epoch "
                     "ms UTC)"}},
          "required": ["cursor", "kind", "sender", "referral_id", "direction", "state",
                       "set_by", "at"]}
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
                          **_errors(400, 401, 422, 503)}}},
        "/v1/inbox": {"get": {"summary": "Referrals received", "responses": {
            **_LIST, **_errors(401)}}},
        "/v1/outbox": {"get": {"summary": "Referrals sent, with their state", "responses": {
            **_LIST, **_errors(401)}}},
        "/v1/referrals/{id}": {"get": {
            "summary": "One referral (as sent or as received) with its status history",
            "parameters": _REFERRAL,
            "responses": {"200": {"description": "The referral", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "record": {"type": "object"}, "history": _HISTORY}}}}},
                **_errors(401, 404)}}},
        "/v1/referrals/{id}/status": {"post": {
            "summary": "Change a referral's state (recipient: accepted, rejected, in_progress, "
                       "completed, failed; sender: revoked)",
            "parameters": _REFERRAL,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["state"], "additionalProperties": False,
                "properties": {"state": {"enum": _STATES}, "reason": {"enum": _REASONS},
                               "detail": {"type": "string"}}}}}},
            "responses": {"200": {"description": "The status sent to the peer"},
                          **_errors(400, 401, 404, 409, 503)}}},
        "/v1/referrals/{id}/assign": {"post": {
            "summary": "Assign a referral to a case worker and/or a team (scope admin); both "
                       "null: back to the default team",
            "parameters": _REFERRAL,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "username": {"type": ["string", "null"]},
                    "team": {"type": ["string", "null"]}}}}}},
            "responses": {"200": {"description": "The assignment"}, **_FORBIDDEN,
                          **_errors(400, 401, 404, 503)}}},
        "/v1/access": {"get": {
            "summary": "The record of access (scope admin): who viewed, changed or exported "
                       "what, when; ids only, oldest first, a hash chain",
            "parameters": [
                {"name": "after", "in": "query", "required": False,
                 "schema": {"type": "integer"}, "description": "Entries with a greater seq"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": {"description": "Entries, the chain's head, whether it holds",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "properties": {
                                          "entries": {"type": "array", "items": {
                                              "type": "object"}},
                                          "head": {"type": "string"},
                                          "intact": {"type": "boolean"},
                                          "problem": {"type": ["string", "null"]}}}}}},
                          **_FORBIDDEN, **_errors(400, 401)}}},
        "/v1/consents": {
            "post": {"summary": "Record a consent (stored, then sent to the policy domain)",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"type": "object", "description": "A Consent record "
                                    "(schemas/Consent.avsc); consentId, version, controller, "
                                    "validFrom and the Given event are filled in when absent",
                                    "required": ["subjectId", "givenBy", "method", "language",
                                                 "noticeVersion", "purposes",
                                                 "dataCategories"]}}}},
                     "responses": {"202": {"description": "Stored"}, **_errors(400, 401, 503)}},
            "get": {"summary": "Consents recorded here", "responses": {
                "200": {"description": "Consents, newest first"}, **_errors(401)}}},
        "/v1/consents/{id}": {"get": {"summary": "One consent with its event history",
                                      "parameters": _ID, "responses": {
                                          "200": {"description": "The consent"},
                                          **_errors(401, 404)}}},
        "/v1/consents/{id}/withdraw": {"post": {
            "summary": "Record the person's withdrawal: forwarding stops and every agency that "
                       "received data is asked to erase it",
            "parameters": _ID,
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"channel": {"enum": _CHANNELS}}}}}},
            "responses": {"202": {"description": "The consent with its Withdrawn event"},
                          **_errors(400, 401, 404, 409, 503)}}},
        "/v1/erasures": {"get": {"summary": "Erasure requests received here and confirmations "
                                            "received from agencies that erased",
                                 "responses": {"200": {"description": "Erasure notices"},
                                               **_errors(401)}}},
        "/v1/events": {"get": {
            "summary": "The change feed: new referrals received and sent, status changes of "
                       "referrals received and sent, and erasures asked and confirmed, in the "
                       "order this gateway recorded them",
            "description": "Read from `after=0`, then pass the answer's `next` as `after`. The "
                           "cursor is a sequence in the gateway's database, written in the "
                           "transaction of the change it records: it survives restarts, and "
                           "no entry is skipped or repeated. With `wait`, an answer that would "
                           "be empty waits up to that many seconds for a first entry (a long "
                           "poll).",
            "parameters": [
                {"name": "after", "in": "query", "required": False, "schema": {
                    "type": "string", "pattern": "^(0|[1-9][0-9]*)$", "default": "0"},
                 "description": "A cursor this feed gave (an entry's `cursor`, an answer's "
                                "`next`), or 0 for the start"},
                {"name": "wait", "in": "query", "required": False, "schema": {
                    "type": "number", "minimum": 0, "maximum": feed.MAX_WAIT_S, "default": 0},
                 "description": "Seconds to wait for a first entry when there is none yet"},
                {"name": "limit", "in": "query", "required": False, "schema": {
                    "type": "integer", "minimum": 1, "maximum": feed.MAX_LIMIT,
                    "default": feed.DEFAULT_LIMIT}, "description": "Entries per answer"}],
            "responses": {"200": {"description": "The entries after `after`, oldest first "
                                                 "(none if `wait` passed without one)",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["events", "next"],
                                      "properties": {
                                          "events": {"type": "array", "items": _EVENT},
                                          "next": {"type": "string", "description": "The "
                                                   "cursor to pass as `after` next: the last "
                                                   "entry's, or `after` itself"}}}}}},
                          **_FORBIDDEN, **_errors(400, 401)}}},
        "/healthz": {"get": {"summary": "Health (no token needed, no case data): "
                                        "{ok, problems}", "security": [],
                             "responses": {"200": {"description": "Relay and inbox running, "
                                                                  "inbox assigned, database "
                                                                  "writable"},
                                           "503": {"description": "A worker thread died, the "
                                                                  "inbox holds no partition, or "
                                                                  "the database refuses "
                                                                  "writes; problems says which"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format"}, **_errors(401)}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1"}, **_errors(401)}}},
    },
}
