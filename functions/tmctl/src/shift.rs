//! Canary shifts: move traffic to one endpoint step by step (`--step` percentage points
//! every `--every`), checking after each step that the change reached the shared cache
//! and that resolve serves it. Before the first step the route's endpoints are recorded
//! in a state file; `--abort` (or a failed check) puts them back.
//!
//! The shift works within the target's priority group (its active endpoints at the same
//! priority): the target gets `p` % of the group's weight, the others share the rest in
//! proportion to the weights they had when the shift started. Weights are written as
//! percentages (they sum to 100 across the group).

use crate::api::{Api, RouteRef};
use crate::client::Precondition;
use crate::error::{CtlError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a step may take to reach the shared cache and resolve.
const CHECK_WITHIN: Duration = Duration::from_secs(15);
/// How often the check polls.
const POLL: Duration = Duration::from_millis(100);

/// What a shift recorded before its first step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// Tenant.
    pub tenant: String,
    /// The route.
    pub route: RouteRef,
    /// The endpoints as they were before the shift.
    pub endpoints: Value,
    /// The revision they were read at.
    pub recorded_revision: u64,
    /// The revision the shift last wrote (abort is conditional on it).
    pub last_revision: u64,
}

/// Where the record of a route's shift is kept.
pub fn state_path(dir: &Path, tenant: &str, route: &RouteRef) -> PathBuf {
    dir.join(format!(
        "shift-{tenant}-{}-{}-{}.json",
        route.service, route.env, route.version
    ))
}

fn save(path: &Path, rec: &Recorded) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CtlError::Io(format!("creating {}: {e}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(rec).map_err(|e| CtlError::Io(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| CtlError::Io(format!("writing {}: {e}", path.display())))
}

fn load(path: &Path) -> Result<Recorded> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CtlError::NotFound(format!(
            "no recorded shift at {} ({e}): nothing to abort",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| CtlError::Io(format!("{}: {e}", path.display())))
}

/// The percentages a shift walks through: from the target's current share (exclusive)
/// up to 100 in steps of `step`, the last one always 100.
pub fn steps(current: u32, step: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = current;
    while p < 100 {
        p = (p + step.max(1)).min(100);
        out.push(p);
    }
    out
}

/// Ids and weights of the target's priority group (active endpoints at its priority),
/// in route order.
pub fn group(endpoints: &Value, target: &str) -> Result<Vec<(String, u32)>> {
    let eps = endpoints.as_array().cloned().unwrap_or_default();
    let t = eps
        .iter()
        .find(|e| e["id"] == target)
        .ok_or_else(|| CtlError::Usage(format!("the route has no endpoint {target:?}")))?;
    if t["status"].as_str().unwrap_or("active") != "active" {
        return Err(CtlError::Usage(format!(
            "endpoint {target:?} is not active"
        )));
    }
    let prio = t["priority"].as_u64().unwrap_or(0);
    Ok(eps
        .iter()
        .filter(|e| e["priority"].as_u64().unwrap_or(0) == prio)
        .filter(|e| e["status"].as_str().unwrap_or("active") == "active")
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["weight"].as_u64().unwrap_or(1) as u32,
            )
        })
        .collect())
}

/// The target's share of its group, in whole percent.
pub fn share(group: &[(String, u32)], target: &str) -> u32 {
    let total: u64 = group.iter().map(|(_, w)| u64::from(*w)).sum();
    let mine = group
        .iter()
        .find(|(id, _)| id == target)
        .map_or(0, |(_, w)| u64::from(*w));
    (mine * 100 + total / 2).checked_div(total).unwrap_or(0) as u32
}

