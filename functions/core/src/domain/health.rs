//! Endpoint health (docs/health.md): a route's `health_check` settings and their strict
//! parser, the state kept per endpoint, the threshold rule that turns probe results into
//! transitions, and the overlay that shows the state on a route's endpoints. Pure: no I/O.
//!
//! Health state is not part of the route document's revision: the prober writes it beside
//! the route (its own item, ordered by its own sequence number [`RouteHealth::seq`]), so a
//! health change never bumps `revision` and never breaks a user's `If-Match`.

use super::names::EndpointId;
use super::route::{Endpoint, Route};
use super::timefmt::Timestamp;
use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Default `interval_seconds`.
pub const DEFAULT_INTERVAL: u32 = 30;
/// Default `timeout_seconds`.
pub const DEFAULT_TIMEOUT: u32 = 5;
/// Default `healthy_threshold`.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
/// Default `unhealthy_threshold`.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Longest `path`.
pub const MAX_PATH: usize = 1024;

/// An inclusive range of HTTP status codes, written `"200-399"` (or one code, `"204"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StatusRange {
    /// Lowest accepted status.
    pub low: u16,
    /// Highest accepted status.
    pub high: u16,
}

impl StatusRange {
    /// Parses `"low-high"` or `"code"`, each a status from 100 to 599, low ≤ high.
    pub fn parse(s: &str) -> Result<Self, String> {
        const RULE: &str = "must be a status code or a range like \"200-399\" (100 to 599)";
        let code = |t: &str| -> Result<u16, String> {
            match t.parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) && t.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
                _ => Err(RULE.to_owned()),
            }
        };
        let (low, high) = match s.split_once('-') {
            Some((l, h)) => (code(l)?, code(h)?),
            None => {
                let c = code(s)?;
                (c, c)
            }
        };
        if low > high {
            return Err(RULE.to_owned());
        }
        Ok(StatusRange { low, high })
    }

    /// Whether `status` is in the range.
    pub fn accepts(self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl TryFrom<String> for StatusRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        StatusRange::parse(&s)
    }
}

impl From<StatusRange> for String {
    fn from(r: StatusRange) -> String {
        if r.low == r.high {
            r.low.to_string()
        } else {
            format!("{}-{}", r.low, r.high)
        }
    }
}

/// Which scheme the probe uses, when it is not the endpoint URL's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

/// A route's `health_check`: how its endpoints are probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path (and query) probed on each endpoint's host: starts with `/`.
    pub path: String,
    /// Statuses that count as healthy; default `200-399`.
    pub expected_status: StatusRange,
    /// Seconds between two probes of one endpoint: 10–300, default 30.
    pub interval_seconds: u32,
    /// Seconds a probe may take: 1–60 and below the interval, default 5.
    pub timeout_seconds: u32,
    /// Consecutive successes that make an unhealthy endpoint healthy: 1–10, default 2.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy: 1–10, default 3.
    pub unhealthy_threshold: u32,
    /// Probe with this scheme instead of the endpoint URL's (same host and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
}

impl HealthCheck {
    /// Parses the `health_check` object of a PUT body strictly: unknown fields and `null`s
    /// are 400 naming the field (`health_check.<field>`).
    pub fn from_json(v: &Value) -> Result<Self, Error> {
        let Value::Object(obj) = v else {
            return Err(Error::invalid("health_check", "must be an object"));
        };
        parse_check(obj)
    }

    /// The URL one probe of `endpoint` fetches: the endpoint URL's scheme (or the
    /// override) and authority, then [`HealthCheck::path`]. The endpoint URL's own path is
    /// not used, as with Route 53's host + port + resource path.
    pub fn probe_url(&self, endpoint: &Endpoint) -> String {
        let (scheme, rest) = endpoint
            .url
            .split_once("://")
            .unwrap_or(("http", endpoint.url.as_str()));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let scheme = match self.scheme {
            Some(Scheme::Http) => "http",
            Some(Scheme::Https) => "https",
            None => scheme,
        };
        format!("{scheme}://{authority}{}", self.path)
    }
}

fn int_field(v: &Value, name: &str, min: u64, max: u64) -> Result<u32, Error> {
    match v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64)
            .map(|f| f as u64)
    }) {
        Some(n) if (min..=max).contains(&n) => Ok(n as u32),
        _ => Err(Error::invalid(
            name,
            format!("must be an integer from {min} to {max}"),
        )),
    }
}

fn parse_check(obj: &Map<String, Value>) -> Result<HealthCheck, Error> {
    let mut check = HealthCheck {
        path: String::new(),
        expected_status: StatusRange {
            low: 200,
            high: 399,
        },
        interval_seconds: DEFAULT_INTERVAL,
        timeout_seconds: DEFAULT_TIMEOUT,
        healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
        unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
        scheme: None,
    };
    let mut saw_path = false;
    for (field, v) in obj {
        let name = format!("health_check.{field}");
        if v.is_null() {
            return Err(Error::invalid(&name, "must not be null"));
        }
        let text = || {
            v.as_str()
                .ok_or_else(|| Error::invalid(&name, "must be a string"))
        };
        match field.as_str() {
            "path" => {
                let p = text()?;
                check_path(p).map_err(|e| Error::invalid(&name, e))?;
                check.path = p.to_owned();
                saw_path = true;
            }
            "expected_status" => {
                check.expected_status =
                    StatusRange::parse(text()?).map_err(|e| Error::invalid(&name, e))?
            }
            "interval_seconds" => check.interval_seconds = int_field(v, &name, 10, 300)?,
            "timeout_seconds" => check.timeout_seconds = int_field(v, &name, 1, 60)?,
            "healthy_threshold" => check.healthy_threshold = int_field(v, &name, 1, 10)?,
            "unhealthy_threshold" => check.unhealthy_threshold = int_field(v, &name, 1, 10)?,
            "scheme" => {
                check.scheme = Some(match text()? {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    _ => return Err(Error::invalid(&name, "must be one of http, https")),
                })
            }
            _ => return Err(Error::invalid(&name, "unknown field")),
        }
    }
    if !saw_path {
        return Err(Error::invalid("health_check.path", "is required"));
    }
    if check.timeout_seconds >= check.interval_seconds {
        return Err(Error::invalid(
            "health_check.timeout_seconds",
            "must be less than interval_seconds",
        ));
    }
    Ok(check)
}

