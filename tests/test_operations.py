"""Operations (issue 19): logging through named loggers and as JSON, Prometheus metrics in an
embedding backend's registry and at `escrow serve`'s /metrics, configuration by environment."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from escrow.commands import CreateOrder, Escrow, EscrowError, ManualClock, MarkPaid, Release
from escrow.commands.cli.main import main
from escrow.commands.config import load_policy
from escrow.commands.logs import JsonFormatter
from escrow.errors import StoreConnectionLost, ValidationError
from tests.helpers import order_fields
from tests.http_server import ESCROW, KEYS, auth, free_port, running, serve
from tests.test_projections import fresh_store


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@contextmanager
def captured(level: int = logging.INFO) -> Iterator[io.StringIO]:
    """The escrow loggers' lines as JsonFormatter writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("escrow")
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- logging ------------------------------------------------------------------------------


def test_commands_refusals_and_deadlines_are_logged_with_their_facts(
    engine: Escrow, clock: ManualClock
) -> None:
    with captured() as out:
        engine.execute(CreateOrder(**order_fields("log-1")))
        with pytest.raises(EscrowError):
            engine.execute(Release(order="log-1", by="bob"))
        clock.advance(timedelta(hours=1))
        engine.tick()
    accepted, refused, *rest = lines(out)
    assert accepted["logger"] == "escrow.commands" and accepted["level"] == "INFO"
    assert accepted["command"] == "create_order" and accepted["refs"] == {"order": "log-1"}
    assert accepted["events"] == 1 and isinstance(accepted["duration_ms"], float)
    assert str(accepted["message"]).startswith("accepted create_order order=log-1: 1 events")
    assert {"time", "level", "logger", "message"} <= accepted.keys()
    assert refused["command"] == "release" and refused["code"] == "not_authorized"
    assert refused["rule"] == "O6" and refused["actor"] == "bob"
    fired = [line for line in rest if line["logger"] == "escrow.deadlines"]
    assert [(f["deadline"], f["ref"], f["command"]) for f in fired] == [
        ("payment_window", "log-1", "expire_payment_window")
    ]


def test_nothing_is_formatted_when_the_level_is_off(engine: Escrow) -> None:
    with captured(logging.WARNING) as out:
        engine.execute(CreateOrder(**order_fields("quiet-1")))
    assert out.getvalue() == ""


def test_json_lines_never_carry_a_password() -> None:
    record = logging.makeLogRecord(
        {
            "name": "escrow.store",
            "levelname": "WARNING",
            "msg": "lost %s",
            "args": ("postgresql://app:s3cret@db/x?sslpassword=k3y",),
        }
    )
    line = JsonFormatter().format(record)
    assert "s3cret" not in line and "k3y" not in line
    assert json.loads(line)["message"] == "lost postgresql://app:***@db/x?sslpassword=***"