/// The group's weights with the target at `pct` % and the others sharing the rest in
/// proportion to `original` (equally if they all had 0), rounded by largest remainder
/// so the group sums to exactly 100.
pub fn weights_at(original: &[(String, u32)], target: &str, pct: u32) -> Vec<(String, u32)> {
    let pct = pct.min(100);
    let others: Vec<&(String, u32)> = original.iter().filter(|(id, _)| id != target).collect();
    let rest = 100 - pct;
    let mut basis: Vec<u64> = others.iter().map(|(_, w)| u64::from(*w)).collect();
    if basis.iter().all(|w| *w == 0) {
        basis.iter_mut().for_each(|w| *w = 1);
    }
    let total: u64 = basis.iter().sum();
    let mut given: Vec<u64> = Vec::with_capacity(others.len());
    let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(others.len());
    for (i, b) in basis.iter().enumerate() {
        let exact = u64::from(rest) * b;
        given.push(exact / total.max(1));
        remainders.push((exact % total.max(1), i));
    }
    let mut left = u64::from(rest).saturating_sub(given.iter().sum());
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        given[i] += 1;
        left -= 1;
    }
    let mut it = given.into_iter();
    original
        .iter()
        .map(|(id, _)| {
            if id == target {
                (id.clone(), if others.is_empty() { 100 } else { pct })
            } else {
                (id.clone(), it.next().unwrap_or(0) as u32)
            }
        })
        .collect()
}

/// The route's endpoints with new weights for the named ones.
fn with_weights(endpoints: &Value, weights: &[(String, u32)]) -> Value {
    let mut eps = endpoints.clone();
    if let Some(arr) = eps.as_array_mut() {
        for e in arr {
            if let Some((_, w)) = weights.iter().find(|(id, _)| e["id"] == id.as_str()) {
                e["weight"] = json!(w);
            }
        }
    }
    eps
}

/// Endpoints as a PUT may carry them: what the server sets (each endpoint's `health`)
/// left out, so that a route that has been probed can be written back.
fn settable_endpoints(endpoints: &Value) -> Value {
    let mut eps = endpoints.clone();
    if let Some(arr) = eps.as_array_mut() {
        for e in arr {
            if let Some(obj) = e.as_object_mut() {
                obj.remove("health");
            }
        }
    }
    eps
}

