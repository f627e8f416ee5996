//! The master key file (mode, owner, where it lives) and the secrets it seals (CA and audit keys,
//! target admin passwords, webhook and sink secrets): each must open.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::Report;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::model::{KeyPurpose, Target};
use crate::store::{AuditSink, Store, Webhook};

pub fn key_file(report: &mut Report, config: &Config, path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        // Loading it fails too and says so (`master_key.load`).
        return;
    };
    let shown = path.display();
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let who = match (mode & 0o007 != 0, mode & 0o070 != 0) {
            (true, true) => "its group and every user",
            (true, false) => "every user",
            _ => "its group",
        };
        report.error(
            "master_key.mode",
            format!("the master key {shown} has mode {mode:04o}: {who} can read or change it"),
            format!("chmod 600 {shown}"),
        );
    } else {
        report.ok(
            "master_key.mode",
            format!("the master key {shown} has mode {mode:04o}"),
        );
    }
    // Whoever may write the directory may swap the key for one of their own.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::metadata(dir)
        && d.permissions().mode() & 0o022 != 0
        && d.permissions().mode() & 0o1000 == 0
    {
        report.error(
            "master_key.directory",
            format!(
                "the master key's directory {} has mode {:04o}: other users can replace the key",
                dir.display(),
                d.permissions().mode() & 0o7777
            ),
            format!("chmod go-w {}", dir.display()),
        );
    }
    // The directory /proc/self belongs to the process's effective user.
    if let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
        if meta.uid() == me {
            report.ok(
                "master_key.owner",
                format!("the master key is owned by the user running doctor (uid {me})"),
            );
        } else {
            report.warn(
                "master_key.owner",
                format!(
                    "the master key is owned by uid {} but doctor runs as uid {me}",
                    meta.uid()
                ),
                format!(
                    "run doctor as the service user (e.g. `sudo -u elevate elevate doctor`); \
                     the key should belong to that user alone: chown elevate: {shown}"
                ),
            );
        }
    }
    if let Some(db) = crate::store::sqlite_path(config.database_url.expose()) {
        let dir = db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let inside = match (dir.canonicalize(), path.canonicalize()) {
            (Ok(d), Ok(k)) => k.starts_with(d),
            _ => false,
        };
        if inside {
            report.warn(
                "master_key.location",
                format!(
                    "the master key {shown} lives in the database's directory {}: whoever copies \
                     that directory (a backup, a snapshot) gets the key that opens it",
                    dir.display()
                ),
                "move the key out of the data directory (e.g. /etc/elevate/master.key, mode 0600) \
                 and set ELEVATE_MASTER_KEY_FILE; back it up separately",
            );
        } else {
            report.ok(
                "master_key.location",
                "the master key is kept apart from the database",
            );
        }
    }
}

pub async fn sealed_secrets(report: &mut Report, store: &Store, master: &MasterKey) {
    let (checked, failed) = match open_all(store, master).await {
        Ok(r) => r,
        Err(e) => {
            report.error(
                "secrets.sealed",
                format!("cannot read the sealed secrets: {e}"),
                "check the database URL",
            );
            return;
        }
    };
    if failed.is_empty() {
        report.ok(
            "secrets.sealed",
            format!(
                "all {checked} sealed secrets open with master key {}",
                master.active_key_id()
            ),
        );
    } else {
        report.error(
            "secrets.sealed",
            format!(
                "{} of {checked} sealed secrets do not open with this master key: {}",
                failed.len(),
                failed.join("; ")
            ),
            "use the master key file this database was created with (all its keys, one per line); \
             a secret that no key opens must be set again (`elevate admin target set`, \
             `elevate admin ca rotate`, the webhook or sink added again)",
        );
    }
}

/// Opens every sealed secret of every tenant: (how many were tried, which failed).
async fn open_all(
    store: &Store,
    master: &MasterKey,
) -> crate::error::AppResult<(usize, Vec<String>)> {
    let mut checked = 0;
    let mut failed = Vec::new();
    for tenant in store.tenants().await? {
        let mut tx = store.tenant(tenant.tenant_id).await?;
        let mut keys = tx.ca_keys(KeyPurpose::SshUserCa).await?;
        keys.extend(tx.ca_keys(KeyPurpose::AuditSigning).await?);
        let targets = tx.targets().await?;
        let webhooks = tx.webhooks().await?;
        let sinks = tx.audit_sinks().await?;
        tx.commit().await?;
        let slug = &tenant.slug;
        // Retired keys have had their private half destroyed: nothing to open.
        for k in keys.iter().filter(|k| !k.private_sealed.is_empty()) {
            checked += 1;
            if let Err(e) = crate::signing_keys::open_signing_key(master, k) {
                failed.push(format!(
                    "{slug}: {} key {} ({e}; sealed under master key {})",
                    k.purpose,
                    k.id,
                    MasterKey::key_id_of(&k.private_sealed).unwrap_or_default()
                ));
            }
        }
        let mut try_open = |what: String, aad: String, sealed: &[u8]| {
            checked += 1;
            if let Err(e) = master.open(&aad, sealed) {
                failed.push(format!("{slug}: {what} ({e})"));
            }
        };
        for t in &targets {
            try_open(
                format!("target {} admin password", t.name),
                Target::seal_context(t.tenant_id, t.id),
                &t.admin_secret_sealed,
            );
        }
        for w in &webhooks {
            try_open(
                format!("webhook {} secret", w.url),
                Webhook::seal_context(w.tenant_id, w.id),
                &w.secret_sealed,
            );
        }
        for s in &sinks {
            if let Some(sealed) = &s.secret_sealed {
                try_open(
                    format!("audit sink {} secret", s.target),
                    AuditSink::seal_context(s.tenant_id, s.id),
                    sealed,
                );
            }
        }
    }
    Ok((checked, failed))
}
