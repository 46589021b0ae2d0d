"""cimlab: ReRAM compute-in-memory lab.

Layers (each imports only the ones before it, see docs/architecture.md):
physics -> instruments.emulator -> instruments.drivers -> instruments.station -> store
-> procedures -> models -> sim -> mitigation -> cli.

Importing :mod:`cimlab` is cheap and never imports torch.
"""

__version__ = "0.1.0"
