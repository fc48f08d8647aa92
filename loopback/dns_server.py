"""A small DNS server on loopback that answers from an in-memory record table.

The tests and `portal-domains demo` point `DnsSettings` at it instead of the
system resolver, so CNAME verification and the CAA check run against real DNS
messages without touching the network. It behaves like a recursive resolver
whose whole world is its table: it chases CNAMEs inside the table, says
NXDOMAIN for names that do not exist (empty non-terminals such as `acme.com`
under `portal.acme.com` do exist) and NOERROR with an empty answer for names
that exist without the asked type. It serves UDP and TCP on the same port.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Iterable
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset

from adapters.dns import DnsSettings

logger = logging.getLogger(__name__)

_TTL = 5
_MAX_CNAME_HOPS = 8
_BIND_ATTEMPTS = 20


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.strip())


class _Zone:
    """The record table: name -> rdtype -> rdatas. Guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[
            dns.name.Name, dict[dns.rdatatype.RdataType, list[dns.rdata.Rdata]]
        ] = {}

    def replace(
        self,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        rdatas: Iterable[dns.rdata.Rdata],
    ) -> None:
        with self._lock:
            node = self._records.setdefault(name, {})
            if rdtype == dns.rdatatype.CNAME:
                # A CNAME owns its name: no other data may sit beside it (RFC 1034 3.6.2).
                node.clear()
            else:
                node.pop(dns.rdatatype.CNAME, None)
            node[rdtype] = list(rdatas)

    def add(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
        with self._lock:
            node = self._records.setdefault(name, {})
            node.pop(dns.rdatatype.CNAME, None)
            existing = node.setdefault(rdata.rdtype, [])
            if rdata not in existing:
                existing.append(rdata)

    def remove(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType | None) -> None:
        with self._lock:
            if rdtype is None:
                self._records.pop(name, None)
                return
            node = self._records.get(name)
            if node is not None:
                node.pop(rdtype, None)
                if not node:
                    del self._records[name]

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            for _ in range(_MAX_CNAME_HOPS):
                if not self._exists(qname):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                    return response
                node = self._records.get(qname, {})
                cname = node.get(dns.rdatatype.CNAME)
                if cname and qtype not in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
                    response.answer.append(self._rrset(qname, dns.rdatatype.CNAME, cname))
                    alias = cname[0]
                    assert isinstance(alias, dns.rdtypes.ANY.CNAME.CNAME)
                    qname = alias.target
                    continue
                for rdtype, rdatas in sorted(node.items()):
                    if qtype in (rdtype, dns.rdatatype.ANY) and rdatas:
                        response.answer.append(self._rrset(qname, rdtype, rdatas))
                return response
        response.set_rcode(dns.rcode.SERVFAIL)
        return response

    def _exists(self, name: dns.name.Name) -> bool:
        return any(owner == name or owner.is_subdomain(name) for owner in self._records)

    @staticmethod
    def _rrset(
        name: dns.name.Name, rdtype: dns.rdatatype.RdataType, rdatas: list[dns.rdata.Rdata]
    ) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        for rdata in rdatas:
            rrset.add(rdata, _TTL)
        return rrset


def _handle_wire(zone: _Zone, wire: bytes) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException as error:
        logger.debug("dropping a malformed DNS query: %s", error)
        return None
    response: bytes = zone.answer(query).to_wire()
    return response


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        reply = _handle_wire(self.server.zone, data)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(self.server.zone_timeout)
        try:
            while True:
                header = self._read(conn, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                wire = self._read(conn, length)
                if wire is None:
                    return
                reply = _handle_wire(self.server.zone, wire)
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError as error:
            logger.debug("DNS TCP connection ended: %s", error)

    @staticmethod
    def _read(conn: socket.socket, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            chunk = conn.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], zone: _Zone) -> None:
        self.zone = zone
        super().__init__(address, _UdpHandler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], zone: _Zone, timeout: float) -> None:
        self.zone = zone
        self.zone_timeout = timeout
        super().__init__(address, _TcpHandler)


class LocalDnsServer:
    """DNS on 127.0.0.1:<free port> (UDP and TCP) answering from a mutable table.

    Use it as a context manager, or call `start()` and `stop()`. Record names are
    case-insensitive; a trailing dot is optional.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        timeout_seconds: float = 2.0,
        poll_interval_seconds: float = 0.02,
    ) -> None:
        self._host = host
        self._timeout_seconds = timeout_seconds
        self._poll_interval = poll_interval_seconds
        self._zone = _Zone()
        self._udp: _UdpServer | None = None
        self._tcp: _TcpServer | None = None
        self._threads: list[threading.Thread] = []

    # -- records -----------------------------------------------------------------

    def set_cname(self, name: str, target: str) -> None:
        """Make `name` an alias of `target`, replacing whatever `name` had."""
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CNAME, _name(target).to_text())
        self._zone.replace(_name(name), dns.rdatatype.CNAME, [rdata])

    def set_a(self, name: str, *addresses: str) -> None:
        """Give `name` exactly these A records (and drop a CNAME it had)."""
        if not addresses:
            raise ValueError("set_a needs at least one address")
        rdatas = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, a) for a in addresses]
        self._zone.replace(_name(name), dns.rdatatype.A, rdatas)

    def set_caa(self, name: str, flags: int, tag: str, value: str) -> None:
        """Add one CAA record to `name`'s CAA set (a set usually holds several)."""
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.CAA, f'{flags} {tag} "{escaped}"'
        )
        self._zone.add(_name(name), rdata)

    def clear_caa(self, name: str) -> None:
        self._zone.remove(_name(name), dns.rdatatype.CAA)

    def remove(self, name: str) -> None:
        """Forget every record of `name`: it answers NXDOMAIN unless it has children."""
        self._zone.remove(_name(name), None)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._udp is None:
            raise RuntimeError("the DNS server is not running")
        port: int = self._udp.server_address[1]
        return port

    @property
    def settings(self) -> DnsSettings:
        return DnsSettings(
            nameservers=(self._host,), port=self.port, timeout_seconds=self._timeout_seconds
        )

    def start(self) -> LocalDnsServer:
        if self._udp is not None:
            return self
        # UDP takes a free port first; TCP must get the same number, which another
        # process may hold, so try a few ports before giving up.
        for _ in range(_BIND_ATTEMPTS):
            udp = _UdpServer((self._host, 0), self._zone)
            try:
                tcp = _TcpServer(
                    (self._host, udp.server_address[1]), self._zone, self._timeout_seconds
                )
            except OSError:
                udp.server_close()
                continue
            self._udp, self._tcp = udp, tcp
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {self._host}")
        for server in (self._udp, self._tcp):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": self._poll_interval},
                name=f"dns-{type(server).__name__}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        logger.info("local DNS server listening on %s:%d", self._host, self.port)
        return self

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join()
        self._udp = self._tcp = None
        self._threads = []

    def __enter__(self) -> LocalDnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
