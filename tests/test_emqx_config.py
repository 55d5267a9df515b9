"""deploy/emqx/ agrees with the code: topics, identities, limits (no broker runs here: docker is absent).

The ACL (deploy/emqx/acl.conf, Erlang terms) is parsed by a strict tokenizer and evaluated the way EMQX 5.8
evaluates it: rules top to bottom, first match decides, ``authorization.no_match`` otherwise; topic filters
matched like ``emqx_topic:match/2`` (a subscription's own ``+``/``#`` are words that only a rule's wildcard
matches; ``+``/``#`` never match a first level starting with ``$``); ``${clientid}``/``${username}``
substituted; a shared subscription authorized by its real filter only (``$share/g/t`` as ``t``, as
``emqx_channel`` does). emqx.conf is read by a small parser for the HOCON subset it uses, which refuses
anything else. The topics, kinds, the ingest's group and its limits are imported from the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.config import CloudSettings
from edge_agent.protocol import (
    MAX_PAYLOAD_BYTES,
    VEHICLE_ID_RE,
    DownlinkKind,
    UplinkKind,
    downlink_filter,
    downlink_topic,
    uplink_filter,
    uplink_topic,
)
from tests.test_deploy import check_compose_services

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
EMQX = DEPLOY / "emqx"

# ------------------------------------------------------------------------------------ Erlang terms (acl.conf)

_ERL_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>%[^\n]*)|(?P<punct>[{}\[\],])|(?P<end>\.(?=\s|%|$))
    |(?P<atom>[a-z][A-Za-z0-9_@]*)|(?P<qatom>'[^'\\\n]*')|(?P<string>"(?:[^"\\\n]|\\["\\])*")""",
    re.VERBOSE,
)


def erlang_terms(text: str) -> list[Any]:
    """The terms of a file of ``Term.`` entries: tuples, lists, atoms and strings only, or ValueError."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _ERL_TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected {text[pos : pos + 20]!r} at offset {pos}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind not in ("ws", "comment"):
            tokens.append((kind, m.group()))
    terms: list[Any] = []
    i = 0

    def term() -> Any:
        nonlocal i
        kind, value = tokens[i]
        i += 1
        if kind == "atom":
            return Atom(value)
        if kind == "qatom":
            return Atom(value[1:-1])
        if kind == "string":
            return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if value in "{[":
            items: list[Any] = []
            close = "}" if value == "{" else "]"
            while tokens[i][1] != close:
                items.append(term())
                if tokens[i][1] == ",":
                    i += 1
                elif tokens[i][1] != close:
                    raise ValueError(f"expected ',' or {close!r}, got {tokens[i][1]!r}")
            i += 1
            return tuple(items) if close == "}" else items
        raise ValueError(f"unexpected {value!r}")

    while i < len(tokens):
        terms.append(term())
        if i >= len(tokens) or tokens[i][0] != "end":
            raise ValueError("every term must end with '.'")
        i += 1
    return terms


class Atom(str):
    """An Erlang atom (a string that is not a string literal)."""


# ------------------------------------------------------------------------------------ HOCON (emqx.conf)

_HOCON_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+)|(?P<nl>\n)|(?P<comment>(?:\#|//)[^\n]*)|(?P<punct>[{}\[\],=:])
    |(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<bare>[A-Za-z0-9_.\-/@]+)""",
    re.VERBOSE,
)


