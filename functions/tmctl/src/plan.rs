//! The plan: what applying a routes file would change, route by route and field by
//! field (endpoints added, removed or changed, weight changes, ttl, labels, health check,
//! `active`),
//! computed against what the server holds. Pure: no I/O, so every rule is unit-tested.

use crate::api::RouteRef;
use crate::error::{CtlError, Result};
use crate::spec::{BODY_KEYS, Desired};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use tm_core::domain::route::RouteSpec;

/// What a change does to a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// PUT with `If-None-Match: *`.
    Create,
    /// PUT with `If-Match` on the planned revision.
    Update,
    /// DELETE with `If-Match` on the planned revision (`--prune` only).
    Delete,
}

/// How one field changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Added.
    Add,
    /// Removed.
    Remove,
    /// Changed from one value to another.
    Change,
}

/// One field-level difference, e.g. `endpoint blue weight: 90 → 80`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// Added, removed or changed.
    pub op: Op,
    /// What: `endpoint blue`, `endpoint blue weight`, `ttl_seconds`, `label team`,
    /// `health_check`, `active`, `endpoint order`.
    pub what: String,
    /// The deployed value (absent when added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The new value (absent when removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// One route's change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Create, update or delete.
    pub action: Action,
    /// Which route.
    pub route: RouteRef,
    /// The deployed revision the change is conditional on (update, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Field by field.
    pub details: Vec<Detail>,
    /// The PUT body (create, update); not part of the reviewed plan's JSON.
    #[serde(skip)]
    pub body: Option<Value>,
}

/// Everything applying the file would do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The tenant.
    pub tenant: String,
    /// Creates, then updates, then deletes, each ordered by route.
    pub changes: Vec<Change>,
    /// Routes already as the file says.
    pub unchanged: Vec<RouteRef>,
    /// Deployed routes the file does not name, left alone (without `--prune`).
    pub unmanaged: Vec<RouteRef>,
}

impl Plan {
    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// How many creates, updates and deletes.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a| self.changes.iter().filter(|c| c.action == a).count();
        (n(Action::Create), n(Action::Update), n(Action::Delete))
    }

    /// The same plan without the bodies, for comparing a reviewed plan with a fresh one.
    pub fn reviewed_form(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A deployed route: its revision and its document's settable part.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployed {
    /// The revision (for `If-Match`).
    pub revision: u64,
    /// Endpoints, ttl, labels, health check and `active`, with defaults applied.
    pub spec: RouteSpec,
}

/// Reads the deployed routes from list items (route documents).
pub fn deployed_from(items: &[Value]) -> Result<BTreeMap<RouteRef, Deployed>> {
    let mut out = BTreeMap::new();
    for doc in items {
        let text = |k: &str| doc[k].as_str().map(str::to_owned);
        let (Some(service), Some(env), Some(version), Some(revision)) = (
            text("service"),
            text("env"),
            text("version"),
            doc["revision"].as_u64(),
        ) else {
            return Err(CtlError::Transport(format!(
                "the server listed a route without its names or revision: {doc}"
            )));
        };
        let mut body = Map::new();
        for k in BODY_KEYS {
            if let Some(v) = doc.get(k) {
                body.insert(k.to_owned(), v.clone());
            }
        }
        // Each endpoint's `health` is the server's view, not part of what is set.
        if let Some(Value::Array(eps)) = body.get_mut("endpoints") {
            for ep in eps {
                if let Some(m) = ep.as_object_mut() {
                    m.remove("health");
                }
            }
        }
        let spec =
            RouteSpec::from_json(Value::Object(body).to_string().as_bytes()).map_err(|e| {
                CtlError::Transport(format!(
                    "the server listed {service}/{env}/{version} in a form tmctl cannot read: {e}"
                ))
            })?;
        out.insert(
            RouteRef {
                service,
                env,
                version,
            },
            Deployed { revision, spec },
        );
    }
    Ok(out)
}

