#!/bin/sh
# Creates, or updates the password of, the cloud services' broker users in EMQX's built-in database
# (the password authenticator of emqx.conf), through the EMQX REST API. Run by the emqx-users service of
# docker-compose.yml on every start, so a changed password file takes effect; safe to run again.
#
# Environment: EMQX_API (http://HOST:18083/api/v5), DASHBOARD_PASSWORD (the dashboard's admin password),
# INGEST_PASSWORD_FILE and DOWNLINK_PASSWORD_FILE (deploy/secrets/mqtt-ingest.password and
# mqtt-downlink.password, mounted as compose secrets). Passwords: 16 characters or more, no '"' or '\'.
set -eu

die() { echo "create-users.sh: $*" >&2; exit 1; }

check() {  # NAME VALUE: long enough, and safe inside the JSON strings below
    [ ${#2} -ge 16 ] || die "$1: use 16 characters or more (there is no login throttling)"
    case "$2" in *'"'* | *'\'*) die "$1: no '\"' or '\\' please" ;; esac
}

check DASHBOARD_PASSWORD "${DASHBOARD_PASSWORD:-}"
ingest_password=$(cat "${INGEST_PASSWORD_FILE:?}") || die "cannot read $INGEST_PASSWORD_FILE"
downlink_password=$(cat "${DOWNLINK_PASSWORD_FILE:?}") || die "cannot read $DOWNLINK_PASSWORD_FILE"
check INGEST_PASSWORD_FILE "$ingest_password"
check DOWNLINK_PASSWORD_FILE "$downlink_password"

token=$(curl -sS -f -X POST "$EMQX_API/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$DASHBOARD_PASSWORD\"}" \
    | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
[ -n "$token" ] || die "login to $EMQX_API failed"

users="$EMQX_API/authentication/password_based%3Abuilt_in_database/users"
create() {  # USER PASSWORD
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$users" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"user_id\":\"$1\",\"password\":\"$2\"}")
    case "$code" in
        200|201) echo "created broker user $1" ;;
        409)
            curl -sS -f -o /dev/null -X PUT "$users/$1" \
                -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
                -d "{\"password\":\"$2\"}" || die "updating $1 failed"
            echo "set the password of broker user $1" ;;
        *) die "creating $1: HTTP $code" ;;
    esac
}

create ingest "$ingest_password"
create downlink "$downlink_password"
