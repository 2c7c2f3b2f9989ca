"""Sensors of the CCP provider."""
