"""Which ``Host`` and ``Origin`` a request may carry: DNS rebinding and cross-site requests.

A keyless server on 127.0.0.1 is reachable from any web page the user opens: a page on
``evil.example`` whose name is re-pointed at 127.0.0.1 (DNS rebinding) sends ``Host:
evil.example``, and a cross-site form POST (``multipart/form-data`` needs no CORS preflight)
sends ``Origin: https://evil.example``. :func:`check_host_and_origin` refuses both, over the raw
header list of an ASGI scope, so that the HTTP routes (through the auth dependency) and a
WebSocket endpoint (on its handshake scope) make the same decision:

* ``Host`` must name an allowed host (the port is not compared): the loopback names
  ``localhost``, ``127.0.0.1``, ``[::1]``, the host the server is bound to, and
  ``allowed_hosts``; otherwise 400 ``invalid_host``;
* ``Origin``, when sent, must be the request's own origin (same host and port as ``Host``,
  with the host named in the list, not merely allowed by ``*``), a loopback origin
  (``http(s)://localhost|127.0.0.1|[::1]`` on any port) or one of ``allowed_origins``;
  ``Origin: null`` (sandboxed frames, ``file://``) is refused; otherwise
  403 ``forbidden_origin``.

A server with an API key checks neither unless ``allowed_hosts`` / ``allowed_origins`` is set:
a browser cannot attach the bearer key to a cross-site request without a CORS preflight, which
this service never grants.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fusion.server.api_models import APIError

__all__ = ["LOOPBACK_NAMES", "OriginPolicy", "check_host_and_origin", "normalise_host",
           "parse_origin"]

#: host names that always name this machine
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
_ORIGIN = re.compile(r"^(?P<scheme>https?)://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)"
                     r"(?::(?P<port>\d{1,5}|\*))?$", re.IGNORECASE)
_DEFAULT_PORT = {"http": "80", "https": "443"}
_ANY_HOST = ("0.0.0.0", "[::]")  # noqa: S104 - bind-all addresses name no host


def normalise_host(value: str, *, with_port: bool = False) -> str | None:
    """A ``Host`` value as a comparable name: lower case, IPv6 in brackets, no port (unless
    ``with_port``); None when it is not a host name or IP literal.

    ``"Example.COM:8000"`` → ``"example.com"``; ``"::1"`` → ``"[::1]"``; ``"a b"`` → None.
    """
    v = value.strip().lower()
    if not v:
        return None
    port = ""
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[: end + 1], v[end + 1:]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = rest[1:]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    elif v.count(":") > 1:  # a bare IPv6 literal (settings, not Host headers)
        try:
            name = f"[{ipaddress.IPv6Address(v).compressed}]"
        except ValueError:
            return None
    else:
        name, _, port = v.partition(":")
        if (port and not port.isdigit()) or (_ and not port) or not _NAME.match(name):
            return None
        name = name.rstrip(".")
    if port and int(port) > 65535:
        return None
    return f"{name}:{port}" if with_port and port else name


def parse_origin(value: str, *, allow_wildcard_port: bool = False
                 ) -> tuple[str, str, str] | None:
    """``scheme://host[:port]`` as ``(scheme, host, port)`` (default ports as ``""``, ``*``
    for any port where allowed); None for anything else (paths, ``null``, other schemes)."""
    m = _ORIGIN.match(value.strip())
    if m is None:
        return None
    scheme = m.group("scheme").lower()
    host = normalise_host(m.group("host"))
    port = m.group("port") or ""
    if host is None or (port == "*" and not allow_wildcard_port):
        return None
    if port and port != "*" and int(port) > 65535:
        return None
    if port == _DEFAULT_PORT[scheme]:
        port = ""
    return scheme, host, port


@dataclass(frozen=True)
class OriginPolicy:
    """Allowed ``Host`` names and ``Origin`` values, and whether each is enforced.

    Attributes
    ----------
    hosts : frozenset of str
        Normalised host names (no port); ``"*"`` allows any.
    origins : frozenset of tuple
        ``(scheme, host, port)`` with port ``""`` (default), a number or ``"*"``; a
        ``("*", "*", "*")`` entry allows any.
    enforce_hosts, enforce_origins : bool
    """

    hosts: frozenset[str]
    origins: frozenset[tuple[str, str, str]]
    enforce_hosts: bool = True
    enforce_origins: bool = True

    @classmethod
    def build(cls, *, bound_host: str | None, allowed_hosts: Sequence[str] | None,
              allowed_origins: Sequence[str] | None, has_api_key: bool) -> OriginPolicy:
        """The policy of a server: loopback names plus the bound host plus the settings."""
        hosts = set(LOOPBACK_NAMES)
        bound = normalise_host(bound_host) if bound_host else None
        if bound and bound not in _ANY_HOST:
            hosts.add(bound)
        for h in allowed_hosts or ():
            hosts.add("*" if h.strip() == "*" else (normalise_host(h) or h))
        origins = {(scheme, name, "*") for name in LOOPBACK_NAMES for scheme in ("http", "https")}
        for o in allowed_origins or ():
            parsed = ("*", "*", "*") if o.strip() == "*" else parse_origin(
                o, allow_wildcard_port=True)
            if parsed is not None:
                origins.add(parsed)
        return cls(hosts=frozenset(hosts), origins=frozenset(origins),
                   enforce_hosts=not has_api_key or allowed_hosts is not None,
                   enforce_origins=not has_api_key or allowed_origins is not None)

    @classmethod
    def from_settings(cls, settings: Any) -> OriginPolicy:
        """From a :class:`fusion.server.app.ServerSettings` (``host``, ``api_key``,
        ``allowed_hosts``, ``allowed_origins``)."""
        return cls.build(bound_host=settings.host, allowed_hosts=settings.allowed_hosts,
                         allowed_origins=settings.allowed_origins,
                         has_api_key=settings.api_key is not None)

    def host_allowed(self, host: str) -> bool:
        return "*" in self.hosts or host in self.hosts

    def origin_allowed(self, origin: tuple[str, str, str], own_host: str | None) -> bool:
        scheme, host, port = origin
        if own_host is not None and host in self.hosts:
            # the request's own origin is not cross-site, if its host is named (not via "*":
            # with any Host allowed, a rebound name would otherwise pass as its own origin)
            own = f"{host}:{port}" if port else host
            if own == own_host or (not port and own_host == f"{host}:{_DEFAULT_PORT[scheme]}"):
                return True
        return (("*", "*", "*") in self.origins or (scheme, host, port) in self.origins
                or (scheme, host, "*") in self.origins)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in headers if k.lower() == name]


def check_host_and_origin(headers: Iterable[tuple[bytes, bytes]], policy: OriginPolicy) -> None:
    """Refuse a request (HTTP or WebSocket handshake) whose ``Host`` or ``Origin`` the policy
    does not allow.

    Parameters
    ----------
    headers : iterable of (bytes, bytes)
        The ASGI scope's ``headers`` (lower-case names).
    policy : OriginPolicy

    Raises
    ------
    APIError
        400 ``invalid_host`` (missing name, several, or not allowed); 403 ``forbidden_origin``.
    """
    headers = list(headers)
    own_host: str | None = None
    if policy.enforce_hosts or policy.enforce_origins:
        values = _header(headers, b"host")
        if len(values) > 1:
            raise APIError(400, "invalid_host", "the request has more than one Host header")
        if values:
            own_host = normalise_host(values[0], with_port=True)
            name = normalise_host(values[0])
            if policy.enforce_hosts and (name is None or not policy.host_allowed(name)):
                raise APIError(400, "invalid_host",
                               "the Host header does not name this server; add the name "
                               "with `vocalfusion serve --allowed-host NAME`")
    if not policy.enforce_origins:
        return
    origins = _header(headers, b"origin")
    if not origins:
        return  # not a browser's cross-site request
    parsed = parse_origin(origins[0]) if len(origins) == 1 else None
    if parsed is None or not policy.origin_allowed(parsed, own_host):
        raise APIError(403, "forbidden_origin",
                       "requests from this web origin are not allowed; add it with "
                       "`vocalfusion serve --allowed-origin SCHEME://HOST[:PORT]`")
