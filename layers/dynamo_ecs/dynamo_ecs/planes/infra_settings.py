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

from dynamo_ecs.planes.credentials import (
    ETCD_DYNAMO_USER,
    ETCD_OPERATOR_USER,
    ETCD_ROOT_USER,
    NATS_DYNAMO_USERS,
)

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
    # every Dynamo user nats-server accepts (``user:password ...``; two during a rotation): one
    # field that is always there, so a rotation changes the secret's values, never the fields
    # the task definitions refer to (ECS stops a task whose secret lacks a referenced key)
    "PLANES_NATS_DYNAMO_USERS": NATS_DYNAMO_USERS,
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
# The writer's shell variable holding nats-server's ``users`` entries, one per accepted user.
NATS_USERS_VARIABLE = "nats_users"


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
    cluster_host: str | None = None,
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
        f"authorization {{ users: [ ${NATS_USERS_VARIABLE} ] }}",
    ]
    if cluster_name:
        route_urls = ", ".join(
            f'\\"nats-route://$PLANES_NATS_ROUTE_USER:$PLANES_NATS_ROUTE_PASSWORD@{route}\\"'
            for route in routes or []
        )
        listen = f"host: {cluster_host}, " if cluster_host else ""
        lines.append(
            f"cluster {{ name: {cluster_name}, {listen}port: {cluster_port}, "
            # Routes verify each other's certificate both ways and present the routes' password.
            f"tls {{ {tls}, verify: true }}, "
            'authorization { user: \\"$PLANES_NATS_ROUTE_USER\\", '
            'password: \\"$PLANES_NATS_ROUTE_PASSWORD\\" }, '
            f"routes: [ {route_urls} ] }}"
        )
    return lines


def writer_script(directory: str = PLANES_DIR, *, tools_dir: str | None = None, **nats: object) -> str:
    """The busybox container's ``sh -c`` script: the PEM files and nats-server's config (task only).

    With ``tools_dir``, busybox itself is copied there too (statically linked), so that the
    containers of the etcd image, which has no shell, can run `join_script` and
    `etcd_auth_script` with ``<tools_dir>/busybox sh -c``.
    """
    commands = ["set -e", "umask 077", f"mkdir -p {shlex.quote(directory)}"]
    if tools_dir:
        commands.append(f"cp /bin/busybox {shlex.quote(path(tools_dir, 'busybox'))}")
    for name, variable in PEM_FILES.items():
        commands.append(f'printf "%s\\n" "${variable}" > {shlex.quote(path(directory, name))}')
    commands.append(_nats_users_commands())
    words = " ".join(f'"{line}"' for line in nats_config_lines(directory, **nats))  # type: ignore[arg-type]
    commands.append(f'printf "%s\\n" {words} > {shlex.quote(path(directory, NATS_CONFIG))}')
    return "; ".join(commands)


def _nats_users_commands() -> str:
    """Shell commands that turn ``$PLANES_NATS_DYNAMO_USERS`` (``user:password`` entries) into
    nats-server's ``users`` entries in ``$nats_users``; no entry at all stops the writer, and so
    the task (its containers depend on the writer's success)."""
    var = NATS_USERS_VARIABLE
    entry = '{ user: \\"${entry%%:*}\\", password: \\"${entry#*:}\\" }'
    return (
        f'{var}=""; for entry in $PLANES_NATS_DYNAMO_USERS; do {var}="${{{var}:+${var}, }}{entry}"; done; '
        f'[ -n "${var}" ] || {{ echo "planes-writer: {NATS_DYNAMO_USERS} lists no NATS user" >&2; exit 1; }}'
    )


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


def _word(text: str) -> str:
    """A shell word; a ``$VARIABLE`` in it still expands (double quotes)."""
    return f'"{text}"' if "$" in text else shlex.quote(text)


