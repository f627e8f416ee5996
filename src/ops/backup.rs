//! Backup and restore.
//!
//! A backup is one file plus a manifest beside it (`FILE.manifest.json`): when it was taken, the
//! store kind, the file's SHA-256, and where each tenant's audit chain stood. SQLite backups are
//! a consistent copy taken with `VACUUM INTO` while the server keeps writing; Postgres backups are
//! `pg_dump --format=custom` of an exported snapshot that the manifest was read from, checked
//! with `pg_restore --list`.
//!
//! A restore loads the file into an empty store and then makes sure it brings no revoked access
//! back ([`after_restore`]): revocations made after the backup are lost with it, so every
//! tenant's user CA is rotated and the old keys distrusted at once, the grants the backup holds
//! as active are revoked, sessions ended, database targets are swept for logins no record
//! accounts for, and the audit anchor is reset through
//! [`crate::audit::anchor::restored`], which records the range that was lost.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Ctx;
use crate::audit::anchor::{self, Restored};
use crate::crypto::MasterKey;
use crate::store::backup::{Occupancy, TenantHead};
use crate::store::{Backend, Store, backend_of, redact_url, sqlite_path};

pub const FORMAT: &str = "elevate-backup/1";

/// What a backup holds, written beside it as `FILE.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// The backup's file name (beside the manifest).
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub elevate_version: String,
    pub tenants: Vec<ManifestTenant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestTenant {
    pub tenant_id: Uuid,
    pub slug: String,
    pub head_seq: i64,
    #[serde(with = "hex::serde")]
    pub head_hash: Vec<u8>,
    pub checkpoint_seq: i64,
}

