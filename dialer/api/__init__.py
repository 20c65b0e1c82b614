"""The API: the Meetzy client (request bodies, both response shapes, every httpx error mapped
by phase) and, beside it, the simulator that stands in for the API in tests and ``--sandbox``.

The two share no code: a bug shared by both would hide itself. Touches no campaign file.
"""
