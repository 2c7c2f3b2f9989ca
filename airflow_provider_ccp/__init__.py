"""Apache Airflow provider for the D4Science Cloud Computing Platform (CCP).

Importing the package imports nothing else: the version is read by the build (hatch), and
Airflow's provider discovery calls ``airflow_provider_ccp.get_provider_info:get_provider_info``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
