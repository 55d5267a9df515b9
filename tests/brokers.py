"""A private Mosquitto running deploy/mosquitto/ as shipped, with a PKI and identities made at test time.

:class:`DeployBroker` reads deploy/mosquitto/mosquitto.conf and rewrites only what differs on a test machine
(ports, file paths, the plugin's path, the log file); each rewrite must match exactly once, so a change to
the deploy configuration that the tests would no longer see fails here instead. Identities are created
with deploy/mosquitto/provision.sh, the script operators run. :func:`make_pki` makes a vehicle CA, a
server certificate for 127.0.0.1/localhost and one client certificate per name with the ``cryptography``
package. :class:`Probe` is a real paho client that records what the broker answered.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
import secrets
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.embedded import free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_CTRL = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
DEPLOY_MOSQUITTO = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
PROVISION = DEPLOY_MOSQUITTO / "provision.sh"


def dynsec_plugin() -> str | None:
    """Where this machine has Mosquitto's dynamic security plugin (Debian: a multiarch directory)."""
    found = glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob(
        "/usr/lib/mosquitto_dynamic_security.so"
    )
    return found[0] if found else None


# ------------------------------------------------------------------------------------------------ PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA whose key signs certificates in ``directory`` (``<name>.crt`` and ``<name>.key``)."""

    directory: Path
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_file(self) -> Path:
        """The CA certificate (PEM)."""
        return self.directory / f"{self.name}.crt"

    def issue(self, cn: str, *, server: bool = False) -> tuple[str, str]:
        """A certificate with CN ``cn`` signed by this CA (for 127.0.0.1/localhost with ``server``); the
        paths of its certificate and key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{cn}.crt", self.directory / f"{cn}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return str(cert_path), str(key_path)


def make_ca(directory: Path, name: str) -> CertificateAuthority:
    """A new self-signed CA, its certificate written to ``directory/<name>.crt``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca = CertificateAuthority(directory, name, key, cert)
    ca.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca


# --------------------------------------------------------------------------------------------- broker


