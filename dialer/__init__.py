"""dialer: run outbound AI calling campaigns from a CSV on the Meetzy voice-call API.

The library API lives in ``dialer.run`` (``plan``, ``run_campaign``), settings in
``dialer.campaign`` (``build_settings``), errors in ``dialer.errors``.
"""

__version__ = "0.1.0"
