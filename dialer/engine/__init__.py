"""The engine: who is dialed now (the planner), the account's rate budget and windows, the
one pool that dials, looks up and syncs within them, reconciliation of calls in doubt, and
the run, sync and stop that put them together.

Parses no files itself (``leads`` does); records through ``store``; talks through ``api``.
"""
