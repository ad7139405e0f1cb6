from escrow.commands.api import Escrow
from tests.helpers import paid_order, refused


def test_order_lifecycle_releases_escrow_to_the_buyer(engine: Escrow) -> None:
    paid_order(engine)
    engine.run("release", {"order": "o1", "by": "alice"})
    view = engine.order("o1")
    assert view.state == "completed"
    assert view.escrow.released == view.amount
    assert engine.ledger("USDT").released == view.amount
    refused(engine, "invalid_state", "release", order="o1", by="alice")
