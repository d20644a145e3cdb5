"""The node agent against FakeNvml (every family, every fault) and the real no-GPU path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.collector import Agent
from agent.metrics import GPU_METRICS, HOST_METRICS, THROTTLE_REASONS
from agent.server import MetricsServer
from agent.testing import FakeGpu, FakeNvml, no_driver


def _samples(registry):
    text = generate_latest(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples, metric, /, **labels):
    """The one sample of `metric` with these labels (a list when zero or several match)."""
    matches = [
        v
        for (n, ls), v in samples.items()
        if n == metric and all((k, str(x)) in ls for k, x in labels.items())
    ]
    return matches[0] if len(matches) == 1 else matches


@pytest.fixture
def run_agent():
    agents = []

    def start(nvml, **options):
        options.setdefault("interval", 0.05)
        options.setdefault("hang_timeout", 0.5)
        agent = Agent(nvml_module=nvml, **options)
        registry = CollectorRegistry()
        registry.register(agent)
        agent.start()
        agents.append((agent, nvml))
        return agent, registry

    yield start
    for agent, nvml in agents:
        nvml.release() if hasattr(nvml, "release") else None
        agent.stop()


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_every_gpu_family_maps_from_nvml_in_base_units(run_agent):
    """Each reading lands in its family, converted to base units (ratios, bytes, watts,
    joules, hertz) with gpu/uuid labels; name and driver only in gpu_info."""
    gpu = FakeGpu(util_gpu=87, memory_used=3 * 1024**3, power_mw=250_500, energy_mj=5_000,
                  sm_clock_mhz=1410, pcie_tx_kbs=10, decoder=45, ecc_uncorrected=2)  # fmt: skip
    _agent, registry = run_agent(FakeNvml([gpu, FakeGpu(name="NVIDIA L4")]))
    assert _wait(lambda: _value(_samples(registry), "gpu_sm_active_ratio", gpu=0) != [])
    s = _samples(registry)
    labels = {"gpu": 0, "uuid": "GPU-fake-0000"}
    assert _value(s, "gpu_utilization_ratio", **labels) == 0.87
    assert _value(s, "gpu_memory_used_bytes", **labels) == 3 * 1024**3
    assert _value(s, "gpu_power_watts", **labels) == pytest.approx(250.5)
    assert _value(s, "gpu_power_limit_watts", **labels) == 700.0
    assert _value(s, "gpu_energy_joules_total", **labels) == 5.0
    assert _value(s, "gpu_temperature_celsius", **labels) == 55.0
    assert _value(s, "gpu_sm_clock_hertz", **labels) == 1.41e9
    assert _value(s, "gpu_sm_clock_max_hertz", **labels) == 1.98e9
    assert _value(s, "gpu_ecc_errors_total", type="uncorrected", **labels) == 2
    assert _value(s, "gpu_pcie_throughput_bytes_per_second", direction="tx", **labels) == 10 * 1024
    assert _value(s, "gpu_decoder_utilization_ratio", **labels) == 0.45
    assert _value(s, "gpu_encoder_utilization_ratio", **labels) == 0.10
    assert _value(s, "gpu_compute_processes", **labels) == 1
    assert _value(s, "gpu_sm_active_ratio", **labels) == 0.70
    assert _value(s, "gpu_tensor_active_ratio", **labels) == 0.40
    assert _value(s, "gpu_dram_bandwidth_ratio", **labels) == 0.55
    assert _value(s, "gpu_peak_flops", dtype="fp16", **labels) == 989e12
    assert _value(s, "gpu_peak_flops", dtype="fp16", gpu=1) == 121e12
    assert _value(s, "gpu_info", name="NVIDIA H100 80GB HBM3", driver="550.54.15", **labels) == 1
    assert _value(s, "agent_nvml_up", reason="ok") == 1 and _value(s, "agent_gpus") == 2
    exported = {name for name, _ in s} | {name.removesuffix("_total") for name, _ in s}
    missing = [
        name
        for name in GPU_METRICS
        if name not in exported and name.removesuffix("_total") not in exported
    ]
    assert missing == ["gpu_xid_errors_total"], "only XID waits for an event"


def test_unsupported_calls_omit_their_series_instead_of_reporting_zero(run_agent):
    """A pre-Hopper GPU has no GPM series; a GPU without power readings has no power
    series; neither is exported as 0."""
    old = FakeGpu(
        name="NVIDIA T4",
        gpm=None,
        unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEccErrors"},
    )
    _agent, registry = run_agent(FakeNvml([old]))
    assert _wait(lambda: _value(_samples(registry), "gpu_utilization_ratio", gpu=0) == 0.5)
    s = _samples(registry)
    for absent in ("gpu_power_watts", "gpu_sm_active_ratio", "gpu_ecc_errors_total"):
        assert not [k for k in s if k[0] == absent], absent
    assert _value(s, "gpu_power_limit_watts", gpu=0) == 700.0
    assert not [k for k in s if k[0] == "agent_collect_errors_total"], "unsupported is not an error"


def test_throttle_reasons_are_one_series_each(run_agent):
    """The clocks-event bitmask becomes gpu_throttle_active{reason} 0/1 per reason."""
    gpu = FakeGpu(
        clocks_event_reasons=THROTTLE_REASONS["sw_power_cap"] | THROTTLE_REASONS["hw_thermal"]
    )
    _agent, registry = run_agent(FakeNvml([gpu]))
    assert _wait(
        lambda: _value(_samples(registry), "gpu_throttle_active", gpu=0, reason="hw_thermal") == 1
    )
    s = _samples(registry)
    active = {
        dict(ls)["reason"] for (n, ls), v in s.items() if n == "gpu_throttle_active" and v == 1
    }
    assert active == {"sw_power_cap", "hw_thermal"}
    gpu.clocks_event_reasons = 0
    assert _wait(
        lambda: _value(_samples(registry), "gpu_throttle_active", gpu=0, reason="hw_thermal") == 0
    )


def test_xid_events_are_counted_per_gpu_and_code(run_agent):
    """XIDs arrive through NVML's event API on their own thread and are counted."""
    nvml = FakeNvml([FakeGpu(), FakeGpu()])
    agent, registry = run_agent(nvml)
    assert _wait(lambda: agent.xid is not None and agent.xid.watching == [0, 1])
    nvml.fire_xid(1, 79)
    nvml.fire_xid(1, 79)
    nvml.fire_xid(0, 48)
    assert _wait(lambda: _value(_samples(registry), "gpu_xid_errors_total", gpu=1, xid=79) == 2)
    assert _value(_samples(registry), "gpu_xid_errors_total", gpu=0, xid=48) == 1


