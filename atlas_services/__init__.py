"""ATLAS on-box services: role detection, versioned store, Synchronizer, Verifier."""

from __future__ import annotations

__version__ = "0.1.0"