/// A probe path: starts with `/`, at most [`MAX_PATH`] chars, printable ASCII without
/// spaces or `#`.
fn check_path(p: &str) -> Result<(), &'static str> {
    const RULE: &str = "must start with '/' and hold at most 1024 printable ASCII characters without spaces or '#'";
    let ok = p.starts_with('/')
        && p.len() <= MAX_PATH
        && p.bytes().all(|c| c.is_ascii_graphic() && c != b'#');
    if ok { Ok(()) } else { Err(RULE) }
}

/// An endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Selectable.
    Healthy,
    /// Skipped by resolve while another endpoint of the route is healthy.
    Unhealthy,
}

impl HealthStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// What the route document shows on an endpoint (server-set, never sent by clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthView {
    /// The endpoint's health.
    pub status: HealthStatus,
    /// When it last changed (or was first probed).
    pub since: Timestamp,
}

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

    fn check(v: Value) -> Result<HealthCheck, Error> {
        HealthCheck::from_json(&v)
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::InvalidRequest(m) => m.split(':').next().unwrap_or_default().to_owned(),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    fn sample() -> HealthCheck {
        check(json!({"path": "/healthz", "healthy_threshold": 2, "unhealthy_threshold": 3}))
            .unwrap()
    }

    fn endpoint(url: &str) -> Endpoint {
        let body = format!(r#"{{"endpoints":[{{"id":"a","url":"{url}"}}]}}"#);
        RouteSpec::from_json(body.as_bytes()).unwrap().endpoints[0].clone()
    }

    #[test]
    fn a_minimal_check_gets_the_defaults() {
        let c = check(json!({"path": "/"})).unwrap();
        assert_eq!(String::from(c.expected_status), "200-399");
        assert_eq!(
            (
                c.interval_seconds,
                c.timeout_seconds,
                c.healthy_threshold,
                c.unhealthy_threshold,
                c.scheme
            ),
            (30, 5, 2, 3, None)
        );
    }

    #[test]
    fn every_bad_health_check_field_is_named() {
        let cases = [
            (json!([]), "health_check"),
            (json!({}), "health_check.path"),
            (json!({"path": "healthz"}), "health_check.path"),
            (json!({"path": "/a b"}), "health_check.path"),
            (json!({"path": null}), "health_check.path"),
            (
                json!({"path": "/", "interval_seconds": 9}),
                "health_check.interval_seconds",
            ),
            (
                json!({"path": "/", "interval_seconds": 301}),
                "health_check.interval_seconds",
            ),
            (
                json!({"path": "/", "interval_seconds": 10.5}),
                "health_check.interval_seconds",
            ),
            (
                json!({"path": "/", "timeout_seconds": 0}),
                "health_check.timeout_seconds",
            ),
            (
                json!({"path": "/", "interval_seconds": 10, "timeout_seconds": 10}),
                "health_check.timeout_seconds",
            ),
            (
                json!({"path": "/", "healthy_threshold": 0}),
                "health_check.healthy_threshold",
            ),
            (
                json!({"path": "/", "unhealthy_threshold": 11}),
                "health_check.unhealthy_threshold",
            ),
            (
                json!({"path": "/", "expected_status": "200-"}),
                "health_check.expected_status",
            ),
            (
                json!({"path": "/", "expected_status": "399-200"}),
                "health_check.expected_status",
            ),
            (
                json!({"path": "/", "expected_status": "600"}),
                "health_check.expected_status",
            ),
            (
                json!({"path": "/", "expected_status": 200}),
                "health_check.expected_status",
            ),
            (json!({"path": "/", "scheme": "ftp"}), "health_check.scheme"),
            (json!({"path": "/", "scheme": null}), "health_check.scheme"),
            (
                json!({"path": "/", "method": "HEAD"}),
                "health_check.method",
            ),
        ];
        for (v, field) in cases {
            assert_eq!(field_of(check(v.clone()).unwrap_err()), field, "{v}");
        }
    }

    #[test]
    fn status_ranges_read_and_print_both_forms() {
        let r = StatusRange::parse("204").unwrap();
        assert!(r.accepts(204) && !r.accepts(200));
        assert_eq!(String::from(r), "204");
        let r = StatusRange::parse("200-399").unwrap();
        assert!(r.accepts(200) && r.accepts(399) && !r.accepts(400) && !r.accepts(199));
        assert!(StatusRange::parse("+200").is_err());
    }

    #[test]
    fn the_probe_url_keeps_host_and_port_and_swaps_path_and_scheme() {
        let mut c = sample();
        assert_eq!(
            c.probe_url(&endpoint("https://blue.x:8443/api/v1?q=1")),
            "https://blue.x:8443/healthz"
        );
        c.scheme = Some(Scheme::Http);
        assert_eq!(
            c.probe_url(&endpoint("https://[::1]:8443")),
            "http://[::1]:8443/healthz"
        );
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
