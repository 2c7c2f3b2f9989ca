"""Operators of the CCP provider."""