def hocon(text: str) -> dict[str, Any]:
    """The subset of HOCON that deploy/emqx/emqx.conf uses: objects, dotted keys, ``=``, arrays, quoted and
    bare values. Includes, substitutions and duplicate settings are refused (ValueError)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _HOCON_TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unsupported HOCON at {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.lastgroup not in ("ws", "comment"):
            tokens.append((m.lastgroup or "", m.group()))
    i = 0

    def skip_separators() -> None:
        nonlocal i
        while i < len(tokens) and (tokens[i][0] == "nl" or tokens[i][1] == ","):
            i += 1

    def value() -> Any:
        nonlocal i
        kind, tok = tokens[i]
        i += 1
        if tok == "{":
            return members("}")
        if tok == "[":
            items = []
            skip_separators()
            while tokens[i][1] != "]":
                items.append(value())
                skip_separators()
            i += 1
            return items
        if kind == "string":
            return tok[1:-1]
        if kind == "bare":
            return {"true": True, "false": False}.get(tok, int(tok) if tok.isdigit() else tok)
        raise ValueError(f"unexpected {tok!r}")

    def members(close: str | None) -> dict[str, Any]:
        nonlocal i
        obj: dict[str, Any] = {}
        while True:
            skip_separators()
            if i >= len(tokens):
                if close is None:
                    return obj
                raise ValueError(f"missing {close!r}")
            if tokens[i][1] == close:
                i += 1
                return obj
            kind, key = tokens[i]
            if kind not in ("bare", "string"):
                raise ValueError(f"expected a key, got {key!r}")
            i += 1
            path = [key[1:-1]] if kind == "string" else key.split(".")
            if tokens[i][1] in "=:":
                i += 1
            elif tokens[i][1] != "{":
                raise ValueError(f"expected '=' or '{{' after {key!r}")
            _put(obj, path, value())

    return members(None)


def _put(obj: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
        if not isinstance(obj, dict):
            raise ValueError(f"{part!r} is both a value and an object")
    last = path[-1]
    if isinstance(value, dict) and isinstance(obj.get(last), dict):
        for k, v in value.items():
            _put(obj[last], [k], v)
    elif last in obj:
        raise ValueError(f"{'.'.join(path)} is set twice")
    else:
        obj[last] = value


def bytesize(value: str) -> int:
    """EMQX's byte sizes: KB, MB, GB are powers of 1024."""
    m = re.fullmatch(r"(\d+)(KB|MB|GB)?", value)
    assert m, f"not a byte size: {value!r}"
    return int(m.group(1)) * {None: 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[m.group(2)]


def seconds(value: str) -> int:
    """EMQX's durations (s, m, h, d)."""
    m = re.fullmatch(r"(\d+)(s|m|h|d)", value)
    assert m, f"not a duration: {value!r}"
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


# ------------------------------------------------------------------------------------ EMQX's authorization


@dataclass(frozen=True)
class Client:
    """What the ACL sees of a connected client."""

    username: str
    clientid: str


def car(vehicle_id: str) -> Client:
    """A car on the mutual-TLS listener: user name and client id are both the certificate's CN."""
    return Client(vehicle_id, vehicle_id)


def topic_match(name: str, filter_: str) -> bool:
    """``emqx_topic:match(Name, Filter)``; Name is a topic or a filter (whose wildcards are plain words)."""
    n, f = name.split("/"), filter_.split("/")
    if n[0].startswith("$") and f[0] in ("+", "#"):
        return False
    while True:
        if f == ["#"]:
            return True
        if not f or not n:
            return not f and not n
        if f[0] != "+" and f[0] != n[0]:
            return False
        n, f = n[1:], f[1:]


def real_topic(filter_: str) -> str:
    """What EMQX authorizes for a subscription: a shared subscription's real filter."""
    if filter_.startswith("$share/"):
        parts = filter_.split("/", 2)
        assert len(parts) == 3 and parts[1] and parts[2], f"invalid shared subscription {filter_!r}"
        return parts[2]
    if filter_.startswith("$queue/"):
        return filter_.removeprefix("$queue/")
    return filter_


def _who(who: Any, client: Client) -> bool:
    if who == "all":
        return True
    kind, arg = who
    if kind in ("and", "or"):
        results = [_who(w, client) for w in arg]
        return all(results) if kind == "and" else any(results)
    field = {"username": "username", "user": "username", "clientid": "clientid", "client": "clientid"}[kind]
    value = getattr(client, field)
    if isinstance(arg, tuple):
        assert arg[0] == "re" and len(arg) == 2
        return re.search(arg[1], value) is not None
    return bool(value == arg)


def _topic(pattern: Any, topic: str, client: Client) -> bool:
    if isinstance(pattern, tuple):
        assert pattern[0] == "eq" and len(pattern) == 2
        return bool(topic == pattern[1])
    placeholders = set(re.findall(r"\$\{[^}]*\}", pattern))
    assert placeholders <= {"${clientid}", "${username}"}, f"unsupported placeholder in {pattern!r}"
    rendered = pattern.replace("${clientid}", client.clientid).replace("${username}", client.username)
    return topic_match(topic, rendered)


def authorize(rules: list[Any], no_match: str, client: Client, action: str, topic: str) -> str:
    """``allow`` or ``deny``, as EMQX's file authorizer decides."""
    if action == "subscribe":
        topic = real_topic(topic)
    for rule in rules:
        if len(rule) == 2:
            assert rule[1] == "all"
            return str(rule[0])
        permission, who, rule_action, topics = rule
        if (
            _who(who, client)
            and rule_action in ("all", action)
            and any(_topic(p, topic, client) for p in topics)
        ):
            return str(permission)
    return no_match


# ------------------------------------------------------------------------------------ the files

CAR_A, CAR_B = "WVWZZZ1JZXW000001", "ds-sim.0042"
INGEST = Client("ingest", CloudSettings().ingest_client_id)
DOWNLINK = Client("downlink", "drivesight-downlink-api-1-0a1b2c3d")
GROUP = CloudSettings().ingest_group


def load_acl(text: str | None = None) -> list[Any]:
    """The ACL's rules, checked for shape."""
    rules = erlang_terms((EMQX / "acl.conf").read_text() if text is None else text)
    for rule in rules:
        assert isinstance(rule, tuple) and rule[0] in ("allow", "deny"), rule
        if len(rule) == 2:
            assert rule[1] == "all", rule
        else:
            assert len(rule) == 4 and rule[2] in ("publish", "subscribe", "all"), rule
    return rules


def emqx_conf() -> dict[str, Any]:
    return hocon((EMQX / "emqx.conf").read_text())


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EMQX / "docker-compose.yml").read_text())
    return data


