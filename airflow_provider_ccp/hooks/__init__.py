"""Hooks of the CCP provider."""

__all__: list[str] = []
