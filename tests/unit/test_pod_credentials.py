"""Process-backed pods that talk to the apiserver: their ServiceAccount kubeconfig and the relay they reach it by."""

from __future__ import annotations

import base64
import socket
import threading
from typing import Any

from modelcluster.devcluster.apirelay import ApiRelay
from modelcluster.devcluster.config import PodCommand
from modelcluster.devcluster.podcredentials import pod_kubeconfig, service_account_of, token_request, wants_token


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "op-1", "namespace": "system", "uid": "u-1"}, "spec": spec}


def test_a_pod_gets_its_token_unless_it_opts_out() -> None:
    assert wants_token(_pod())
    assert wants_token(_pod(automountServiceAccountToken=True))
    assert not wants_token(_pod(automountServiceAccountToken=False))


def test_the_token_is_bound_to_the_pod_of_its_service_account() -> None:
    assert service_account_of(_pod()) == "default"
    assert service_account_of(_pod(serviceAccountName="operator")) == "operator"
    body = token_request(_pod(serviceAccountName="operator"))
    assert body["kind"] == "TokenRequest"
    assert body["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "op-1", "uid": "u-1"}
    assert body["spec"]["expirationSeconds"] > 0


def test_the_kubeconfig_carries_the_token_the_ca_and_the_pod_namespace() -> None:
    config = pod_kubeconfig("https://10.250.1.1:4443", b"PEM", "tok", "system")
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == "https://10.250.1.1:4443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == b"PEM"
    assert config["users"][0]["user"] == {"token": "tok"}
    (context,) = config["contexts"]
    assert context["context"]["namespace"] == "system"
    assert config["current-context"] == context["name"]


def test_pod_commands_ask_for_credentials_explicitly() -> None:
    assert PodCommand.model_validate({"command": ["modelcluster"]}).kubeconfig is False
    assert PodCommand.model_validate({"command": ["modelcluster"], "kubeconfig": True}).kubeconfig is True


def test_the_relay_forwards_both_ways_until_the_client_closes() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))

    def echo_once() -> None:
        connection, _ = upstream.accept()
        with connection:
            while data := connection.recv(1024):
                connection.sendall(data.upper())

    server = threading.Thread(target=echo_once, daemon=True)
    server.start()
    relay = ApiRelay("127.0.0.1", upstream.getsockname()[:2]).start()
    try:
        with socket.create_connection(relay.address, timeout=5) as client:
            client.sendall(b"hello")
            assert client.recv(1024) == b"HELLO"
            client.shutdown(socket.SHUT_WR)
            assert client.recv(1024) == b""
        server.join(timeout=5)
        assert not server.is_alive()
    finally:
        relay.close()
        upstream.close()
