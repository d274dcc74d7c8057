"""Media URLs cannot be turned against the cluster: address classes, allowlist, redirects, DNS answers, deadline,
size cap and error text. Every request of these tests goes to a loopback address."""

from __future__ import annotations

import base64
import datetime
import http.server
import io
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from runtime_support import ServerHandle

from modelcluster.api.errors import PayloadTooLarge
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.urlfetch import (
    FetchError,
    Resolver,
    UrlFetcher,
    UrlPolicy,
    address_refusal,
    resolve_host,
)


def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()
BIG = 300_000


class LocalSite:
    """A threaded HTTP(S) server on 127.0.0.1 that records the path and Host header of every request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hits: list[tuple[str, str]] = []
        self.stop = threading.Event()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append((self.path, self.headers.get("Host", "")))
                path, _, query = self.path.partition("?")
                route = getattr(self, "route_" + path.strip("/").replace("-", "_").replace(".", "_"), None)
                if route is None:
                    self.send_error(404)
                    return
                route(urllib.parse.parse_qs(query))

            def reply(self, status: int, body: bytes, length: bool = True, **headers: str) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def route_cat_png(self, query: dict[str, list[str]]) -> None:
                self.reply(200, PNG, Content_Type="image/png")

            def route_to(self, query: dict[str, list[str]]) -> None:
                self.reply(302, b"", Location=query["target"][0])

            def route_loop(self, query: dict[str, list[str]]) -> None:
                self.reply(302, b"", Location="/loop")

            def route_error(self, query: dict[str, list[str]]) -> None:
                self.reply(500, b"secret stack trace from 10.1.2.3", Content_Type="text/plain")

            def route_empty(self, query: dict[str, list[str]]) -> None:
                self.reply(200, b"")

            def route_big(self, query: dict[str, list[str]]) -> None:
                self.reply(200, b"x" * BIG, length=False)  # no Content-Length: the body ends when the socket closes

            def route_declared_big(self, query: dict[str, list[str]]) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(BIG))
                self.end_headers()  # the body never comes: the declared length alone must be refused

            def route_slow(self, query: dict[str, list[str]]) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                deadline = time.monotonic() + 30
                while not site.stop.wait(0.05) and time.monotonic() < deadline:
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[LocalSite]:
    served = LocalSite()
    yield served
    served.close()


LOOPBACK_ONLY = UrlPolicy.from_allowlist(["127.0.0.1/32"])


async def fetch(
    url: str, policy: UrlPolicy = LOOPBACK_ONLY, resolver: Resolver = resolve_host, verify: ssl.SSLContext | bool = True
) -> bytes:
    fetcher = UrlFetcher(policy, resolver, verify)
    try:
        return await fetcher.fetch(url)
    finally:
        await fetcher.aclose()


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.96.0.1", "private"),  # a typical Kubernetes Service (the apiserver's ClusterIP)
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.10", "non-public"),  # carrier-grade NAT space, used for pod networks
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 wrapping 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 wrapping a public address
    ],
)
def test_address_classes(address: str, refused: str | None) -> None:
    reason = address_refusal(ip_address(address), "example.com", UrlPolicy())
    if refused is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused in reason
        assert address not in reason


def test_allowlist_opens_networks_and_hosts_but_never_metadata() -> None:
    policy = UrlPolicy.from_allowlist(["10.0.0.0/8", "169.254.0.0/16", "media.internal", "*.svc.cluster.local"])
    assert address_refusal(ip_address("10.1.2.3"), "anything", policy) is None
    assert address_refusal(ip_address("::ffff:10.1.2.3"), "anything", policy) is None
    assert address_refusal(ip_address("169.254.1.1"), "anything", policy) is None
    assert "metadata" in (address_refusal(ip_address("169.254.169.254"), "anything", policy) or "")
    assert address_refusal(ip_address("192.168.0.5"), "media.internal", policy) is None
    assert address_refusal(ip_address("192.168.0.5"), "store.ns.svc.cluster.local", policy) is None
    assert "metadata" in (address_refusal(ip_address("169.254.169.254"), "media.internal", policy) or "")
    assert address_refusal(ip_address("192.168.0.5"), "svc.cluster.local.example.com", policy) is not None
    assert address_refusal(ip_address("192.168.0.5"), "other.internal", policy) is not None


def test_allowlist_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URL_ALLOWLIST", "10.0.0.0/8, media.internal,127.0.0.1")
    settings = RuntimeSettings(model_id="m", task="image-classification")
    assert settings.url_allowlist == ["10.0.0.0/8", "media.internal", "127.0.0.1"]
    policy = settings.url_policy()
    assert [str(network) for network in policy.networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert policy.hosts == frozenset({"media.internal"})
    assert policy.timeout_s == settings.url_fetch_timeout_s
    assert RuntimeSettings(model_id="m", task="image-classification", url_allowlist=[]).url_policy().networks == ()
    with pytest.raises(ValueError, match="neither a CIDR"):
        RuntimeSettings(model_id="m", task="image-classification", url_allowlist=["http://x/"])


async def test_loopback_is_refused_by_default_before_connecting(site: LocalSite) -> None:
    with pytest.raises(FetchError) as caught:
        await fetch(site.url("/cat.png"), UrlPolicy())
    assert caught.value.message == "could not fetch the URL: the host is a loopback address, which is not allowed"
    assert caught.value.status_code == 422
    assert site.hits == []


async def test_allowlisted_loopback_is_fetched(site: LocalSite) -> None:
    assert await fetch(site.url("/cat.png")) == PNG
    assert await fetch(site.url("/to?target=/cat.png")) == PNG  # a relative redirect to an allowed address
    assert [path for path, _ in site.hits] == ["/cat.png", "/to?target=/cat.png", "/cat.png"]


async def test_redirect_to_a_refused_address_is_refused(site: LocalSite) -> None:
    target = urllib.parse.quote(site.url("/cat.png", host="127.0.0.2"), safe="")
    with pytest.raises(FetchError, match="loopback address, which is not allowed"):
        await fetch(site.url(f"/to?target={target}"))
    with pytest.raises(FetchError, match="must be an http or https URL"):
        await fetch(site.url("/to?target=file:///etc/passwd"))
    assert all(path.startswith("/to?") for path, _ in site.hits)  # only the redirecting hops were requested


async def test_redirects_are_bounded(site: LocalSite) -> None:
    with pytest.raises(FetchError, match="redirected more than 5 times"):
        await fetch(site.url("/loop"))
    assert len(site.hits) == 6


async def test_the_checked_dns_answer_is_the_one_connected_to(site: LocalSite) -> None:
    """One lookup per hop, and the connection goes to its checked address: a second answer cannot differ."""
    calls: list[str] = []

    def rebinding(*answers: list[str]) -> Resolver:
        async def resolve(host: str, port: int) -> list[str]:
            calls.append(host)
            return answers[min(len(calls), len(answers)) - 1]

        return resolve

    # media.test exists only in this resolver: the fetch succeeds only if it connects to the pinned address
    data = await fetch(f"http://media.test:{site.port}/cat.png", resolver=rebinding(["127.0.0.1"], ["127.0.0.2"]))
    assert data == PNG
    assert calls == ["media.test"]
    assert site.hits == [("/cat.png", f"media.test:{site.port}")]
    calls.clear()
    with pytest.raises(FetchError, match="loopback"):
        await fetch(f"http://media.test:{site.port}/cat.png", resolver=rebinding(["127.0.0.2"], ["127.0.0.1"]))
    with pytest.raises(FetchError, match="private"):  # one refused address refuses the host
        await fetch(f"http://media.test:{site.port}/cat.png", resolver=rebinding(["127.0.0.1", "10.0.0.1"]))
    with pytest.raises(FetchError, match="loopback"):
        await fetch(f"http://media.test:{site.port}/cat.png", UrlPolicy(), resolver=rebinding(["::ffff:127.0.0.1"]))
    assert len(site.hits) == 1


async def test_unresolvable_and_invalid_urls() -> None:
    async def nowhere(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchError, match="host could not be resolved"):
        await fetch("http://media.test/cat.png", resolver=nowhere)
    for url in ("http://", "not a url", "ftp://127.0.0.1/x"):
        with pytest.raises(FetchError):
            await fetch(url)
    assert await resolve_host("127.0.0.1", 80) == ["127.0.0.1"]


def self_signed(directory: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` and a client context that trusts only it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def test_https_keeps_the_host_name_for_sni_and_certificate_checks(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path, "media.test")
    site = LocalSite(tls=server_tls)

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    try:
        data = await fetch(f"https://media.test:{site.port}/cat.png", resolver=resolve, verify=client_tls)
        assert data == PNG
        assert site.hits == [("/cat.png", f"media.test:{site.port}")]
        # the same server by its address: the certificate does not name it, so the connection is refused
        with pytest.raises(FetchError, match="the connection failed"):
            await fetch(site.url("/cat.png"), verify=client_tls)
    finally:
        site.close()


async def test_a_slow_drip_hits_the_total_deadline(site: LocalSite) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"it took longer than 0\.5s"):
        await fetch(site.url("/slow"), UrlPolicy.from_allowlist(["127.0.0.1/32"], timeout_s=0.5))
    assert time.monotonic() - started < 5
    assert [path for path, _ in site.hits] == ["/slow"]


async def test_bodies_are_capped_while_streaming(site: LocalSite) -> None:
    policy = UrlPolicy.from_allowlist(["127.0.0.1/32"], max_bytes=100_000)
    with pytest.raises(PayloadTooLarge, match="larger than 100000 bytes"):
        await fetch(site.url("/big"), policy)
    with pytest.raises(PayloadTooLarge, match="larger than 100000 bytes"):
        await fetch(site.url("/declared-big"), policy)
    assert await fetch(site.url("/big"), UrlPolicy.from_allowlist(["127.0.0.1/32"], max_bytes=BIG)) == b"x" * BIG


async def test_errors_do_not_echo_the_target(site: LocalSite) -> None:
    with pytest.raises(FetchError) as caught:
        await fetch(site.url("/error"))
    assert caught.value.message == "could not fetch the URL: the server answered with an error status"
    with pytest.raises(FetchError, match="the body is empty"):
        await fetch(site.url("/empty"))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(FetchError) as refused:
        await fetch(f"http://127.0.0.1:{port}/x.png")
    assert refused.value.message == "could not fetch the URL: the connection failed"


@pytest.fixture(scope="module")
def vit_default(serve: Callable[..., ServerHandle], vision_models: dict[str, Path]) -> ServerHandle:
    """An image classifier with the default URL policy; at most one request waits or prepares at a time."""
    return serve(vision_models["image-classification"], "image-classification", max_queue=1, url_fetch_timeout_s=1)


def image_b64() -> str:
    return base64.b64encode(PNG).decode()


def test_run_refuses_internal_urls_and_keeps_serving(vit_default: ServerHandle, site: LocalSite) -> None:
    with vit_default.client() as client:
        refused = client.post("/run", json={"url": site.url("/cat.png")})
        assert refused.status_code == 422
        assert refused.json() == {
            "error": "could not fetch the URL: the host is a loopback address, which is not allowed",
            "output": None,
        }
        assert client.post("/run", json={"input": site.url("/cat.png", host="localhost")}).status_code == 422
        assert site.hits == []
        assert client.post("/run", json={"base64": image_b64()}).status_code == 200
    assert vit_default.metric("modelcluster_runtime_errors_total", 'kind="url"') >= 2


def test_run_frees_the_queue_slot_of_a_slow_url(
    serve: Callable[..., ServerHandle], vision_models: dict[str, Path], site: LocalSite
) -> None:
    server = serve(
        vision_models["image-classification"],
        "image-classification",
        max_queue=1,
        url_fetch_timeout_s=2,  # long enough for the quick fetches below on a loaded machine
        url_allowlist=["127.0.0.1/32"],
    )
    with server.client() as client:
        started = time.monotonic()
        slow = client.post("/run", json={"url": site.url("/slow")})
        assert slow.status_code == 422
        assert slow.json()["error"] == "could not fetch the URL: it took longer than 2s"
        assert time.monotonic() - started < 5  # the site would go on sending for 30 s
        target = urllib.parse.quote(site.url("/cat.png", host="127.0.0.2"), safe="")
        redirected = client.post("/run", json={"url": site.url(f"/to?target={target}")})
        assert redirected.status_code == 422
        assert "loopback address, which is not allowed" in redirected.json()["error"]
        by_url = client.post("/run", json={"url": site.url("/cat.png")})  # the one queue slot is free again
        assert by_url.status_code == 200, by_url.text


async def test_an_environment_proxy_is_not_used(site: LocalSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would connect on our behalf to addresses nobody checked: the fetch goes to the checked address."""
    proxy = LocalSite()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url(""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert await fetch(site.url("/cat.png")) == PNG
        assert proxy.hits == []
        assert [path for path, _ in site.hits] == ["/cat.png"]
    finally:
        proxy.close()
