#!/bin/sh
# Identities on the drivesight broker, through Mosquitto's dynamic security plugin (mosquitto_ctrl).
#
#   provision.sh init                         default-deny ACLs and the cloud roles (once, on a new broker)
#   provision.sh service ingest|downlink USER read USER's password from stdin; ingest: may read every
#                                             uplink, only through $share/ingest, and publish receipts on
#                                             ds/v1/+/down/receipt; downlink: may publish to every car's
#                                             ds/v1/+/down/+ (pushes, configuration, models)
#   provision.sh cloud                        init, then the services ingest and downlink with the passwords
#                                             in MQTT_INGEST_PASSWORD_FILE and MQTT_DOWNLINK_PASSWORD_FILE
#   provision.sh vehicle VIN                  a car that connects with its certificate (CN = VIN): it may
#                                             publish on ds/v1/VIN/+ and subscribe to ds/v1/VIN/down/+ only
#   provision.sh vehicle VIN --password       the same car for the password variant: password from stdin
#   provision.sh remove-vehicle VIN           the car loses every access (revoke its certificate too)
#
# The admin connection comes from the environment: MQTT_ADMIN_HOST (127.0.0.1), MQTT_ADMIN_PORT (1884, the
# internal listener), MQTT_ADMIN_USER (admin) and MQTT_ADMIN_PASSWORD_FILE (required). The admin itself is
# created before the broker's first start: mosquitto_ctrl dynsec init /mosquitto/data/dynamic-security.json admin
# Passwords are read from stdin, not from arguments, so they never show in `ps` or the shell history of the
# caller (mosquitto_ctrl itself still takes them as arguments: run this on the broker host).
set -eu

die() { echo "provision.sh: $*" >&2; exit 2; }

: "${MQTT_ADMIN_PASSWORD_FILE:?set MQTT_ADMIN_PASSWORD_FILE to the file holding the dynsec admin password}"
admin_password=$(cat "$MQTT_ADMIN_PASSWORD_FILE")

ctrl() {
    mosquitto_ctrl -h "${MQTT_ADMIN_HOST:-127.0.0.1}" -p "${MQTT_ADMIN_PORT:-1884}" \
        -u "${MQTT_ADMIN_USER:-admin}" -P "$admin_password" dynsec "$@" 2>&1 \
        | grep -v -e '^Warning: You are running mosquitto_ctrl without encryption' \
            -e '^This means all of the configuration changes' -e '^$' || true
}

# mosquitto_ctrl exits 0 even when the broker refuses a command: check the answer instead
must() {
    out=$(ctrl "$@")
    case "$out" in
        *rror*) die "$1 ${2:-}: $out" ;;
    esac
}

# Like must, but "already exists" is an answer too: returns 1 then, so that running init, service or
# vehicle again keeps what is there (and sets a service's new password)
create() {
    out=$(ctrl "$@")
    case "$out" in
        *"already exists"*) return 1 ;;
        *rror*) die "$1 ${2:-}: $out" ;;
    esac
}

read_password() {
    IFS= read -r password || [ -n "${password:-}" ] || die "no password on stdin"
    [ ${#password} -ge 16 ] || die "use a password of at least 16 characters (there is no login throttling)"
}

# the same rule as edge_agent.protocol: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit;
# and never a cloud service's name, so a car's forced client id cannot be a service's
check_vin() {
    printf '%s' "$1" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' || die "invalid vehicle id: $1"
    case "$1" in drivesight-*|admin|ingest|downlink) die "vehicle id $1 is reserved for the cloud" ;; esac
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    init)
        # Nothing is allowed unless a role allows it (the plugin's default lets every client receive what
        # its subscriptions match). `mosquitto_ctrl dynsec setDefaultACLAccess` cannot be used: in 2.0.11
        # it sends {"access": "deny"} where the plugin reads {"allow": false}, and the plugin ignores it.
        default_acl='{"acltype":"publishClientSend","allow":false},{"acltype":"publishClientReceive","allow":false}'
        default_acl="$default_acl"',{"acltype":"subscribe","allow":false},{"acltype":"unsubscribe","allow":true}'
        mosquitto_pub -h "${MQTT_ADMIN_HOST:-127.0.0.1}" -p "${MQTT_ADMIN_PORT:-1884}" \
            -u "${MQTT_ADMIN_USER:-admin}" -P "$admin_password" -q 1 -t '$CONTROL/dynamic-security/v1' \
            -m '{"commands":[{"command":"setDefaultACLAccess","acls":['"$default_acl"']}]}'
        ctrl getDefaultACLAccess | grep -Eq '^publishClientReceive +: deny' \
            || die "the broker did not take the default-deny ACLs: $(ctrl getDefaultACLAccess)"
        if create createRole ingest; then
            # ONLY the ingest may join the ingest's shared group, and it reads uplinks only through it
            must addRoleACL ingest subscribeLiteral '$share/ingest/ds/v1/+/+' allow
            must addRoleACL ingest publishClientReceive 'ds/v1/+/+' allow
            # the receipts it sends each car after a commit (a car forgets a message only on its receipt)
            must addRoleACL ingest publishClientSend 'ds/v1/+/down/receipt' allow
        fi
        if create createRole downlink; then
            must addRoleACL downlink publishClientSend 'ds/v1/+/down/+' allow
        fi
        ;;
    cloud)
        sh "$0" init
        sh "$0" service ingest ingest <"${MQTT_INGEST_PASSWORD_FILE:?set MQTT_INGEST_PASSWORD_FILE}"
        sh "$0" service downlink downlink <"${MQTT_DOWNLINK_PASSWORD_FILE:?set MQTT_DOWNLINK_PASSWORD_FILE}"
        ;;
    service)
        [ $# -eq 2 ] || die "usage: provision.sh service ingest|downlink USER"
        case "$1" in ingest|downlink) ;; *) die "unknown service role $1" ;; esac
        read_password
        # no client id binding: each ingest worker has its own (drivesight-ingest-<host>)
        if create createClient "$2" -p "$password"; then
            must addClientRole "$2" "$1"
        else
            must setClientPassword "$2" "$password"
        fi
        ;;
    vehicle)
        [ $# -ge 1 ] || die "usage: provision.sh vehicle VIN [--password]"
        vin=$1
        check_vin "$vin"
        if [ "${2:-}" = "--password" ]; then
            read_password
            if ! create createClient "$vin" -c "$vin" -p "$password"; then
                must setClientPassword "$vin" "$password"
                exit 0
            fi
        else
            # no -p and no terminal: a client without password, which can never log in with one
            # (`-p ""` would set the empty password instead)
            if ! create createClient "$vin" -c "$vin" </dev/null; then
                echo "provision.sh: $vin is provisioned already" >&2
                exit 0
            fi
        fi
        # Mosquitto 2.0 has no %u/%c in the plugin's ACLs: one role per car
        create createRole "vehicle-$vin" || true
        create addRoleACL "vehicle-$vin" publishClientSend "ds/v1/$vin/+" allow || true
        create addRoleACL "vehicle-$vin" publishClientReceive "ds/v1/$vin/down/+" allow || true
        create addRoleACL "vehicle-$vin" subscribePattern "ds/v1/$vin/down/+" allow || true
        must addClientRole "$vin" "vehicle-$vin"
        ;;
    remove-vehicle)
        [ $# -eq 1 ] || die "usage: provision.sh remove-vehicle VIN"
        check_vin "$1"
        must deleteClient "$1"
        must deleteRole "vehicle-$1"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
