"""What the infra task runs to serve the planes with TLS and authentication. Pure text.

The infra images have no shell (etcd, nats) or no TLS client (busybox), so the task's start-up
is split the ECS way (docs/security-planes.md, "How the credentials reach the tasks"):

1. a busybox container receives the infra secret's fields as ECS ``secrets`` (environment
   variables named in `WRITER_SECRETS`) and runs `writer_script`: the PEM files etcd and
   nats-server read, and nats-server's config file, into a task volume (mode 0600);
2. etcd starts with `etcd_tls_environment` (client and peer TLS, client certificates required,
   peers only with the member certificate's CN);
3. a short-lived container of the etcd image runs `etcd_auth_script` with the root
   certificate: the users and roles of the planes, then ``auth enable``; every step is
   idempotent, so each start of each member runs it again safely;
4. nats-server starts on the written config.

The tests run these very texts with the real etcd 3.5, etcdctl and nats-server 2.11.
"""

from __future__ import annotations

import shlex

from dynamo_ecs.planes.credentials import ETCD_DYNAMO_USER, ETCD_OPERATOR_USER, ETCD_ROOT_USER

PLANES_DIR = "/planes"
MEMBER_CN = "infra-member"
# Dynamo 1.6.1 keeps everything it writes under this prefix (FACTS.md §8).
DYNAMO_PREFIX = "v1/"
# environment variable of the writer container -> the infra secret's JSON key
WRITER_SECRETS = {
    "PLANES_CA": "ca_bundle",
    "PLANES_MEMBER_CERT": "member_cert",
    "PLANES_MEMBER_KEY": "member_key",
    "PLANES_ROOT_CERT": "root_cert",
    "PLANES_ROOT_KEY": "root_key",
    "PLANES_NATS_DYNAMO_USER": "nats_dynamo_user",
    "PLANES_NATS_DYNAMO_PASSWORD": "nats_dynamo_password",
    "PLANES_NATS_ROUTE_USER": "nats_route_user",
    "PLANES_NATS_ROUTE_PASSWORD": "nats_route_password",
}
PEM_FILES = {
    "ca.pem": "PLANES_CA",
    "member.pem": "PLANES_MEMBER_CERT",
    "member-key.pem": "PLANES_MEMBER_KEY",
    "root.pem": "PLANES_ROOT_CERT",
    "root-key.pem": "PLANES_ROOT_KEY",
}
NATS_CONFIG = "nats-server.conf"


