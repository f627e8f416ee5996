//! What changed between two policy versions, profile by profile and field by field.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::Profile;

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PolicyDiff {
    /// Profiles that are new.
    pub added: Vec<String>,
    /// Profiles that are gone.
    pub removed: Vec<String>,
    /// profile → field → {from, to}
    #[schema(value_type = Object)]
    pub changed: BTreeMap<String, BTreeMap<String, Value>>,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// One line for people: `+new-profile -old-profile ~changed-profile(field, field)`.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no changes".into();
        }
        let mut parts: Vec<String> = self.added.iter().map(|n| format!("+{n}")).collect();
        parts.extend(self.removed.iter().map(|n| format!("-{n}")));
        parts.extend(
            self.changed.iter().map(|(n, f)| {
                format!("~{n}({})", f.keys().cloned().collect::<Vec<_>>().join(", "))
            }),
        );
        parts.join(" ")
    }
}

fn fields(p: &Profile) -> BTreeMap<String, Value> {
    match serde_json::to_value(p) {
        Ok(Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

pub fn diff(before: &[Profile], after: &[Profile]) -> PolicyDiff {
    let old: BTreeMap<&str, &Profile> = before.iter().map(|p| (p.name.as_str(), p)).collect();
    let new: BTreeMap<&str, &Profile> = after.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut d = PolicyDiff {
        added: new
            .keys()
            .filter(|n| !old.contains_key(*n))
            .map(|n| n.to_string())
            .collect(),
        removed: old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| n.to_string())
            .collect(),
        ..Default::default()
    };
    for (name, after) in &new {
        let Some(before) = old.get(name) else {
            continue;
        };
        let (b, a) = (fields(before), fields(after));
        let changes: BTreeMap<String, Value> = a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), serde_json::json!({ "from": b.get(k), "to": v })))
            .collect();
        if !changes.is_empty() {
            d.changed.insert(name.to_string(), changes);
        }
    }
    d
}
