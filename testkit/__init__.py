"""Test support shared by tests/ and ci/: real service stacks, loop disks, sync pairs and the
QEMU lab. Nothing here is installed on the box."""
