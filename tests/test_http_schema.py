"""Property-based tests of the HTTP service against its own OpenAPI document (schemathesis):
every route, with valid and invalid data, as the platform and as CS. No answer is a 500, every
answer matches the document (status, content type, headers, body), invalid data is rejected
and a route never ignores a missing or wrong token."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from escrow.commands.http.app import create_app
from escrow.commands.http.keys import Keys
from tests.http_server import KEYS, Server, auth, server_on

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
NOT_A_REQUEST = ["/v1/events/stream"]  # a live stream never ends: its own tests read it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with server_on("sqlite", tmp_path_factory.mktemp("schema")) as running:
        yield running


def document() -> dict[str, Any]:
    """The document the server serves, built the same way in this process (the served one is
    compared with it below), so the tests can be generated before any server runs."""
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder) / "keys.yaml"
        keys.write_text(KEYS)
        return create_app("memory:", Keys.load(keys)).openapi()


schema = schemathesis.openapi.from_dict(document()).exclude(path=NOT_A_REQUEST)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    deterministic=True,
)


def test_the_served_document_is_the_one_tested(server: Server) -> None:
    with server.client() as http:
        assert http.get("/openapi.json").json() == document()


EXAMPLES = settings(
    max_examples=12,
    phases=[Phase.explicit, Phase.generate],
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@EXAMPLES
def test_every_route_keeps_to_its_document_for_the_platform(case: Any, server: Server) -> None:
    case.call_and_validate(base_url=server.url, headers=auth("platform"), checks=CHECKS)


@schema.parametrize()
@EXAMPLES
def test_every_route_keeps_to_its_document_for_a_trader(case: Any, server: Server) -> None:
    case.call_and_validate(base_url=server.url, headers=auth("alice"), checks=CHECKS)
