"""Media by URL, fetched so that a URL cannot be turned against the cluster.

- Only ``http`` and ``https``.
- The host is resolved here and every address it resolves to is checked: every address that is not globally
  routable (loopback, private, link-local, site-local, multicast, reserved, unspecified, shared, ...) is refused,
  also when an IPv6 address carries an IPv4 one (IPv4-mapped, 6to4, NAT64). ``URL_ALLOWLIST`` lets chosen
  networks or host names through; cloud metadata addresses are refused even then.
- The connection goes to the address that was checked (the URL's host stays in the ``Host`` header and the
  TLS server name), so a second DNS answer cannot differ from the checked one.
- Redirects are followed here, at most ``URL_MAX_REDIRECTS``, each hop checked like the first.
- One deadline (``URL_FETCH_TIMEOUT_S``) covers the whole fetch; the body is capped while it streams.
- Errors name the class of problem, never the target's status, body or addresses (those are logged).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

from modelcluster.api.errors import InputError, PayloadTooLarge
from modelcluster.runtime.media import collect_bytes

logger = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
#: (host, port) -> the addresses to connect to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Cloud instance metadata endpoints (AWS, GCP, Azure, ECS tasks, Alibaba, Oracle): never fetched.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200", "192.0.0.192")
)
NAT64_PREFIX = IPv6Network("64:ff9b::/96")
REFUSED_CLASSES = (
    ("is_unspecified", "an unspecified"),
    ("is_loopback", "a loopback"),
    ("is_link_local", "a link-local"),
    ("is_multicast", "a multicast"),
    ("is_reserved", "a reserved"),
    ("is_private", "a private"),
    ("is_site_local", "a site-local"),  # fec0::/10: deprecated, yet `is_global` on Python 3.11 says global
)
#: Not globally reachable, yet not classed so by every Python version's ``ipaddress`` (RFC 6890 registries).
NON_GLOBAL_NETWORKS: tuple[Network, ...] = (
    IPv6Network("fec0::/10"),  # site-local (RFC 3879)
    IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    IPv6Network("5f00::/16"),  # SRv6 SIDs (RFC 9602)
    IPv4Network("100.64.0.0/10"),  # shared address space (RFC 6598), pod networks
    IPv4Network("192.0.0.0/24"),  # IETF protocol assignments (RFC 6890), e.g. 192.0.0.8 (RFC 7600)
)
HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class FetchError(InputError):
    """A media URL that was refused or could not be fetched (422)."""

    kind = "url"

    def __init__(self, reason: str) -> None:
        super().__init__(f"could not fetch the URL: {reason}")


@dataclass(frozen=True)
class UrlPolicy:
    """Where media URLs may lead, and how long and large a fetch may be."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()  # exact names, or "*.suffix" for names under suffix
    timeout_s: float = 30.0
    max_redirects: int = 5
    max_bytes: int = 64 * 1024 * 1024

    @classmethod
    def from_allowlist(
        cls,
        entries: Iterable[str],
        *,
        timeout_s: float = 30.0,
        max_redirects: int = 5,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> UrlPolicy:
        """Parse ``URL_ALLOWLIST`` entries: CIDRs or IPs, else host names; anything else is a ``ValueError``."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for entry in entries:
            text = entry.strip().lower().rstrip(".")
            try:
                networks.append(ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if not HOST_PATTERN.match(text):
                raise ValueError(f"URL_ALLOWLIST entry {entry!r} is neither a CIDR, an IP nor a host name")
            hosts.add(text)
        return cls(
            networks=tuple(networks),
            hosts=frozenset(hosts),
            timeout_s=timeout_s,
            max_redirects=max_redirects,
            max_bytes=max_bytes,
        )

    def host_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(entry.startswith("*.") and name.endswith(entry[1:]) for entry in self.hosts)

    def network_allowed(self, address: IPAddress) -> bool:
        return any(address.version == network.version and address in network for network in self.networks)


def embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one leads to: IPv4-mapped, 6to4 and the NAT64 well-known prefix."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress, host: str, policy: UrlPolicy) -> str | None:
    """Why ``host`` resolving to ``address`` may not be fetched (a class of address), or None when it may."""
    target = embedded_ipv4(address) or address
    if address in METADATA_ADDRESSES or target in METADATA_ADDRESSES:
        return "the host is a cloud metadata address"
    if policy.host_allowed(host) or policy.network_allowed(address) or policy.network_allowed(target):
        return None
    return non_global_reason(target)  # a wrapped address is judged by the IPv4 address it leads to


def non_global_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a globally routable one (its class), or None when it is."""
    for attribute, label in REFUSED_CLASSES:
        if getattr(address, attribute, False):
            return f"the host is {label} address, which is not allowed"
    if not address.is_global or any(address in network for network in NON_GLOBAL_NETWORKS):
        return "the host is a non-public address, which is not allowed"
    return None


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def new_client(timeout_s: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client for pinned fetches: no redirects of its own, no proxies from the environment, no reused
    connections (a connection is made to one checked address for one host)."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=httpx.Limits(max_keepalive_connections=0))
    return httpx.AsyncClient(
        transport=transport, timeout=timeout_s, follow_redirects=False, headers={"User-Agent": "modelcluster-runtime"}
    )


class UrlFetcher:
    """Fetches media URLs under a :class:`UrlPolicy`; ``resolver`` and ``verify`` (TLS trust) are replaceable."""

    def __init__(
        self, policy: UrlPolicy, resolver: Resolver = resolve_host, verify: ssl.SSLContext | bool = True
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.client = new_client(policy.timeout_s, verify)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, url: str) -> bytes:
        """The body at ``url``; raises :class:`FetchError` (422) or ``PayloadTooLarge`` (413)."""
        limit = self.policy.timeout_s
        try:
            async with asyncio.timeout(limit):
                return await self._follow(url)
        except TimeoutError as exc:
            raise FetchError(f"it took longer than {limit:g}s") from exc
        except httpx.HTTPError as exc:
            logger.info("media URL transfer failed: %s: %s", type(exc).__name__, exc)
            raise FetchError("the transfer failed") from exc

    async def _follow(self, url: str) -> bytes:
        try:
            current = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError("the URL is not valid") from exc
        for _ in range(self.policy.max_redirects + 1):
            if current.scheme not in ("http", "https"):
                raise FetchError("it must be an http or https URL")
            if not current.host:
                raise FetchError("the URL is not valid")
            result = await self._get(current)
            if isinstance(result, bytes):
                return result
            current = result
        raise FetchError(f"it redirected more than {self.policy.max_redirects} times")

    async def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            addresses = await self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise FetchError("the host could not be resolved") from exc
        if not addresses:
            raise FetchError("the host could not be resolved")
        for text in addresses:
            reason = address_refusal(ip_address(text.partition("%")[0]), host, self.policy)
            if reason is not None:
                logger.warning("refused media URL host %s (resolves to %s): %s", host, text, reason)
                raise FetchError(reason)
        return addresses

    async def _get(self, url: httpx.URL) -> bytes | httpx.URL:
        """One hop: the body, or the next URL of a redirect."""
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = await self._checked_addresses(url.host, port)
        failure: httpx.TransportError | None = None
        for address in addresses:
            try:
                return await self._get_from(url, address)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = exc
        logger.info("media URL host %s: connection failed: %s", url.host, failure)
        raise FetchError("the connection failed") from failure

    async def _get_from(self, url: httpx.URL, address: str) -> bytes | httpx.URL:
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        request = self.client.build_request(
            "GET", url.copy_with(host=address), headers={"Host": url.netloc.decode("ascii")}, extensions=extensions
        )
        response = await self.client.send(request, stream=True)
        try:
            if response.is_redirect:
                try:
                    return url.join(response.headers["location"])
                except httpx.InvalidURL as exc:
                    raise FetchError("it redirected to an invalid URL") from exc
            if response.status_code >= 300:
                logger.info("media URL host %s answered HTTP %d", url.host, response.status_code)
                raise FetchError("the server answered with an error status")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.policy.max_bytes:
                raise PayloadTooLarge(f"media at `url` is larger than {self.policy.max_bytes} bytes")
            data = await collect_bytes(response.aiter_bytes(), self.policy.max_bytes, "media at `url`")
        finally:
            await response.aclose()
        if not data:
            raise FetchError("the body is empty")
        return data