class DeployBroker:
    """deploy/mosquitto/mosquitto.conf on spare loopback ports, with its own PKI, data and identities.

    ``password_variant`` also enables the documented listener for cars with passwords (no TLS).
    """

    ADMIN = "admin"

    def __init__(self, directory: Path, *, password_variant: bool = False) -> None:
        plugin = dynsec_plugin()
        if plugin is None:
            raise RuntimeError(
                "Mosquitto's dynamic security plugin (mosquitto_dynamic_security.so) is missing"
            )
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls_port = free_port()
        self.internal_port = free_port()
        self.password_port = free_port() if password_variant else None
        self.ca = make_ca(directory / "pki", "vehicle-ca")
        self.server_cert, self.server_key = self.ca.issue("localhost", server=True)
        self.dynsec_file = directory / "dynamic-security.json"
        self.log_file = directory / "mosquitto.log"
        self.admin_password_file = directory / "admin.password"
        self.admin_password_file.write_text(secrets.token_urlsafe(24))
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(self._config(plugin))
        self.process: subprocess.Popen[bytes] | None = None
        self._passwords: dict[str, str] = {}

    def _config(self, plugin: str) -> str:
        text = (DEPLOY_MOSQUITTO / "mosquitto.conf").read_text()
        rewrites = [
            (r"^plugin /usr/lib/mosquitto_dynamic_security\.so$", f"plugin {plugin}"),
            (r"^plugin_opt_config_file .*$", f"plugin_opt_config_file {self.dynsec_file}"),
            (r"^listener 8883$", f"listener {self.tls_port} 127.0.0.1"),
            (r"^listener 1884$", f"listener {self.internal_port} 127.0.0.1"),
            (r"^cafile .*$", f"cafile {self.ca.cert_file}"),
            (r"^certfile .*$", f"certfile {self.server_cert}"),
            (r"^keyfile .*$", f"keyfile {self.server_key}"),
            (r"^persistence_location .*$", f"persistence_location {self.dir}/"),
            (r"^log_dest stdout$", f"log_dest file {self.log_file}"),
        ]
        if self.password_port is not None:
            rewrites += [
                (r"^#listener 1883$", f"listener {self.password_port} 127.0.0.1"),
                (
                    r"^#protocol mqtt\n#use_username_as_clientid true$",
                    "protocol mqtt\nuse_username_as_clientid true",
                ),
            ]
        for pattern, replacement in rewrites:
            text, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
            if n != 1:
                raise AssertionError(
                    f"deploy/mosquitto/mosquitto.conf: {pattern!r} matched {n} times, not once"
                )
        # as root, mosquitto drops to its own user, which cannot read a test's private directory
        return ("user root\n" if os.geteuid() == 0 else "") + text

    # lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the broker (creating the plugin's admin on first start) and wait for its ports."""
        if not self.dynsec_file.exists():
            subprocess.run(
                [MOSQUITTO_CTRL, "dynsec", "init", str(self.dynsec_file), self.ADMIN,
                 self.admin_password_file.read_text()],
                check=True, capture_output=True,
            )  # fmt: skip
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)
        try:
            for port in (self.tls_port, self.internal_port, self.password_port):
                if port is not None:
                    wait_for_port("127.0.0.1", port, 10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log()}") from None

    def stop(self) -> None:
        """Stop the broker."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None

    def log(self) -> str:
        """The broker's log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # identities ------------------------------------------------------------------------------------
    def provision(self, *args: str, password: str | None = None, **env_vars: str) -> None:
        """Run deploy/mosquitto/provision.sh against this broker (``password`` goes to its stdin)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MQTT_ADMIN_HOST": "127.0.0.1",
            "MQTT_ADMIN_PORT": str(self.internal_port),
            "MQTT_ADMIN_PASSWORD_FILE": str(self.admin_password_file),
            **env_vars,
        }
        done = subprocess.run(
            ["sh", str(PROVISION), *args], input=(password + "\n") if password is not None else "",
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"provision.sh {' '.join(args)} failed: {done.stderr}{done.stdout}")

    def add_service(self, role: str, user: str) -> str:
        """A cloud service user with ``role`` (ingest, downlink); its new password."""
        password = secrets.token_urlsafe(24)
        self.provision("service", role, user, password=password)
        self._passwords[user] = password
        return password

    def provision_cloud(self) -> None:
        """``provision.sh cloud`` as compose runs it: init, then ingest and downlink with new passwords."""
        env: dict[str, str] = {}
        for user in ("ingest", "downlink"):
            self._passwords[user] = secrets.token_urlsafe(24)
            path = self.dir / f"{user}.password"
            path.write_text(self._passwords[user] + "\n")
            env[f"MQTT_{user.upper()}_PASSWORD_FILE"] = str(path)
        self.provision("cloud", **env)

    def add_vehicle(self, vin: str, *, password: bool = False) -> str | None:
        """A car known to the broker; its password in the password variant."""
        if not password:
            self.provision("vehicle", vin)
            return None
        secret = secrets.token_urlsafe(24)
        self.provision("vehicle", vin, "--password", password=secret)
        self._passwords[vin] = secret
        return secret

    def password(self, user: str) -> str:
        """The password ``add_service`` or ``add_vehicle`` made for ``user``."""
        return self._passwords[user]


# --------------------------------------------------------------------------------------------- client


@dataclass
class Probe:
    """A real paho client that records the broker's answers (CONNACK, SUBACK, PUBACK, DISCONNECT) and the
    messages it receives."""

    client_id: str
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5
    clean: bool = True
    connack: ReasonCode | None = None
    connack_props: Properties | None = None
    disconnect: ReasonCode | None = None
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    client: mqtt.Client = field(init=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, init=False)

    def __post_init__(self) -> None:
        kwargs: dict[str, object] = {}
        if self.protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = self.clean
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.protocol,
            **kwargs,  # type: ignore[arg-type]
        )
        # paho waits this long before reconnecting, and loop_stop() waits for that wait: keep it short
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # callbacks (paho's network thread) -------------------------------------------------------------
    def _note(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _on_connect(self, c: mqtt.Client, u: object, f: object, reason: ReasonCode, props: object) -> None:
        self.connack = reason
        self.connack_props = props if isinstance(props, Properties) else None
        self._note()

    def _on_disconnect(self, c: mqtt.Client, u: object, f: object, reason: ReasonCode, props: object) -> None:
        self.disconnect = reason
        self._note()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append(msg)
        self._note()

    def _on_subscribe(self, c: mqtt.Client, u: object, mid: int, codes: list[ReasonCode], p: object) -> None:
        self.subacks[mid] = codes
        self._note()

    def _on_publish(self, c: mqtt.Client, u: object, mid: int, reason: ReasonCode, p: object) -> None:
        self.pubacks[mid] = reason
        self._note()

    def wait(self, predicate: object, timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` holds; False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)  # type: ignore[arg-type]

    # actions ---------------------------------------------------------------------------------------
    def connect(
        self,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
    ) -> ReasonCode | None:
        """Connect (TLS when ``ca_file`` is given) and return the CONNACK reason (None: no answer)."""
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            certfile, keyfile = cert if cert else (None, None)
            self.client.tls_set(
                ca_certs=ca_file, certfile=certfile, keyfile=keyfile, cert_reqs=ssl.CERT_REQUIRED
            )
        if self.protocol == mqtt.MQTTv5:
            # MQTT 5 sessions of these probes end with the connection (no session expiry)
            self.client.connect("127.0.0.1", port, keepalive=30, clean_start=self.clean)
        else:
            self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None or self.disconnect is not None)
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and return the SUBACK's reason codes."""
        _rc, mid = self.client.subscribe(topic, qos)
        assert mid is not None
        assert self.wait(lambda: mid in self.subacks), f"no SUBACK for {topic}"
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish; return the message id (see :attr:`pubacks`)."""
        return self.client.publish(topic, payload, qos=qos).mid

    def close(self) -> None:
        """Disconnect and stop the network loop."""
        self.client.disconnect()
        self.client.loop_stop()
