//! The restore drill (the "annual DR test" as one command): restores a backup into a scratch
//! store — a temporary SQLite file, or a scratch database created on a Postgres server and dropped
//! afterwards — and checks what a real restore depends on: the file matches its manifest, every
//! tenant's audit chain and checkpoints verify and end where the manifest says, every sealed
//! secret opens with the master key, and the restore's CA rotation leaves only the new key
//! trusted. It never touches database targets or this replica's audit anchors.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::backup::{Manifest, load, load_manifest};
use crate::audit::Ctx;
use crate::crypto::MasterKey;
use crate::model::{CaKey, KeyPurpose, Target};
use crate::store::{AuditSink, Store, Webhook, redact_url};

/// One check of the drill.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub secs: f64,
}

/// What the drill did and found.
#[derive(Debug, Clone)]
pub struct Report {
    pub backup: PathBuf,
    /// The backup was taken by the drill itself (`--database`) and is deleted afterwards.
    pub fresh: bool,
    pub manifest: Option<Manifest>,
    pub started_at: OffsetDateTime,
    pub scratch: String,
    pub restore_secs: f64,
    pub total_secs: f64,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }

    /// The report as text (what `--report FILE` writes and the command prints).
    pub fn render(&self) -> String {
        let when = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let mut s = String::from("# elevate restore drill\n\n");
        s.push_str(&format!("started:  {}\n", when(self.started_at)));
        s.push_str(&format!(
            "backup:   {}{}\n",
            self.backup.display(),
            if self.fresh {
                " (taken for this drill, then deleted)"
            } else {
                ""
            }
        ));
        if let Some(m) = &self.manifest {
            let age = self.started_at - m.taken_at;
            s.push_str(&format!(
                "taken:    {} ({} h before the drill), {} store, {} bytes, sha256 {}\n",
                when(m.taken_at),
                age.whole_hours(),
                m.store,
                m.bytes,
                m.sha256
            ));
            s.push_str("restored: ");
            let tenants: Vec<String> = m
                .tenants
                .iter()
                .map(|t| {
                    format!(
                        "{} (audit head seq {}, checkpoint seq {})",
                        t.slug, t.head_seq, t.checkpoint_seq
                    )
                })
                .collect();
            if tenants.is_empty() {
                s.push_str("no tenants");
            } else {
                s.push_str(&tenants.join(", "));
            }
            s.push('\n');
        }
        s.push_str(&format!("scratch:  {}\n", self.scratch));
        s.push_str(&format!(
            "took:     restore {:.2} s, drill {:.2} s\n\nchecks:\n",
            self.restore_secs, self.total_secs
        ));
        for c in &self.checks {
            s.push_str(&format!(
                "  {}  {} ({:.2} s): {}\n",
                if c.ok { "PASS" } else { "FAIL" },
                c.name,
                c.secs,
                c.detail
            ));
        }
        s.push_str(
            "\nnot exercised: the sweep of database targets and the reset of audit anchors (a real \
             restore does both; they act outside the scratch store)\n",
        );
        s.push_str(&format!(
            "\nresult: {} ({} of {} checks failed)\n",
            if self.ok() { "PASS" } else { "FAIL" },
            self.failed(),
            self.checks.len()
        ));
        s
    }
}

/// Where to restore for the drill.
pub enum Scratch {
    /// A SQLite file in this directory (removed afterwards).
    SqliteDir(PathBuf),
    /// A database created on the server of this URL (a role with CREATEDB, superuser for
    /// `pg_restore`), dropped afterwards.
    Postgres(String),
}

struct Recorder {
    checks: Vec<Check>,
}

impl Recorder {
    fn record<T>(
        &mut self,
        name: impl Into<String>,
        started: Instant,
        result: anyhow::Result<(T, String)>,
    ) -> Option<T> {
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok((v, detail)) => {
                self.checks.push(Check {
                    name: name.into(),
                    ok: true,
                    detail,
                    secs,
                });
                Some(v)
            }
            Err(e) => {
                self.checks.push(Check {
                    name: name.into(),
                    ok: false,
                    detail: format!("{e:#}"),
                    secs,
                });
                None
            }
        }
    }
}

