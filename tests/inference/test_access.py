"""The source allow-list and the recording directory: the server is not an SSRF proxy,
reads files only where allowed, never overwrites, and its errors reveal nothing."""

from __future__ import annotations

import os

import pytest

from inference.errors import ConfigError, SourceError
from inference.media.access import SourcePolicy, record_path
from inference.media.sources import parse_source

_ADDRESSES = {
    "cam.example": ["93.184.216.34"],
    "metadata": ["169.254.169.254"],
    "intranet": ["10.1.2.3"],
    "mixed": ["93.184.216.34", "127.0.0.1"],
}


def _policy(**options):
    return SourcePolicy(resolve=lambda host: _ADDRESSES.get(host, []), **options)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9090/metrics",
        "http://localhost:22/",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "rtsp://metadata/stream",
        "rtsp://intranet/stream",
        "http://mixed/x",  # one private address among public ones is enough to refuse
        "http://0.0.0.0/",
        "http://unresolvable.invalid/",
    ],
)
def test_private_loopback_and_link_local_sources_are_refused_by_default(url):
    """With no source_hosts, only public addresses may be fetched."""
    with pytest.raises(SourceError, match="not allowed"):
        parse_source(url, _policy())


def test_listed_hosts_and_cidrs_are_allowed_and_then_only_they():
    """source_hosts opens private ranges on purpose, and closes everything else."""
    policy = _policy(hosts=("10.0.0.0/8", "cam.example"))
    assert parse_source("rtsp://intranet/stream", policy).kind == "network"
    assert parse_source("rtsp://user:pw@cam.example/s", policy).kind == "network"
    with pytest.raises(SourceError, match="not allowed"):
        parse_source("http://metadata/", policy)
    with pytest.raises(ConfigError, match="neither a host name nor a CIDR"):
        SourcePolicy(hosts=("10.0.0.0/99",))


def test_schemes_outside_the_allow_list_are_refused():
    policy = _policy(schemes=("synthetic", "rtsp"))
    with pytest.raises(SourceError, match="scheme 'http' is not allowed"):
        parse_source("http://cam.example/x", policy)
    with pytest.raises(SourceError, match="scheme 'file' is not allowed"):
        parse_source("/etc/passwd", policy)


def test_file_errors_do_not_tell_existing_paths_from_missing_ones(tmp_path):
    """Outside source_dirs, /etc/passwd and a missing path get the same words; inside,
    a missing file and a file that is not a video both get 'cannot open'."""
    policy = _policy(file_dirs=(str(tmp_path),))
    messages = []
    for path in ("/etc/passwd", "/no/such/file"):
        with pytest.raises(SourceError) as info:
            parse_source(path, policy)
        messages.append(str(info.value).replace(path, "PATH"))
    assert messages[0] == messages[1]
    (tmp_path / "link").symlink_to("/etc/passwd")
    with pytest.raises(SourceError, match="not allowed"):
        parse_source(str(tmp_path / "link"), policy)
    with pytest.raises(SourceError, match="cannot open source"):
        parse_source(str(tmp_path / "missing.mp4"), policy)


def test_passwords_never_appear_in_source_errors():
    """A refused camera URL is shown with its password replaced."""
    with pytest.raises(SourceError) as info:
        parse_source("rtsp://admin:hunter2@intranet/live?token=abc", _policy())
    assert "hunter2" not in str(info.value) and "abc" not in str(info.value)
    assert "admin:***@" in str(info.value)


def test_recordings_are_new_files_in_the_record_dir(tmp_path):
    """record= names a new file in record_dir: no paths, no dot-files, never an overwrite."""
    path = record_path(tmp_path / "rec", "cam1.mp4")
    assert path == tmp_path / "rec" / "cam1.mp4" and path.exists()
    with pytest.raises(SourceError, match="already exists"):
        record_path(tmp_path / "rec", "cam1.mp4")
    victim = tmp_path / "precious.mp4"
    victim.write_bytes(b"keep me")
    for name in ("../precious.mp4", str(victim), "..", ".hidden.mp4", "a/b.mp4", "x.txt", ""):
        with pytest.raises(SourceError):
            record_path(tmp_path / "rec", name)
    assert victim.read_bytes() == b"keep me"
    os.symlink(victim, tmp_path / "rec" / "link.mp4")
    with pytest.raises(SourceError):
        record_path(tmp_path / "rec", "link.mp4")
    assert victim.read_bytes() == b"keep me"
