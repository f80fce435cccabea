"""The CSV renderings of a report document, in UTF-8 with a byte-order mark so Excel
opens the Japanese: ``controls.csv`` (one row per tenant and control) and
``tenants.csv`` (one row per tenant: its measured values and its cost share)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["CONTROL_COLUMNS", "TENANT_COLUMNS", "write_csv"]

CONTROL_COLUMNS = ("tenant", "団体コード", "control", "統制項目", "status", "判定", "summary",
                   "evidence", "evaluated", "exemption_approver", "exemption_expires", "note")
TENANT_COLUMNS = ("tenant", "団体コード", "population", "tier", "compliant", "rpo_hours",
                  "rpo_now_hours", "worst_gap_hours", "job_success_rate", "oldest_point",
                  "last_drill", "last_drill_status", "last_drill_rto_s", "rto_hours",
                  "stored_bytes", "sent_bytes", "cost_share_yen")


def _blank(value: Any) -> Any:
    return "" if value is None else value


def write_csv(doc: dict[str, Any], directory: Path) -> list[Path]:
    labels = doc["labels"]
    with open(directory / "controls.csv", "w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(CONTROL_COLUMNS)
        for t in doc["tenants"]:
            for control in doc["order"]["controls"]:
                r = t["controls"][control]
                ex = r["exemption"] or {}
                out.writerow([t["name"], _blank(t["code"]), control,
                              labels["controls"][control]["ja"], r["status"],
                              labels["statuses"][r["status"]]["ja"], r["summary"],
                              " ".join(r["evidence"]), _blank(r["evaluated"]),
                              _blank(ex.get("approver")), _blank(ex.get("expires")),
                              _blank(r["note"])])
    costs = {c["tenant"]: c["yen"] for c in (doc["costs"] or {}).get("tenants", [])}
    with open(directory / "tenants.csv", "w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(TENANT_COLUMNS)
        for t in doc["tenants"]:
            f, d = t["facts"], t["last_drill"] or {}
            out.writerow([t["name"], _blank(t["code"]), t["population"], _blank(t["tier"]),
                          "yes" if t["compliant"] else "no", t["targets"]["rpo_hours"],
                          _blank(f["rpo_now_hours"]),
                          _blank((f["worst_gap"] or {}).get("hours")),
                          _blank(f["job_success_rate"]), _blank(f["oldest_point"]),
                          _blank(d.get("started")), _blank(d.get("status")),
                          _blank(d.get("rto_s")), t["targets"]["rto_hours"],
                          f["stored_bytes"], f["sent_bytes"], _blank(costs.get(t["name"]))])
    return [directory / "controls.csv", directory / "tenants.csv"]