def path(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


def nats_config_lines(
    directory: str = PLANES_DIR,
    *,
    client_port: int = 4222,
    monitor_port: int = 8222,
    cluster_name: str | None = None,
    cluster_port: int = 6222,
    routes: list[str] | None = None,
    jetstream_dir: str | None = None,
    host: str | None = None,
    server_name: str | None = None,
) -> list[str]:
    """nats-server's config as shell double-quoted words: ``$PLANES_*`` expand when written.

    ``routes`` are ``host:port`` of the other nodes; empty or None with a ``cluster_name``
    still listens for routes (a node that others route to).
    """
    tls = (
        f'cert_file: \\"{path(directory, "member.pem")}\\", '
        f'key_file: \\"{path(directory, "member-key.pem")}\\", '
        f'ca_file: \\"{path(directory, "ca.pem")}\\", timeout: 5'
    )
    lines = [f"host: {host}"] if host else []
    # JetStream in a cluster needs each node's name (the member's: infra-0, infra-1, ...).
    lines += [f"server_name: {server_name}"] if server_name else []
    lines += [
        f"port: {client_port}",
        f"http_port: {monitor_port}",
        "max_payload: 15728640",
        f'jetstream {{ store_dir: \\"{jetstream_dir}\\" }}' if jetstream_dir else "jetstream {}",
        # TLS on the client port: a client that does not speak TLS is refused.
        f"tls {{ {tls} }}",
        'authorization { users: [ { user: \\"$PLANES_NATS_DYNAMO_USER\\", '
        'password: \\"$PLANES_NATS_DYNAMO_PASSWORD\\" } ] }',
    ]
    if cluster_name:
        route_urls = ", ".join(
            f'\\"nats-route://$PLANES_NATS_ROUTE_USER:$PLANES_NATS_ROUTE_PASSWORD@{route}\\"'
            for route in routes or []
        )
        lines.append(
            f"cluster {{ name: {cluster_name}, port: {cluster_port}, "
            # Routes verify each other's certificate both ways and present the routes' password.
            f"tls {{ {tls}, verify: true }}, "
            'authorization { user: \\"$PLANES_NATS_ROUTE_USER\\", '
            'password: \\"$PLANES_NATS_ROUTE_PASSWORD\\" }, '
            f"routes: [ {route_urls} ] }}"
        )
    return lines


def writer_script(directory: str = PLANES_DIR, **nats: object) -> str:
    """The busybox container's ``sh -c`` script: the PEM files and nats-server's config (task only)."""
    commands = ["set -e", "umask 077", f"mkdir -p {shlex.quote(directory)}"]
    for name, variable in PEM_FILES.items():
        commands.append(f'printf "%s\\n" "${variable}" > {shlex.quote(path(directory, name))}')
    words = " ".join(f'"{line}"' for line in nats_config_lines(directory, **nats))  # type: ignore[arg-type]
    commands.append(f'printf "%s\\n" {words} > {shlex.quote(path(directory, NATS_CONFIG))}')
    return "; ".join(commands)


def etcd_tls_environment(directory: str = PLANES_DIR) -> dict[str, str]:
    """etcd's TLS settings (environment of the etcd container); the URLs stay the layout's, with https."""
    return {
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_TRUSTED_CA_FILE": path(directory, "ca.pem"),
        "ETCD_CERT_FILE": path(directory, "member.pem"),
        "ETCD_KEY_FILE": path(directory, "member-key.pem"),
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_TRUSTED_CA_FILE": path(directory, "ca.pem"),
        "ETCD_PEER_CERT_FILE": path(directory, "member.pem"),
        "ETCD_PEER_KEY_FILE": path(directory, "member-key.pem"),
        # A client certificate (Dynamo's, the operator's) is from the same CA: only the
        # member certificate may be a peer.
        "ETCD_PEER_CERT_ALLOWED_CN": MEMBER_CN,
    }


def etcd_tls_config_lines(directory: str = PLANES_DIR) -> list[str]:
    """The same TLS settings as lines of etcd's YAML config file: etcd started with
    ``--config-file`` ignores its environment and flags (the three-member tier's members are)."""
    files = (
        f"  cert-file: {path(directory, 'member.pem')}",
        f"  key-file: {path(directory, 'member-key.pem')}",
        "  client-cert-auth: true",
        f"  trusted-ca-file: {path(directory, 'ca.pem')}",
    )
    return [
        "client-transport-security:",
        *files,
        "peer-transport-security:",
        *files,
        f"  allowed-cn: {MEMBER_CN}",
    ]


def etcdctl_words(
    directory: str = PLANES_DIR, *, etcdctl: str = "etcdctl", endpoint: str = "https://127.0.0.1:2379"
) -> str:
    return " ".join(
        shlex.quote(w)
        for w in (
            etcdctl,
            f"--endpoints={endpoint}",
            f"--cacert={path(directory, 'ca.pem')}",
            f"--cert={path(directory, 'root.pem')}",
            f"--key={path(directory, 'root-key.pem')}",
            "--dial-timeout=3s",
            "--command-timeout=5s",
        )
    )


def etcd_auth_script(
    directory: str = PLANES_DIR,
    *,
    etcdctl: str = "etcdctl",
    endpoint: str = "https://127.0.0.1:2379",
    wait_s: int = 60,
) -> str:
    """Users, roles and ``auth enable``, as root (the root certificate's CN). Idempotent.

    Users have no password (``--no-password``): the client certificate's CN is the only way in.
    Dynamo's user may read and write ``v1/`` only; the operator's role has no key permission at
    all (member list and health need none); membership and auth changes stay with root.
    """
    ctl = etcdctl_words(directory, etcdctl=etcdctl, endpoint=endpoint)
    tolerate = "2>&1 | grep -v 'already exists' || true"
    steps = [
        f"n=0; until {ctl} endpoint health >/dev/null 2>&1; do n=$((n+1)); "
        f'[ "$n" -ge {wait_s} ] && echo "etcd not healthy after {wait_s} s" && exit 1; sleep 1; done',
        f"{ctl} user add {ETCD_ROOT_USER} --no-password {tolerate}",
        f"{ctl} user grant-role {ETCD_ROOT_USER} root {tolerate}",
        f"{ctl} role add {ETCD_DYNAMO_USER} {tolerate}",
        f"{ctl} role grant-permission {ETCD_DYNAMO_USER} readwrite {DYNAMO_PREFIX} --prefix=true",
        f"{ctl} user add {ETCD_DYNAMO_USER} --no-password {tolerate}",
        f"{ctl} user grant-role {ETCD_DYNAMO_USER} {ETCD_DYNAMO_USER} {tolerate}",
        f"{ctl} role add {ETCD_OPERATOR_USER} {tolerate}",
        f"{ctl} user add {ETCD_OPERATOR_USER} --no-password {tolerate}",
        f"{ctl} user grant-role {ETCD_OPERATOR_USER} {ETCD_OPERATOR_USER} {tolerate}",
        f"{ctl} auth enable",
        f"{ctl} auth status | grep -q 'Authentication Status: true'",
    ]
    return "set -e; " + "; ".join(steps)
