"""Triggers of the CCP provider."""
