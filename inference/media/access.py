"""What a stream may read and write: the source allow-list and the recording directory.

Without these the server is an SSRF proxy (``http://169.254.169.254/…`` fetched on
request, and its error text told open ports from closed), reads any file the process can,
and ``record=`` overwrites any file. So:

- a source's scheme must be in ``source_schemes``;
- a network source's host must resolve only to allowed addresses: with ``source_hosts``
  empty, any public address; private, loopback, link-local and other special ranges only
  when a name or CIDR in ``source_hosts`` covers them (with ``source_hosts`` set, only
  what it lists);
- a file source must lie under one of ``source_dirs`` (after resolving symlinks);
- ``record=`` is a file *name* created new (never overwritten) in ``record_dir``.

Refusals and open failures say what is allowed, never whether a path or port exists.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from loglog.redact import redact

from ..errors import ConfigError, SourceError

RECORD_SUFFIXES = (".mp4", ".mkv", ".ts")
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _special(address: _Address) -> bool:
    return not address.is_global or address.is_multicast


@dataclasses.dataclass(frozen=True)
class SourcePolicy:
    """The allow-list; build it once from the config (see the module docstring)."""

    schemes: tuple[str, ...] = ("synthetic", "file", "rtsp", "rtsps", "http", "https")
    hosts: tuple[str, ...] = ()
    file_dirs: tuple[str, ...] = (".",)
    resolve: Callable[[str], list[str]] = _resolve
    _names: frozenset[str] = dataclasses.field(init=False, repr=False, default=frozenset())
    _networks: tuple[_Network, ...] = dataclasses.field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        names: list[str] = []
        networks: list[_Network] = []
        for entry in self.hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not entry or "/" in entry:
                    raise ConfigError(
                        f"source_hosts: {entry!r} is neither a host name nor a CIDR"
                    ) from None
                names.append(entry.lower())
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    def check_scheme(self, scheme: str, url: str) -> None:
        if scheme not in self.schemes:
            raise SourceError(
                f"source {redact(url)[:200]!r}: scheme {scheme!r} is not allowed; allowed: "
                f"{', '.join(self.schemes) or 'none'} (source_schemes)"
            )

    def check_network(self, url: str) -> None:
        """Raise SourceError unless every address ``url``'s host resolves to is allowed."""
        parts = urlsplit(url)
        self.check_scheme(parts.scheme.lower(), url)
        host = (parts.hostname or "").lower()
        shown = redact(url)[:200]
        if not host:
            raise SourceError(f"source {shown!r} has no host")
        if host in self._names:
            return
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolve(host)]
        except (OSError, UnicodeError, ValueError):
            addresses = []
        networks: Sequence[_Network] = self._networks
        allowed = bool(addresses) and all(
            any(address in network for network in networks)
            or (not self.hosts and not _special(address))
            for address in addresses
        )
        if not allowed:
            raise SourceError(
                f"source {shown!r} is not allowed: network sources must be public addresses, "
                "or hosts/CIDRs listed in source_hosts (private, loopback and link-local "
                "addresses are refused unless listed)"
            )

    def check_file(self, path: str) -> str:
        """The resolved path if it lies under an allowed directory; SourceError (the
        same words whether or not it exists) otherwise."""
        real = os.path.realpath(path)
        for root in self.file_dirs:
            base = os.path.realpath(root)
            if os.path.commonpath([base, real]) == base:
                return real
        raise SourceError(
            f"file source {path[:200]!r} is not allowed: video files are read only from "
            f"source_dirs ({', '.join(self.file_dirs) or 'none'})"
        )


def record_path(record_dir: str | os.PathLike[str], name: str) -> Path:
    """Create ``name`` new in ``record_dir`` and return its path; SourceError when the
    name escapes the directory, has the wrong suffix, or the file already exists."""
    if (
        not name
        or name != os.path.basename(name)
        or name.startswith(".")
        or "\x00" in name
        or len(name) > 128
    ):
        raise SourceError(
            f"record={name[:80]!r}: give a plain file name such as cam1.mp4; recordings are "
            f"written to the server's record_dir"
        )
    if not name.lower().endswith(RECORD_SUFFIXES):
        raise SourceError(f"record={name!r}: use a {', '.join(RECORD_SUFFIXES)} file name")
    directory = Path(record_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    except FileExistsError:
        raise SourceError(
            f"record={name!r} already exists in record_dir: pick a new name (never overwritten)"
        ) from None
    except OSError as exc:
        raise SourceError(f"cannot create record={name!r} in record_dir: {exc.strerror}") from None
    os.close(fd)
    return directory / name
