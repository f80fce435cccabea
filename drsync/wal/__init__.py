"""WAL archiving: a durable local spool, shipping it to the store, fetching it back.

``push`` is PostgreSQL's archive_command (it must be fast and must never
acknowledge what is not on disk), ``ship`` moves the spool to the store,
``fetch`` is restore_command, and ``coverage`` answers which moments can be
restored. Imports stay light: ``drsync wal-push`` loads only this package's
``spool`` and ``push`` modules and the repository's crypto.
"""
