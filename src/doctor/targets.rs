//! Database targets: each reachable with its admin login, and that login holding the rights of
//! `deploy/db-targets/README.md` — enough to hand out every profile's roles, and no more.

use super::{Report, list};
use crate::crypto::MasterKey;
use crate::db_targets::{TargetRights, TargetSpec};
use crate::store::Store;

const RIGHTS_DOC: &str = "see deploy/db-targets/README.md for the admin login's rights";

/// What one target's check found.
struct Checked {
    tenant: String,
    target: String,
    outcome: Result<TargetRights, String>,
}

pub async fn check(report: &mut Report, store: &Store, master: &MasterKey) {
    let mut set = tokio::task::JoinSet::new();
    let tenants = match store.tenants().await {
        Ok(t) => t,
        Err(e) => {
            report.error(
                "targets.reachable",
                format!("cannot list tenants: {e}"),
                "check the database URL",
            );
            return;
        }
    };
    for tenant in tenants {
        let (targets, profiles) = match targets_and_profiles(store, tenant.tenant_id).await {
            Ok(x) => x,
            Err(e) => {
                report.error(
                    "targets.reachable",
                    format!("{}: cannot read targets: {e}", tenant.slug),
                    "check the database URL",
                );
                continue;
            }
        };
        for t in targets {
            let uses = profiles
                .iter()
                .filter_map(|p| p.database.as_ref())
                .filter(|d| d.target == t.name);
            let mut grantable: Vec<String> = uses.clone().flat_map(|d| d.roles.clone()).collect();
            let mut owners: Vec<String> = uses.filter_map(|d| d.owner.clone()).collect();
            grantable.sort();
            grantable.dedup();
            owners.sort();
            owners.dedup();
            let slug = tenant.slug.clone();
            let spec = TargetSpec::open(&t, master);
            set.spawn(async move {
                let outcome = match spec {
                    Ok(spec) => rights(&spec, &grantable, &owners).await,
                    Err(e) => Err(format!("cannot open its admin password: {e:#}")),
                };
                Checked {
                    tenant: slug,
                    target: t.name,
                    outcome,
                }
            });
        }
    }
    let mut checked = set.join_all().await;
    if checked.is_empty() {
        return;
    }
    checked.sort_by(|a, b| (&a.tenant, &a.target).cmp(&(&b.tenant, &b.target)));
    for c in checked {
        let name = format!("{}/{}", c.tenant, c.target);
        match c.outcome {
            Err(e) => report.error(
                "targets.reachable",
                format!("target {name} cannot be reached: {e}"),
                "check the target's address and admin login (`elevate admin target test`); \
                 grants on it cannot be issued and its logins not cleaned up meanwhile",
            ),
            Ok(r) => judge(report, &name, &r),
        }
    }
}

async fn targets_and_profiles(
    store: &Store,
    tenant_id: uuid::Uuid,
) -> crate::error::AppResult<(Vec<crate::model::Target>, Vec<crate::policy::Profile>)> {
    let mut tx = store.tenant(tenant_id).await?;
    let targets = tx.targets().await?;
    let profiles = match tx.latest_policy_version().await? {
        Some(v) => tx.profiles_at(v.version).await?,
        None => Vec::new(),
    };
    tx.commit().await?;
    Ok((targets, profiles))
}

async fn rights(
    spec: &TargetSpec,
    grantable: &[String],
    owners: &[String],
) -> Result<TargetRights, String> {
    let mut conn = spec.connect().await.map_err(|e| e.0)?;
    let rights = conn.rights(grantable, owners).await.map_err(|e| e.0);
    conn.close().await;
    rights
}

fn judge(report: &mut Report, name: &str, r: &TargetRights) {
    let mut fine = true;
    if r.superuser {
        fine = false;
        report.warn(
            "targets.superuser",
            format!(
                "target {name}: the admin login is a superuser (or holds every privilege): a \
                 leaked master key would give the whole server away"
            ),
            format!(
                "give elevate an admin login with only CREATEROLE and the profile roles WITH ADMIN \
                 OPTION ({RIGHTS_DOC})"
            ),
        );
    } else if !r.can_create_roles {
        fine = false;
        report.error(
            "targets.rights",
            format!("target {name}: the admin login may not create roles/users"),
            format!(
                "ALTER ROLE <admin> CREATEROLE (MariaDB: GRANT CREATE USER ON *.*); {RIGHTS_DOC}"
            ),
        );
    }
    if !r.missing.is_empty() {
        fine = false;
        report.error(
            "targets.rights",
            format!(
                "target {name}: the admin login lacks what its profiles need: {}",
                list(&r.missing)
            ),
            format!(
                "GRANT <role> TO <admin> WITH ADMIN OPTION (and the owner roles); {RIGHTS_DOC}"
            ),
        );
    }
    if !r.extra.is_empty() {
        fine = false;
        report.warn(
            "targets.rights_extra",
            format!(
                "target {name}: the admin login holds more than elevate needs: {}",
                list(&r.extra)
            ),
            format!("revoke them; {RIGHTS_DOC}"),
        );
    }
    if fine {
        report.ok(
            "targets.rights",
            format!("target {name} answers; its admin login holds exactly the documented rights"),
        );
    }
}
