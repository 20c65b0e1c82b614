"""The column mapping: which column holds what (the phone columns, the CRM id, each row's
country, each lead's own call settings, the custom params renamed, chosen or left out, the
required ones), as the ``RowPlan`` the rows are read by.


Call settings per lead. A column named after a call setting (``language``, ``voice_id``,
``voice_model``, ``version_id``, ``interrupt``; any case), or named by ``--setting-column
SETTING=COL``, gives each row's own value of it (``Lead.settings``), checked by
``dialer.campaign.check_call_setting`` (the campaign's own rules) and never sent as a param; a
blank cell leaves the campaign's. A ``playbook_id`` column is refused (``ColumnError``) unless

A country column is found by its header (``_COUNTRY_NAMES``, best-ranked first) or named by
``--country-column``. Failures are one ``ColumnError`` line starting with the file's name, or a
``ConfigError`` for a bad flag value.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from dialer.campaign import LEAD_SETTINGS
from dialer.errors import ColumnError, ConfigError
from dialer.leads.headers import column_index, columns_named, find, fold, listing
from dialer.leads.leadrows import RowPlan
from dialer.leads.phonecolumns import phone_columns
from dialer.leads.table import Rows, one_line
from dialer.model import RESERVED

__all__ = ["ColumnMapping", "plan_columns"]

# Header names of a country column, after fold() and without punctuation, best first: a plain
# "Country" beats a mailing or home address's, which beats billing/work, which beats shipping
# and "other" ones. Only the best-ranked column is read (the first of its rank in the file); a
# row whose cell there is empty uses --default-region. A relative's ("Mum-Country") never counts.
_COUNTRY_NAMES = (
    frozenset({"country", "countrycode", "countryname", "countryregion", "countryiso",
               "isocountry", "pais", "codigopais", "pays", "codepays", "land", "landercode",
               "paese", "nazione", "nation"}),
    frozenset({"mailingcountry", "homecountry", "homecountryregion", "address1country",
               "primarycountry", "contactcountry", "addresscountry"}),
    frozenset({"billingcountry", "workcountry", "businesscountry", "businesscountryregion",
               "companycountry"}),
    frozenset({"shippingcountry", "shiptocountry", "othercountry", "othercountryregion",
               "address2country"}),
)  # fmt: skip


@dataclass(frozen=True)
class ColumnMapping:
    """How columns map to the call: which holds the phone and the CRM id, which params are
    renamed or left out, and which must not be empty."""

    phone_column: str | None = None  # None: detect; "A,B": several, tried in order per row
    rename: dict[str, str] = field(default_factory=dict)  # column -> custom param name
    exclude: frozenset[str] = frozenset()  # columns not sent
    id_column: str | None = None  # its cell becomes Lead.crm_id; never sent as a param
    country_column: str | None = None  # None: detect by name
    require: tuple[str, ...] = ()  # params (final name, or column header) that must have a value
    send_only: tuple[str, ...] | None = None  # columns sent as params ("A,B" too); None: all
    # call setting -> the column holding each lead's own value (--setting-column); a column
    # named after a call setting (``language``...) is taken without it
    setting_columns: dict[str, str] = field(default_factory=dict)


def plan_columns(
    name: str,
    headers: list[str],
    mapping: ColumnMapping,
    warnings: list[str],
    sample: Rows = (),  # type: ignore[assignment]
    first_column: int = 0,
    more: Callable[[], bool] = lambda: False,  # the file has more rows than ``sample``
) -> RowPlan:
    phones = phone_columns(
        name, headers, mapping.phone_column, sample, first_column, warnings, more
    )
    id_index = None
    if mapping.id_column is not None:
        id_index = column_index(name, headers, mapping.id_column, "--id-column", first_column)
    settings = _settings(name, headers, phones, id_index, mapping, first_column)
    own = [index for index, _ in settings]
    params = _params(name, headers, phones, id_index, mapping, warnings, first_column, own)
    required = _required(name, headers, params, mapping, first_column)
    unnamed = [index for index, header in enumerate(headers) if not header]
    sent = ([id_index] if id_index is not None else []) + [index for index, _ in params]
    sent += [index for index, _ in settings]
    country = _country_index(name, headers, mapping, first_column)
    return RowPlan(phones, id_index, params, required, unnamed, sent, country, settings)


def _settings(
    name: str,
    headers: list[str],
    phones: tuple[int, ...],
    id_index: int | None,
    mapping: ColumnMapping,
    first_column: int = 0,
) -> list[tuple[int, str]]:
    """(column, call setting) of each column giving its lead's own call setting: those
    ``--setting-column`` names, then each column named after a call setting (``language``,
    ``voice_id``...) that is not renamed, left out or already one. A column named
    ``playbook_id`` is refused: a leads file must not redirect calls to another playbook."""
    excluded = {find(headers, column, first_column) for column in mapping.exclude}
    renamed = {find(headers, column, first_column) for column in mapping.rename}
    found: dict[str, int] = {}
    for setting, column in mapping.setting_columns.items():
        flag = f"--setting-column {setting}={column}"
        index = column_index(name, headers, column, flag, first_column)
        if index in phones or index == id_index:
            what = "a phone column" if index in phones else "the id column"
            raise ColumnError(f"{name}: column '{one_line(headers[index])}' is {what}: "
                              f"it cannot give {setting} too ({flag})")  # fmt: skip
        found[setting] = index
    for index, header in enumerate(headers):
        folded = header.strip().casefold()
        if index in phones or index == id_index or index in excluded or index in renamed:
            continue
        if folded == "playbook_id":
            raise ColumnError(
                f"{name}: column '{one_line(header)}' would choose each lead's playbook: the "
                "playbook is the campaign's (--playbook), a leads file must not redirect calls "
                f"to another one; rename the column, or leave it out with --exclude "
                f"{shlex.quote(one_line(header))}"
            )
        if folded in LEAD_SETTINGS and folded not in found and index not in found.values():
            found[folded] = index
    return sorted(((index, setting) for setting, index in found.items()))


def _country_index(
    name: str, headers: list[str], mapping: ColumnMapping, first_column: int = 0
) -> int | None:
    """The column giving each row's country: ``--country-column``, else the best-ranked header
    of ``_COUNTRY_NAMES`` (the first of its rank), else None (every row: the default region)."""
    if mapping.country_column is not None:
        return column_index(name, headers, mapping.country_column, "--country-column", first_column)
    folded = [re.sub(r"[^0-9a-z]", "", fold(header)) for header in headers]
    for names in _COUNTRY_NAMES:
        for index, key in enumerate(folded):
            if key and key in names:
                return index
    return None


def _params(
    name: str,
    headers: list[str],
    phones: tuple[int, ...],
    id_index: int | None,
    mapping: ColumnMapping,
    warnings: list[str],
    first_column: int = 0,
    own: Collection[int] = (),
) -> list[tuple[int, str]]:
    """(column index, param name) of every column sent as a custom param, in column order:
    every named column but the phone columns, the id column and those giving a lead's own
    call settings (``own``), or only those ``send_only``
    names (``--params``), less those ``--exclude`` names."""
    renamed: dict[int, str] = {}
    for column, new in mapping.rename.items():
        index = column_index(name, headers, column, f"--param {column}={new}", first_column)
        if not new.strip():
            raise ConfigError(f"--param {column}={new}: the param name is empty")
        renamed[index] = new.strip()
    excluded: set[int] = set()
    for column in sorted(mapping.exclude):
        excluded.add(column_index(name, headers, column, "--exclude", first_column))
    wanted: set[int] | None = None
    if mapping.send_only is not None:
        aliases = {new: index for index, new in renamed.items()}
        wanted = set()
        for spec in mapping.send_only:
            wanted.update(columns_named(name, headers, spec, "--params", first_column, aliases))
    for index in sorted(set(renamed) | (wanted or set())):
        if index in phones:
            flag = "--param" if index in renamed else "--params"
            warnings.append(
                f"column '{one_line(headers[index])}' is a phone column: {flag} for it is ignored"
            )
        elif index == id_index or index in own:
            flag = "--param" if index in renamed else "--params"
            what = "the id column" if index == id_index else "a call setting's column"
            warnings.append(
                f"column '{one_line(headers[index])}' is {what}: {flag} for it is ignored"
            )

    chosen: list[tuple[int, str]] = []
    owner: dict[str, int] = {}
    for index, header in enumerate(headers):
        if index in phones or index == id_index or index in own or index in excluded or not header:
            continue
        if wanted is not None and index not in wanted:
            continue
        param = renamed.get(index, header)
        if param.lower() in RESERVED:
            hint = (
                "choose another name with --param"
                if index in renamed
                else f"rename it with --param {shlex.quote(one_line(header) + '=NAME')}"
            )
            warnings.append(
                f"column '{one_line(header)}' ignored: '{param}' is a call setting; {hint}"
            )
            continue
        if param in owner:
            raise ColumnError(
                f"{name}: columns '{one_line(headers[owner[param]])}' and '{one_line(header)}' "
                f"would both send param '{one_line(param)}'; rename one with --param or leave "
                "one out with --exclude"
            )
        owner[param] = index
        chosen.append((index, param))
    return chosen


def _required(
    name: str,
    headers: list[str],
    params: list[tuple[int, str]],
    mapping: ColumnMapping,
    first_column: int = 0,
) -> list[tuple[int, str]]:
    """(column, label) of each required param: by its final param name, else by its column."""
    by_param = {param: index for index, param in params}
    by_folded = {param.casefold(): index for index, param in reversed(params)}
    labels = dict(params)
    required: list[tuple[int, str]] = []
    for wanted in mapping.require:
        key = wanted.strip()
        if not key:
            raise ConfigError("--require: the param name is empty")
        index = by_param.get(key)
        if index is None:
            index = by_folded.get(key.casefold())
        if index is None:
            index = find(headers, key, first_column)
        if index is None:
            raise ColumnError(
                f"{name}: no param or column '{wanted}' for --require (columns: {listing(headers)})"
            )
        entry = (index, labels.get(index, headers[index]))
        if entry not in required:
            required.append(entry)
    return required