def etcdctl_words(
    directory: str = PLANES_DIR, *, etcdctl: str = "etcdctl", endpoint: str = "https://127.0.0.1:2379"
) -> str:
    return " ".join(
        _word(w)
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


# etcd's history and quota, the same in every etcd config of the stack (the single task's
# environment, the members' config file): docs/infra-tier.md, "History and quota". Periodic
# compaction keeps 10 minutes of revisions (the only history anything here reads is a watch
# resuming after a reconnect, bounded by Dynamo's 30-s lease); the quota is etcd's default,
# stated so that the etcd-quota alarm's percentage has a number behind it.
ETCD_HISTORY_SETTINGS = {
    "ETCD_AUTO_COMPACTION_MODE": "periodic",
    "ETCD_AUTO_COMPACTION_RETENTION": "10m",
    "ETCD_QUOTA_BACKEND_BYTES": str(2 * 1024**3),
}

# The etcd settings etcd-join writes into etcd's config file, from the container's ETCD_* variables
# (as YAML strings). The auto-compaction settings are the members' only way to compact: etcd
# started with --config-file ignores its environment (docs/infra-tier.md, "History and quota").
JOIN_CONFIG_KEYS = (
    "NAME",
    "DATA_DIR",
    "LISTEN_PEER_URLS",
    "LISTEN_CLIENT_URLS",
    "INITIAL_ADVERTISE_PEER_URLS",
    "ADVERTISE_CLIENT_URLS",
    "INITIAL_CLUSTER",
    "INITIAL_CLUSTER_TOKEN",
    "AUTO_COMPACTION_MODE",
    "AUTO_COMPACTION_RETENTION",
)
# The same, for settings etcd reads as integers (a quoted YAML string is refused there).
JOIN_CONFIG_NUMBER_KEYS = ("QUOTA_BACKEND_BYTES",)


def join_script(
    directory: str = PLANES_DIR, *, etcdctl: str = "/usr/local/bin/etcdctl", conf: str = "/etc/etcd/etcd.yml"
) -> str:
    """etcd-join of the three-member tier with the planes on (docs/infra-tier.md, "Membership").

    Run by ``busybox sh`` in a container of the etcd image: it asks the other members
    (``$JOIN_VIA``, https URLs) for the membership with ``etcdctl`` as root (the root
    certificate; busybox's wget has no client certificate), removes and adds this member's
    peer URL as the design says, then writes etcd's config file with the TLS settings. A
    member that answers (``endpoint status``) but cannot list the members (etcdctl's member
    list is linearizable: it needs the quorum) refuses the join with exit 1. A
    member is *started* when it has client URLs (etcdctl's simple output: id, status, name,
    peer URLs, client URLs, learner); a change etcd refuses is retried four times, 2 s apart,
    and then exits 1, so etcd never starts unless this member was added. A number setting
    (`JOIN_CONFIG_NUMBER_KEYS`) that is not a whole number stops it before it asks anyone.
    """
    ctl = etcdctl_words(directory, etcdctl=etcdctl, endpoint="$url")
    tls = "\\n".join(etcd_tls_config_lines(directory))
    keys = " ".join(JOIN_CONFIG_KEYS)
    numbers = " ".join(JOIN_CONFIG_NUMBER_KEYS)
    return f"""set -u
conf={shlex.quote(conf)}
me=$ETCD_INITIAL_ADVERTISE_PEER_URLS
say() {{ echo "etcd-join: $*"; }}
for key in {numbers}; do
  eval "value=\\${{ETCD_$key}}"
  case $value in
    ''|*[!0-9]*) say "ETCD_$key must be a whole number of bytes, not '$value': nothing changed"; exit 1 ;;
  esac
done
ctl() {{ url=$1; shift; {ctl} "$@"; }}
change() {{
  for attempt in 1 2 3 4; do
    ctl "$via" member "$@" > /dev/null && return 0
    sleep 2
  done
  return 1
}}
add() {{ change add "$ETCD_NAME" --peer-urls="$me" && say "added $me"; }}
via=""
for candidate in $JOIN_VIA; do
  if ctl "$candidate" endpoint status > /dev/null; then via=$candidate; break; fi
done
state=new
if [ -z "$via" ]; then
  say "no member answers: bootstrapping the tier"
else
  state=existing
  listed=""
  for attempt in 1 2 3 4; do
    if members=$(ctl "$via" member list); then listed=yes; break; fi
    sleep 2
  done
  [ -n "$listed" ] || {{ say "$via answers but lists no members (no quorum)"; exit 1; }}
  entry=$(printf '%s\\n' "$members" | grep -F ", $me, " || true)
  if [ -z "$entry" ]; then
    add || {{ say "member add refused by $via"; exit 1; }}
  elif [ -n "$(printf '%s' "$entry" | awk -F', ' '{{print $5}}')" ]; then
    id=${{entry%%,*}}
    say "$me was member $id, whose data is gone: removing it"
    change remove "$id" || {{ say "member remove refused by $via"; exit 1; }}
    add || {{ say "member add refused by $via"; exit 1; }}
  else
    say "$me is already added: joining"
  fi
fi
{{
  for key in {keys}; do
    eval "value=\\${{ETCD_$key}}"
    printf "%s: '%s'\\n" "$(echo "$key" | tr 'A-Z_' 'a-z-')" "$value"
  done
  for key in {numbers}; do
    eval "value=\\${{ETCD_$key}}"
    printf "%s: %s\\n" "$(echo "$key" | tr 'A-Z_' 'a-z-')" "$value"
  done
  echo "initial-cluster-state: '$state'"
  printf '{tls}\\n'
}} > "$conf"
say "state $state"
"""
