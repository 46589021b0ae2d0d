"""Bundled chip profiles (TOML), loaded by :func:`cimlab.physics.load_profile`."""
