"""Agent cards served through the gateway name the gateway, unless signed."""

from __future__ import annotations

import copy

import httpx
import pytest

from gateway.protocols.agent_card import gateway_url, rewrite_card
from tests.protocols.conftest import Peer

CARD = {
    "name": "research",
    "url": "http://10.0.0.5:9000/a2a/v1",
    "supportedInterfaces": [
        {"url": "http://10.0.0.5:9000/a2a/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        {"url": "https://10.0.0.5:9443/rest?x=1", "protocolBinding": "HTTP+JSON"},
        {"url": "10.0.0.5:50051", "protocolBinding": "GRPC"},
    ],
    "additionalInterfaces": [{"url": "http://10.0.0.5:9000/", "transport": "JSONRPC"}],
    "provider": {"url": "https://example.org", "organization": "ex"},
    "documentationUrl": "https://example.org/docs",
}


def test_interface_urls_move_behind_the_route_keeping_their_path() -> None:
    original = copy.deepcopy(CARD)
    result = rewrite_card(CARD, "http://gw:8080/research")
    assert original == CARD  # not modified in place
    card = result.card
    assert card["url"] == "http://gw:8080/research/a2a/v1"
    assert [i["url"] for i in card["supportedInterfaces"]] == [
        "http://gw:8080/research/a2a/v1",
        "http://gw:8080/research/rest?x=1",
        "10.0.0.5:50051",
    ]
    assert card["additionalInterfaces"][0]["url"] == "http://gw:8080/research/"
    assert card["provider"] == CARD["provider"]
    assert card["documentationUrl"] == CARD["documentationUrl"]
    assert [c.pointer for c in result.rewritten] == [
        "/url",
        "/supportedInterfaces/0/url",
        "/supportedInterfaces/1/url",
        "/additionalInterfaces/0/url",
    ]
    assert [(c.pointer, c.reason) for c in result.bypassing] == [("/supportedInterfaces/2/url", "not an http(s) URL")]
    assert rewrite_card(card, "http://gw:8080/research").rewritten == ()  # idempotent


def test_a_signed_card_is_left_alone_and_says_what_bypasses() -> None:
    signed = CARD | {"signatures": [{"protected": "e30", "signature": "c2ln"}]}
    result = rewrite_card(signed, "http://gw:8080/research")
    assert result.signed
    assert result.card == signed
    assert {c.reason for c in result.bypassing} == {"signed card"}
    assert len(result.bypassing) == 5


def test_edge_inputs() -> None:
    assert rewrite_card(["not", "a", "card"], "http://gw").changes == ()
    assert gateway_url("http://a:1", "http://gw:8080/") == "http://gw:8080/"
    with pytest.raises(ValueError, match="absolute"):
        rewrite_card(CARD, "gw:8080")


async def test_the_card_of_a_real_a2a_server(a2a_peer: Peer) -> None:
    async with httpx.AsyncClient() as client:
        card = (await client.get(a2a_peer.base + "/.well-known/agent-card.json")).json()
    result = rewrite_card(card, "http://127.0.0.1:1/echo")
    assert [i["url"] for i in result.card["supportedInterfaces"]] == ["http://127.0.0.1:1/echo/"]
    assert not result.signed
