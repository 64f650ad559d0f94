//! A route's `health_check` (docs/health.md): how its endpoints are probed, and the strict
//! parser of the PUT body's `health_check` object. Part of the route document, so
//! [`super::route`] uses it, and it uses nothing of the route; the state the prober keeps
//! and the rules over it are in [`super::health`], which uses both.

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

    /// The URL one probe of the endpoint at `endpoint_url` fetches: that URL's scheme (or
    /// the override) and authority, then [`HealthCheck::path`]. The endpoint URL's own
    /// path is not used, as with Route 53's host + port + resource path.
    pub fn probe_url(&self, endpoint_url: &str) -> String {
        let (scheme, rest) = endpoint_url
            .split_once("://")
            .unwrap_or(("http", endpoint_url));
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

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut c = check(json!({"path": "/healthz"})).unwrap();
        assert_eq!(
            c.probe_url("https://blue.x:8443/api/v1?q=1"),
            "https://blue.x:8443/healthz"
        );
        c.scheme = Some(Scheme::Http);
        assert_eq!(
            c.probe_url("https://[::1]:8443"),
            "http://[::1]:8443/healthz"
        );
    }
}
