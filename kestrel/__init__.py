"""Kestrel: the frontend of a diskless, network-booted cluster."""

__version__ = "0.1.0"
