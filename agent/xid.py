"""XID errors through NVML's event API, on a thread of their own.

``nvmlEventSetWait`` blocks (up to a timeout) until the driver reports an event, so it
gets its own thread: the samplers and /metrics never wait for it. Counts are kept per
(GPU index, XID code); an XID is rare and serious (a fault, a reset, a GPU fallen off
the bus), so each one is also logged.
"""

from __future__ import annotations

import threading
from typing import Any

from .nvml import ERROR_TIMEOUT, Device, Nvml, NvmlError, Unsupported

XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError


def handle_key(handle: Any) -> Any:
    """A comparable identity for a device handle (pynvml handles are ctypes pointers)."""
    try:
        import ctypes

        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return handle


class XidWatcher:
    """Counts XID events per device; ``counts[(gpu index, xid)]``."""

    def __init__(self, nvml: Nvml, devices: list[Device], log: Any, wait_ms: int = 500) -> None:
        self.nvml = nvml
        self.counts: dict[tuple[int, int], int] = {}
        self._by_handle = {handle_key(d.handle): d.index for d in devices}
        self._log = log
        self._wait_ms = wait_ms
        self._stop = threading.Event()
        self._set: Any = None
        self.watching: list[int] = []
        try:
            self._set = nvml.call("nvmlEventSetCreate")
        except NvmlError:
            return
        for device in devices:
            try:
                nvml.call("nvmlDeviceRegisterEvents", device.handle, XID_CRITICAL, self._set)
                self.watching.append(device.index)
            except NvmlError:
                continue  # Unsupported on this device, or failing: no XID for it
        self._thread = threading.Thread(target=self._run, name="xid-events", daemon=True)
        if self.watching:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.nvml.call("nvmlEventSetWait", self._set, self._wait_ms)
            except Unsupported:
                return
            except NvmlError as exc:
                if exc.code == ERROR_TIMEOUT:
                    continue
                self._stop.wait(1.0)  # a failing event set: back off, keep trying
                continue
            index = self._by_handle.get(handle_key(event.device), -1)
            xid = int(event.eventData)
            self.counts[(index, xid)] = self.counts.get((index, xid), 0) + 1
            self._log.error("GPU XID error", gpu=index, xid=xid)

    def stop(self) -> None:
        self._stop.set()