def test_a_lost_store_connection_is_logged_masked(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection dies inside its transaction until the library's retries are spent:
    escrow.store says so (the URL's password masked) and replaces the pool's connections."""
    url = pg_schema_url.replace("postgres@", "postgres:pw-not-shown@", 1)
    with Escrow(url, read_models="deferred") as engine:
        engine.execute(CreateOrder(**order_fields("gone-1")))
        datastore = engine.app.recorder.datastore  # type: ignore[attr-defined]
        connect = datastore.get_connection

        @contextmanager
        def dying() -> Iterator[object]:
            with connect() as conn:
                conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                yield conn

        monkeypatch.setattr(datastore, "get_connection", dying)
        with captured() as out, pytest.raises(StoreConnectionLost):
            engine.execute(MarkPaid(order="gone-1", by="bob"))
    (lost,) = [line for line in lines(out) if line["logger"] == "escrow.store"]
    assert lost["level"] == "WARNING" and lost["code"] == "store_connection_lost"
    assert lost["store"] == url.replace("pw-not-shown", "***")
    assert "pw-not-shown" not in out.getvalue()


def test_bad_log_settings_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["--store", f"sqlite:///{tmp_path}/x.db", "diagram"], env={"ESCROW_LOG_FORMAT": "xml"}
    )
    assert result.exit_code == 2 and "ESCROW_LOG_FORMAT" in result.output
    result = runner.invoke(main, ["diagram"], env={"ESCROW_LOG_LEVEL": "LOUD"})
    assert result.exit_code == 2 and "ESCROW_LOG_LEVEL" in result.output


# --- metrics in the backend's own registry ---------------------------------------------------


def test_an_embedding_backend_gets_the_metrics_in_its_registry(
    store_url: str, clock: ManualClock
) -> None:
    registry = CollectorRegistry()
    with Escrow(store_url, clock=clock, metrics=registry, read_models="deferred") as engine:
        engine.execute(CreateOrder(**order_fields("m-1")))
        engine.execute(CreateOrder(**order_fields("m-2")))
        engine.execute(MarkPaid(order="m-1", by="bob"))
        with pytest.raises(EscrowError):
            engine.execute(Release(order="m-2", by="alice"))  # not paid
        found = samples(generate_latest(registry).decode())
        assert value(found, "escrow_commands_total", command="create_order") == 2
        assert value(found, "escrow_commands_total", command="mark_paid") == 1
        assert (
            value(found, "escrow_command_refusals_total", command="release", code="invalid_state")
            == 1
        )
        assert value(found, "escrow_command_duration_seconds_count", command="release") == 1
        # deferred: nothing projected yet, so every model is 3 events behind
        assert value(found, "escrow_log_head") == 3
        assert value(found, "escrow_read_model_lag_events", model="orders") == 3
        engine.catch_up()
        clock.advance(timedelta(hours=1))
        found = samples(generate_latest(registry).decode())
        assert value(found, "escrow_read_model_lag_events", model="orders") == 0
        assert value(found, "escrow_deadlines_due", kind="payment_window") == 1  # m-2's
        engine.tick()
        engine.catch_up()  # deferred: the deadline table learns of the firing here
        found = samples(generate_latest(registry).decode())
        assert value(found, "escrow_deadlines_fired_total", kind="payment_window") == 1
        assert value(found, "escrow_deadlines_due", kind="payment_window") == 0
        with pytest.raises(ValidationError, match="registry"):
            Escrow(store_url, clock=clock, metrics=registry)  # one engine per registry
    assert list(registry.collect()) == []  # closing the engine takes its metrics away
    with Escrow(store_url, clock=clock, metrics=registry):
        pass  # so the registry can take the next one


def test_without_a_registry_nothing_is_counted(engine: Escrow) -> None:
    assert engine.runner.metrics is None


# --- escrow serve: /metrics, logs as JSON, configuration by environment -------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_serve_metrics_move_with_commands_and_refusals(kind: str, tmp_path: Path) -> None:
    env = {"ESCROW_LOG_FORMAT": "json"}
    with fresh_store(kind) as url, serve(url, tmp_path, env=env) as server:
        with server.client() as http:
            assert http.get("/metrics").status_code == 401
            assert http.get("/metrics", headers=auth("alice")).status_code == 403
            before = samples(http.get("/metrics", headers=auth("platform")).text)
            assert value(before, "escrow_commands_total", command="create_order") == 0
            body = order_fields("srv-1")
            assert (
                http.post(
                    "/v1/commands/create_order", json=body, headers=auth("platform")
                ).status_code
                == 201
            )
            refused = http.post(
                "/v1/commands/release", json={"order": "srv-1"}, headers=auth("alice")
            )
            assert refused.status_code == 409
            scraped = http.get("/metrics", headers=auth("carol"))
        assert scraped.headers["content-type"].startswith("text/plain")
        after = samples(scraped.text)
        assert value(after, "escrow_commands_total", command="create_order") == 1
        assert (
            value(after, "escrow_command_refusals_total", command="release", code="invalid_state")
            == 1
        )
        assert value(after, "escrow_command_duration_seconds_count", command="create_order") == 1
        assert value(after, "escrow_log_head") >= 1
        assert ("escrow_read_model_lag_events", (("model", "orders"),)) in after
        assert value(after, "process_cpu_seconds_total") > 0
        logged = [
            json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
        ]
    loggers = {line["logger"] for line in logged}
    assert {"escrow.commands", "escrow.http.access"} <= loggers
    access = [line for line in logged if line["logger"] == "escrow.http.access"]
    assert {"method": "POST", "route": "/v1/commands/release", "status": 409} in [
        {k: line.get(k) for k in ("method", "route", "status")} for line in access
    ]
    accepted = next(  # after the keys file's appointments, which serve records first
        line
        for line in logged
        if line["logger"] == "escrow.commands" and line["command"] == "create_order"
    )
    assert accepted["refs"] == {"order": "srv-1"}
    assert all("tok-" not in json.dumps(line) for line in logged)  # never a token


def test_serve_takes_everything_from_the_environment(tmp_path: Path) -> None:
    """No option but the command: store, keys, host, port and policy from the environment."""
    keys = tmp_path / "keys.yaml"
    keys.write_text(KEYS)
    policy = tmp_path / "policy.yaml"
    policy.write_text("payment_window: 45m\n")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "ESCROW_STORE": f"sqlite:///{tmp_path}/env.db",
        "ESCROW_HTTP_KEYS": str(keys),
        "ESCROW_HTTP_HOST": "127.0.0.1",
        "ESCROW_HTTP_PORT": str(port),
        "ESCROW_POLICY": str(policy),
        "ESCROW_LOG_LEVEL": "WARNING",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [ESCROW, "serve"], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    with running(process, url, log):
        created = httpx.post(
            f"{url}/v1/commands/create_order", json=order_fields("env-1"), headers=auth("platform")
        )
        assert created.status_code == 201, created.text
        answer = created.json()
        opened = datetime.fromisoformat(answer["recorded"][0]["at"])
        due = datetime.fromisoformat(answer["order"]["payment_deadline"])
        assert due - opened == timedelta(minutes=45)
    assert (tmp_path / "env.db").exists()
    assert "escrow.http.access" not in log.read_text()  # ESCROW_LOG_LEVEL=WARNING


def test_a_policy_file_is_read_whole_or_refused(tmp_path: Path) -> None:
    good = tmp_path / "policy.json"
    good.write_text('{"payment_window": "30m", "partial_ban_durations": ["1d", "14d"]}')
    policy = load_policy(good)
    assert policy.payment_window == timedelta(minutes=30)
    assert policy.partial_ban_durations == [timedelta(days=1), timedelta(days=14)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("payment_window: soon\n")
    with pytest.raises(ValidationError, match=r"bad.yaml: payment_window"):
        load_policy(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("payment_windw: 30m\n")
    with pytest.raises(ValidationError, match="payment_windw"):
        load_policy(unknown)
    with pytest.raises(ValidationError, match=r"missing\.yaml"):
        load_policy(tmp_path / "missing.yaml")


def test_relay_status_takes_its_stream_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/relay.db"
    with Escrow(url) as engine:
        engine.execute(CreateOrder(**order_fields("r-1")))
        engine.execute(CreateOrder(**order_fields("r-2")))
    with sqlite3.connect(tmp_path / "relay.db") as db:
        db.execute("INSERT INTO escrow_tracking (name, position) VALUES ('relay:OPS', 1)")
    result = CliRunner().invoke(
        main,
        ["relay", "status", "--json"],
        env={"ESCROW_STORE": url, "ESCROW_RELAY_STREAM": "OPS"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"position": 1, "head": 2, "lag": 1}
    registry = CollectorRegistry()
    with Escrow(url, metrics=registry):
        found = samples(generate_latest(registry).decode())
    assert value(found, "escrow_relay_lag_events", stream="OPS") == 1
