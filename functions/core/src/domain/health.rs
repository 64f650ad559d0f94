//! Endpoint health (docs/health.md): the state kept per endpoint, the threshold rule that
//! turns probe results into transitions, and the overlay that shows the state on a route's
//! endpoints. Pure: no I/O. The settings (`health_check`) are in [`super::health_check`],
//! and what an endpoint shows ([`HealthView`]) is part of the route document
//! ([`super::route`]): both are what the route is, this is what the prober saw.
//!
//! Health state is not part of the route document's revision: the prober writes it beside
//! the route (its own item, ordered by its own sequence number [`RouteHealth::seq`]), so a
//! health change never bumps `revision` and never breaks a user's `If-Match`.

use super::health_check::HealthCheck;
use super::names::EndpointId;
use super::route::{Endpoint, HealthStatus, HealthView, Route};
use super::timefmt::Timestamp;
use serde::{Deserialize, Serialize};

/// The prober's record of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointHealth {
    /// The endpoint's id.
    pub id: EndpointId,
    /// The endpoint's URL when probed: a record whose URL is no longer the endpoint's
    /// says nothing about it and is ignored.
    pub url: String,
    /// Current health.
    pub status: HealthStatus,
    /// When `status` last changed (or the endpoint was first probed).
    pub since: Timestamp,
    /// Consecutive successful probes, capped at the healthy threshold.
    pub successes: u32,
    /// Consecutive failed probes, capped at the unhealthy threshold.
    pub failures: u32,
    /// Why the last failed probe failed, while failures are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl EndpointHealth {
    /// The view shown on the route document.
    pub fn view(&self) -> HealthView {
        HealthView {
            status: self.status,
            since: self.since,
        }
    }
}

/// The health state of one route key: every probed endpoint, ordered by `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteHealth {
    /// Grows by one on every stored change of this state; caches keep the highest seen,
    /// so an older state never overwrites a newer one (independently of the route's
    /// revision).
    pub seq: u64,
    /// One record per probed endpoint, in the route's endpoint order.
    pub endpoints: Vec<EndpointHealth>,
}

impl RouteHealth {
    /// The record of `endpoint`, if it is about this endpoint at its current URL.
    pub fn of(&self, endpoint: &Endpoint) -> Option<&EndpointHealth> {
        self.endpoints
            .iter()
            .find(|h| h.id == endpoint.id && h.url == endpoint.url)
    }
}

/// Sets every endpoint's `health` from `health`: the matching record's view, or `None`
/// (unknown, which resolve treats as healthy). A route without `health_check` shows no
/// health at all, whatever was recorded before the check was removed.
pub fn overlay(route: &mut Route, health: Option<&RouteHealth>) {
    let health = health.filter(|_| route.health_check.is_some());
    for e in &mut route.endpoints {
        e.health = health.and_then(|h| h.of(e)).map(EndpointHealth::view);
    }
}

/// Whether overlaying `health` would change what `route` shows (so callers clone only
/// when it does).
pub fn overlay_changes(route: &Route, health: Option<&RouteHealth>) -> bool {
    let health = health.filter(|_| route.health_check.is_some());
    route
        .endpoints
        .iter()
        .any(|e| e.health != health.and_then(|h| h.of(e)).map(EndpointHealth::view))
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The endpoint answered with an expected status.
    Up,
    /// It did not (timeout, refused, TLS failure, unexpected status); why.
    Down(String),
}

/// What one probe result does to an endpoint's record: the new record, and whether its
/// status flipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The record after the result.
    pub record: EndpointHealth,
    /// `status` changed.
    pub transition: bool,
}

