//! Two people for policy changes that widen access: recommended wherever a tenant has two or
//! more admins (one admin alone could otherwise widen the policy and take the access).

use super::Report;
use crate::model::Role;
use crate::store::Store;

pub async fn check(report: &mut Report, store: &Store) {
    let Ok(tenants) = store.tenants().await else {
        return;
    };
    let mut fine = 0;
    for tenant in &tenants {
        let found = async {
            let mut tx = store.tenant(tenant.tenant_id).await?;
            let admins = tx
                .list_users()
                .await?
                .iter()
                .filter(|u| !u.disabled && u.has_role(Role::Admin))
                .count();
            let on = tx
                .tenant_flag(crate::store::TenantFlag::PolicyTwoPerson)
                .await?;
            tx.commit().await?;
            Ok::<_, crate::store::StoreError>((admins, on))
        }
        .await;
        match found {
            Ok((admins, false)) if admins >= 2 => report.warn(
                "policy.two_person",
                format!(
                    "{}: {admins} admins, and one of them alone can widen the policy (and take the access)",
                    tenant.slug
                ),
                format!(
                    "elevate admin tenant set --tenant {} --policy-two-person on (widening changes then wait for a second admin's passkey approval)",
                    tenant.slug
                ),
            ),
            Ok(_) => fine += 1,
            Err(_) => {}
        }
    }
    if fine > 0 {
        report.ok(
            "policy.two_person",
            format!("{fine} tenant(s) need no second admin for policy changes or have it on"),
        );
    }
}