/// The plan from the file's routes to the deployed ones. With `prune`, deployed routes
/// the file does not name are deleted; else they are listed as unmanaged.
pub fn plan(desired: &Desired, deployed: &BTreeMap<RouteRef, Deployed>, prune: bool) -> Plan {
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut deletes = Vec::new();
    let mut unchanged = Vec::new();
    let mut unmanaged = Vec::new();
    for (key, want) in &desired.routes {
        match deployed.get(key) {
            None => creates.push(Change {
                action: Action::Create,
                route: key.clone(),
                revision: None,
                details: diff(&empty_spec(), &want.spec, true),
                body: Some(want.body.clone()),
            }),
            Some(have) => {
                let details = diff(&have.spec, &want.spec, false);
                if details.is_empty() {
                    unchanged.push(key.clone());
                } else {
                    updates.push(Change {
                        action: Action::Update,
                        route: key.clone(),
                        revision: Some(have.revision),
                        details,
                        body: Some(want.body.clone()),
                    });
                }
            }
        }
    }
    for (key, have) in deployed {
        if desired.routes.contains_key(key) {
            continue;
        }
        if prune {
            deletes.push(Change {
                action: Action::Delete,
                route: key.clone(),
                revision: Some(have.revision),
                details: Vec::new(),
                body: None,
            });
        } else {
            unmanaged.push(key.clone());
        }
    }
    let mut changes = creates;
    changes.append(&mut updates);
    changes.append(&mut deletes);
    Plan {
        tenant: desired.tenant.clone(),
        changes,
        unchanged,
        unmanaged,
    }
}

fn empty_spec() -> RouteSpec {
    RouteSpec {
        endpoints: Vec::new(),
        ttl_seconds: 0,
        labels: BTreeMap::new(),
        health_check: None,
        active: true,
    }
}

fn endpoint_fields(spec: &RouteSpec) -> Vec<(String, Map<String, Value>)> {
    spec.endpoints
        .iter()
        .map(|e| {
            let mut m = match serde_json::to_value(e) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            m.remove("id");
            (e.id.as_str().to_owned(), m)
        })
        .collect()
}

