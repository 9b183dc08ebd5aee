"""Make the planes' CA, certificates and NATS passwords. Pure apart from randomness and the clock.

One payload per holder (docs/security-planes.md, "Who holds which credential"): each becomes
one Secrets Manager secret, so each execution role can be given exactly one. Every PEM is
text (etcd's and Dynamo's ``ETCD_AUTH_*`` take PEM contents); keys are unencrypted PKCS#8,
which etcd, nats-server and Dynamo's Rust client all read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dynamo_ecs.errors import InvalidInputError

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=730)
BACKDATE = dt.timedelta(minutes=5)  # clocks of the tasks and the maker may differ a little

# etcd user names are the client certificates' CNs (FACTS.md §8).
ETCD_DYNAMO_USER = "dynamo"
ETCD_OPERATOR_USER = "operator"
ETCD_ROOT_USER = "root"
NATS_DYNAMO_USER = "dynamo"
NATS_ROUTE_USER = "route"
# The infra secret's list of every NATS user nats-server accepts for Dynamo (two while a
# rotation is under way): ``user:password`` entries separated by spaces, never empty.
NATS_DYNAMO_USERS = "nats_dynamo_users"
_NATS_WORD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_GENERATION = re.compile(r"^(?P<base>.+?)(?:-(?P<generation>[0-9]+))?$")
# Always among the member certificate's names: the probes inside the task (health checks,
# the auth set-up) reach etcd on loopback.
LOOPBACK_NAMES = ("localhost", "127.0.0.1")
HOLDERS = ("ca", "infra", "dynamo", "operator")

_DNS_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
MAX_SERVER_NAMES = 20


@dataclass(frozen=True)
class Authority:
    cert_pem: str
    key_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode())

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidInputError(
                "the planes' CA key is not an EC key: delete the CA secret to make a new CA"
            )
        return key


@dataclass(frozen=True)
class Leaf:
    cert_pem: str
    key_pem: str


def validate_server_names(names: list[str]) -> list[str]:
    """The member certificate's names: DNS names or IP addresses, deduplicated, loopback added."""
    if not isinstance(names, list) or len(names) > MAX_SERVER_NAMES:
        raise InvalidInputError(
            f"ServerNames: a list of at most {MAX_SERVER_NAMES} DNS names or IP addresses (the members' "
            'Cloud Map names), e.g. ["infra-0.dynamo-infra.internal"]'
        )
    result: list[str] = []
    for name in [*names, *LOOPBACK_NAMES]:
        if not isinstance(name, str) or not (_is_ip(name) or (_DNS_NAME.match(name) and len(name) <= 253)):
            raise InvalidInputError(
                f"ServerNames: {name!r} is neither a DNS name nor an IP address; give the members' "
                "Cloud Map names (letters, digits, hyphens, dots)"
            )
        if name.lower() not in result:
            result.append(name.lower())
    return result


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_authority(deployment: str, now: dt.datetime) -> Authority:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dynamo-ecs-operator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{deployment} infra planes CA"[:64]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def issue(
    authority: Authority, common_name: str, now: dt.datetime, *, server_names: list[str] | None = None
) -> Leaf:
    """A leaf certificate: a client identity (``common_name`` is the etcd user), and a server and
    peer identity as well when ``server_names`` are given."""
    key = _new_key()
    ca_cert = authority.certificate
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server_names:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if server_names:
        alt_names: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in server_names
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(authority.key, hashes.SHA256())
    return Leaf(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def new_password() -> str:
    """32 URL-safe characters (192 bits): no character a config file or a shell would quote."""
    return secrets.token_urlsafe(24)


def nats_users_text(users: list[tuple[str, str]]) -> str:
    """The ``nats_dynamo_users`` field for ``users`` (user, password), in the order given."""
    return " ".join(f"{user}:{password}" for user, password in users)


def parse_nats_users(text: object, *, where: str) -> list[tuple[str, str]]:
    """``nats_dynamo_users`` as (user, password) pairs; a bad field is refused, naming the fix."""
    entries = text.split() if isinstance(text, str) else []
    pairs = [entry.partition(":") for entry in entries]
    well_formed = all(sep and _NATS_WORD.match(user) and _NATS_WORD.match(pw) for user, sep, pw in pairs)
    if not pairs or not well_formed or len({user for user, _, _ in pairs}) != len(pairs):
        raise InvalidInputError(
            f"{where}: {NATS_DYNAMO_USERS} is not a list of distinct user:password entries (letters, "
            "digits, '_', '-'); put back the secret's previous version, or delete the planes' secrets to "
            "make new ones"
        )
    return [(user, password) for user, _, password in pairs]


def next_nats_user(user: str) -> str:
    """The next generation's user name: ``dynamo`` -> ``dynamo-2`` -> ``dynamo-3`` (nats-server
    takes one password per user, so two valid passwords need two users)."""
    match = _GENERATION.match(user)
    assert match is not None  # the pattern matches any non-empty name
    return f"{match['base']}-{int(match['generation'] or 1) + 1}"


def holder_payloads(
    authority: Authority, server_names: list[str], now: dt.datetime
) -> dict[str, dict[str, str]]:
    """What each holder's secret holds, everything issued from ``authority``.

    Key names are the JSON keys ECS ``secrets`` refer to (``arn:...:secret:NAME:KEY::``).
    """
    names = validate_server_names(server_names)
    member = issue(authority, "infra-member", now, server_names=names)
    root = issue(authority, ETCD_ROOT_USER, now)
    dynamo = issue(authority, ETCD_DYNAMO_USER, now)
    operator = issue(authority, ETCD_OPERATOR_USER, now)
    nats_dynamo_password = new_password()
    return {
        "ca": {"ca_cert": authority.cert_pem, "ca_key": authority.key_pem},
        "infra": {
            "ca_bundle": authority.cert_pem,
            "member_cert": member.cert_pem,
            "member_key": member.key_pem,
            "root_cert": root.cert_pem,
            "root_key": root.key_pem,
            # the NATS user and password Dynamo presents now (the Dynamo secret's), and every
            # user nats-server accepts (the writer's config)
            "nats_dynamo_user": NATS_DYNAMO_USER,
            "nats_dynamo_password": nats_dynamo_password,
            NATS_DYNAMO_USERS: nats_users_text([(NATS_DYNAMO_USER, nats_dynamo_password)]),
            "nats_route_user": NATS_ROUTE_USER,
            "nats_route_password": new_password(),
        },
        "dynamo": {
            "ca_bundle": authority.cert_pem,
            "client_cert": dynamo.cert_pem,
            "client_key": dynamo.key_pem,
            "nats_user": NATS_DYNAMO_USER,
            "nats_password": nats_dynamo_password,
        },
        "operator": {
            "ca_bundle": authority.cert_pem,
            "client_cert": operator.cert_pem,
            "client_key": operator.key_pem,
        },
    }
