"""One OpenAPI document for the whole API, merged from every upstream's `/openapi.json`.

Only paths the gateway routes are kept (never `/internal/...`, `/health`, `/metrics`), shared
components are deduplicated (identical definitions collapse; different ones under the same
name are renamed per service and their `$ref`s rewritten), and a service that cannot be
reached keeps its last good document.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from taskflow_kit.auth import TOKEN_URL
from taskflow_kit.errors import PROBLEM_MEDIA_TYPE

from api_gateway.client import UpstreamError
from api_gateway.routing import upstream_for
from api_gateway.upstreams import Upstream

logger = structlog.get_logger("api_gateway.openapi")

Document = dict[str, Any]

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

BEARER_SCHEME: Document = {
    "type": "oauth2",
    "flows": {"password": {"scopes": {}, "tokenUrl": TOKEN_URL}},
}


# What the gateway itself may answer on any route it forwards, before or instead of the service:
# documented on every merged operation so clients (and schemathesis) know them.
GATEWAY_RESPONSES: Mapping[str, str] = {
    "400": "Refused by the gateway: an unsafe request path (encoded slash, dot-segment, raw bytes)",
    "413": "Refused by the gateway: the body is larger than it forwards",
    "429": "Refused by the gateway: a rate limit was exceeded (see Retry-After)",
    "502": "The service answered with something the gateway could not relay",
    "503": "No replica of the service can take the request now (see Retry-After)",
    "504": "The service did not answer in time",
}


def _add_gateway_responses(operation: Document, problem_schema: Document) -> None:
    responses: Document = operation.setdefault("responses", {})
    for status, description in GATEWAY_RESPONSES.items():
        responses.setdefault(
            status,
            {"description": description, "content": {PROBLEM_MEDIA_TYPE: problem_schema}},
        )


def _service_tag(service: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", service) if part)


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value in renames:
                out[key] = renames[value]
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


def merge_documents(gateway: Document, services: Mapping[str, Document]) -> Document:
    """The gateway's own document plus the public paths and components of each service."""
    merged = copy.deepcopy(gateway)
    paths: Document = merged.setdefault("paths", {})
    components: Document = merged.setdefault("components", {})
    tags: list[Document] = [dict(tag) for tag in merged.get("tags", [])]
    tag_index = {tag["name"]: index for index, tag in enumerate(tags)}

    def add_tag(tag: Document) -> None:
        index = tag_index.get(tag["name"])
        if index is None:
            tag_index[tag["name"]] = len(tags)
            tags.append(dict(tag))
        elif len(tag) > len(tags[index]):  # prefer the entry with a description
            tags[index] = dict(tag)

    operation_ids = {
        operation.get("operationId")
        for item in paths.values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }

    forwarded: list[Document] = []
    for service in sorted(services):
        document = services[service]
        source_components: Document = document.get("components", {})
        renames: dict[str, str] = {}
        for section, entries in source_components.items():
            target = components.setdefault(section, {})
            for name, definition in entries.items():
                if name in target and target[name] != definition:
                    renames[f"#/components/{section}/{name}"] = (
                        f"#/components/{section}/{_service_tag(service)}{name}"
                    )
        document = _rewrite_refs(document, renames)
        for tag in document.get("tags", []):
            add_tag(tag)
        for section, entries in document.get("components", {}).items():
            target = components.setdefault(section, {})
            for name, definition in entries.items():
                ref = f"#/components/{section}/{name}"
                target_name = renames[ref].rsplit("/", 1)[1] if ref in renames else name
                target.setdefault(target_name, definition)

        for path, item in document.get("paths", {}).items():
            if upstream_for(path) != service or path in paths:
                continue
            item = copy.deepcopy(item)
            for method, operation in item.items():
                if method not in HTTP_METHODS or not isinstance(operation, dict):
                    continue
                operation_id = operation.get("operationId")
                if operation_id in operation_ids:
                    operation["operationId"] = f"{_service_tag(service)}_{operation_id}"
                operation_ids.add(operation.get("operationId"))
                for tag in operation.get("tags", []):
                    add_tag({"name": tag})
            paths[path] = item
            forwarded.append(item)

    problem_schema: Document = (
        {"schema": {"$ref": "#/components/schemas/Problem"}}
        if "Problem" in components.get("schemas", {})
        else {}
    )
    for item in forwarded:
        for method, operation in item.items():
            if method in HTTP_METHODS and isinstance(operation, dict):
                _add_gateway_responses(operation, problem_schema)

    # Swagger's Authorize posts the OAuth2 password form to user-service through the gateway.
    schemes = components.setdefault("securitySchemes", {})
    schemes.setdefault("OAuth2PasswordBearer", BEARER_SCHEME)
    if tags:
        merged["tags"] = tags
    merged["paths"] = dict(sorted(paths.items()))
    return merged


class OpenAPIAggregator:
    """Fetches each upstream's schema (periodically, and when a replica comes back) and serves
    the merged document."""

    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        gateway_schema: Callable[[], Document],
        *,
        refresh_seconds: float,
        fetch_timeout: float = 3.0,
    ) -> None:
        self.upstreams = upstreams
        self._gateway_schema = gateway_schema
        self.refresh_seconds = refresh_seconds
        self.fetch_timeout = fetch_timeout
        self.documents: dict[str, Document] = {}
        self.fetched_at: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self._merged: Document | None = None
        self._wake = asyncio.Event()

    def request_refresh(self, _upstream: object = None) -> None:
        self._wake.set()

    async def _fetch(self, upstream: Upstream) -> None:
        replica = upstream.replicas.pick()
        if replica is None:
            self.errors[upstream.name] = "no replicas"
            return
        try:
            async with asyncio.timeout(self.fetch_timeout):
                status, body = await upstream.client.get(
                    replica.host, replica.port, "/openapi.json"
                )
            if status != 200:
                raise ValueError(f"answered {status}")
            document = json.loads(body)
            if not isinstance(document, dict) or "paths" not in document:
                raise ValueError("not an OpenAPI document")
        except (UpstreamError, TimeoutError, ValueError) as exc:
            self.errors[upstream.name] = f"{type(exc).__name__}: {exc}"[:200]
            return
        self.errors.pop(upstream.name, None)
        self.fetched_at[upstream.name] = time.time()
        if self.documents.get(upstream.name) != document:
            self.documents[upstream.name] = document
            self._merged = None

    async def refresh(self) -> None:
        await asyncio.gather(*(self._fetch(upstream) for upstream in self.upstreams.values()))

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.refresh()
            # Retry sooner while a service is missing from the docs.
            interval = min(self.refresh_seconds, 2.0) if self.errors else self.refresh_seconds
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def document(self) -> Document:
        if self._merged is None:
            self._merged = merge_documents(self._gateway_schema(), self.documents)
        return self._merged

    def status(self) -> dict[str, Any]:
        return {
            name: {
                "fetched_at": self.fetched_at.get(name),
                "error": self.errors.get(name),
            }
            for name in self.upstreams
        }