/// The threshold rule. A record that does not exist yet (or was about another URL)
/// starts `healthy` with no counts, as unknown endpoints are treated as healthy. A
/// success resets the failures and counts up (capped at the healthy threshold); a failure
/// resets the successes and counts up (capped at the unhealthy threshold); the status
/// flips when the count of the opposite outcome reaches its threshold. The caps keep the
/// record unchanged in a steady state, so a steady endpoint costs no store write.
pub fn observe(
    prev: Option<&EndpointHealth>,
    endpoint: &Endpoint,
    check: &HealthCheck,
    result: &ProbeResult,
    now: Timestamp,
) -> Observed {
    let mut r = match prev {
        Some(p) if p.id == endpoint.id && p.url == endpoint.url => p.clone(),
        _ => EndpointHealth {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            status: HealthStatus::Healthy,
            since: now,
            successes: 0,
            failures: 0,
            last_error: None,
        },
    };
    let before = r.status;
    match result {
        ProbeResult::Up => {
            r.failures = 0;
            r.last_error = None;
            r.successes = (r.successes + 1).min(check.healthy_threshold);
            if r.status == HealthStatus::Unhealthy && r.successes >= check.healthy_threshold {
                r.status = HealthStatus::Healthy;
            }
        }
        ProbeResult::Down(why) => {
            r.successes = 0;
            r.last_error = Some(why.clone());
            r.failures = (r.failures + 1).min(check.unhealthy_threshold);
            if r.status == HealthStatus::Healthy && r.failures >= check.unhealthy_threshold {
                r.status = HealthStatus::Unhealthy;
            }
        }
    }
    let transition = r.status != before;
    if transition {
        r.since = now;
    }
    Observed {
        record: r,
        transition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::RouteKey;
    use crate::domain::route::RouteSpec;
    use serde_json::json;

    fn sample() -> HealthCheck {
        HealthCheck::from_json(
            &json!({"path": "/healthz", "healthy_threshold": 2, "unhealthy_threshold": 3}),
        )
        .unwrap()
    }

    fn endpoint(url: &str) -> Endpoint {
        let body = format!(r#"{{"endpoints":[{{"id":"a","url":"{url}"}}]}}"#);
        RouteSpec::from_json(body.as_bytes()).unwrap().endpoints[0].clone()
    }

    fn run(check: &HealthCheck, results: &[bool]) -> Vec<(HealthStatus, bool)> {
        let ep = endpoint("http://a");
        let mut rec: Option<EndpointHealth> = None;
        let mut out = Vec::new();
        for (i, up) in results.iter().enumerate() {
            let res = if *up {
                ProbeResult::Up
            } else {
                ProbeResult::Down("refused".into())
            };
            let o = observe(
                rec.as_ref(),
                &ep,
                check,
                &res,
                Timestamp::from_millis(i as i64),
            );
            out.push((o.record.status, o.transition));
            rec = Some(o.record);
        }
        out
    }

    #[test]
    fn an_endpoint_turns_unhealthy_only_after_the_threshold_of_consecutive_failures() {
        // GIVEN unhealthy_threshold 3, WHEN failures are interrupted by a success
        let c = sample();
        let s = run(&c, &[false, false, true, false, false, false]);
        // THEN only the third consecutive failure flips it
        use HealthStatus::*;
        assert_eq!(
            s,
            vec![
                (Healthy, false),
                (Healthy, false),
                (Healthy, false),
                (Healthy, false),
                (Healthy, false),
                (Unhealthy, true)
            ]
        );
    }

    #[test]
    fn an_unhealthy_endpoint_recovers_after_the_healthy_threshold() {
        let c = sample();
        let s = run(&c, &[false, false, false, true, false, true, true, true]);
        let flips: Vec<usize> = s
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| *t)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(flips, vec![2, 6]);
        assert_eq!(s[7].0, HealthStatus::Healthy);
    }

    #[test]
    fn a_steady_endpoint_keeps_an_identical_record() {
        let c = sample();
        let ep = endpoint("http://a");
        let mut rec = observe(None, &ep, &c, &ProbeResult::Up, Timestamp::from_millis(1)).record;
        rec = observe(
            Some(&rec),
            &ep,
            &c,
            &ProbeResult::Up,
            Timestamp::from_millis(2),
        )
        .record;
        let again = observe(
            Some(&rec),
            &ep,
            &c,
            &ProbeResult::Up,
            Timestamp::from_millis(3),
        );
        assert_eq!(again.record, rec, "no write needed in a steady state");
    }

    #[test]
    fn a_record_about_an_old_url_is_ignored() {
        let key = RouteKey::parse("t", "s", "e", "1").unwrap();
        let spec = RouteSpec::from_json(
            br#"{"endpoints":[{"id":"a","url":"http://new"}],"health_check":{"path":"/"}}"#,
        )
        .unwrap();
        let mut route = Route::from_spec(&key, spec, 1, Timestamp::from_millis(0), "u");
        let old = EndpointHealth {
            id: route.endpoints[0].id.clone(),
            url: "http://old".into(),
            status: HealthStatus::Unhealthy,
            since: Timestamp::from_millis(5),
            successes: 0,
            failures: 3,
            last_error: None,
        };
        let mut h = RouteHealth {
            seq: 1,
            endpoints: vec![old],
        };
        overlay(&mut route, Some(&h));
        assert_eq!(route.endpoints[0].health, None);
        h.endpoints[0].url = "http://new".into();
        assert!(overlay_changes(&route, Some(&h)));
        overlay(&mut route, Some(&h));
        assert_eq!(
            route.endpoints[0].health.map(|v| v.status),
            Some(HealthStatus::Unhealthy)
        );
        // WHEN the check is removed, the state no longer shows
        route.health_check = None;
        overlay(&mut route, Some(&h));
        assert_eq!(route.endpoints[0].health, None);
    }
}
