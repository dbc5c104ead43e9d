"""The lab tier: QEMU guests booted from the built image (tests/conftest.py builds it).

Never more than two guests run at once (testkit.lab.machine refuses a third): test_roles.py
boots its own one or two servers, and the pair/ package shares one provisioned pair between
its modules, shut down when that package ends.
"""
