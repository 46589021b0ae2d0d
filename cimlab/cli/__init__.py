"""The ``cimlab`` command. Each topic lives in its own module with a ``register(sub)`` function."""
