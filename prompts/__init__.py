"""Prompt templates shipped as data files (read through ``importlib.resources``)."""
