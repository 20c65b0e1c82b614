"""dialer: run outbound AI calling campaigns from a CSV on the Meetzy voice-call API.

The public library, importable from here (each loaded on first use, so ``import dialer.leads``
stays as light as it is)::

    from dialer import build_settings, plan, run_campaign, sandbox

The house, one subpackage per part of a lead's way (each imports only those below it; an
import-linter contract in ``pyproject.toml`` says so and CI checks it):

* ``dialer.cli``: flags, printing, exit codes (nothing imports it);
* ``dialer.reports``: terminal text, statistics, the HTML page;
* ``dialer.engine``: the planner, the account's rate budget, the pool, reconciliation, run, sync;
* ``dialer.store``: the journal, the results CSV, the campaign's state folder, the lock;
* ``dialer.api``: the Meetzy client, and the simulator beside it;
* ``dialer.leads``: lead files in, ``Lead`` values out;
* base: ``errors``, ``model``, ``campaign`` (settings), ``schedule``, ``files``, ``terminal``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "build_settings": "dialer.campaign",
    "Settings": "dialer.campaign",
    "DialerError": "dialer.errors",
    "Lead": "dialer.model",
    "Status": "dialer.model",
    "ColumnMapping": "dialer.leads.loader",
    "LoadResult": "dialer.leads.loader",
    "load_leads": "dialer.leads.loader",
    "plan": "dialer.engine.run",
    "run_campaign": "dialer.engine.run",
    "sync_campaign": "dialer.engine.run",
    "sandbox": "dialer.engine.run",
    "stop_campaign": "dialer.engine.stop",
    "status_lines": "dialer.reports.report",
    "load_stats": "dialer.reports.stats",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'dialer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