/// Runs the drill on `backup`. Failures are checks in the report, not errors: the report is
/// always written.
pub async fn drill(
    backup: &Path,
    fresh: bool,
    scratch: Scratch,
    master: &MasterKey,
    ctx: &Ctx,
) -> Report {
    let started = Instant::now();
    let mut rec = Recorder { checks: Vec::new() };
    let t = Instant::now();
    let manifest = rec.record(
        "manifest and checksum",
        t,
        load_manifest(backup).map(|m| {
            let d = format!("sha256 matches, {} tenant(s)", m.tenants.len());
            (m, d)
        }),
    );
    let mut report = Report {
        backup: backup.to_path_buf(),
        fresh,
        manifest: manifest.clone(),
        started_at: ctx.now,
        scratch: String::new(),
        restore_secs: 0.0,
        total_secs: 0.0,
        checks: Vec::new(),
    };
    if let Some(manifest) = &manifest {
        let (url, cleanup) = match &scratch {
            Scratch::SqliteDir(dir) => {
                let path = dir.join(format!("drill-{}.db", Uuid::new_v4().simple()));
                report.scratch = format!("SQLite file {} (removed)", path.display());
                (format!("sqlite:{}", path.display()), Cleanup::File(path))
            }
            Scratch::Postgres(server) => {
                let name = format!("elevate_drill_{}", Uuid::new_v4().simple());
                let url = with_database(server, &name);
                report.scratch = format!(
                    "Postgres database {name} on {} (dropped)",
                    redact_url(server)
                );
                let t = Instant::now();
                let created = crate::store::backup::create_database(server, &name).await;
                rec.record(
                    "create scratch database",
                    t,
                    created
                        .map(|()| ((), name.clone()))
                        .map_err(anyhow::Error::from),
                );
                (url, Cleanup::Database(server.clone(), name))
            }
        };
        if url_ok(&url, &rec).is_ok() {
            let t = Instant::now();
            let restored = load(backup, manifest, &url, false).await;
            report.restore_secs = t.elapsed().as_secs_f64();
            if let Some(store) = rec.record(
                "restore into the scratch store",
                t,
                restored.map(|s| {
                    (
                        s,
                        "every tenant's audit head matches the manifest".to_owned(),
                    )
                }),
            ) {
                checks(&store, master, ctx, manifest, &mut rec).await;
                store.close().await;
            }
        }
        cleanup.run().await;
    }
    report.total_secs = started.elapsed().as_secs_f64();
    report.checks = rec.checks;
    report
}

fn url_ok(url: &str, rec: &Recorder) -> anyhow::Result<()> {
    // A failed scratch database creation already failed the drill.
    if rec.checks.iter().any(|c| !c.ok) {
        return Err(anyhow!("no scratch store for {}", redact_url(url)));
    }
    Ok(())
}

enum Cleanup {
    File(PathBuf),
    Database(String, String),
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::File(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut f = p.clone().into_os_string();
                    f.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(f));
                }
            }
            Cleanup::Database(server, name) => {
                if let Err(e) = crate::store::backup::drop_database(&server, &name).await {
                    tracing::warn!(database = %name, error = %e, "could not drop the drill's scratch database");
                }
            }
        }
    }
}

/// `server` with its database replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    match url::Url::parse(server) {
        Ok(mut u) => {
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        Err(_) => server.to_owned(),
    }
}

async fn checks(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    manifest: &Manifest,
    rec: &mut Recorder,
) {
    for t in &manifest.tenants {
        let tenant = match crate::admin::tenant_by_slug(store, &t.slug).await {
            Ok(x) => x,
            Err(e) => {
                rec.record::<()>(format!("tenant {}", t.slug), Instant::now(), Err(e.into()));
                continue;
            }
        };
        let started = Instant::now();
        let (pinned, how) = match audit_keys_unsealed(store, master, tenant.tenant_id).await {
            Ok(p) => p,
            Err(e) => {
                rec.record::<()>(
                    format!("audit chain and checkpoints of {}", t.slug),
                    started,
                    Err(e),
                );
                continue;
            }
        };
        let verified = crate::audit::verify::verify_store(store, tenant.tenant_id, pinned)
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r.map_err(|b| anyhow!("{b}")))
            .and_then(|s| {
                if s.head_seq != t.head_seq {
                    return Err(anyhow!(
                        "head seq {} is not the manifest's {}",
                        s.head_seq,
                        t.head_seq
                    ));
                }
                Ok((
                    (),
                    format!(
                        "{s}; {} events after the latest checkpoint; {how}",
                        s.head_seq - s.signed_through
                    ),
                ))
            });
        rec.record(
            format!("audit chain and checkpoints of {}", t.slug),
            started,
            verified,
        );
        let started = Instant::now();
        let opened = sealed_secrets_open(store, master, tenant.tenant_id).await;
        rec.record(format!("sealed secrets of {}", t.slug), started, opened);
        let started = Instant::now();
        let rotated = rotation_distrusts(store, master, ctx, &tenant).await;
        rec.record(
            format!("CA rotation after restore for {}", t.slug),
            started,
            rotated,
        );
    }
}

