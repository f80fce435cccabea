"""drsync: off-site incremental backup and disaster recovery for many small tenants.

Layers, each calling only those below it: ``cli`` -> services (``backup``,
``restore``, ``plan``) -> ``sources`` -> ``repo`` -> ``store``; ``catalog``
records runs beside them. See docs/FORMAT.md for the bytes at rest.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