def expectations() -> list[tuple[Client, str, str, str]]:
    """(client, action, topic, decision) the deployment must give, from the wire contract."""
    out: list[tuple[Client, str, str, str]] = []
    a, b = car(CAR_A), car(CAR_B)
    for kind in UplinkKind:
        out += [
            (a, "publish", uplink_topic(CAR_A, kind), "allow"),
            (b, "publish", uplink_topic(CAR_B, kind), "allow"),
            (a, "publish", uplink_topic(CAR_B, kind), "deny"),
            (INGEST, "publish", uplink_topic(CAR_A, kind), "deny"),
            (DOWNLINK, "publish", uplink_topic(CAR_A, kind), "deny"),
            # a service choosing a car's client id does not get the car's rights
            (Client("ingest", CAR_A), "publish", uplink_topic(CAR_A, kind), "deny"),
            (Client("downlink", CAR_A), "publish", uplink_topic(CAR_A, kind), "deny"),
        ]
    for down in DownlinkKind:
        out += [
            (a, "subscribe", downlink_topic(CAR_A, down), "allow"),
            (a, "subscribe", downlink_topic(CAR_B, down), "deny"),
            (a, "publish", downlink_topic(CAR_A, down), "deny"),
            (a, "publish", downlink_topic(CAR_B, down), "deny"),
            (DOWNLINK, "publish", downlink_topic(CAR_A, down), "allow"),
            # the ingest sends receipts after a commit, and nothing else to the cars
            (
                INGEST,
                "publish",
                downlink_topic(CAR_A, down),
                "allow" if down == DownlinkKind.RECEIPT else "deny",
            ),
            (car("downlink"), "publish", downlink_topic(CAR_A, down), "deny"),
        ]
    out += [
        (a, "subscribe", downlink_filter(CAR_A), "allow"),
        (a, "subscribe", downlink_filter(CAR_B), "deny"),
        (b, "subscribe", downlink_filter(CAR_B), "allow"),
        (a, "subscribe", "ds/v1/+/down/+", "deny"),
        (a, "subscribe", "ds/v1/#", "deny"),
        (a, "subscribe", "#", "deny"),
        (a, "subscribe", uplink_filter(), "deny"),
        (a, "subscribe", uplink_filter(GROUP), "deny"),
        (a, "subscribe", f"$share/{GROUP}/{uplink_topic(CAR_B, UplinkKind.TRIP)}", "deny"),
        (a, "subscribe", "$SYS/#", "deny"),
        (INGEST, "subscribe", uplink_filter(GROUP), "allow"),
        (INGEST, "subscribe", "#", "deny"),
        (INGEST, "subscribe", downlink_filter(CAR_A), "deny"),
        (INGEST, "subscribe", "$SYS/#", "deny"),
        (DOWNLINK, "subscribe", uplink_filter(GROUP), "deny"),
        (DOWNLINK, "subscribe", downlink_filter(CAR_A), "deny"),
        # a certificate whose CN is a service's name is not that service
        (car("ingest"), "subscribe", uplink_filter(GROUP), "deny"),
        (car("ingest"), "publish", uplink_topic("ingest", UplinkKind.TRIP), "deny"),
    ]
    return out


