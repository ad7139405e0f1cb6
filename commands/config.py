"""Configuration that every process reads the same way: the policy file (`ESCROW_POLICY` or
`--policy FILE`). The full list of environment variables: docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import yaml

from escrow.errors import ValidationError
from escrow.policy import Policy
from escrow.validated import InvalidFields

POLICY_ENV = "ESCROW_POLICY"


def load_policy(path: str | Path) -> Policy:
    """The policy in a YAML or JSON file (JSON is YAML): a mapping of the policy fields of
    rules.md in scenario syntax (`payment_window: 30m`), the others at their defaults. Any
    problem is a ValidationError naming the file and the field."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValidationError(f"policy file {path}: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError(f"policy file {path}: a mapping of policy fields")
    try:
        return Policy.model_validate(data)
    except InvalidFields as e:
        problems = "; ".join(f"{field}: {why}" for field, why in e.fields)
        raise ValidationError(f"policy file {path}: {problems}") from None
