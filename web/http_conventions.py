"""GraphQL over HTTP conventions: response media type, status codes, ETags, persisted queries.

- `Accept: application/graphql-response+json` is answered in that media type, and a request
  that never reached execution (a document that fails to parse or validate, variables that
  do not coerce) gets HTTP 400 without a `data` entry. Plain `application/json` clients keep
  HTTP 200 for every GraphQL error, as before.
- Query responses carry a strong `ETag` (a hash of the body); a matching `If-None-Match`
  gets 304 with no body.
- Automatic Persisted Queries (Apollo's protocol): `extensions.persistedQuery` with
  `version: 1` and the query's `sha256Hash`; a hash alone is looked up in a bounded
  per-process store, and a miss answers `PERSISTED_QUERY_NOT_FOUND` so the client resends
  the full text once.
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from graphql import GraphQLError
from starlette.responses import Response
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from web.operation_guards import oversized

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
PERSISTED_QUERIES_BYTES = 8 * 2**20
# The 64-character key string and the ordered dict's slot, per entry.
_ENTRY_OVERHEAD = 200


def _quality(accept: str, media_type: str) -> float:
    """The q-value `accept` gives `media_type` (exactly, or through */* or type/*); 0 if none."""
    best = -1.0
    best_specificity = -1
    major = media_type.split("/", 1)[0]
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        candidate = fields[0].lower()
        if candidate == media_type:
            specificity = 2
        elif candidate == f"{major}/*":
            specificity = 1
        elif candidate == "*/*":
            specificity = 0
        else:
            continue
        q = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if specificity > best_specificity:
            best, best_specificity = q, specificity
    return max(best, 0.0)


def wants_graphql_response(accept: str | None) -> bool:
    """Whether to answer in application/graphql-response+json rather than application/json."""
    if not accept:
        return False
    lowered = accept.lower()
    if GRAPHQL_RESPONSE_JSON not in lowered:
        return False
    return _quality(lowered, GRAPHQL_RESPONSE_JSON) >= max(
        _quality(lowered, APPLICATION_JSON), 1e-9
    )


def is_request_error(result: ExecutionResult) -> bool:
    """No execution happened: parse, validation or variable coercion errors (none has a path)."""
    return (
        result.data is None
        and bool(result.errors)
        and all(not getattr(e, "path", None) for e in result.errors or ())
    )


def etag_of(body: bytes) -> str:
    """A strong validator of a response body."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match (weak comparison): `*` or any listed tag equal to `etag`."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == bare:
            return True
    return False


class GraphQLSubResponse(Response):
    """Strawberry's per-request sub-response, carrying what the HTTP conventions decide by.

    Strawberry hands this one object to the context (`context.response`), to the execution of
    the request and to the building of the final response, so each step writes what it
    learns here: the request's Accept and If-None-Match (when it is made), the operation's
    type (OperationTypeExtension), the response cache's status, whether the document was
    refused before execution (the GraphQL app) and a used-up cost budget (web/rate_limit.py).
    """

    def __init__(self, accept: str | None, if_none_match: str | None) -> None:
        super().__init__()
        del self.headers["content-length"]  # the final response sets its own
        self.graphql_response = wants_graphql_response(accept)
        self.if_none_match = if_none_match
        self.operation_type: str | None = None
        self.cache_status: str | None = None
        self.request_error = False
        # Seconds the client must wait: its query-cost budget is used up (HTTP 429).
        self.retry_after: int | None = None


class OperationTypeExtension(SchemaExtension):
    """Records the operation's type on the sub-response, so only queries get an ETag."""

    def on_operation(self) -> Iterator[None]:
        yield
        response = getattr(self.execution_context.context, "response", None)
        if not isinstance(response, GraphQLSubResponse):
            return  # not over HTTP
        try:
            response.operation_type = self.execution_context.operation_type.value
        except Exception:  # no operation could be determined (the document was refused)
            response.operation_type = None


@dataclass(frozen=True)
class PersistedQueryError(Exception):
    """An APQ request that cannot run; answered as one GraphQL error with `code`."""

    message: str
    code: str

    def as_result(self) -> PersistedQueryFailure:
        return PersistedQueryFailure(
            data=None,
            errors=[GraphQLError(self.message, extensions={"code": self.code})],
            extensions={"cost": 0},  # nothing ran: nothing charged
        )


class PersistedQueryFailure(ExecutionResult):
    """The answer to an APQ request that could not run (a protocol answer, not a 400)."""


class PersistedQueries:
    """Query texts by SHA-256, bounded in bytes (least recently used leave first), per process.

    A text is stored only once it has parsed and validated (`remember` after execution), so
    documents that are refused anyway never take room.
    """

    def __init__(self, max_bytes: int = PERSISTED_QUERIES_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._texts: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._texts)

    def resolve(self, data: GraphQLRequestData) -> GraphQLRequestData:
        """The request with its query text; PersistedQueryError for a miss or a bad hash."""
        digest = self._digest(data)
        if digest is None:
            return data
        if data.query is None:
            text = self._texts.get(digest)
            if text is None:
                raise PersistedQueryError("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            self._texts.move_to_end(digest)
            return replace(data, query=text)
        if hashlib.sha256(data.query.encode()).hexdigest() != digest:
            raise PersistedQueryError(
                "provided sha256Hash does not match the query", "BAD_USER_INPUT"
            )
        return data

    def remember(self, data: GraphQLRequestData) -> None:
        """Store a registration (hash and text) whose document parsed and validated."""
        persisted = (data.extensions or {}).get("persistedQuery")
        query = data.query
        if not isinstance(persisted, dict) or query is None or oversized(query) is not None:
            return
        digest = str(persisted.get("sha256Hash", "")).lower()
        if digest in self._texts:
            self._texts.move_to_end(digest)
            return
        size = entry_size(query)
        if size > self.max_bytes:
            return
        self._texts[digest] = query
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._texts.popitem(last=False)
            self.bytes -= entry_size(evicted)

    @staticmethod
    def _digest(data: GraphQLRequestData) -> str | None:
        persisted = (data.extensions or {}).get("persistedQuery")
        if persisted is None:
            return None
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryError(
                "PersistedQueryNotSupported: only persistedQuery version 1 is supported",
                "PERSISTED_QUERY_NOT_SUPPORTED",
            )
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or len(digest) != 64:
            raise PersistedQueryError(
                "persistedQuery.sha256Hash must be the 64 hex digits of the query's SHA-256",
                "BAD_USER_INPUT",
            )
        return digest.lower()


def entry_size(text: str) -> int:
    """Bytes an entry holds: the text (as str, up to 4 bytes a character), key and overhead."""
    return sys.getsizeof(text) + _ENTRY_OVERHEAD


def without_data(response: dict[str, Any]) -> dict[str, Any]:
    """The response of a request error: errors (and extensions) only, no `data` entry."""
    return {key: value for key, value in response.items() if key != "data"}
