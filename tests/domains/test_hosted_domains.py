"""Hosted domains over the admin API (/domains): what makes a domain hosted, adding
one (with its DKIM key), the records it needs and their check through DNS, removal."""

from __future__ import annotations

import httpx
import pytest

from postern.delivery.dns import DnsError, StaticResolver
from postern.domains.records import client_ports, mta_sts_id, mta_sts_policy
from postern.serve.runtime import Runtime
from tests.helpers import create_user


async def test_hosted_domains_are_added_ones_and_those_in_use(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await create_user(client, "alice", address="alice@Bücher.example")
    added = await client.post("/domains", json={"domain": "Example.ORG."})
    assert added.status_code == 200, added.text
    assert added.json()["domain"] == "example.org"

    listing = (await client.get("/domains")).json()["results"]
    by_name = {d["domain"]: d for d in listing}
    assert by_name["example.org"]["sources"] == ["added"]
    assert by_name["example.org"]["dkimSelector"]  # a key was made with it
    idn = by_name["xn--bcher-kva.example"]
    assert idn["name"] == "bücher.example" and idn["addresses"] == 1 and idn["sources"] == ["addresses"]
    for alias_domain in runtime.settings.resolved_alias_domains:
        assert "alias domain" in by_name[alias_domain]["sources"]


async def test_adding_twice_keeps_the_key(client: httpx.AsyncClient) -> None:
    first = (await client.post("/domains", json={"domain": "example.org"})).json()
    second = (await client.post("/domains", json={"domain": "example.org"})).json()
    dkim = [r for r in first["records"] if r["purpose"] == "dkim"]
    assert dkim and dkim == [r for r in second["records"] if r["purpose"] == "dkim"]


@pytest.mark.parametrize("bad", ["", "exa mple.org", "-bad-.org", "a" * 64 + ".org", "example..org"])
async def test_bad_domains_are_refused(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.post("/domains", json={"domain": bad})
    assert response.status_code == 400, response.text
    assert (await client.get("/domains")).json()["results"] == [] or all(d["domain"] != bad for d in (await client.get("/domains")).json()["results"])


async def test_records_cover_mail_transport_and_client_discovery(client: httpx.AsyncClient, runtime: Runtime) -> None:
    answer = (await client.post("/domains", json={"domain": "example.org"})).json()
    records = {(r["purpose"], r["type"], r["name"]): r["value"] for r in answer["records"]}
    host = runtime.settings.hostname
    assert records[("mx", "MX", "example.org")] == f"10 {host}"
    assert records[("spf", "TXT", "example.org")].startswith("v=spf1 mx")
    assert records[("dmarc", "TXT", "_dmarc.example.org")].startswith("v=DMARC1")
    assert records[("mta-sts", "TXT", "_mta-sts.example.org")] == f"v=STSv1; id={mta_sts_id(runtime.settings)}"
    assert records[("tls-rpt", "TXT", "_smtp._tls.example.org")].startswith("v=TLSRPTv1; rua=mailto:")
    dkim = [value for (purpose, _t, name), value in records.items() if purpose == "dkim"]
    assert dkim and dkim[0].startswith("v=DKIM1;") and "p=" in dkim[0]
    srv = {name: value for (purpose, _t, name), value in records.items() if purpose == "srv"}
    doors = client_ports(runtime.settings)
    assert doors and {f"_{d.service}._tcp.example.org" for d in doors} == set(srv)
    assert all(srv[f"_{d.service}._tcp.example.org"] == f"0 1 {d.port} {host}" for d in doors)


def test_client_ports_follow_the_open_doors_and_public_ports(settings) -> None:  # type: ignore[no-untyped-def]
    production = settings.model_copy(
        update={
            "doors": "http,imap,pop3,submission",
            "imap_listen": "0.0.0.0:143",
            "imaps_listen": "0.0.0.0:993",
            "pop3_listen": "0.0.0.0:110",
            "pop3s_listen": None,
            "submission_listen": "0.0.0.0:2587",
            "submission_public_port": 587,
        }
    )
    assert [(d.service, d.port) for d in client_ports(production)] == [("imaps", 993), ("imap", 143), ("pop3", 110), ("submission", 587)]
    assert client_ports(production.model_copy(update={"doors": "http,smtp"})) == []


async def test_check_compares_dns_with_the_records(client: httpx.AsyncClient, resolver: StaticResolver) -> None:
    answer = (await client.post("/domains", json={"domain": "example.org"})).json()
    before = (await client.get("/domains/example.org/check")).json()["records"]
    assert before and not any(r["ok"] for r in before)
    # Publish every record as it was asked for.
    for record in answer["records"]:
        kind, name, value = record["type"], record["name"], record["value"]
        if kind == "MX":
            priority, host = value.split()
            resolver.set("MX", name, [(int(priority), host)])
        elif kind == "SRV":
            resolver.set("SRV", name, [tuple(int(v) for v in value.split()[:3]) + (value.split()[3],)])
        elif kind == "CNAME":
            resolver.set("A", name, ["192.0.2.10"])
        else:
            resolver.set("TXT", name, [*resolver._records.get(("TXT", name), []), value])
    after = (await client.get("/domains/example.org/check")).json()["records"]
    assert all(r["ok"] for r in after), [r for r in after if not r["ok"]]
    # A DNS failure is reported, not raised.
    resolver.set("TXT", "_dmarc.example.org", DnsError("SERVFAIL", temporary=True))
    failed = next(r for r in (await client.get("/domains/example.org/check")).json()["records"] if r["purpose"] == "dmarc")
    assert failed["ok"] is False and "temporary" in failed["error"]


async def test_only_added_domains_without_addresses_can_be_removed(client: httpx.AsyncClient) -> None:
    await create_user(client, "alice", address="alice@example.net")
    assert (await client.delete("/domains/example.net")).status_code == 409  # hosted by its address
    await client.post("/domains", json={"domain": "example.net"})
    assert (await client.delete("/domains/example.net")).status_code == 409  # still has an address
    await client.post("/domains", json={"domain": "example.org"})
    assert (await client.delete("/domains/example.org")).status_code == 200
    assert (await client.get("/domains/example.org")).status_code == 404
    assert (await client.delete("/domains/nowhere.example")).status_code == 404


async def test_domains_need_the_admin_token(anonymous: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/domains"), ("POST", "/domains"), ("GET", "/domains/example.org/check"), ("DELETE", "/domains/example.org")):
        response = await anonymous.request(method, path, json={"domain": "example.org"})
        assert response.status_code in (401, 403), (method, path, response.status_code)


def test_mta_sts_policy_names_the_host_and_its_id_follows_it(settings) -> None:  # type: ignore[no-untyped-def]
    policy = mta_sts_policy(settings)
    assert policy.startswith("version: STSv1\r\n") and f"mx: {settings.hostname}" in policy and "mode: testing" in policy
    enforcing = settings.model_copy(update={"mta_sts_enforce": True})
    assert "mode: enforce" in mta_sts_policy(enforcing)
    assert mta_sts_id(enforcing) != mta_sts_id(settings)
