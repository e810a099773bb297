"""Executable method cards: concept-erasure methods for text-to-image diffusion models.

`python -m methods list` lists the registry; `python -m methods run <method> --testbed minicanvas --forget three`
runs a method on the MiniCanvas testbed. The registry lives in `methods.registry.REGISTRY`.
"""
