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


# The maintenance task receives only what root's etcdctl needs: the CA and root's certificate.
ROOT_PEM_FILES = {name: PEM_FILES[name] for name in ("ca.pem", "root.pem", "root-key.pem")}
ROOT_WRITER_SECRETS = {variable: WRITER_SECRETS[variable] for variable in ROOT_PEM_FILES.values()}


def root_writer_script(directory: str = PLANES_DIR, *, tools_dir: str = "/planes-tools") -> str:
    """The maintenance task's busybox ``sh -c`` script: the CA and root's PEM files (mode 0600),
    and busybox for the etcd image's container; no member key, no NATS config."""
    commands = [
        "set -e",
        "umask 077",
        f"mkdir -p {shlex.quote(directory)}",
        f"cp /bin/busybox {shlex.quote(path(tools_dir, 'busybox'))}",
    ]
    for name, variable in ROOT_PEM_FILES.items():
        commands.append(f'printf "%s\\n" "${variable}" > {shlex.quote(path(directory, name))}')
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
    directory: str = PLANES_DIR,
    *,
    etcdctl: str = "etcdctl",
    endpoint: str = "https://127.0.0.1:2379",
    command_timeout: str = "5s",
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
            f"--command-timeout={command_timeout}",
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
    steps = [
        f"n=0; until {ctl} endpoint health >/dev/null 2>&1; do n=$((n+1)); "
        f'[ "$n" -ge {wait_s} ] && echo "etcd not healthy after {wait_s} s" && exit 1; sleep 1; done',
        *_auth_steps(ctl),
    ]
    return "set -e; " + "; ".join(steps)


def _auth_steps(ctl: str) -> list[str]:
    """`etcd_auth_script`'s steps after the wait (each idempotent): ``ctl`` is etcdctl's words."""
    tolerate = "2>&1 | grep -v 'already exists' || true"
    return [
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


# --- etcd maintenance as root (dynamo-ecs etcd-maintenance; docs/infra-tier.md, "The way out") ---

# What the maintenance task may do: the one value a caller chooses (the task's ACTION variable).
MAINTENANCE_ACTIONS = ("status", "recover")
MAINTENANCE_ACTION_VARIABLE = "ACTION"
# The members' client URLs, space-separated (the maintenance container's environment).
MAINTENANCE_ENDPOINTS_VARIABLE = "MEMBER_ENDPOINTS"
# The members' quota (etcd's --quota-backend-bytes); a file above ALARM_PERCENT of it is reported.
MAINTENANCE_QUOTA_VARIABLE = "QUOTA_BACKEND_BYTES"
QUOTA_ALARM_PERCENT = 80
# etcdctl's timeout for one member's defragmentation (other calls: 60 s)
DEFRAG_TIMEOUT = "600s"
# What `etcd_auth_script` leaves: each user holds the role of its own name and nothing else.
PLANES_USERS = (ETCD_DYNAMO_USER, ETCD_OPERATOR_USER, ETCD_ROOT_USER)


def _prefix_end(prefix: str) -> str:
    """The end of etcd's range for ``prefix`` (its last byte plus one), as ``role get`` prints it."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def expected_role_text(role: str) -> str:
    """``etcdctl role get ROLE`` for a role as `etcd_auth_script` sets it, whitespace squeezed
    to single spaces (the form the maintenance script compares)."""
    if role == ETCD_DYNAMO_USER:
        grant = f"[{DYNAMO_PREFIX}, {_prefix_end(DYNAMO_PREFIX)}) (prefix {DYNAMO_PREFIX})"
        return f"Role {role} KV Read: {grant} KV Write: {grant}"
    if role == ETCD_OPERATOR_USER:
        return f"Role {role} KV Read: KV Write:"
    raise ValueError(f"no expected permissions for role {role!r}")


def maintenance_script(directory: str = PLANES_DIR, *, etcdctl: str = "/usr/local/bin/etcdctl") -> str:
    """The maintenance container's ``busybox sh -c`` script, as root (the root certificate).

    ``$ACTION`` (one of `MAINTENANCE_ACTIONS`, checked here too: anything else exits 2 before
    etcd is asked anything) chooses what it does; ``$MEMBER_ENDPOINTS`` are the members' client
    URLs, ``$QUOTA_BACKEND_BYTES`` their quota. Nothing else comes from outside.

    - ``status``: each member's endpoint status (file size, leader, revision), the alarms,
      ``auth status``, the users, each user's roles and the roles' permissions compared with
      what `etcd_auth_script` sets (each difference named);
    - ``recover``: compact to the current revision, defragment the followers then the leader
      (one at a time: a member defragmenting serves nothing), ``alarm disarm``; then the users
      and roles are put back where they differ (extra users and roles deleted, extra role grants
      revoked, a role with other permissions rebuilt, then `etcd_auth_script`'s idempotent
      steps, ``auth enable`` among them), and the same checks as ``status``.

    Exit 0 when nothing is left wrong; 1 when something is (each line ``PROBLEM: ...`` says
    what); 2 for an unknown action.
    """
    ctl = etcdctl_words(directory, etcdctl=etcdctl, endpoint="$url", command_timeout="60s")
    # a defragmentation rewrites the whole file (up to the quota): minutes, not seconds
    long_ctl = etcdctl_words(directory, etcdctl=etcdctl, endpoint="$url", command_timeout=DEFRAG_TIMEOUT)
    actions = " ".join(MAINTENANCE_ACTIONS)
    users = " ".join(sorted(PLANES_USERS))
    role_checks = "\n".join(
        f'  check_role {role} "{expected_role_text(role)}"' for role in (ETCD_DYNAMO_USER, ETCD_OPERATOR_USER)
    )
    restore = "; ".join(_auth_steps("ctl_all"))
    return f"""set -u
say() {{ echo "etcd-maintenance: $*"; }}
if [ -z "${{{MAINTENANCE_ENDPOINTS_VARIABLE}:-}}" ]; then
  say "{MAINTENANCE_ENDPOINTS_VARIABLE} is empty: nothing done"; exit 2
fi
action=${{{MAINTENANCE_ACTION_VARIABLE}:-}}
case "$action" in
  {"|".join(MAINTENANCE_ACTIONS)}) ;;
  *) say "ACTION must be one of: {actions} (not '$action'): nothing done"; exit 2 ;;
