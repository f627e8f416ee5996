#!/usr/bin/env bash
# Runs elevate's tests against the real components they need. Checks each component, starts it
# when it is installed but down, and says exactly what is missing otherwise.
#   ELEVATE_TEST_POSTGRES_URL  superuser URL (default postgres://postgres@127.0.0.1:5432/test)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${ELEVATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
missing=()

say() { printf '==> %s\n' "$*"; }

ensure_packages() {
    # A fresh machine of this kind lacks sshd and Chromium (and maybe more): install what is missing
    # from Debian's packages when we may (root with apt-get); otherwise the checks below name it.
    local need=()
    command -v psql >/dev/null || need+=(postgresql postgresql-client)
    command -v mysqladmin >/dev/null || need+=(mariadb-server mariadb-client)
    command -v python3 >/dev/null || need+=(python3 python3-pip)
    command -v node >/dev/null || need+=(nodejs npm)
    [ -x /usr/bin/chromium ] || need+=(chromium)
    { [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null; } || need+=(openssh-server openssh-client)
    [ ${#need[@]} -gt 0 ] || return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || true
    fi
}

pg_up() { psql "$PG_URL" -XAtqc 'SELECT 1' >/dev/null 2>&1; }

ensure_postgres() {
    if ! command -v psql >/dev/null; then
        missing+=("PostgreSQL client and server (apt-get install -y postgresql postgresql-client)")
        return
    fi
    if ! pg_up; then
        if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
            say "starting PostgreSQL"
            for version in $(ls /etc/postgresql); do
                pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
            done
            for _ in $(seq 1 30); do pg_up && break; sleep 1; done
        fi
    fi
    if ! pg_up; then
        missing+=("a PostgreSQL server at $PG_URL with trust auth for 'postgres' and a 'test' database (or set ELEVATE_TEST_POSTGRES_URL)")
        return
    fi
    say "PostgreSQL: $(psql "$PG_URL" -XAtqc 'SHOW server_version')"
    # Leftovers of earlier runs: each test makes its own elevate_t_* database.
    psql "$PG_URL" -XAtqc "SELECT datname FROM pg_database WHERE datname LIKE 'elevate\_t\_%' OR datname LIKE 'et\_%'" |
        while read -r db; do psql "$PG_URL" -Xqc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
}

ensure_postgres_password_logins() {
    # The database-login tests must see Postgres check passwords (and VALID UNTIL), which trust
    # auth does not: members of elevate_password_logins authenticate with scram-sha-256 over TCP.
    pg_up || return 0
    local hba
    hba=$(psql "$PG_URL" -XAtqc 'SHOW hba_file')
    psql "$PG_URL" -Xqc "DO \$\$ BEGIN CREATE ROLE elevate_password_logins NOLOGIN;
        EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
    if ! grep -q '+elevate_password_logins' "$hba" 2>/dev/null; then
        if [ -w "$hba" ]; then
            say "pg_hba.conf: scram-sha-256 for members of elevate_password_logins"
            local line='host all +elevate_password_logins 127.0.0.1/32 scram-sha-256'
            # Before the first host line, so it wins over a trust line.
            awk -v l="$line" '!done && /^host/ { print l; done=1 } { print }' "$hba" > "$hba.elevate" &&
                cat "$hba.elevate" > "$hba" && rm -f "$hba.elevate"
            grep -q '+elevate_password_logins' "$hba" || echo "$line" >> "$hba"
            psql "$PG_URL" -XAtqc 'SELECT pg_reload_conf()' >/dev/null
        else
            missing+=("a pg_hba.conf line 'host all +elevate_password_logins 127.0.0.1/32 scram-sha-256' before any trust line in $hba")
        fi
    fi
    # Leftover test roles (et_*) of earlier runs, and expired elevate logins of test tenants.
    psql "$PG_URL" -XAtqc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'et\_%' OR (rolname LIKE 'elv\_%' AND rolvaliduntil < now())" |
        while read -r role; do
            psql "$PG_URL" -Xqc "DROP OWNED BY \"$role\"; DROP ROLE IF EXISTS \"$role\"" >/dev/null 2>&1 || true
        done
}

mariadb_up() { mysqladmin -uroot -h127.0.0.1 --connect-timeout=2 ping >/dev/null 2>&1; }

ensure_mariadb() {
    # The database-login tests make and drop MariaDB users on it.
    if ! command -v mysqladmin >/dev/null; then
        missing+=("MariaDB server and client (apt-get install -y mariadb-server mariadb-client)")
        return
    fi
    if ! mariadb_up && [ -x /usr/sbin/mariadbd ]; then
        say "starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do mariadb_up && break; sleep 1; done
    fi
    if mariadb_up; then
        say "MariaDB: up"
        # Leftovers of earlier runs: each test makes its own et_* database, roles and users.
        mysql -uroot -h127.0.0.1 -N -e "SELECT CONCAT('DROP DATABASE IF EXISTS \`', SCHEMA_NAME, '\`;') FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'et\\_%'
            UNION ALL SELECT CONCAT('DROP ROLE IF EXISTS ', QUOTE(User), ';') FROM mysql.user WHERE is_role = 'Y' AND User LIKE 'et\\_%'
            UNION ALL SELECT CONCAT('DROP USER IF EXISTS ', QUOTE(User), '@', QUOTE(Host), ';') FROM mysql.user WHERE is_role = 'N' AND (User LIKE 'et\\_%' OR User LIKE 'elv\\_%')" 2>/dev/null |
            mysql -uroot -h127.0.0.1 2>/dev/null || true
    else
        missing+=("a MariaDB server at 127.0.0.1:3306 (root, empty password)")
    fi
}

ensure_smtp_server() {
    # The sign-in tests deliver mail to a real SMTP server (aiosmtpd, tests/support/smtp_sink.py).
    if ! command -v python3 >/dev/null; then
        missing+=("python3 with aiosmtpd (apt-get install -y python3 python3-pip; pip install aiosmtpd)")
        return
    fi
    if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
        say "installing aiosmtpd (SMTP server for the sign-in tests)"
        python3 -m pip install -q aiosmtpd >/dev/null 2>&1 || true
    fi
    python3 -c 'import aiosmtpd' 2>/dev/null || missing+=("the Python package aiosmtpd (python3 -m pip install aiosmtpd)")
}

ensure_schemathesis() {
    # The API tests run schemathesis (a third-party OpenAPI fuzzer) against the live server.
    command -v python3 >/dev/null || return 0
    if ! python3 -c 'import schemathesis' 2>/dev/null; then
        say "installing schemathesis (checks the API against its OpenAPI document)"
        python3 -m pip install -q schemathesis >/dev/null 2>&1 || true
    fi
    python3 -c 'import schemathesis' 2>/dev/null || missing+=("the Python package schemathesis (python3 -m pip install schemathesis)")
}

ensure_oidc_provider() {
    # The SSO tests sign in through a real OpenID provider (oidc-provider on node, tests/support/oidc).
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        missing+=("Node.js 20+ and npm (apt-get install -y nodejs npm)")
        return
    fi
    if [ ! -d tests/support/oidc/node_modules/oidc-provider ]; then
        say "installing the test OpenID provider (npm ci)"
        (cd tests/support/oidc && npm ci --no-audit --no-fund --silent) || true
    fi
    [ -d tests/support/oidc/node_modules/oidc-provider ] ||
        missing+=("the test OpenID provider: (cd tests/support/oidc && npm ci)")
}

ensure_browser() {
    # The page tests drive the system's headless Chromium with playwright-core (tests/support/browser).
    [ -x /usr/bin/chromium ] || missing+=("Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    command -v npm >/dev/null || return
    if [ ! -d tests/support/browser/node_modules/playwright-core ] || [ ! -d tests/support/browser/node_modules/axe-core ]; then
        say "installing playwright-core (npm ci; it uses the system Chromium, no browser download)"
        (cd tests/support/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent) || true
    fi
    { [ -d tests/support/browser/node_modules/playwright-core ] && [ -d tests/support/browser/node_modules/axe-core ]; } ||
        missing+=("playwright-core and axe-core for the browser tests: (cd tests/support/browser && npm ci)")
}

ensure_openssh() {
    # The certificate tests run a real sshd on a loopback port and log in with the real ssh client.
    [ -x /usr/sbin/sshd ] || missing+=("OpenSSH's server at /usr/sbin/sshd (apt-get install -y openssh-server)")
    for tool in ssh ssh-keygen ssh-agent ssh-add; do
        command -v "$tool" >/dev/null || missing+=("$tool (apt-get install -y openssh-client)")
    done
}

ensure_packages
command -v cargo >/dev/null || missing+=("Rust (cargo), from https://rustup.rs")
ensure_openssh
ensure_smtp_server
ensure_schemathesis
ensure_oidc_provider
ensure_browser
ensure_postgres
ensure_postgres_password_logins
ensure_mariadb

if [ ${#missing[@]} -gt 0 ]; then
    echo "The tests need components that are missing:" >&2
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    exit 1
fi

say "cargo test"
cargo test --all-targets "$@"
if [ $# -eq 0 ]; then
    # Tests that need the machine to themselves (three replicas under faults on a PostgreSQL
    # cluster of their own): alone, after the parallel suite.
    say "serial tests (cargo test --test it -- --ignored serial_)"
    cargo test --test it -- --ignored serial_ --test-threads=1
fi
