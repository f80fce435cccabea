"""The agent: one tenant's unattended daemon that follows the planner's schedule.

``config`` turns settings and a drsync-schedule v1 file into a typed
``AgentConfig`` and ``TenantSlot``; ``policy`` holds the pure decisions
(when tonight's slot runs, whether a missed slot still fits, the upload
rate at a moment, health); ``runner`` runs one slot (the jobs through the
backup service, wal-ship, the records); ``daemon`` wires it to an APScheduler
BlockingScheduler with its job store in the state directory; ``state``,
``metrics``, ``status`` and ``logs`` are what it leaves for people and
monitoring.
"""
