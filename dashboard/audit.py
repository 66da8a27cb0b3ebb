"""dashboard room, pure: the audit trail of operators' actions, as an auditor takes it away.

Every operator action is a row in the ops bucket (alert reviews in `alert_action`; other kinds
of action are other `*_action` measurements there). The trail reads them all generically: who
(the `user` field), when (the point's time), what (the measurement and its `action` field, on
which site/device/type), the note, and every other field as details. Rows in, frame and CSV
out: no Streamlit, no InfluxDB here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

AUDIT_COLUMNS = ["time", "who", "what", "action", "subject", "note", "details"]
# Columns every Flux row carries that are not part of what the operator did.
_FLUX_COLUMNS = {"result", "table", "_start", "_stop", "_time", "_measurement"}
_WHO_FIELDS = ("user", "by", "actor")
_SUBJECT_TAGS = ("site", "device", "type", "rule", "target")
# A spreadsheet runs a cell that starts with one of these as a formula: a note typed as
# "=HYPERLINK(...)" must reach the auditor as text.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def audit_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per stored action, oldest first."""
    out = []
    for row in rows:
        measurement = _text(row.get("_measurement"))
        who = next((_text(row[f]) for f in _WHO_FIELDS if _text(row.get(f))), "")
        subject = " ".join(_text(row[t]) for t in _SUBJECT_TAGS if _text(row.get(t)))
        used = _FLUX_COLUMNS | set(_WHO_FIELDS) | set(_SUBJECT_TAGS) | {"action", "note"}
        details = "; ".join(
            f"{key}={_text(value)}"
            for key, value in sorted(row.items())
            if key not in used and _text(value) != ""
        )
        out.append(
            {
                "time": pd.Timestamp(row["_time"]),
                "who": who,
                "what": measurement.removesuffix("_action") or measurement,
                "action": _text(row.get("action")),
                "subject": subject,
                "note": _text(row.get("note")),
                "details": details,
            }
        )
    frame = pd.DataFrame(out, columns=AUDIT_COLUMNS)
    return frame.sort_values("time", kind="stable", ignore_index=True)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def audit_csv(frame: pd.DataFrame) -> bytes:
    """The trail as UTF-8 CSV, ISO times in UTC, with formula-like cells made text."""
    safe = frame.copy()
    safe["time"] = [t.isoformat() for t in safe["time"]]
    for column in ("who", "what", "action", "subject", "note", "details"):
        safe[column] = [_cell(v) for v in safe[column]]
    return safe.to_csv(index=False).encode("utf-8")
