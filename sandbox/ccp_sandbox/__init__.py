"""CCP sandbox: a local stand-in for the D4Science Cloud Computing Platform and its Keycloak.

It is built from the public CCP/OGC documentation only and deliberately imports nothing from
Airflow or from the provider's client code, so that a protocol mistake in the client is not
mirrored by its test peer. See docs/sandbox.md.
"""

__version__ = "0.1.0"