impl From<TenantHead> for ManifestTenant {
    fn from(h: TenantHead) -> Self {
        ManifestTenant {
            tenant_id: h.tenant_id,
            slug: h.slug,
            head_seq: h.head_seq,
            head_hash: h.head_hash,
            checkpoint_seq: h.checkpoint_seq,
        }
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// `FILE.manifest.json`.
pub fn manifest_path(backup: &Path) -> PathBuf {
    let mut name = backup.file_name().unwrap_or_default().to_os_string();
    name.push(".manifest.json");
    backup.with_file_name(name)
}

fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

fn partial_path(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!(".{name}.partial-{}", Uuid::new_v4().simple()))
}

fn owner_only(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = partial_path(path);
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A libpq URL without its password, and the password (passed as `PGPASSWORD`, so it does not
/// show in the process list).
fn libpq_url(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut u = url::Url::parse(url).map_err(|e| anyhow!("bad database URL: {e}"))?;
    let password = u.password().map(percent_decode);
    if password.is_some() {
        let _ = u.set_password(None);
    }
    Ok((u.to_string(), password))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a PostgreSQL client tool against `url`; its stderr becomes the error.
async fn pg_tool(tool: &str, url: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Vec<u8>> {
    let (dbname, password) = libpq_url(url)?;
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .arg(format!("--dbname={dbname}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().await.map_err(|e| {
        anyhow!(
            "cannot run {tool} ({e}): install the PostgreSQL client tools of the server's major \
             version or newer (Debian: postgresql-client)"
        )
    })?;
    if !out.status.success() {
        bail!(
            "{tool} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// `pg_restore --list FILE`: the archive's table of contents (proves the dump parses).
async fn pg_list(file: &Path) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("pg_restore")
        .arg("--list")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| anyhow!("cannot run pg_restore ({e}): install postgresql-client"))?;
    if !out.status.success() {
        bail!(
            "pg_restore --list {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let toc = String::from_utf8_lossy(&out.stdout).into_owned();
    for table in ["tenants", "audit_events", "ca_keys", "_sqlx_migrations"] {
        if !toc
            .lines()
            .any(|l| l.contains("TABLE DATA") && l.contains(&format!(" {table} ")))
        {
            bail!(
                "the dump {} has no data for table {table}: is this elevate's database?",
                file.display()
            );
        }
    }
    Ok(toc)
}

/// Takes a backup of the store at `database` into `out` (which must not exist) and writes its
/// manifest beside it. Safe while servers keep writing to the store.
pub async fn backup(database: &str, out: &Path, now: OffsetDateTime) -> anyhow::Result<Manifest> {
    let backend = backend_of(database)?;
    if out.exists() || manifest_path(out).exists() {
        bail!(
            "{} (or its manifest) already exists; backups never overwrite",
            out.display()
        );
    }
    let file = out
        .file_name()
        .ok_or_else(|| anyhow!("--out needs a file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = partial_path(out);
    let result = async {
        let heads = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(database)
                    .ok_or_else(|| anyhow!("{database} names no SQLite file"))?;
                if !path.exists() {
                    bail!("there is no database at {}", path.display());
                }
                let store = Store::connect(database).await?;
                let copied = store.sqlite_copy_into(&tmp).await;
                store.close().await;
                copied.context("copying the SQLite database")?;
                // The manifest describes the copy itself, not the live file.
                let copy_url = format!("sqlite:{}", tmp.display());
                let copy = Store::connect(&copy_url).await?;
                let heads = copy.tenant_heads().await;
                copy.close().await;
                heads?
            }
            Backend::Postgres => {
                let store = Store::connect(database).await?;
                let mut snapshot = store.pg_snapshot().await?;
                let heads = snapshot.heads().await;
                let dumped = match &heads {
                    Ok(_) => {
                        pg_tool(
                            "pg_dump",
                            database,
                            &[
                                "--format=custom".as_ref(),
                                format!("--snapshot={}", snapshot.id).as_ref(),
                                "--file".as_ref(),
                                tmp.as_os_str(),
                            ],
                        )
                        .await
                    }
                    Err(_) => Ok(Vec::new()),
                };
                let _ = snapshot.finish().await;
                store.close().await;
                let heads = heads.context(
                    "reading the audit heads (back up as a role that can read every tenant: \
                     the owner with BYPASSRLS, or a superuser)",
                )?;
                dumped?;
                pg_list(&tmp).await?;
                heads
            }
        };
        // Sealed secrets and token hashes: readable by the operator only, like the master key.
        owner_only(&tmp)?;
        let (sha256, bytes) = sha256_file(&tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
        let manifest = Manifest {
            format: FORMAT.into(),
            taken_at: now,
            store: backend_name(backend).into(),
            file,
            sha256,
            bytes,
            elevate_version: env!("CARGO_PKG_VERSION").into(),
            tenants: heads.into_iter().map(ManifestTenant::from).collect(),
        };
        write_atomically(
            &manifest_path(out),
            (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
        )?;
        Ok(manifest)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads the manifest beside `backup` and checks the file against it.
pub fn load_manifest(backup: &Path) -> anyhow::Result<Manifest> {
    let path = manifest_path(backup);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the manifest {} (a backup is restored together with its manifest)",
            path.display()
        )
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if manifest.format != FORMAT {
        bail!(
            "{}: unknown backup format {:?} (expected {FORMAT})",
            path.display(),
            manifest.format
        );
    }
    let (sha256, bytes) = sha256_file(backup)?;
    if sha256 != manifest.sha256 || bytes != manifest.bytes {
        bail!(
            "{} does not match its manifest (sha256 {sha256}, {bytes} bytes; the manifest says {}, {} bytes): \
             the file is damaged or not this backup",
            backup.display(),
            manifest.sha256,
            manifest.bytes
        );
    }
    Ok(manifest)
}

/// The newest backup in `dir` (by the manifests' `taken_at`), or `path` itself when it is a file.
pub fn latest_backup(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut best: Option<(OffsetDateTime, PathBuf)> = None;
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let p = entry?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(file) = name.strip_suffix(".manifest.json") else {
            continue;
        };
        let Ok(m) = std::fs::read_to_string(&p)
            .map_err(anyhow::Error::from)
            .and_then(|t| Ok(serde_json::from_str::<Manifest>(&t)?))
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(t, _)| m.taken_at > *t) {
            best = Some((m.taken_at, path.join(file)));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| anyhow!("no backup (FILE.manifest.json) in {}", path.display()))
}

/// Loads `backup` into the store at `database` and checks that what arrived is what the manifest
/// describes; refuses a store that holds tenants unless `force`. Nothing else: see
/// [`after_restore`]. On Postgres this runs `pg_restore` as the URL's role (a superuser, so the
/// roles and owners of the dump are kept); the `elevate_*` roles must exist in the cluster.
pub async fn load(
    backup: &Path,
    manifest: &Manifest,
    database: &str,
    force: bool,
) -> anyhow::Result<Store> {
    let backend = backend_of(database)?;
    if backend_name(backend) != manifest.store {
        bail!(
            "{} is a {} backup; {} is a {} store",
            backup.display(),
            manifest.store,
            redact_url(database),
            backend_name(backend)
        );
    }
    let refuse = |n: i64| {
        anyhow!(
            "{} already holds {n} tenant(s); a restore replaces everything in it: pass --force \
             if that is what you want (stop every server using it first)",
            redact_url(database)
        )
    };
    match backend {
        Backend::Sqlite => {
            let path =
                sqlite_path(database).ok_or_else(|| anyhow!("{database} names no SQLite file"))?;
            if path.exists() {
                let store = Store::connect(database).await?;
                let occupied = store.occupancy().await;
                store.close().await;
                if let Occupancy::Tenants(n) = occupied?
                    && !force
                {
                    return Err(refuse(n));
                }
            }
            let tmp = partial_path(&path);
            std::fs::copy(backup, &tmp)
                .with_context(|| format!("copying {} to {}", backup.display(), tmp.display()))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            for suffix in ["-wal", "-shm"] {
                let mut side = path.clone().into_os_string();
                side.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(side));
            }
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("replacing {}", path.display()))?;
        }
        Backend::Postgres => {
            let store = Store::connect(database).await?;
            let occupied = store.occupancy().await;
            store.close().await;
            let occupied = occupied?;
            if let Occupancy::Tenants(n) = occupied
                && !force
            {
                return Err(refuse(n));
            }
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "--exit-on-error".as_ref(),
                "--single-transaction".as_ref(),
                "--no-password".as_ref(),
            ];
            if occupied != Occupancy::NoSchema {
                args.push("--clean".as_ref());
                args.push("--if-exists".as_ref());
            }
            args.push(backup.as_os_str());
            pg_tool("pg_restore", database, &args)
                .await
                .context("restoring the dump (as a superuser; the elevate_* roles must exist)")?;
        }
    }
    let store = Store::connect(database).await?;
    let checked = async {
        // A backup from an older binary gets this binary's migrations.
        store.migrate().await.context("migrating the restored store")?;
        let heads = store.tenant_heads().await?;
        let found: Vec<ManifestTenant> = heads.into_iter().map(ManifestTenant::from).collect();
        if found != manifest.tenants {
            bail!(
                "the restored store does not match the manifest of {} (tenants or audit heads differ)",
                backup.display()
            );
        }
        Ok(())
    }
    .await;
    match checked {
        Ok(()) => Ok(store),
        Err(e) => {
            store.close().await;
            Err(e)
        }
    }
}

/// What [`after_restore`] did for one tenant.
#[derive(Debug, Clone)]
pub struct TenantRestored {
    pub slug: String,
    pub backup_head_seq: i64,
    /// What the audit anchor said: the range lost, or nothing recorded.
    pub anchor: Restored,
    pub new_ca_fingerprint: String,
    pub distrusted_keys: u64,
    /// Grants active or scheduled in the backup, revoked (their state since is unknown).
    pub grants_revoked: usize,
    pub sessions_ended: u64,
    pub orphans_dropped: usize,
    /// Targets that could not be swept (name, error): the server's start-up sweep retries them.
    pub sweep_failures: Vec<(String, String)>,
}

/// Makes a restored store safe to serve, per tenant, in this order: the audit anchor (through
/// [`anchor::restored`], which records `audit.restored` with the range the anchor knew and the
/// log no longer holds), a new user CA with every older key distrusted at once, every grant
/// that was active or scheduled in the backup revoked (any of them may have been revoked since),
/// a sweep of the database targets for logins no record accounts for (when `sweep`), and, with
/// every session ended, a `backup.restored` event naming the backup and what was done. `master` must carry the anchor directory of the
/// replicas' key.
pub async fn after_restore(
    store: &Store,
    master: &MasterKey,
    ctx: &Ctx,
    backup: &Path,
    manifest: &Manifest,
    sweep: bool,
) -> anyhow::Result<Vec<TenantRestored>> {
    let reason = format!(
        "restored from backup {} taken {}",
        manifest.file,
        manifest
            .taken_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    let mut out = Vec::new();
    for t in &manifest.tenants {
        let tenant = crate::admin::tenant_by_slug(store, &t.slug).await?;
        let anchor = anchor::restored(store, master, ctx, &tenant, Some(&reason))
            .await
            .with_context(|| format!("tenant {}: resetting the audit anchor", t.slug))?;
        let rotated = crate::ssh::ca::rotate_after_restore(store, master, ctx, &tenant, &reason)
            .await
            .with_context(|| format!("tenant {}: rotating the SSH user CA", t.slug))?;
        let grants_revoked =
            crate::broker::service::revoke_open_after_restore(store, ctx, &tenant, &reason)
                .await
                .with_context(|| format!("tenant {}: revoking the restored grants", t.slug))?;
        let (orphans_dropped, sweep_failures) = if sweep {
            crate::db_targets::cleanup::sweep(store, master, &tenant, ctx.now).await?
        } else {
            (0, Vec::new())
        };
        let lost = match &anchor {
            Restored::Reset {
                lost_from, lost_to, ..
            } => json!({ "from": lost_from, "to": lost_to }),
            Restored::NothingLost { .. } => json!({
                "from": t.head_seq + 1,
                "to": null,
                "note": "this replica's anchor knew nothing past the backup; anything written after it is lost unrecorded",
            }),
        };
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let sessions_ended = tx.delete_all_sessions().await?;
        tx.append_audit(
            &ctx.event("backup.restored", &t.slug).details(json!({
                "backup": backup.display().to_string(),
                "taken_at": manifest.taken_at.unix_timestamp(),
                "sha256": manifest.sha256,
                "backup_head_seq": t.head_seq,
                "backup_head_hash": hex::encode(&t.head_hash),
                "lost": lost,
                "ssh_user_ca": rotated["active"],
                "distrusted_keys": rotated["distrusted_keys"],
                "grants_revoked": grants_revoked.len(),
                "sessions_ended": sessions_ended,
                "orphan_logins_dropped": orphans_dropped,
                "targets_not_swept": sweep_failures.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                "swept": sweep,
            })),
            ctx.now,
        )
        .await?;
        tx.commit().await?;
        out.push(TenantRestored {
            slug: t.slug.clone(),
            backup_head_seq: t.head_seq,
            anchor,
            new_ca_fingerprint: rotated["active"]["fingerprint"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            distrusted_keys: rotated["distrusted_keys"].as_u64().unwrap_or(0),
            grants_revoked: grants_revoked.len(),
            sessions_ended,
            orphans_dropped,
            sweep_failures,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_sit_beside_the_backup_and_passwords_leave_the_url() {
        assert_eq!(
            manifest_path(Path::new("/b/elevate-2030.db")),
            PathBuf::from("/b/elevate-2030.db.manifest.json")
        );
        let (url, pw) = libpq_url("postgres://app:p%40ss@db:5432/x?sslmode=require").unwrap();
        assert_eq!(url, "postgres://app@db:5432/x?sslmode=require");
        assert_eq!(pw.as_deref(), Some("p@ss"));
        let (url, pw) = libpq_url("postgres://app@db/x").unwrap();
        assert_eq!(url, "postgres://app@db/x");
        assert_eq!(pw, None);
    }
}
