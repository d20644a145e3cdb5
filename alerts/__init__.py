"""alerts: Prometheus recording and alerting rules, runbooks, Alertmanager routing."""

from pathlib import Path

#: The runbooks, one ``<Alert>.md`` per alert: every alert's ``runbook_url`` points at one.
RUNBOOKS = Path(__file__).resolve().parent / "runbooks"
