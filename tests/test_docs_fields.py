"""The field names docs/projections.md gives for the queue items are the models' own."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from escrow.projections.appeal_queue import ComplaintQueueItem, QueueItem

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "projections.md").read_text()


def _documented(model: type[BaseModel]) -> list[str]:
    """The names in backquotes after "`Model`s ... :", up to the end of the clause, leaving out
    the table columns given in brackets."""
    found = re.search(rf"`{model.__name__}`s?[^:]*: (.*?)[.;]\n", PAGE, re.S)
    assert found is not None, f"{model.__name__} is not described"
    fields = re.sub(r"\((the\s+column\s+)?`\w+`\)|\(from[^)]*\)", "", found.group(1))
    return re.findall(r"`(\w+)`", fields)


def test_the_queue_items_are_documented_with_their_own_field_names() -> None:
    for model in (QueueItem, ComplaintQueueItem):
        assert _documented(model) == list(model.model_fields)
