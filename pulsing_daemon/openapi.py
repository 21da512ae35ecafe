"""The OpenAPI document the daemon serves at ``/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/ErrorEnvelope"}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request (runtime)",
        401: "Missing or wrong token (runtime)",
        404: "Unknown actor, stream, route or op",
        409: "Actor stopped or failed (runtime)",
        410: "Offset older than retention (runtime)",
        413: "Body too large (runtime)",
        416: "Offset past the end of a finished stream (names last_seq)",
        422: "Business error; for /v1/reload: the config file has problems (ConfigError)",
        500: "System error (not recoverable)",
        503: "Recoverable: restarting, mailbox full, shutting down",
        504: "Timeout",
    }
    return {
        str(code): {
            "description": text[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code in codes
    }


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
}
_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[\\x21-\\x7e]+$"},
}
_JSON_OK = {"application/json": {"schema": {"type": "object"}}}


def document(version: str) -> dict[str, Any]:
    status_ok = {"200": {"description": "Status", "content": _JSON_OK}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pulsing daemon",
            "version": version,
            "description": (
                "Asks with deadlines, restart-supervised actors, resumable streams. "
                "Every error is an ErrorEnvelope; see pulsing(1)."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "ErrorEnvelope": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["category", "type", "message", "recoverable"],
                            "properties": {
                                "category": {
                                    "type": "string",
                                    "enum": [
                                        "business",
                                        "system",
                                        "unsupported",
                                        "runtime",
                                        "timeout",
                                    ],
                                },
                                "type": {"type": "string"},
                                "message": {"type": "string"},
                                "recoverable": {"type": "boolean"},
                                "actor": {"type": "string"},
                                "state": {"type": "string"},
                                "restarts": {"type": "integer"},
                                "max_restarts": {"type": "integer"},
                                "retry_after": {"type": "number"},
                            },
                        }
                    },
                },
                "Call": {
                    "type": "object",
                    "required": ["op"],
                    "properties": {
                        "op": {"type": "string", "minLength": 1, "maxLength": 256},
                        "args": {
                            "description": "Keyword arguments (object) or positional (array).",
                            "oneOf": [{"type": "object"}, {"type": "array"}],
                        },
                        "kwargs": {"type": "object"},
                        "key": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 256,
                            "pattern": "^[\\x21-\\x7e]+$",
                            "description": "Stream key (streams only).",
                        },
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {
                "get": {
                    "summary": "Liveness (no token needed)",
                    "security": [],
                    "responses": {"200": {"description": "OK", "content": _JSON_OK}},
                }
            },
            "/v1/status": {
                "get": {
                    "summary": "Status of the daemon and every actor (schema 1)",
                    "responses": {**status_ok, **_errors(401)},
                }
            },
            "/v1/actors/{name}": {
                "get": {
                    "summary": "Status with only this actor",
                    "parameters": [_NAME],
                    "responses": {**status_ok, **_errors(401, 404)},
                }
            },
            "/v1/actors/{name}/ask": {
                "post": {
                    "summary": "Ask an actor to run an op",
                    "parameters": [
                        _NAME,
                        {
                            "name": "Pulsing-Timeout",
                            "in": "header",
                            "required": False,
                            "description": "Deadline in seconds",
                            "schema": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
                        },
                        _KEY,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Call"}}
                        },
                    },
                    "responses": {
                        "200": {
                            "description": '{"result": ..., "replayed"?: true}',
                            "content": _JSON_OK,
                        },
                        **_errors(400, 401, 404, 409, 413, 422, 500, 503, 504),
                    },
                }
            },
            "/v1/actors/{name}/streams": {
                "post": {
                    "summary": "Start a streaming op, or attach to the one with this key",
                    "parameters": [_NAME, _KEY],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Call"}}
                        },
                    },
                    "responses": {
                        "200": {"description": "Attached", "content": _JSON_OK},
                        "201": {"description": "Started", "content": _JSON_OK},
                        **_errors(400, 401, 404, 409, 413, 422, 503),
                    },
                }
            },
            "/v1/streams/{id}": {
                "get": {
                    "summary": "Read a stream: SSE, or NDJSON with Accept: application/x-ndjson",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "from",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                        {
                            "name": "follow",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["0", "1"]},
                        },
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": (
                                'Records {"seq", "data"}, then {"end": true} or an error'
                            ),
                            "content": {
                                "text/event-stream": {"schema": {"type": "string"}},
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        },
                        **_errors(400, 401, 404, 410, 416, 503),
                    },
                }
            },
            **{
                f"/v1/actors/{{name}}/{action}": {
                    "post": {
                        "summary": f"{action.capitalize()} an actor",
                        "parameters": [_NAME],
                        "responses": {**status_ok, **_errors(401, 404)},
                    }
                }
                for action in ("restart", "stop", "start")
            },
            **_ops_paths(),
            "/v1/reload": {
                "post": {
                    "summary": "Re-read the config file and apply what changed (pulsing-reload(1))",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"dry_run": {"type": "boolean"}},
                                    "additionalProperties": False,
                                }
                            }
                        }
                    },
                    "responses": {
                        "200": {
                            "description": "The plan: added, removed, updated, restarted, "
                            "unchanged, needs_daemon_restart (applied unless dry_run)",
                            "content": _JSON_OK,
                        },
                        **_errors(400, 401, 422, 503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
        },
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _ops_paths() -> dict[str, Any]:
    """Day-to-day operation (CONTRACT §9): events, the streams listing, an actor's ops."""
    count = {"type": "integer", "minimum": 0}
    return {
        "/v1/events": {
            "get": {
                "summary": "Events: SSE (id: = event id), or NDJSON with Accept",
                "parameters": [
                    _query("since", count),
                    _query("limit", count),
                    _query("actor", {"type": "string"}),
                    _query("follow", {"type": "string", "enum": ["0", "1"]}),
                ],
                "responses": {
                    "200": {
                        "description": 'Event objects {"id", "at", "actor", "kind", ...}',
                        "content": {
                            "text/event-stream": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401),
                },
            }
        },
        "/v1/streams": {
            "get": {
                "summary": "The streams in the journal, newest first",
                "parameters": [
                    _query("actor", {"type": "string"}),
                    _query("state", {"type": "string", "enum": ["running", "completed", "failed"]}),
                    _query("limit", count),
                ],
                "responses": {
                    "200": {"description": '{"schema": 1, "streams": [...]}', "content": _JSON_OK},
                    **_errors(400, 401, 404),
                },
            }
        },
        "/v1/actors/{name}/logs": {
            "get": {
                "summary": "The actor's log: output, logging and events (pulsing-logs(1)); "
                "JSON, or SSE (id: = the record's time) / NDJSON with Accept",
                "parameters": [
                    _NAME,
                    _query("lines", {"type": "integer", "minimum": 0, "maximum": 100000}),
                    _query("since", {"type": "string"}),
                    _query("follow", {"type": "string", "enum": ["0", "1"]}),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": 'Records {"at", "actor", "instance", "stream", "text"}',
                        "content": {
                            **_JSON_OK,
                            "text/event-stream": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404),
                },
            }
        },
        "/v1/streams/{id}/info": {
            "get": {
                "summary": "One stream's record: actor, op, first_seq, next_seq, open",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The stream", "content": _JSON_OK},
                    **_errors(401, 404),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3", "content": _JSON_OK}},
            }
        },
        "/v1/actors/{name}/ops": {
            "get": {
                "summary": "The actor's public ops: name, kind (ask | stream), params",
                "parameters": [_NAME],
                "responses": {
                    "200": {"description": "Ops", "content": _JSON_OK},
                    **_errors(401, 404),
                },
            }
        },
    }
