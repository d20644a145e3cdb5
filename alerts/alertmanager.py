"""Alertmanager routing: critical pages, warning tickets, info goes nowhere; inhibitions."""

from __future__ import annotations

from typing import Any


def alertmanager_config(
    receiver_base: str,
    *,
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
) -> dict[str, Any]:
    """Routing tree with webhook receivers at ``<receiver_base>/alerts/<page|ticket>``."""
    base = receiver_base.rstrip("/")
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "ticket",
            "group_by": ["alertname", "instance"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": [
                {
                    # `loglog up`'s own components: one ticket or page per component (a
                    # second restart must not wait a group_interval behind the first).
                    "matchers": ['alertname=~"LoglogUp.+"'],
                    "group_by": ["alertname", "instance", "component"],
                    "routes": [
                        {"matchers": ['severity="critical"'], "receiver": "page"},
                        {"matchers": ['severity="warning"'], "receiver": "ticket"},
                    ],
                },
                {"matchers": ['severity="critical"'], "receiver": "page"},
                {"matchers": ['severity="warning"'], "receiver": "ticket"},
                {"matchers": ['severity="info"'], "receiver": "null"},
            ],
        },
        "inhibit_rules": [
            {
                # A down server makes its own stage alerts noise.
                "source_matchers": ['alertname="InferenceDown"'],
                "target_matchers": ['component="inference"', 'alertname!="InferenceDown"'],
                "equal": ["job", "instance"],
            },
            {
                # A down agent means every per-GPU alert from it is blind or stale.
                "source_matchers": ['alertname="AgentDown"'],
                "target_matchers": ['component="gpu"'],
                "equal": ["job", "instance"],
            },
            {
                "source_matchers": ['alertname="AgentDown"'],
                "target_matchers": ['alertname="GpuDataStale"'],
                "equal": ["job", "instance"],
            },
            {
                # A page about an SLO makes the ticket about the same SLO redundant.
                "source_matchers": ['severity="critical"', 'slo=~".+"'],
                "target_matchers": ['severity="warning"', 'slo=~".+"'],
                "equal": ["slo", "job"],
            },
        ],
        "receivers": [
            {
                "name": "page",
                "webhook_configs": [{"url": f"{base}/alerts/page", "send_resolved": True}],
            },
            {
                "name": "ticket",
                "webhook_configs": [{"url": f"{base}/alerts/ticket", "send_resolved": True}],
            },
            {"name": "null"},
        ],
    }