def test_a_hung_nvml_call_never_blocks_metrics_and_marks_only_that_gpu_stale(run_agent):
    """GPU 1 hangs inside an NVML call: /metrics still answers at once, GPU 1 is marked
    stale (GPU 0 is not), a replacement sampler is started and the hang is counted;
    when the call returns, fresh data flows again."""
    nvml = FakeNvml([FakeGpu(), FakeGpu()])
    _agent, registry = run_agent(nvml, hang_timeout=0.4)
    assert _wait(lambda: _value(_samples(registry), "gpu_data_stale", gpu=1) == 0)
    server = MetricsServer(registry, "127.0.0.1", 0)
    server.start()
    try:
        release = nvml.hang("nvmlDeviceGetTemperature", 1)
        assert _wait(lambda: _value(_samples(registry), "gpu_data_stale", gpu=1) == 1, timeout=5)
        started = time.monotonic()
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
            .read()
            .decode()
        )
        assert time.monotonic() - started < 1.0, "a scrape never waits on NVML"
        assert 'gpu_data_stale{gpu="0",uuid="GPU-fake-0000"} 0.0' in body
        assert 'gpu_data_stale{gpu="1",uuid="GPU-fake-0001"} 1.0' in body
        assert _wait(lambda: _value(_samples(registry), "agent_hung_samplers") >= 1)
        release.set()
        nvml.release()
        assert _wait(lambda: _value(_samples(registry), "gpu_data_stale", gpu=1) == 0, timeout=5)
    finally:
        server.stop()


