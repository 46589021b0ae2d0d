"""Bundled station files (package data): ``emulated`` (array controller) and
``emulated-discrete`` (switch matrix + pulse generator + SMU + heated chuck), resolved by name
by :func:`cimlab.instruments.station_config.resolve_station`."""
