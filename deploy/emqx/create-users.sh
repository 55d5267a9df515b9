#!/bin/sh
# Creates, or updates the password of, the cloud services' broker users in EMQX's built-in database
# (the password authenticator of emqx.conf), through the EMQX REST API. Run once by the emqx-users service of
# docker-compose.yml; safe to run again (an existing user gets the password given now).
#
# Environment: EMQX_API (http://HOST:18083/api/v5), DASHBOARD_PASSWORD (the dashboard's admin password),
# INGEST_PASSWORD and DOWNLINK_PASSWORD. Passwords: letters and digits, at least 16 (openssl rand -hex 24).
set -eu

die() { echo "create-users.sh: $*" >&2; exit 1; }

for name in DASHBOARD_PASSWORD INGEST_PASSWORD DOWNLINK_PASSWORD; do
    eval "value=\${$name:-}"
    printf '%s' "$value" | grep -Eq '^[A-Za-z0-9]{16,}$' || die "$name: use 16 or more letters and digits"
done

token=$(curl -sS -f -X POST "$EMQX_API/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$DASHBOARD_PASSWORD\"}" \
    | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p')
[ -n "$token" ] || die "login to $EMQX_API failed"

users="$EMQX_API/authentication/password_based%3Abuilt_in_database/users"
for entry in "ingest $INGEST_PASSWORD" "downlink $DOWNLINK_PASSWORD"; do
    user=${entry%% *}
    password=${entry#* }
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$users" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"user_id\":\"$user\",\"password\":\"$password\"}")
    case "$code" in
        200|201) echo "created broker user $user" ;;
        409)
            curl -sS -f -o /dev/null -X PUT "$users/$user" \
                -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
                -d "{\"password\":\"$password\"}" || die "updating $user failed"
            echo "updated the password of broker user $user" ;;
        *) die "creating $user: HTTP $code" ;;
    esac
done
