"""The filetrash app: five services of the file-trash article, its tables, the simulated
publisher, purge, demo and reconciliation, on the generic runtime (see app.py)."""
