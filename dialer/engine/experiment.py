"""Each lead's call settings as sent, and the dry run's account of them.

Owns the order in which a lead's version and language are chosen (``SettingsResolver``) and
the "settings mix" lines of the dry run (``mix_lines``). The rules:

* version: with a split (``--versions A=50,B=50``), the version the lead's entry records (a
  lead keeps the version of its first call: reruns, cron batches, recycled attempts, and new
  weights, which only move the leads not called yet), else the lead's own ``version_id``
  cell, else the split's choice from its ledger key (``campaign.assign_version``); without a
  split, its own cell, else the campaign's ``--version-id``;
* language: the lead's own cell, else (``--language auto``) its number's country
  (``leads.phones.number_language``), else the campaign's language (the fallback);
* voice, voice model, interrupt: the lead's own cell, else the campaign's.

With ``--allocate adaptive`` a lead not called yet gets its version by Thompson sampling
(``Adaptive``) instead of the weights: each version's success rate so far (an outcome of
``closed``, among the calls ``--sync`` has an outcome for) is drawn from its Beta posterior and
the highest draw wins, but each version keeps a floor share of the leads (``FLOOR``), so that
a version behind early is still tried. The draws are seeded by the lead's key: the dry run
shows what the run would do on the same outcomes.

The version and language chosen are written into ``Lead.settings`` before the intent, so the
journal's intent line and the results row say what was sent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from dialer.campaign import Settings, assign_version
from dialer.leads.phones import number_language
from dialer.model import NEVER_SENT, Lead, Status
from dialer.store.results import SUCCESS_OUTCOME, Entry

FLOOR = 0.10  # the share of the leads each version keeps under --allocate adaptive (at most)


class Adaptive:
    """Thompson sampling between ``versions`` on the outcomes of ``entries`` (their current
    call's: an entry counts for the version it records once ``--sync`` gave it an outcome)."""

    def __init__(self, versions: tuple[tuple[str, float], ...], entries: Iterable[Entry]):
        self.names = [name for name, weight in versions if weight > 0]
        self.calls: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        for entry in entries:
            if entry.version_id in self.names and entry.outcome:
                self.calls[entry.version_id] += 1
                self.successes[entry.version_id] += entry.outcome == SUCCESS_OUTCOME
        self.floor = min(FLOOR, 0.5 / len(self.names))

    def choose(self, key: str) -> str:
        """The version for the lead with ledger key ``key`` (seeded by the key)."""
        seed = int.from_bytes(hashlib.sha256(b"adaptive " + key.encode()).digest()[:8], "big")
        draw = random.Random(seed)
        point = draw.random()
        if point < self.floor * len(self.names):  # the floor share: each version in turn
            return self.names[int(point / self.floor)]
        samples = {
            name: draw.betavariate(
                self.successes[name] + 1, self.calls[name] - self.successes[name] + 1
            )
            for name in self.names
        }
        return max(self.names, key=samples.__getitem__)

    def summary(self) -> str:
        """``adaptive on 80 outcomes: A 12 of 40 closed, B 20 of 40; floor 10% each``."""
        told = ", ".join(f"{name} {self.successes[name]} of {self.calls[name]} closed"
                         for name in self.names)  # fmt: skip
        total = sum(self.calls.values())
        return f"adaptive on {total:,} outcomes: {told}; floor {100 * self.floor:.0f}% each"


class SettingsResolver:
    """``resolve(lead)``: the lead with its call settings as they will be sent. ``recorded``
    gives the ledger's entry of a key (None: none), whose version a split keeps."""

    def __init__(
        self,
        settings: Settings,
        recorded: Callable[[str], Entry | None],
        entries: Callable[[], Iterable[Entry]] = lambda: (),
    ) -> None:
        self.settings = settings
        self.recorded = recorded
        self._made: dict[tuple[object, ...], Mapping[str, str]] = {}
        self.adaptive: Adaptive | None = None  # --allocate adaptive: on ``entries``' outcomes
        if settings.allocate == "adaptive" and settings.versions:
            self.adaptive = Adaptive(settings.versions, entries())

    @property
    def active(self) -> bool:
        """Whether any lead may get settings of its own (a split, auto language, cells)."""
        return bool(self.settings.versions or self.settings.language_auto)

    def version(self, lead: Lead) -> str:
        s = self.settings
        if s.versions:
            entry = self.recorded(lead.key)
            if entry is not None and entry.version_id:
                return entry.version_id
            if own := lead.settings.get("version_id"):
                return own
            if self.adaptive is not None:
                return self.adaptive.choose(lead.key)
            return assign_version(lead.key, s.versions)
        return lead.settings.get("version_id") or s.version_id or ""

    def language(self, lead: Lead) -> str:
        own = lead.settings.get("language")
        if own:
            return own
        if self.settings.language_auto and lead.status is Status.PENDING:
            found = number_language(lead.phone)
            if found:
                return found
        return self.settings.language or ""

    def settings_of(self, lead: Lead) -> Mapping[str, str]:
        """The lead's settings as sent (one shared mapping per distinct combination)."""
        version, language = self.version(lead), self.language(lead)
        own = lead.settings
        key = (tuple(own.items()), version, language)
        found = self._made.get(key)
        if found is None:
            values = dict(own)
            for name, value in (("version_id", version), ("language", language)):
                if value:
                    values[name] = value
                else:
                    values.pop(name, None)
            found = self._made[key] = MappingProxyType(values)
        return found

    def resolve(self, lead: Lead) -> Lead:
        return dataclasses.replace(lead, settings=self.settings_of(lead))

    def resolve_all(self, leads: Iterable[Lead]) -> Iterable[Lead]:
        """``leads``, each resolved as it is taken (a lazy pass: the ledger's entry is read
        just before the lead's intent)."""
        return (self.resolve(lead) for lead in leads)


def mix_lines(
    settings: Settings, leads: Iterable[Lead], entries: Iterable[Entry] = ()
) -> list[str]:
    """The dry run's lines on the settings the leads to dial would be sent with: languages,
    versions (with the split and the leads already called that keep theirs), and any voice,
    voice model or interrupt set per lead. Nothing when every lead gets the campaign's."""
    entries = list(entries) if settings.versions else []
    resolver = SettingsResolver(settings, lambda key: None, lambda: entries)
    kept = {e.key: e for e in entries if e.version_id and e.status not in NEVER_SENT}
    resolver.recorded = kept.get
    counts: dict[str, Counter[str]] = {name: Counter() for name in _SHOWN}
    own: Counter[str] = Counter()
    for lead in leads:
        sent = resolver.settings_of(lead)
        for name in _SHOWN:
            counts[name][sent.get(name, "")] += 1
        own.update(lead.settings.keys())
    lines: list[str] = []
    for name, label in _SHOWN.items():
        found = counts[name]
        if not own[name] and not _varies(settings, name):
            continue
        if not found and not (name == "version_id" and kept):
            continue
        campaign = getattr(settings, name)
        none = f"{str(campaign).lower() if name == 'interrupt' else campaign} (campaign's)"
        if campaign is None:
            none = "production" if name == "version_id" else "API default"
        items = sorted(found.items(), key=lambda item: (not item[0], -item[1], item[0]))
        shown = ", ".join(f"{value or none} {n:,}" for value, n in items) or "none to dial"
        notes = []
        if own[name]:
            notes.append(f"{own[name]:,} from the leads file")
        if name == "language" and settings.language_auto:
            fallback = settings.language or "the API's default"
            notes.append(f"auto from the number's country, else {fallback}")
        if name == "version_id" and settings.versions:
            total = sum(weight for _, weight in settings.versions)
            split = ", ".join(f"{v} {100 * w / total:.0f}%" for v, w in settings.versions)
            notes.append(
                f"split {split}" if resolver.adaptive is None else resolver.adaptive.summary()
            )
            if kept:
                moved = 0 if resolver.adaptive is not None else sum(
                    assign_version(key, settings.versions) != entry.version_id
                    for key, entry in kept.items())  # fmt: skip
                notes.append(f"{len(kept):,} leads already called keep their version"
                             + (f", {moved:,} of them not the one these weights would give"
                                if moved else ""))  # fmt: skip
        lines.append(f"{label:<15}{shown}" + (f" ({'; '.join(notes)})" if notes else ""))
    return lines


_SHOWN = {"language": "Languages:", "version_id": "Versions:", "voice_id": "Voices:",
          "voice_model": "Voice models:", "interrupt": "Interrupt:"}  # fmt: skip


def _varies(settings: Settings, name: str) -> bool:
    return (name == "language" and settings.language_auto) or (
        name == "version_id" and bool(settings.versions)
    )
