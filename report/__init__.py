"""``loglog report``: an HTML (and PDF) report for managers, from the dashboards' panels."""