esac
problems=0
problem() {{ echo "etcd-maintenance: PROBLEM: $*"; problems=$((problems+1)); }}
ctl() {{ url=$1; shift; {ctl} "$@"; }}
ctl_long() {{ url=$1; shift; {long_ctl} "$@"; }}
all=$(echo ${MAINTENANCE_ENDPOINTS_VARIABLE} | tr ' ' ',')
ctl_all() {{ ctl "$all" "$@"; }}
quota=${{{MAINTENANCE_QUOTA_VARIABLE}:-}}
case "$quota" in
  *[!0-9]*) say "{MAINTENANCE_QUOTA_VARIABLE} is not a whole number ('$quota'): not compared"; quota="" ;;
esac
field() {{ printf '%s' "$2" | grep -o "\\"$1\\":[0-9]*" | head -n 1 | cut -d: -f2; }}
squeeze() {{ tr -s ' \\t\\n' '   ' | sed 's/ *$//'; }}
leader=""
followers=""
revision=""
members() {{
  leader=""; followers=""; revision=""
  for url in ${MAINTENANCE_ENDPOINTS_VARIABLE}; do
    if ! answer=$(ctl "$url" endpoint status -w json 2>&1); then
      problem "$url does not answer: $(echo "$answer" | tail -n 1)"; continue
    fi
    size=$(field dbSize "$answer"); id=$(field member_id "$answer"); lead=$(field leader "$answer")
    rev=$(field revision "$answer")
    role=follower; [ "$id" = "$lead" ] && role=leader
    say "member $url: $role, revision $rev, file $size bytes"
    if [ "$role" = leader ]; then leader=$url; else followers="$followers $url"; fi
    [ -n "$revision" ] || revision=$rev
    if [ -n "$quota" ] && [ -n "$size" ] && [ "$size" -ge $(( quota / 100 * {QUOTA_ALARM_PERCENT} )) ]; then
      problem "$url: file $size bytes, {QUOTA_ALARM_PERCENT} % or more of the quota ($quota bytes)"
    fi
  done
  [ -n "$leader" ] || problem "no member reports itself the leader"
}}
check_role() {{
  got=$(ctl_all role get "$1" 2>&1 | squeeze)
  [ "$got" = "$2" ] || problem "role $1 differs: has '$got', expected '$2'"
}}
check() {{
  alarms=$(ctl_all alarm list 2>&1) || problem "alarm list failed: $alarms"
  if [ -n "$alarms" ]; then problem "alarms raised: $(echo "$alarms" | squeeze)"; else say "no alarm"; fi
  auth=$(ctl_all auth status 2>&1)
  case "$auth" in
    *"Authentication Status: true"*) say "authentication on" ;;
    *) problem "authentication is not on: $(echo "$auth" | squeeze)" ;;
  esac
  listed=$(ctl_all user list 2>&1 | sort | squeeze)
  [ "$listed" = "{users}" ] || problem "users differ: has '$listed', expected '{users}'"
  for user in {users}; do
    roles=$(ctl_all user get "$user" 2>&1 | grep '^Roles:' | squeeze)
    [ "$roles" = "Roles: $user" ] ||
      problem "user $user's roles differ: has '$roles', expected 'Roles: $user'"
  done
  extra=$(ctl_all role list 2>&1 | grep -v -x -e {" -e ".join(sorted(PLANES_USERS))} | squeeze)
  [ -z "$extra" ] || problem "roles that should not exist: $extra"
{role_checks}
}}
restore() {{
  say "restoring the users and roles of etcd_auth_script"
  for user in $(ctl_all user list); do
    case " {users} " in *" $user "*) ;; *) ctl_all user delete "$user" ;; esac
  done
  for role in $(ctl_all role list); do
    case " {users} " in *" $role "*) ;; *) ctl_all role delete "$role" ;; esac
  done
  for user in {users}; do
    for role in $(ctl_all user get "$user" 2>/dev/null | grep '^Roles:' | cut -d: -f2); do
      [ "$role" = "$user" ] || ctl_all user revoke-role "$user" "$role"
    done
  done
  for role in {ETCD_DYNAMO_USER} {ETCD_OPERATOR_USER}; do
    want="{expected_role_text(ETCD_OPERATOR_USER)}"
    [ "$role" = {ETCD_DYNAMO_USER} ] && want="{expected_role_text(ETCD_DYNAMO_USER)}"
    got=$(ctl_all role get "$role" 2>/dev/null | squeeze)
    if [ -n "$got" ] && [ "$got" != "$want" ]; then
      say "rebuilding role $role"; ctl_all role delete "$role"
    fi
  done
  ( set -e; {restore} ) || problem "etcd_auth_script's steps failed"
}}
say "$action (members: ${MAINTENANCE_ENDPOINTS_VARIABLE})"
[ "$action" = recover ] && say "before recovery:"
members
if [ "$action" = recover ]; then
  problems=0  # what the status above found is what recover is for; its own steps count from here
  if [ -n "$revision" ]; then
    answer=$(ctl_all compact "$revision" 2>&1)
    case "$answer" in
      *"compacted revision"*|*"required revision has been compacted"*)
        say "compacted to revision $revision" ;;
      *) problem "compact $revision failed: $(echo "$answer" | tail -n 1)" ;;
    esac
  fi
  for url in $followers $leader; do  # one at a time, the leader last
    if ctl_long "$url" defrag; then say "defragmented $url"; else problem "defrag $url failed"; fi
  done
  if ctl_all alarm disarm > /dev/null; then say "alarms disarmed"; else problem "alarm disarm failed"; fi
  steps=$problems
  check > /dev/null
  differs=$((problems - steps))
  problems=$steps
  [ "$differs" -eq 0 ] || restore
  say "after recovery:"
  members
fi
check
if [ "$problems" -gt 0 ]; then say "$action: $problems problem(s) left"; exit 1; fi
say "$action: nothing wrong"
"""
