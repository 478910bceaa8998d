"""The protocol's stages (generate, evaluate, run). Import the submodules you need; this package
imports nothing heavy."""
