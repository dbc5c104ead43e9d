"""The lab tier: QEMU machines booted from the built image (tests/conftest.py builds it)."""
