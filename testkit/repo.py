"""Where the repository and its test keys are: one place for the paths tests and ci/ share."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEYS = REPO / "tests/keys"
TEST_KEY = KEYS / "test-signing.key"  # signs test bundles; its .pub is the test vendor key
TEST_PUB = KEYS / "test-signing.pub"
OTHER_KEY = KEYS / "other-signing.key"  # a vendor the test stores do not trust
TEMPLATES = REPO / "overlays/usr/lib/atlas/config-default/templates"
