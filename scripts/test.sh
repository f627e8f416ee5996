#!/usr/bin/env bash
# Runs elevate's tests against the real components they need. Checks each component, starts it
# when it is installed but down, and says exactly what is missing otherwise.
#   ELEVATE_TEST_POSTGRES_URL  superuser URL (default postgres://postgres@127.0.0.1:5432/test)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${ELEVATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
missing=()

say() { printf '==> %s\n' "$*"; }

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
    psql "$PG_URL" -XAtqc "SELECT datname FROM pg_database WHERE datname LIKE 'elevate\_t\_%'" |
        while read -r db; do psql "$PG_URL" -Xqc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
}

mariadb_up() { mysqladmin -uroot -h127.0.0.1 --connect-timeout=2 ping >/dev/null 2>&1; }

ensure_mariadb() {
    # Needed by the database-credential tests; started here so every suite finds it.
    if ! command -v mysqladmin >/dev/null; then
        say "MariaDB is not installed (apt-get install -y mariadb-server); the current tests do not need it yet"
        return
    fi
    if ! mariadb_up && [ -x /usr/sbin/mariadbd ]; then
        say "starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do mariadb_up && break; sleep 1; done
    fi
    mariadb_up && say "MariaDB: up" || say "MariaDB: not reachable at 127.0.0.1:3306"
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
    if [ ! -d tests/support/browser/node_modules/playwright-core ]; then
        say "installing playwright-core (npm ci; it uses the system Chromium, no browser download)"
        (cd tests/support/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent) || true
    fi
    [ -d tests/support/browser/node_modules/playwright-core ] ||
        missing+=("playwright-core for the browser tests: (cd tests/support/browser && npm ci)")
}

ensure_openssh() {
    # The certificate tests run a real sshd on a loopback port and log in with the real ssh client.
    [ -x /usr/sbin/sshd ] || missing+=("OpenSSH's server at /usr/sbin/sshd (apt-get install -y openssh-server)")
    for tool in ssh ssh-keygen ssh-agent ssh-add; do
        command -v "$tool" >/dev/null || missing+=("$tool (apt-get install -y openssh-client)")
    done
}

command -v cargo >/dev/null || missing+=("Rust (cargo), from https://rustup.rs")
ensure_openssh
ensure_smtp_server
ensure_oidc_provider
ensure_browser
ensure_postgres
ensure_mariadb

if [ ${#missing[@]} -gt 0 ]; then
    echo "The tests need components that are missing:" >&2
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    exit 1
fi

say "cargo test"
exec cargo test --all-targets "$@"