/// The tenant's audit public keys as the master key vouches for them (derived from the private
/// halves it unseals), so a backup whose key table was swapped and chain re-signed does not pass;
/// `None` (the stored public keys) when a key no longer has its private half.
async fn audit_keys_unsealed(
    store: &Store,
    master: &MasterKey,
    tenant_id: Uuid,
) -> anyhow::Result<(Option<Vec<ssh_key::PublicKey>>, String)> {
    let mut tx = store.tenant(tenant_id).await?;
    let keys = tx.ca_keys(KeyPurpose::AuditSigning).await?;
    tx.commit().await?;
    if keys.iter().any(|k| k.private_sealed.is_empty()) {
        return Ok((
            None,
            "checkpoints checked against the stored public keys (a retired audit key has no private half to vouch for it)".into(),
        ));
    }
    let mut pinned = Vec::new();
    for k in &keys {
        let private = crate::signing_keys::open_signing_key(master, k)
            .map_err(|e| anyhow!("audit key {} does not open with the master key: {e}", k.id))?;
        if private.public_key().to_openssh().ok().as_deref() != Some(k.public_key.trim()) {
            return Err(anyhow!(
                "the stored public half of audit key {} is not its private half's",
                k.id
            ));
        }
        pinned.push(private.public_key().clone());
    }
    Ok((
        Some(pinned),
        "checkpoints checked against the keys the master key unseals".into(),
    ))
}

/// Every sealed secret of a tenant opens with the master key: signing keys that still have a
/// private half, target admin passwords, webhook and audit-sink secrets.
async fn sealed_secrets_open(
    store: &Store,
    master: &MasterKey,
    tenant_id: Uuid,
) -> anyhow::Result<((), String)> {
    let mut tx = store.tenant(tenant_id).await?;
    let mut keys = tx.ca_keys(KeyPurpose::SshUserCa).await?;
    keys.extend(tx.ca_keys(KeyPurpose::AuditSigning).await?);
    let targets = tx.targets().await?;
    let hooks = tx.webhooks().await?;
    let sinks = tx.audit_sinks().await?;
    tx.commit().await?;
    let mut opened = 0;
    let mut failed = Vec::new();
    let mut open = |what: String, aad: String, sealed: &[u8]| match master.open(&aad, sealed) {
        Ok(_) => opened += 1,
        Err(e) => failed.push(format!("{what}: {e}")),
    };
    for k in keys.iter().filter(|k| !k.private_sealed.is_empty()) {
        open(
            format!("{} key {}", k.purpose, k.id),
            CaKey::seal_context(k.tenant_id, k.id),
            &k.private_sealed,
        );
    }
    for t in &targets {
        open(
            format!("target {}", t.name),
            Target::seal_context(t.tenant_id, t.id),
            &t.admin_secret_sealed,
        );
    }
    for h in &hooks {
        open(
            format!("webhook {}", h.id),
            Webhook::seal_context(h.tenant_id, h.id),
            &h.secret_sealed,
        );
    }
    for s in &sinks {
        if let Some(sealed) = &s.secret_sealed {
            open(
                format!("audit sink {}", s.id),
                AuditSink::seal_context(s.tenant_id, s.id),
                sealed,
            );
        }
    }
    if failed.is_empty() {
        Ok((
            (),
            format!("{opened} opened with master key {}", master.active_key_id()),
        ))
    } else {
        Err(anyhow!(
            "{} of {} do not open: {}",
            failed.len(),
            opened + failed.len(),
            failed.join("; ")
        ))
    }
}

/// The restore's CA rotation, on the scratch store: afterwards `user-ca.pub` holds exactly the
/// new key and none of the backup's.
async fn rotation_distrusts(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    tenant: &crate::model::Tenant,
) -> anyhow::Result<((), String)> {
    let before: Vec<String> = {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let keys = tx.ca_keys(KeyPurpose::SshUserCa).await?;
        tx.commit().await?;
        keys.into_iter()
            .map(|k| k.public_key.trim().to_owned())
            .collect()
    };
    crate::ssh::ca::rotate_after_restore(store, master, ctx, tenant, "restore drill")
        .await
        .context("rotating")?;
    let published = crate::ssh::ca::trusted_keys(store, tenant, ctx.now).await?;
    let lines: Vec<&str> = published.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 || before.iter().any(|k| lines.contains(&k.as_str())) {
        return Err(anyhow!(
            "after rotation user-ca.pub holds {} key(s), {} of them from the backup",
            lines.len(),
            before
                .iter()
                .filter(|k| lines.contains(&k.as_str()))
                .count()
        ));
    }
    Ok((
        (),
        format!(
            "{} old key(s) distrusted, only the new one published",
            before.len()
        ),
    ))
}
