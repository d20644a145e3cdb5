"""alerts: Prometheus recording and alerting rules, runbooks, Alertmanager routing."""
