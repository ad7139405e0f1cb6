"""Commands only the system issues, when `tick` finds a deadline due (O3, C1, C4, S2/S3, E5).

They are recorded like any other command (actor `system`); callers cannot send them with
another actor, and no scenario step names them: `wait` fires them.
"""

from __future__ import annotations

from typing import ClassVar

from escrow.commands.models import Command, Ref


class SystemCommand(Command):
    system: ClassVar[bool] = True

    @property
    def actor(self) -> str:
        return "system"


class ExpirePaymentWindow(SystemCommand):
    name = "expire_payment_window"
    order: Ref


class ExpirePaymentProof(SystemCommand):
    name = "expire_payment_proof"
    appeal: Ref


class CloseFreezeWindow(SystemCommand):
    name = "close_freeze_window"
    appeal: Ref


class ExpireSanctions(SystemCommand):
    name = "expire_sanctions"
    trader: Ref


class MarkComplaintOverdue(SystemCommand):
    name = "mark_complaint_overdue"
    complaint: Ref
