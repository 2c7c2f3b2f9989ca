"""Hooks of the CCP provider."""