def violations(rules: list[Any], no_match: str) -> list[str]:
    """Every expectation the rules break."""
    return [
        f"{client} {action} {topic}: {got}, expected {want}"
        for client, action, topic, want in expectations()
        if (got := authorize(rules, no_match, client, action, topic)) != want
    ]


# ------------------------------------------------------------------------------------ tests


def test_acl_gives_each_identity_exactly_its_topics() -> None:
    authz = emqx_conf()["authorization"]
    assert authz["no_match"] == "deny"
    assert violations(load_acl(), authz["no_match"]) == []


LOOSENED = {
    "cars publish anywhere": ('"ds/v1/${clientid}/+"', '"ds/v1/+/+"'),
    "cars read every downlink": ('"ds/v1/${clientid}/down/+"', '"ds/v1/+/down/+"'),
    "anyone joins the ingest": ('{allow, {username, "ingest"}, subscribe', "{allow, all, subscribe"),
    "allow by default": ("{deny, all}.", "{allow, all}."),
    "services use the car rules": (
        '{deny, {\'or\', [{username, "ingest"}, {username, "downlink"}]}, all, ["#"]}.',
        "",
    ),
    "a certificate named like a service": (
        "{deny, {'or', [{clientid, \"ingest\"}",
        "{deny, {'or', [{clientid, \"x\"}",
    ),
}


@pytest.mark.parametrize("change", LOOSENED, ids=list(LOOSENED))
def test_a_loosened_acl_is_caught(change: str) -> None:
    old, new = LOOSENED[change]
    text = (EMQX / "acl.conf").read_text()
    assert text.count(old) == 1, f"{old!r} is not in acl.conf once"
    assert violations(load_acl(text.replace(old, new)), "deny"), f"{change}: not caught"


def test_vehicle_ids_cannot_widen_the_acl() -> None:
    """``${clientid}`` is a whole topic level: an id with a wildcard, a level separator or a leading ``$``
    would widen or break the car rules, and the contract's id rule refuses each."""
    for bad in ("+", "#", "a/b", "$SYS", "a+", ""):
        assert not VEHICLE_ID_RE.match(bad), bad
    assert VEHICLE_ID_RE.match("ingest")  # a valid vehicle id: hence the ACL's first rule


def test_topic_matching_follows_emqx() -> None:
    assert topic_match("ds/v1/A/trip", "ds/v1/+/+")
    assert topic_match("ds/v1/+/+", "ds/v1/+/+")  # a subscription's wildcards are words a rule's + matches
    assert not topic_match("ds/v1/+/down/+", "ds/v1/A/down/+")
    assert topic_match("ds/v1", "ds/v1/#")
    assert not topic_match("$SYS/x", "#")
    assert real_topic(uplink_filter(GROUP)) == uplink_filter()