/// A PUT body: every settable field of the document as it is (the health check, labels,
/// TTL, active: the same list the routes file takes, [`crate::spec::BODY_KEYS`]), with
/// other endpoints. Nothing the server sets is sent back.
fn body(doc: &Value, endpoints: Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in crate::spec::BODY_KEYS {
        match key {
            "endpoints" => {
                out.insert(key.to_owned(), settable_endpoints(&endpoints));
            }
            _ => {
                if let Some(v) = doc.get(key).filter(|v| !v.is_null()) {
                    out.insert(key.to_owned(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

/// What one step did.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// 1-based.
    pub step: usize,
    /// Steps in all.
    pub of: usize,
    /// The target's share.
    pub percent: u32,
    /// The group's weights written.
    pub weights: Vec<(String, u32)>,
    /// The revision written.
    pub revision: u64,
    /// What resolve answered after the step: the endpoint it chose.
    pub resolved: String,
    /// The candidates' weights resolve reported.
    pub candidates: Vec<(String, u32)>,
}

/// Waits until the shared cache holds `revision` and resolve answers it; answers what
/// resolve said, or why the check failed.
async fn check(
    api: &Api,
    route: &RouteRef,
    revision: u64,
) -> std::result::Result<(String, Vec<(String, u32)>), String> {
    let deadline = tokio::time::Instant::now() + CHECK_WITHIN;
    loop {
        let st = api
            .status(route)
            .await
            .map_err(|e| format!("status: {e}"))?;
        if st["in_sync"] == true && st["revision"].as_u64() >= Some(revision) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "revision {revision} did not reach the shared cache within {CHECK_WITHIN:?} ({st})"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    loop {
        let answer = api.resolve(route, None).await;
        match answer {
            Ok((a, _)) if a["revision"].as_u64() >= Some(revision) => {
                let chosen = a["endpoint"]["id"].as_str().unwrap_or_default().to_owned();
                let cands = a["candidates"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|e| {
                                (
                                    e["id"].as_str().unwrap_or_default().to_owned(),
                                    e["weight"].as_u64().unwrap_or(0) as u32,
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok((chosen, cands));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("resolve: {e}")),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "resolve did not serve revision {revision} within {CHECK_WITHIN:?}"
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Walks the target's share up to 100 %, calling `report` after each step.
pub async fn shift(
    api: &Api,
    route: &RouteRef,
    target: &str,
    step: u32,
    every: Duration,
    state_dir: &Path,
    report: &mut dyn FnMut(&Step) -> Result<()>,
) -> Result<u64> {
    let (doc, revision) = api
        .get_route(route)
        .await?
        .ok_or_else(|| CtlError::NotFound(route.to_string()))?;
    let original = group(&doc["endpoints"], target)?;
    let plan = steps(share(&original, target), step);
    let path = state_path(state_dir, api.tenant(), route);
    let mut rec = Recorded {
        tenant: api.tenant().to_owned(),
        route: route.clone(),
        endpoints: settable_endpoints(&doc["endpoints"]),
        recorded_revision: revision,
        last_revision: revision,
    };
    save(&path, &rec)?;
    for (i, pct) in plan.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let weights = weights_at(&original, target, *pct);
        let next = body(&doc, with_weights(&doc["endpoints"], &weights));
        let written = api
            .put_route(route, &next, Precondition::Revision(rec.last_revision))
            .await?;
        rec.last_revision = written["revision"]
            .as_u64()
            .unwrap_or(rec.last_revision + 1);
        save(&path, &rec)?;
        match check(api, route, rec.last_revision).await {
            Ok((resolved, candidates)) => report(&Step {
                step: i + 1,
                of: plan.len(),
                percent: *pct,
                weights,
                revision: rec.last_revision,
                resolved,
                candidates,
            })?,
            Err(why) => {
                let restored = abort(api, route, state_dir).await;
                return Err(CtlError::CheckFailed(match restored {
                    Ok(rev) => {
                        format!("{why}; the recorded weights were restored (revision {rev})")
                    }
                    Err(e) => format!("{why}; restoring the recorded weights failed too: {e}"),
                }));
            }
        }
    }
    Ok(rec.last_revision)
}

/// Restores the endpoints recorded before the shift, conditional on the route being as
/// the shift last left it; answers the new revision.
pub async fn abort(api: &Api, route: &RouteRef, state_dir: &Path) -> Result<u64> {
    let path = state_path(state_dir, api.tenant(), route);
    let rec = load(&path)?;
    let (doc, revision) = api
        .get_route(route)
        .await?
        .ok_or_else(|| CtlError::NotFound(route.to_string()))?;
    if revision != rec.last_revision {
        return Err(CtlError::Conflict(format!(
            "{route} is at revision {revision}, but the shift last wrote {}: someone else changed it; nothing restored (see `tmctl routes history {route}`)",
            rec.last_revision
        )));
    }
    let written = api
        .put_route(
            route,
            &body(&doc, rec.endpoints.clone()),
            Precondition::Revision(revision),
        )
        .await?;
    let _ = std::fs::remove_file(&path);
    Ok(written["revision"].as_u64().unwrap_or(revision + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(i, w)| (i.to_string(), *w)).collect()
    }

    #[test]
    fn steps_climb_from_the_current_share_and_end_at_one_hundred() {
        assert_eq!(steps(0, 25), [25, 50, 75, 100]);
        assert_eq!(steps(10, 30), [40, 70, 100]);
        assert_eq!(steps(100, 10), Vec::<u32>::new());
        assert_eq!(steps(95, 0).len(), 5, "a zero step moves by one");
    }

    #[test]
    fn the_others_keep_their_proportions_and_the_group_sums_to_one_hundred() {
        let original = g(&[("blue", 60), ("green", 0), ("teal", 30)]);
        let w = weights_at(&original, "green", 10);
        assert_eq!(w, g(&[("blue", 60), ("green", 10), ("teal", 30)]));
        let w = weights_at(&original, "green", 55);
        assert_eq!(w.iter().map(|(_, x)| x).sum::<u32>(), 100);
        assert_eq!(w[1].1, 55);
        assert!(w[0].1 > w[2].1, "blue keeps more than teal: {w:?}");
        assert_eq!(
            weights_at(&original, "green", 100),
            g(&[("blue", 0), ("green", 100), ("teal", 0)])
        );
    }

    #[test]
    fn others_that_all_had_zero_weight_share_equally() {
        let w = weights_at(&g(&[("a", 0), ("b", 0), ("t", 5)]), "t", 50);
        assert_eq!(w, g(&[("a", 25), ("b", 25), ("t", 50)]));
    }

    #[test]
    fn the_group_is_the_targets_priority_and_only_active_endpoints() {
        let eps = json!([
            {"id": "blue", "weight": 90, "priority": 0, "status": "active"},
            {"id": "green", "weight": 10, "priority": 0, "status": "active"},
            {"id": "old", "weight": 5, "priority": 0, "status": "draining"},
            {"id": "dr", "weight": 1, "priority": 1, "status": "active"}
        ]);
        let grp = group(&eps, "green").unwrap();
        assert_eq!(grp, g(&[("blue", 90), ("green", 10)]));
        assert_eq!(share(&grp, "green"), 10);
        assert!(group(&eps, "nope").is_err());
        assert!(
            group(&eps, "old").is_err(),
            "a draining target cannot take traffic"
        );
        let moved = with_weights(&eps, &weights_at(&grp, "green", 40));
        assert_eq!(moved[0]["weight"], 60);
        assert_eq!(moved[1]["weight"], 40);
        assert_eq!(moved[3]["weight"], 1, "other groups untouched");
    }

    #[test]
    fn a_step_keeps_every_settable_field_and_sends_back_nothing_the_server_sets() {
        // GIVEN a probed route as GET shows it
        let doc = json!({
            "tenant": "acme", "service": "s", "env": "e", "version": "1", "revision": 4,
            "updated_at": "2026-12-08T00:00:00.000Z", "updated_by": "u",
            "ttl_seconds": 15, "active": true, "labels": {"team": "pay"},
            "health_check": {"path": "/healthz", "interval_seconds": 10},
            "endpoints": [
                {"id": "blue", "url": "https://b.x", "weight": 90, "priority": 0,
                 "health": {"status": "healthy", "since": "2026-12-08T00:00:00.000Z"}},
                {"id": "green", "url": "https://g.x", "weight": 10, "priority": 0,
                 "health": {"status": "unhealthy", "since": "2026-12-08T00:00:00.000Z"}}
            ]
        });
        // WHEN a step writes new weights
        let next = body(
            &doc,
            with_weights(&doc["endpoints"], &g(&[("green", 50), ("blue", 50)])),
        );
        // THEN the health check, labels, TTL and active go back as they were
        assert_eq!(next["health_check"], doc["health_check"]);
        assert_eq!(next["labels"], doc["labels"]);
        assert_eq!(next["ttl_seconds"], 15);
        assert_eq!(next["active"], true);
        // AND neither the endpoints' health nor the route's server-set fields are sent
        assert!(next["endpoints"][0].get("health").is_none(), "{next}");
        assert_eq!(next["endpoints"][1]["weight"], 50);
        for server_set in ["revision", "updated_at", "updated_by", "tenant"] {
            assert!(next.get(server_set).is_none(), "{server_set} sent: {next}");
        }
        // AND the body is one the server takes
        tm_core::domain::route::RouteSpec::from_json(next.to_string().as_bytes())
            .expect("a valid PUT body");
    }

    #[test]
    fn the_record_lives_in_one_file_per_route() {
        let dir = tempfile::tempdir().unwrap();
        let route = RouteRef::parse_selector("checkout/prod/2.3.1").unwrap();
        let path = state_path(dir.path(), "acme", &route);
        let rec = Recorded {
            tenant: "acme".into(),
            route: route.clone(),
            endpoints: json!([{"id": "a"}]),
            recorded_revision: 3,
            last_revision: 5,
        };
        save(&path, &rec).unwrap();
        assert_eq!(load(&path).unwrap(), rec);
        assert!(path.ends_with("shift-acme-checkout-prod-2.3.1.json"));
    }
}
