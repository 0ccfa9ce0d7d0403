"""HTTP to users' receivers (webhooks, push services): connect only to addresses checked.

A receiver's host name is resolved once per connection, every address it resolves to is
checked (no loopback, private, link-local, CGNAT, multicast or metadata ranges in production),
and the connection goes to one of those checked addresses: DNS that changes its answer between
a check and the connect cannot steer a send inside the network. TLS still verifies the
certificate for the name (SNI), and the Host header stays the name. Refusals say a category and
the host as given, never an address or how the name resolved.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpcore
import httpx

from services.errors import BadUserInput

RESOLVE_TIMEOUT_SECONDS = 10.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused whatever the running Python's ipaddress flags say: those flags changed between
# patch releases (CGNAT, 6to4, multicast's is_global), and these ranges never host a receiver.
_BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, including the cloud metadata service 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, including broadcast 255.255.255.255
        "::/8",  # unspecified, loopback, IPv4-compatible and other reserved
        "64:ff9b::/96",  # NAT64: reaches an IPv4 address chosen by the host's name
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        # IETF protocol assignments; Teredo (2001::/32) tunnels to a client address that the
        # attacker controls, and no receiver needs it, so it is refused whatever it embeds.
        "2001::/23",
        "2001:db8::/32",  # documentation
        # 6to4 is deprecated (RFC 7526) and embeds an arbitrary IPv4 address: refused outright.
        "2002::/16",
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)


class AddressRefused(BadUserInput):
    """A receiver's host does not resolve, or resolves to an address that is not public.

    Its message names the host as the user gave it, never an address it resolved to.
    """


def is_public_address(ip: IPAddress) -> bool:
    """Whether a receiver may be reached at this address (not private, local or special)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(ip.ipv4_mapped)
    if any(ip in net for net in _BLOCKED_NETWORKS):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


# (host, port) → the addresses it resolves to, as text; the event loop's resolver by default.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the running loop's getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def checked_addresses(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """Where `host` may be reached: every address it resolves to, all public (or AddressRefused).

    With `allow_private` (development) only the resolution itself is required.
    """
    host = host.strip("[]")
    if not host:
        raise AddressRefused("receiver URL has no host")
    literal = _literal_ip(host.split("%", 1)[0])
    if literal is not None:
        addresses = [host]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                addresses = await resolver(host, port)
        except TimeoutError:
            raise AddressRefused(
                f"host {host!r} did not resolve within {RESOLVE_TIMEOUT_SECONDS:g} s"
            ) from None
        except (OSError, UnicodeError):
            # socket.gaierror is an OSError; UnicodeError comes from names IDNA cannot encode.
            addresses = []
    if allow_private:
        if not addresses:
            raise AddressRefused(f"host {host!r} does not resolve")
        return addresses
    # One message whether the name is unknown or points inside: no probing of internal names.
    refused = AddressRefused(f"host {host!r} does not resolve to a public address")
    if not addresses:
        raise refused
    for address in addresses:
        ip = _literal_ip(address.split("%", 1)[0])
        # A resolver answer that is not an IP address (an unexpected family) is not trusted.
        if ip is None or not is_public_address(ip):
            raise refused
    return addresses


async def resolve_public(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> None:
    """Check where the URL's host resolves (at creation); AddressRefused when it may not be used."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise AddressRefused("receiver URL has an invalid port") from None
    await checked_addresses(
        parts.hostname or "", port, allow_private=allow_private, resolver=resolver
    )


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to checked addresses of the requested host."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve once, check every address, connect to the first checked one that answers."""
        addresses = await checked_addresses(
            host, port, allow_private=self.allow_private, resolver=self.resolver
        )
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Receivers are reached over TCP only."""
        raise httpcore.ConnectError("receivers are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        """The inner backend's sleep (the pool's retries wait with it)."""
        await self.inner.sleep(seconds)


# httpcore's exceptions as httpx's, most specific first, as httpx's own transport maps them.
_MAPPED_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _MAPPED_ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class CheckedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose connections go only to checked addresses (CheckedBackend)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
        verify: bool | str = True,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=CheckedBackend(
                allow_private=allow_private, resolver=resolver, inner=inner
            ),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` over a connection to a checked address of its host."""
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        # An async pool always answers with an async stream.
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._pool.aclose()


def receiver_client(
    *,
    allow_private: bool,
    timeout: float,
    resolver: Resolver = system_resolver,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The HTTP client for receivers: checked addresses only, redirects never followed."""
    # trust_env=False: an HTTP(S)_PROXY in the environment must not relay requests to users' URLs.
    return httpx.AsyncClient(
        transport=CheckedTransport(allow_private=allow_private, resolver=resolver, inner=inner),
        follow_redirects=False,
        timeout=timeout,
        trust_env=False,
    )