/// Field-level differences from `old` to `new`. `creating`: every field of `new` is
/// shown as added.
pub fn diff(old: &RouteSpec, new: &RouteSpec, creating: bool) -> Vec<Detail> {
    let mut out = Vec::new();
    let old_eps = endpoint_fields(old);
    let new_eps = endpoint_fields(new);
    let old_map: BTreeMap<&str, &Map<String, Value>> =
        old_eps.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let new_map: BTreeMap<&str, &Map<String, Value>> =
        new_eps.iter().map(|(k, v)| (k.as_str(), v)).collect();
    for (id, fields) in &new_eps {
        match old_map.get(id.as_str()) {
            None => out.push(Detail {
                op: Op::Add,
                what: format!("endpoint {id}"),
                from: None,
                to: Some(Value::Object((*fields).clone())),
            }),
            Some(before) => {
                let names: BTreeSet<&String> = before.keys().chain(fields.keys()).collect();
                for f in names {
                    let (a, b) = (before.get(f), fields.get(f));
                    if a != b {
                        out.push(Detail {
                            op: match (a, b) {
                                (None, _) => Op::Add,
                                (_, None) => Op::Remove,
                                _ => Op::Change,
                            },
                            what: format!("endpoint {id} {f}"),
                            from: a.cloned(),
                            to: b.cloned(),
                        });
                    }
                }
            }
        }
    }
    for (id, _) in &old_eps {
        if !new_map.contains_key(id.as_str()) {
            out.push(Detail {
                op: Op::Remove,
                what: format!("endpoint {id}"),
                from: None,
                to: None,
            });
        }
    }
    let common_old: Vec<&str> = old_eps
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| new_map.contains_key(k))
        .collect();
    let common_new: Vec<&str> = new_eps
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| old_map.contains_key(k))
        .collect();
    if common_old != common_new {
        out.push(Detail {
            op: Op::Change,
            what: "endpoint order".into(),
            from: Some(json!(common_old)),
            to: Some(json!(common_new)),
        });
    }
    if creating || old.ttl_seconds != new.ttl_seconds {
        out.push(Detail {
            op: if creating { Op::Add } else { Op::Change },
            what: "ttl_seconds".into(),
            from: (!creating).then(|| json!(old.ttl_seconds)),
            to: Some(json!(new.ttl_seconds)),
        });
    }
    for (k, v) in &new.labels {
        match old.labels.get(k) {
            None => out.push(Detail {
                op: Op::Add,
                what: format!("label {k}"),
                from: None,
                to: Some(json!(v.as_str())),
            }),
            Some(before) if before != v => out.push(Detail {
                op: Op::Change,
                what: format!("label {k}"),
                from: Some(json!(before.as_str())),
                to: Some(json!(v.as_str())),
            }),
            Some(_) => {}
        }
    }
    for (k, v) in &old.labels {
        if !new.labels.contains_key(k) {
            out.push(Detail {
                op: Op::Remove,
                what: format!("label {k}"),
                from: Some(json!(v.as_str())),
                to: None,
            });
        }
    }
    if old.health_check != new.health_check {
        let show = |c: &Option<tm_core::domain::health_check::HealthCheck>| {
            c.as_ref().and_then(|c| serde_json::to_value(c).ok())
        };
        out.push(Detail {
            op: match (&old.health_check, &new.health_check) {
                (None, _) => Op::Add,
                (_, None) => Op::Remove,
                _ => Op::Change,
            },
            what: "health_check".into(),
            from: show(&old.health_check),
            to: show(&new.health_check),
        });
    }
    if creating || old.active != new.active {
        out.push(Detail {
            op: if creating { Op::Add } else { Op::Change },
            what: "active".into(),
            from: (!creating).then(|| json!(old.active)),
            to: Some(json!(new.active)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn desired(routes: &str) -> Desired {
        spec::parse(&format!("tenant: acme\nroutes:\n{routes}"), "t").unwrap()
    }

    fn deployed(pairs: &[(&str, u64, &str)]) -> BTreeMap<RouteRef, Deployed> {
        let docs: Vec<Value> = pairs
            .iter()
            .map(|(key, rev, body)| {
                let r = RouteRef::parse_selector(key).unwrap();
                let mut doc: Value = serde_json::from_str(body).unwrap();
                doc["service"] = json!(r.service);
                doc["env"] = json!(r.env);
                doc["version"] = json!(r.version);
                doc["revision"] = json!(rev);
                doc
            })
            .collect();
        deployed_from(&docs).unwrap()
    }

    const CHECKOUT: &str = "  - service: checkout\n    env: prod\n    version: 2.3.1\n    endpoints:\n      - {id: blue, url: 'https://blue.x', weight: 80}\n      - {id: green, url: 'https://green.x', weight: 20}\n";

    #[test]
    fn a_route_not_deployed_is_created_and_its_fields_are_shown_as_added() {
        let p = plan(&desired(CHECKOUT), &BTreeMap::new(), false);
        assert_eq!(p.counts(), (1, 0, 0));
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Create);
        assert_eq!(c.revision, None);
        let whats: Vec<&str> = c.details.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(
            whats,
            ["endpoint blue", "endpoint green", "ttl_seconds", "active"]
        );
        assert_eq!(c.details[0].to.as_ref().unwrap()["weight"], 80);
    }

    #[test]
    fn a_weight_change_an_added_and_a_removed_endpoint_are_each_named() {
        let have = deployed(&[(
            "checkout/prod/2.3.1",
            7,
            r#"{"endpoints":[{"id":"blue","url":"https://blue.x","weight":90,"priority":0,"status":"active"},{"id":"old","url":"https://old.x","weight":10,"priority":0,"status":"active"}],"ttl_seconds":30,"labels":{"team":"x"},"active":true}"#,
        )]);
        let p = plan(&desired(CHECKOUT), &have, false);
        assert_eq!(p.counts(), (0, 1, 0));
        let c = &p.changes[0];
        assert_eq!(c.revision, Some(7), "conditional on the deployed revision");
        let shown: Vec<(Op, &str, Option<&Value>, Option<&Value>)> = c
            .details
            .iter()
            .map(|d| (d.op, d.what.as_str(), d.from.as_ref(), d.to.as_ref()))
            .collect();
        assert_eq!(
            shown[0],
            (
                Op::Change,
                "endpoint blue weight",
                Some(&json!(90)),
                Some(&json!(80))
            )
        );
        assert_eq!(shown[1].0, Op::Add);
        assert_eq!(shown[1].1, "endpoint green");
        assert_eq!(shown[2], (Op::Remove, "endpoint old", None, None));
        assert_eq!(
            shown[3],
            (Op::Remove, "label team", Some(&json!("x")), None)
        );
        assert_eq!(shown.len(), 4);
    }

    #[test]
    fn a_deployed_route_equal_to_the_file_after_defaults_is_unchanged() {
        let have = deployed(&[(
            "checkout/prod/2.3.1",
            3,
            r#"{"endpoints":[{"id":"blue","url":"https://blue.x","weight":80,"priority":0,"status":"active"},{"id":"green","url":"https://green.x","weight":20,"priority":0,"status":"active"}],"ttl_seconds":30,"labels":{},"active":true}"#,
        )]);
        let p = plan(&desired(CHECKOUT), &have, true);
        assert!(!p.has_changes());
        assert_eq!(p.unchanged.len(), 1);
    }

    #[test]
    fn routes_missing_from_the_file_are_deleted_only_with_prune() {
        let have = deployed(&[(
            "search/prod/1.0.0",
            4,
            r#"{"endpoints":[{"id":"a","url":"https://a.x","weight":1,"priority":0,"status":"active"}],"ttl_seconds":30,"labels":{},"active":true}"#,
        )]);
        let kept = plan(&desired(CHECKOUT), &have, false);
        assert_eq!(kept.counts(), (1, 0, 0));
        assert_eq!(kept.unmanaged[0].to_string(), "search/prod/1.0.0");
        let pruned = plan(&desired(CHECKOUT), &have, true);
        assert_eq!(pruned.counts(), (1, 0, 1));
        let del = pruned.changes.last().unwrap();
        assert_eq!((del.action, del.revision), (Action::Delete, Some(4)));
        assert!(pruned.unmanaged.is_empty());
    }

    #[test]
    fn reordering_endpoints_and_switching_active_and_ttl_are_changes() {
        let have = deployed(&[(
            "checkout/prod/2.3.1",
            2,
            r#"{"endpoints":[{"id":"green","url":"https://green.x","weight":20,"priority":0,"status":"active"},{"id":"blue","url":"https://blue.x","weight":80,"priority":0,"status":"active"}],"ttl_seconds":60,"labels":{},"active":false}"#,
        )]);
        let p = plan(&desired(CHECKOUT), &have, false);
        let whats: Vec<&str> = p.changes[0]
            .details
            .iter()
            .map(|d| d.what.as_str())
            .collect();
        assert_eq!(whats, ["endpoint order", "ttl_seconds", "active"]);
    }

    #[test]
    fn adding_changing_and_removing_a_health_check_are_changes() {
        const PLAIN: &str = r#"{"endpoints":[{"id":"blue","url":"https://blue.x","weight":80,"priority":0,"status":"active"},{"id":"green","url":"https://green.x","weight":20,"priority":0,"status":"active"}],"ttl_seconds":30,"labels":{},"active":true}"#;
        const CHECKED: &str = r#"{"endpoints":[{"id":"blue","url":"https://blue.x","weight":80,"priority":0,"status":"active","health":{"status":"unhealthy","since":"2026-12-01T10:00:00Z"}},{"id":"green","url":"https://green.x","weight":20,"priority":0,"status":"active"}],"ttl_seconds":30,"labels":{},"health_check":{"path":"/healthz","interval_seconds":10},"active":true}"#;
        let with_check = |interval: u32| {
            desired(&format!(
                "{CHECKOUT}    health_check: {{path: /healthz, interval_seconds: {interval}}}\n"
            ))
        };
        let what = |p: &Plan| -> Vec<(Op, String)> {
            p.changes
                .iter()
                .flat_map(|c| c.details.iter().map(|d| (d.op, d.what.clone())))
                .collect()
        };
        let added = plan(
            &with_check(10),
            &deployed(&[("checkout/prod/2.3.1", 1, PLAIN)]),
            false,
        );
        assert_eq!(what(&added), [(Op::Add, "health_check".to_owned())]);
        assert_eq!(
            added.changes[0].details[0].to.as_ref().unwrap()["path"],
            "/healthz"
        );
        let same = plan(
            &with_check(10),
            &deployed(&[("checkout/prod/2.3.1", 2, CHECKED)]),
            false,
        );
        assert!(
            !same.has_changes(),
            "endpoint health is not a difference: {same:?}"
        );
        let changed = plan(
            &with_check(30),
            &deployed(&[("checkout/prod/2.3.1", 2, CHECKED)]),
            false,
        );
        assert_eq!(what(&changed), [(Op::Change, "health_check".to_owned())]);
        let removed = plan(
            &desired(CHECKOUT),
            &deployed(&[("checkout/prod/2.3.1", 2, CHECKED)]),
            false,
        );
        assert_eq!(what(&removed), [(Op::Remove, "health_check".to_owned())]);
        assert!(removed.changes[0].details[0].to.is_none());
    }

    #[test]
    fn a_reviewed_plan_survives_a_json_round_trip_without_its_bodies() {
        let p = plan(&desired(CHECKOUT), &BTreeMap::new(), false);
        let text = serde_json::to_string(&p).unwrap();
        let back: Plan = serde_json::from_str(&text).unwrap();
        assert_eq!(back.reviewed_form(), p.reviewed_form());
        assert!(back.changes[0].body.is_none());
    }
}
