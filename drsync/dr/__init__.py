"""Disaster recovery of a fleet: ``plan`` (pure: which point, how many bytes, how long),
``probe`` (opens each tenant's repository and finds its latest restorable point),
``run`` (``drsync dr restore``: restores by priority, survives its own crash)."""