def test_tls_listener_takes_the_identity_from_the_certificate() -> None:
    conf = emqx_conf()
    ssl = conf["listeners"]["ssl"]["default"]
    assert ssl["bind"].endswith(":8883")
    assert ssl["ssl_options"]["verify"] == "verify_peer"
    assert ssl["ssl_options"]["fail_if_no_peer_cert"] is True
    zone = conf["zones"][ssl["zone"]]["mqtt"]
    assert zone["peer_cert_as_username"] == "cn" and zone["peer_cert_as_clientid"] == "cn"
    assert ssl["enable_authn"] is False  # the certificate is the authentication: no password chain
    # cars park for days; their downlinks wait in the session
    assert seconds(zone["session_expiry_interval"]) >= 86400 and zone["max_mqueue_len"] >= 100


def test_only_the_internal_listener_takes_passwords_and_nothing_else_listens() -> None:
    conf = emqx_conf()
    listeners = conf["listeners"]
    for kind, name in (("tcp", "default"), ("ws", "default"), ("wss", "default")):
        assert listeners[kind][name]["enable"] is False, f"{kind}.{name} must be off"
    internal = listeners["tcp"]["internal"]
    assert internal["enable_authn"] is True and "zone" not in internal
    [authn] = conf["authentication"]
    assert (authn["mechanism"], authn["backend"], authn["user_id_type"]) == (
        "password_based",
        "built_in_database",
        "username",
    )
    assert authn["password_hash_algorithm"]["name"] in ("pbkdf2", "bcrypt")
    [source] = conf["authorization"]["sources"]
    assert source["type"] == "file" and source["enable"] is True
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose()["services"]["emqx1"]["volumes"]}
    assert mounts[source["path"]] == "./acl.conf"


