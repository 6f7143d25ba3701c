"""Binding the scoring server's gRPC port, with one line for the operator when it cannot be had.

gRPC sets ``SO_REUSEPORT`` on its listening sockets by default, so a second ``erank serve`` on a
port the first one holds would start and share it (two servers answering one address, each
request going to either). The server turns that off (``grpc.so_reuseport`` 0, :data:`OPTIONS`),
and before gRPC binds, the port is tried with a plain socket: a port in use, not ours to take or
on a host this machine does not have is one line naming it, where gRPC says only "Failed to bind"
(with a traceback and a log line of its own).
"""

from __future__ import annotations

import errno
import socket

import grpc

# Server options: no port sharing between processes.
OPTIONS: list[tuple[str, int]] = [("grpc.so_reuseport", 0)]


class PortUnavailable(OSError):
    """The gRPC port cannot be bound; the message is one line naming the address and why."""


def bind(
    server: grpc.aio.Server,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None = None,
) -> int:
    """Bind ``host:port`` on ``server`` (TLS with ``credentials``) and return the bound port (the
    one chosen when ``port`` is 0); :class:`PortUnavailable` when it cannot be bound."""
    address = f"{host}:{port}"
    if port != 0:
        check_port(host, port)
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # taken between the check and gRPC's bind
        bound = 0
    if bound == 0:
        raise PortUnavailable(f"cannot listen on {address}: gRPC could not bind it")
    return bound


def check_port(host: str, port: int) -> None:
    """Bind ``host:port`` with a plain socket (``SO_REUSEADDR`` like gRPC, so a port in
    TIME_WAIT is free) and close it at once; :class:`PortUnavailable` says why it failed."""
    address = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(  # gRPC's "[::]" is the socket library's "::"
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        reason = f"unknown host ({err.strerror}); check --host"
        raise PortUnavailable(f"cannot listen on {address}: {reason}") from None
    # gRPC binds every address a name has and starts if one binds: a port taken on any of them
    # is refused, an address family the machine lacks (IPv6 off) only when nothing binds.
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as err:
            errors.append(err)
    taken = [e for e in errors if e.errno in (errno.EADDRINUSE, errno.EACCES)]
    if taken or (errors and len(errors) == len(infos)):
        reason = _reason((taken or errors)[0])
        raise PortUnavailable(f"cannot listen on {address}: {reason}")


def _reason(err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return (
            "the port is in use (another erank serve or another program holds it); "
            "stop it or choose another --port"
        )
    if err.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); choose another --port"
    if err.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address; check --host"
    return err.strerror or str(err)