def test_a_gpu_lost_mid_run_goes_stale_and_comes_back(run_agent):
    """GPU_IS_LOST marks the GPU stale and is logged; the others keep reporting."""
    lost = FakeGpu()
    _agent, registry = run_agent(FakeNvml([FakeGpu(), lost]))
    assert _wait(lambda: _value(_samples(registry), "gpu_data_stale", gpu=1) == 0)
    lost.lost = True
    assert _wait(lambda: _value(_samples(registry), "gpu_data_stale", gpu=1) == 1)
    assert _value(_samples(registry), "gpu_data_stale", gpu=0) == 0
    lost.lost = False
    assert _wait(lambda: _value(_samples(registry), "gpu_data_stale", gpu=1) == 0)


def test_failing_calls_are_counted_by_call(run_agent):
    """An NVML error other than 'not supported' is counted under the call's name."""
    from agent.testing import FakeNVMLError

    nvml = FakeNvml([FakeGpu()])
    real = nvml.nvmlDeviceGetMemoryInfo

    def broken(handle):
        raise FakeNVMLError(999)

    nvml.nvmlDeviceGetMemoryInfo = broken  # type: ignore[method-assign]
    _agent, registry = run_agent(nvml)
    assert _wait(
        lambda: (
            _value(_samples(registry), "agent_collect_errors_total", call="nvmlDeviceGetMemoryInfo")
            not in ([], 0)
        )
    )
    nvml.nvmlDeviceGetMemoryInfo = real  # type: ignore[method-assign]


def test_no_driver_keeps_running_with_host_metrics_and_says_why(run_agent):
    """Without NVML the agent exports agent_nvml_up{reason} 0 plus host metrics."""
    _agent, registry = run_agent(no_driver())
    s = _samples(registry)
    assert _value(s, "agent_nvml_up", reason="library_not_found") == 0
    assert _value(s, "host_memory_total_bytes") > 0
    assert _value(s, "host_cpus") >= 1
    assert not [k for k in s if k[0].startswith("gpu_")]


def test_the_real_pynvml_on_this_machine_without_a_driver(run_agent):
    """The real nvidia-ml-py with no NVIDIA driver: NVML unavailable, agent alive."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has a working NVIDIA driver (see the gpu-marked tests)")
    except pynvml.NVMLError:
        pass
    agent = Agent(interval=0.05)
    registry = CollectorRegistry()
    registry.register(agent)
    agent.start()
    try:
        s = _samples(registry)
        assert _value(s, "agent_nvml_up", reason="library_not_found") == 0
        assert _value(s, "host_cpus") >= 1
    finally:
        agent.stop()


def test_host_and_watched_processes_from_a_proc_fixture(tmp_path, run_agent):
    """CPU seconds by mode, memory, load, and a watched process's CPU and RSS are read
    from the /proc tree given (here a fixture)."""
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "stat").write_text(
        "cpu  1000 0 500 8000 100 0 0 0 0 0\n"
        "cpu0 500 0 250 4000 50 0 0 0 0 0\n"
        "cpu1 500 0 250 4000 50 0 0 0 0 0\n"
    )
    (proc / "meminfo").write_text(
        "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"
    )
    (proc / "loadavg").write_text("1.50 1.00 0.50 2/300 4242\n")
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 8 + ["1000"] + ["0"] * 20
    (proc / "4242" / "stat").write_text("4242 (loglog serve) " + " ".join(fields) + "\n")
    (proc / "4242" / "cmdline").write_bytes(b"python\0-m\0loglog\0serve\0")
    _agent, registry = run_agent(no_driver(), proc=str(proc), watch_names=["loglog serve"])
    s = _samples(registry)
    ticks = os.sysconf("SC_CLK_TCK")
    assert _value(s, "host_cpu_seconds_total", mode="user") == 1000 / ticks
    assert _value(s, "host_cpus") == 2 and _value(s, "host_load1") == 1.5
    assert _value(s, "host_memory_available_bytes") == 8000000 * 1024
    assert (
        _value(s, "watched_process_cpu_seconds_total", pid=4242, name="loglog serve") == 300 / ticks
    )
    assert _value(s, "watched_process_resident_memory_bytes", pid=4242) == 1000 * os.sysconf(
        "SC_PAGE_SIZE"
    )
    assert set(HOST_METRICS) - {n for n, _ in s} - {n.removesuffix("_total") for n, _ in s} <= {
        "host_cpu_seconds_total", "watched_process_cpu_seconds_total"
    }  # fmt: skip


def test_a_real_process_is_watched_by_pid_and_disappears_cleanly(run_agent):
    """A real child process: its CPU and RSS are exported; when it exits, up goes to 0."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; x = bytearray(30_000_000); time.sleep(60)"]
    )
    try:
        _agent, registry = run_agent(no_driver(), watch_pids=[child.pid])

        def rss():
            value = _value(
                _samples(registry), "watched_process_resident_memory_bytes", pid=child.pid
            )
            return value if isinstance(value, float) else 0.0

        assert _wait(lambda: rss() > 25_000_000, timeout=10), "the 30 MB the child allocated"
        child.kill()
        child.wait()
        assert _wait(lambda: _value(_samples(registry), "watched_process_up", pid=child.pid) == 0)
    finally:
        child.kill()
        child.wait()