def test_limits_match_mosquitto_and_the_ingest() -> None:
    mqtt = emqx_conf()["mqtt"]
    mosquitto = dict(
        re.findall(r"^(\w+)\s+(\S+)", (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(), re.M)
    )
    mosquitto_limit = int(mosquitto.get("max_packet_size") or mosquitto["message_size_limit"])
    assert bytesize(mqtt["max_packet_size"]) == mosquitto_limit == 256 * 1024
    assert bytesize(mqtt["max_packet_size"]) > MAX_PAYLOAD_BYTES + 1024  # a payload and its topic fit
    # the ingest holds a batch unacknowledged until its commit; its queue must outlast a restart
    assert mqtt["max_inflight"] >= CloudSettings().ingest_batch_size
    assert mqtt["max_mqueue_len"] >= 100 * CloudSettings().ingest_batch_size
    assert mqtt["shared_subscription_strategy"] in {
        "hash_clientid",
        "round_robin",
        "random",
        "sticky",
        "local",
    }


def _main_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def _secret_file(compose_dir: Path, spec: dict[str, Any], name: str) -> Path:
    """Where a compose file's secret ``name`` comes from on the host."""
    return (compose_dir / spec["secrets"][name]["file"]).resolve()


def test_compose_is_a_two_node_cluster_around_the_same_stack() -> None:
    ours_spec, main_spec = compose(), _main_compose()
    services, main = ours_spec["services"], main_spec["services"]
    conf = emqx_conf()
    nodes = {name: s for name, s in services.items() if s.get("image", "").startswith("emqx/emqx:5.")}
    assert len(nodes) == 2
    names = {s["environment"]["EMQX_NODE__NAME"] for s in nodes.values()}
    assert set(conf["cluster"]["static"]["seeds"]) == names
    assert conf["cluster"]["discovery_strategy"] == "static"
    for s in nodes.values():
        host = s["environment"]["EMQX_NODE__NAME"].split("@")[1]
        assert host in s["networks"]["default"]["aliases"] and "emqx" in s["networks"]["default"]["aliases"]
        for mount in s["volumes"]:
            source = mount.split(":")[0]
            assert not source.startswith("./") or (EMQX / source).exists(), source
    # the rest of the stack is deploy/docker-compose.yml's: only the broker and its identities differ
    internal_port = conf["listeners"]["tcp"]["internal"]["bind"].rsplit(":", 1)[1]
    users = {"ingest": "ingest", "migrate": "ingest", "api": "downlink"}
    for name in ("timescaledb", "migrate", "ingest", "api"):
        ours, theirs = dict(services[name]), dict(main[name])
        for key in ("environment", "depends_on", "secrets"):
            ours.pop(key, None), theirs.pop(key, None)
        if "build" in ours:
            assert ours.pop("build") == {"context": "../..", "dockerfile": theirs.pop("build")["dockerfile"]}
        assert ours == theirs, name
        env, their_env = services[name]["environment"], main[name]["environment"]
        assert set(env) == set(their_env), name
        for var, value in env.items():
            if not var.startswith("DRIVESIGHT_MQTT_"):
                assert value == their_env[var], (name, var)
        if name in users:
            assert env["DRIVESIGHT_MQTT_URL"] == f"mqtt://{users[name]}@emqx:{internal_port}", name
            secret = env["DRIVESIGHT_MQTT_PASSWORD_FILE"].removeprefix("/run/secrets/")
            assert secret in services[name].get("secrets", []) or name == "migrate", name
            # the same password file as the Mosquitto stack's for this identity
            assert _secret_file(EMQX, ours_spec, secret) == _secret_file(DEPLOY, main_spec, secret)


def test_the_broker_uses_the_vehicle_ca_and_server_certificate_of_the_mosquitto_stack() -> None:
    ours_spec, main_spec = compose(), _main_compose()
    ssl = emqx_conf()["listeners"]["ssl"]["default"]["ssl_options"]
    main_mounts = {
        v.split(":")[1]: (DEPLOY / v.split(":")[0]).resolve()
        for v in main_spec["services"]["mosquitto"]["volumes"]
    }
    main_files = {Path(target).name: source for target, source in main_mounts.items()}
    for node in ("emqx1", "emqx2"):
        service = ours_spec["services"][node]
        mounts = {v.split(":")[1]: (EMQX / v.split(":")[0]).resolve() for v in service["volumes"]}
        assert mounts[ssl["cacertfile"]] == main_files["vehicle-ca.crt"]
        assert mounts[ssl["certfile"]] == main_files["server.crt"]
        key = ssl["keyfile"].removeprefix("/run/secrets/")
        assert key in service["secrets"]
        assert _secret_file(EMQX, ours_spec, key) == _secret_file(DEPLOY, main_spec, key)


def test_compose_uses_real_settings_and_commands() -> None:
    check_compose_services(compose())
    assert compose()["services"]["ingest"]["environment"]["DRIVESIGHT_INGEST_GROUP"] == GROUP


def test_the_user_script_creates_the_acl_identities() -> None:
    script = (EMQX / "create-users.sh").read_text()
    created = set(re.findall(r"^create (\w+) ", script, re.M))
    named = {arg for rule in load_acl() if len(rule) == 4 for arg in _usernames(rule[1])}
    assert created == named == {"ingest", "downlink"}


def _usernames(who: Any) -> set[str]:
    if who == "all":
        return set()
    kind, arg = who
    if kind in ("and", "or"):
        return set().union(*(_usernames(w) for w in arg))
    return {arg} if kind in ("username", "user") and isinstance(arg, str) else set()


def test_parsers_refuse_what_they_do_not_understand() -> None:
    with pytest.raises(ValueError):
        erlang_terms('{allow, all, publish, ["a"]}')  # no final '.'
    with pytest.raises(ValueError):
        erlang_terms("{allow, 1}.")
    with pytest.raises(ValueError):
        hocon("a = 1\na = 2")
    with pytest.raises(ValueError):
        hocon('include "other.conf"')
    with pytest.raises(ValueError):
        hocon("a = ${HOME}")
    assert hocon("a.b { c = x }\na { d = [1, 2] }") == {"a": {"b": {"c": "x"}, "d": [1, 2]}}
