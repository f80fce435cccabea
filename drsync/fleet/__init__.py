"""The operators' view of the fleet: every tenant's state from the catalog's runs.

``status`` is pure (fleet tenants, runs, schedule slots, now -> rows);
``html`` renders the rows as one self-contained page. Neither does I/O.
"""
