"""The ATLAS QEMU lab: boot built images as servers on a private segment."""
