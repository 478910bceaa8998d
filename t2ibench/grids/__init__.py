"""Shipped sweep grids (TOML data)."""
