"""net_zeek's view options (the ``[net_zeek]`` table of the server's viz config) and the host classifier they make:
category ``local``/``remote`` by ``local_networks``, group by the most specific subnet of ``groups``/``tags_file``."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiredraw.core.graph import view_options

__all__ = ["HostClassifier", "ViewOptions", "parse_options", "read_tags_file"]

DEFAULT_LOCAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")  # RFC 1918, RFC 4193
OPTION_NAMES = ("local_networks", "groups", "tags_file")
CLASSIFY_CACHE_MAX = 200_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ViewOptions:
    local_networks: tuple[Network, ...]
    groups: tuple[tuple[Network, str], ...]


def _network(value: Any, where: str) -> Network:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a CIDR string such as '10.0.0.0/8', got {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} is not a CIDR ({exc})") from exc


def _group_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: expected a non-empty group name, got {value!r}")
    return value.strip()


def read_tags_file(path: Path) -> list[tuple[Network, str]]:
    """``CIDR name`` lines (``#`` starts a comment, blank lines are skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"tags_file {str(path)!r}: cannot read it ({exc})") from exc
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        where = f"tags_file {str(path)!r} line {lineno}"
        if len(parts) != 2:
            raise ValueError(f"{where}: expected 'CIDR name', got {line!r}")
        out.append((_network(parts[0], where), _group_name(parts[1], where)))
    return out


def parse_options(options: Mapping[str, Any] | None) -> ViewOptions:
    """Check the ``[net_zeek]`` table of the server's viz config; a ValueError names the option at fault.

    ``groups`` entries win over ``tags_file`` lines for the same subnet."""
    options = view_options("net_zeek", options, OPTION_NAMES)
    local = options.get("local_networks", list(DEFAULT_LOCAL_NETWORKS))
    if not isinstance(local, list):
        raise ValueError(f"local_networks: expected a list of CIDRs, got {local!r}")
    networks = tuple(_network(v, f"local_networks[{i}]") for i, v in enumerate(local))
    by_net: dict[Network, str] = {}
    tags_file = options.get("tags_file")
    if tags_file is not None:
        if not isinstance(tags_file, str) or not tags_file:
            raise ValueError(f"tags_file: expected a path, got {tags_file!r}")
        by_net.update(read_tags_file(Path(tags_file).expanduser()))
    groups = options.get("groups", {})
    if not isinstance(groups, Mapping):
        raise ValueError(f"groups: expected a table of CIDR = name, got {groups!r}")
    for cidr, name in groups.items():
        by_net[_network(cidr, f"groups.{cidr}")] = _group_name(name, f"groups.{cidr!r}")
    return ViewOptions(networks, tuple(by_net.items()))


class HostClassifier:
    """Category (local/remote) and group of an address: the most specific subnet wins, one dict look-up (on the
    address's integer, shifted) per distinct prefix length, results cached per address."""

    def __init__(self, options: ViewOptions) -> None:
        self._local = self._table((net, "local") for net in options.local_networks)
        self._groups = self._table(options.groups)
        self._cache: dict[str, tuple[str, str]] = {}

    @staticmethod
    def _table(pairs: Iterable[tuple[Network, str]]) -> list[tuple[int, int, dict[int, str]]]:
        """[(version, host bits, {network address >> host bits: name})], longest prefix first."""
        by_len: dict[tuple[int, int], dict[int, str]] = {}
        for net, name in pairs:
            host_bits = net.max_prefixlen - net.prefixlen
            by_len.setdefault((net.version, host_bits), {})[int(net.network_address) >> host_bits] = name
        return [(v, bits, nets) for (v, bits), nets in sorted(by_len.items(), key=lambda kv: kv[0][1])]

    @staticmethod
    def _lookup(table: list[tuple[int, int, dict[int, str]]], version: int, value: int) -> str | None:
        for v, host_bits, nets in table:
            if v == version:
                name = nets.get(value >> host_bits)
                if name is not None:
                    return name
        return None

    def classify(self, ip: str) -> tuple[str, str]:
        hit = self._cache.get(ip)
        if hit is None:
            if len(self._cache) >= CLASSIFY_CACHE_MAX:
                self._cache.clear()
            try:
                addr = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                hit = ("remote", "")
            else:
                value = int(addr)
                local = self._lookup(self._local, addr.version, value) is not None
                hit = ("local" if local else "remote", self._lookup(self._groups, addr.version, value) or "")
            self._cache[ip] = hit
        return hit
