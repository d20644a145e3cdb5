"""``loglog report``: a self-contained HTML (and PDF) report for managers, from the dashboards' panels."""
