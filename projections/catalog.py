"""The one list of read models the engine keeps: the engine, the runner and the CLI all use it,
so a model added here is created, followed and rebuilt everywhere."""

from __future__ import annotations

from escrow.projections.appeal_queue import AppealQueue
from escrow.projections.base import ReadModel
from escrow.projections.deadlines import Deadlines
from escrow.projections.ledger import Ledger
from escrow.projections.orders import Orders
from escrow.projections.traders import Traders


def read_models() -> list[ReadModel]:
    return [Deadlines(), Ledger(), Orders(), AppealQueue(), Traders()]


NAMES: tuple[str, ...] = tuple(m.name for m in read_models())
