"""Forwarding one request to a model pod: pooled keep-alive connections, bytes passed through.

A connection refused before the request was sent is retried on another pod, and an
address with no route (nothing can ever answer there) fails at once with 503; a
request whose pooled connection the pod closed before any byte of the answer (idle,
or draining) is sent once more, to another pod when there is one. A stream is
copied chunk by chunk as it arrives, and a client that goes away closes the
upstream connection so the runtime sees the disconnect and stops generating.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from modelcluster.api.errors import BadGateway, GatewayTimeout, Unavailable
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.api.streaming import RAW_MEDIA_TYPE, SSE_CONTENT_TYPE, error_event, raw_error
from modelcluster.gateway.endpoints import Endpoint
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.router import Router
from modelcluster.kube.objects import ClusterKey

logger = logging.getLogger(__name__)

RUN_PATH = "/run"
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024
PASSED_HEADERS = ("Content-Type", "Cache-Control", PROMPT_TOKENS_HEADER, COMPLETION_TOKENS_HEADER)


@dataclass
class Upstream:
    """An answer being received from a pod; :meth:`close` gives the pod's slot back."""

    key: ClusterKey
    endpoint: Endpoint
    response: aiohttp.ClientResponse
    router: Router
    done: bool = False

    def close(self, *, reuse: bool) -> None:
        if self.done:
            return
        self.done = True
        if reuse:
            self.response.release()
        else:
            self.response.close()
        self.router.release(self.key, self.endpoint)

    def headers(self) -> dict[str, str]:
        return {name: self.response.headers[name] for name in PASSED_HEADERS if name in self.response.headers}


