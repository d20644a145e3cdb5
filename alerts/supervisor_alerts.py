"""Alerts about ``loglog up``'s own components: a restart tickets, a crash loop pages.

The supervisor (:mod:`stack.supervisor`) exports, per component, its restarts and whether
it was left down after a crash loop (:mod:`stack.metrics`), on the alert receiver's
``/metrics``, scraped as ``job="loglog-up"``. The alert keeps the series' ``component``
label (the rule label is a template), so a notification names what was restarted.

The restart ticket reads the time of the last restart, not ``increase()`` of the restart
counter: a killed Prometheus loses its last unflushed samples (measured: ~30 s of them),
and a counter whose zero samples are gone never "increases". One sample of a timestamp
taken after Prometheus is back is enough.
"""

from __future__ import annotations

import re

from .catalog import Alert, Case
from .config import Config

JOB = 'job="loglog-up"'
UP = 'job="loglog-up", instance="up:9095"'
UP_LABELS = {"job": "loglog-up", "instance": "up:9095"}
#: The supervisor's default crash-loop limit (stack.supervisor.RestartPolicy), for the text.
BURST, INTERVAL = 5, "2 minutes"
_KEEP_COMPONENT = {"component": "{{ $labels.component }}"}
_PROCESSES = (
    "`pgrep -af '^loglog serve'` (inference), `pgrep -af '^loglog agent'`, "
    "`pgrep -af '^loglog worker'`, `pgrep -af '^loglog up'` (the supervisor itself)"
)


def _seconds(duration: str) -> int:
    """A PromQL duration of one unit ("5m", "20s") in seconds."""
    match = re.fullmatch(r"(\d+)([smh])", duration)
    if not match:
        raise ValueError(f"duration {duration!r}: use one unit, e.g. 5m")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def supervisor_alerts(cfg: Config) -> list[Alert]:
    window = cfg.timing.window
    seconds = _seconds(window)
    return [
        Alert(
            name="LoglogUpComponentRestarted",
            expr=f"time() - loglog_up_component_last_restart_timestamp_seconds{{{JOB}}} < {seconds}",
            severity="warning",
            component="stack",
            labels=_KEEP_COMPONENT,
            summary="Component {{ $labels.component }} of loglog up was restarted",
            description=f'The component {{{{ $labels.component }}}} exited and was restarted {{{{ $value | printf "%.0f" }}}} s ago (the ticket stays open {window} after a restart).',
            meaning=f"`loglog up`'s supervisor restarted the component after it exited (killed, crashed, out of memory) or was not ready within its start-up timeout. It is back or coming back within its backoff (1 s doubling to 30 s): this is a ticket to find out why, not a page. {BURST} exits within {INTERVAL} make a crash loop, which pages (LoglogUpComponentCrashLoop).",
            confirm=f"The `loglog up` console has a ✗ line with the exit (status or signal) and the component's output since that start, then a ✓ line when it is back and how long it was down. Its log is `<state-dir>/logs/<component>.log`; each start begins with a `--- loglog up: <component> starting at …` line. The processes: {_PROCESSES}. `dmesg | grep -i -e oom -e killed` shows the OOM killer.",
            fix="Fix what ended it (memory, a config or model change, something else taking its port). Nothing else is needed while restarts stay rare; how many there were is `loglog_up_component_restarts_total`.",
            cases=(
                Case(
                    "fires after a restart at 170 s (eval at 300 s: 130 s ago)",
                    {
                        f'loglog_up_component_last_restart_timestamp_seconds{{{UP}, component="agent"}}': "0 0 170 170 170 170"
                    },
                    "5m",
                    ({**UP_LABELS, "component": "agent"},),
                    130,
                ),
                Case(
                    "healthy: never restarted",
                    {
                        f'loglog_up_component_last_restart_timestamp_seconds{{{UP}, component="agent"}}': "0x10"
                    },
                    "10m",
                ),
                Case(
                    "healthy again once the restart is older than the window",
                    {
                        f'loglog_up_component_last_restart_timestamp_seconds{{{UP}, component="agent"}}': "0 60x15"
                    },
                    "15m",
                ),
            ),
        ),
        Alert(
            name="LoglogUpComponentCrashLoop",
            expr=f"loglog_up_component_failed{{{JOB}}} == 1",
            severity="critical",
            component="stack",
            labels=_KEEP_COMPONENT,
            summary="Component {{ $labels.component }} of loglog up crash-loops and is left down",
            description=f"The component {{{{ $labels.component }}}} exited {BURST} times within {INTERVAL}; loglog up stopped restarting it. The rest of the stack keeps running.",
            meaning=f"The component keeps dying as soon as it starts ({BURST} exits within {INTERVAL}), so the supervisor left it down (systemd's failed state, supervisord's FATAL) instead of restarting it forever. Whatever it does is not done. If it is prometheus, alertmanager or the alert receiver, nothing else can page until it is back.",
            confirm=f"The `loglog up` console: the ✗ line that says 'crash loop' gives the last exit and the component's output since its last start (a ModelError or ConfigError says what to fix); every status line lists it under DOWN. Its log: `<state-dir>/logs/<component>.log`. The processes: {_PROCESSES}.",
            fix="Fix the cause the output names (an unreadable or corrupt --model, a bad --config, a port taken by another program, memory). Then retry it without restarting the stack: `kill -USR1 <pid>`, with the pid of `loglog up` that the crash-loop line prints (or `pgrep -af '^loglog up'`); or restart `loglog up`.",
            cases=(
                Case(
                    "fires when a component is left down",
                    {f'loglog_up_component_failed{{{UP}, component="inference"}}': "0 0 1 1 1"},
                    "4m",
                    ({**UP_LABELS, "component": "inference"},),
                    1,
                ),
                Case(
                    "healthy: nothing left down",
                    {f'loglog_up_component_failed{{{UP}, component="inference"}}': "0x5"},
                    "5m",
                ),
            ),
        ),
    ]