@pytest.mark.gpu
def test_real_nvml_under_load_reports_a_busy_gpu():
    """On a GPU host: real NVML, every family present, utilization high while a matrix
    product loop runs (needs torch with CUDA)."""
    torch = pytest.importorskip("torch")
    agent = Agent(interval=0.2)
    registry = CollectorRegistry()
    registry.register(agent)
    agent.start()
    stop = threading.Event()

    def burn():
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
        while not stop.is_set():
            (a @ a).sum().item()

    worker = threading.Thread(target=burn, daemon=True)
    worker.start()
    try:
        time.sleep(3)
        s = _samples(registry)
        print(generate_latest(registry).decode())
        assert _value(s, "agent_nvml_up", reason="ok") == 1
        assert max(v for (n, _), v in s.items() if n == "gpu_utilization_ratio") > 0.5
        assert max(v for (n, _), v in s.items() if n == "gpu_power_watts") > 0
    finally:
        stop.set()
        agent.stop()


def _proc_tree(proc, load: str = "1.50") -> None:
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(
        "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 1000 0 500 8000 100 0 0 0 0 0\n"
    )
    (proc / "meminfo").write_text("MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\n")
    (proc / "loadavg").write_text(f"{load} 1.00 0.50 2/300 4242\n")


def test_the_supervisor_survives_unreadable_and_vanishing_proc_entries(tmp_path, run_agent):
    """An unreadable /proc/<pid>/stat (here a directory), a malformed one, and the whole
    tree vanishing are counted in agent_collect_errors_total while host metrics and the
    hang watchdog keep running (before: the first one killed the supervisor thread)."""
    proc = tmp_path / "proc"
    _proc_tree(proc)
    (proc / "4242" / "stat").mkdir(parents=True)  # reading it raises IsADirectoryError
    (proc / "4243").mkdir()
    (proc / "4243" / "stat").write_text("garbage without parentheses")
    (proc / "4243" / "cmdline").write_bytes(b"loglog serve\0")
    agent, registry = run_agent(
        no_driver(), proc=str(proc), watch_pids=[4242], watch_names=["loglog serve"]
    )
    assert _wait(lambda: _value(_samples(registry), "agent_collect_errors_total",
                                call="process:IsADirectoryError") not in ([], 0))  # fmt: skip
    assert _value(_samples(registry), "agent_collect_errors_total", call="process:ValueError")
    moved = tmp_path / "gone"
    proc.rename(moved)  # every read fails now, including the directory listing
    assert _wait(lambda: _value(_samples(registry), "agent_collect_errors_total",
                                call="find:FileNotFoundError") not in ([], 0))  # fmt: skip
    moved.rename(proc)
    (proc / "loadavg").write_text("7.25 1.00 0.50 2/300 4242\n")
    assert _wait(lambda: _value(_samples(registry), "host_load1") == 7.25)
    assert agent._supervisor.is_alive()