class Proxy:
    def __init__(
        self,
        router: Router,
        metrics: GatewayMetrics,
        connect_timeout_s: float,
        read_timeout_s: float,
        attempts: int,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        credential: Callable[[ClusterKey], Mapping[str, str]] | None = None,
    ) -> None:
        self.router = router
        #: The header presenting a cluster's pod credential (:mod:`modelcluster.api.pod_auth`), per request.
        self.credential = credential
        self.metrics = metrics
        self.attempts = attempts
        self.max_answer_bytes = max_answer_bytes
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
        self.session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, auto_decompress=False)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, key: ClusterKey, body: bytes, headers: Mapping[str, str]) -> Upstream:
        """POST ``body`` to ``/run`` of a pod of ``key``; the caller must close the returned upstream.

        While no pod is free the request is held with ``body`` (bytes, counted against the hold's byte bounds).
        """
        assert self.session is not None
        tried: frozenset[str] = frozenset()
        refused = 0
        resent = False
        unroutable: list[str] = []
        while refused < self.attempts:
            endpoint = await self.router.acquire(key, tried, size=len(body))
            # Derived once a pod is found: a cluster re-created while the request was held signs anew.
            sent = {**headers, **self.credential(key)} if self.credential is not None else headers
            try:
                response = await self.session.post(endpoint.url + RUN_PATH, data=body, headers=sent)
            except aiohttp.ClientConnectorError as error:
                self.router.release(key, endpoint)
                self.router.unreachable(key, endpoint)
                self.metrics.upstream_errors.labels("connect").inc()
                tried |= {endpoint.url}
                if no_route(error):
                    # Nothing will ever answer there (a closed address range): fail now, not at the hold deadline.
                    unroutable.append(endpoint.address)
                    if not any(other.url not in tried for other in self.router.candidates(key)):
                        raise Unavailable(no_route_message(unroutable), retry_after=10) from error
                    continue
                logger.info("connecting to %s failed (%s); trying another pod", endpoint.pod or endpoint.url, error)
                refused += 1
                continue
            except TimeoutError as error:
                self.router.release(key, endpoint)
                self.metrics.upstream_errors.labels("timeout").inc()
                raise GatewayTimeout("the model did not answer in time") from error
            except aiohttp.ClientError as error:
                self.router.release(key, endpoint)
                if not resent and closed_before_answer(error):
                    # A pooled connection the pod closed (idle, or leaving): nothing was answered, send once more.
                    resent = True
                    self.metrics.upstream_errors.labels("disconnect").inc()
                    logger.info("%s closed the connection unanswered (%r); sending again", endpoint.pod, error)
                    tried = resend_exclusions(tried, endpoint, self.router.candidates(key))
                    continue
                self.metrics.upstream_errors.labels("protocol").inc()
                raise BadGateway(f"the model's pod failed to answer: {type(error).__name__}") from error
            except BaseException:
                self.router.release(key, endpoint)
                raise
            return Upstream(key, endpoint, response, self.router)
        raise Unavailable("no pod of this model accepted a connection; try again shortly", retry_after=2)

    async def relay(
        self, request: web.Request, upstream: Upstream, extra_headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        """Copy the pod's answer to the client: whole for plain answers, chunk by chunk for streams.

        ``extra_headers`` go on a stream's headers (a whole answer's headers may still be added by its caller).
        """
        response = upstream.response
        finished = False
        out: web.StreamResponse | None = None
        try:
            if not _is_stream(response):
                body = await self.read_answer(response)
                finished = True
                return web.Response(body=body, status=response.status, headers=upstream.headers())
            out = web.StreamResponse(status=response.status, headers={**upstream.headers(), **(extra_headers or {})})
            out.headers["X-Accel-Buffering"] = "no"
            await out.prepare(request)
            async for chunk in response.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            finished = True
            return out
        except (TimeoutError, aiohttp.ClientPayloadError) as error:
            kind, message = (
                ("timeout", "the model stopped answering (read timeout)")
                if isinstance(error, TimeoutError)
                else ("protocol", "the model's pod broke off its answer")
            )
            self.metrics.upstream_errors.labels(kind).inc()
            if out is None:
                raise (GatewayTimeout if kind == "timeout" else BadGateway)(message) from error
            # Headers are sent: the error goes into the stream, as the runtime writes its own.
            sse = response.headers.get("Content-Type", "").startswith(SSE_CONTENT_TYPE)
            line = error_event(message) if sse else raw_error(message)
            await out.write(line.encode())
            await out.write_eof()
            return out
        finally:
            upstream.close(reuse=finished)

    async def read_answer(self, response: aiohttp.ClientResponse) -> bytes:
        """A non-streamed answer, whole; 502 once it passes ``max_answer_bytes`` (the caller closes the connection)."""
        limit = self.max_answer_bytes
        if response.content_length is not None and response.content_length > limit:
            raise self._too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise self._too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, limit: int) -> BadGateway:
        self.metrics.upstream_errors.labels("too_large").inc()
        return BadGateway(f"the model's answer is larger than {limit} bytes")


def closed_before_answer(error: aiohttp.ClientError) -> bool:
    """Whether a request failed on a connection that closed or reset before any byte of the answer came."""
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return True
    return (
        isinstance(error, aiohttp.ClientOSError)
        and not isinstance(error, aiohttp.ClientConnectorError)
        and error.errno in (errno.ECONNRESET, errno.EPIPE)
    )


def no_route(error: aiohttp.ClientConnectorError) -> bool:
    """Whether connecting failed because the pod's address has no route (nothing there can ever answer)."""
    return error.os_error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)


def no_route_message(addresses: Sequence[str]) -> str:
    shown = ", ".join(sorted(set(addresses)))
    return (
        f"the cluster has no runtime for this model that the gateway can reach: no route to its pods ({shown}). "
        "On the local cluster, a model whose image has no pod command runs simulated pods with no process behind "
        "them, so it cannot answer there"
    )


def resend_exclusions(tried: frozenset[str], failed: Endpoint, ready: Sequence[Endpoint]) -> frozenset[str]:
    """Pods to skip when sending again after ``failed`` closed the connection: it too, while another is ready."""
    avoid = tried | {failed.url}
    return avoid if any(endpoint.url not in avoid for endpoint in ready) else tried


def _is_stream(response: aiohttp.ClientResponse) -> bool:
    content_type = response.headers.get("Content-Type", "")
    return content_type.startswith((SSE_CONTENT_TYPE, RAW_MEDIA_TYPE))
