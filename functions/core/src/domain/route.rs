//! The route document (CONTRACT §2) and the strict parser of a PUT body. The document's
//! health fields are its `health_check` ([`super::health_check`]) and, on each endpoint,
//! the server-set [`HealthView`], defined here; the state behind the view is
//! [`super::health`]'s, which builds on this module, never the other way round.

use super::health_check::HealthCheck;
use super::names::{EndpointId, LabelKey, LabelValue, Region, RouteKey, ServiceKey, VersionName};
use super::names::{EnvName, ServiceName, TenantName};
use super::timefmt::Timestamp;
use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether an endpoint may be selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    /// Selectable.
    Active,
    /// Being taken out of service: never selected.
    Draining,
    /// Never selected.
    Disabled,
}

/// An endpoint's health, as the prober last saw it (docs/health.md).
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

/// One endpoint of a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Unique within the route.
    pub id: EndpointId,
    /// Absolute http(s) URL.
    pub url: String,
    /// 0–1000.
    pub weight: u32,
    /// 0–9, lower is preferred.
    pub priority: u8,
    /// Only `active` endpoints are selected.
    pub status: EndpointStatus,
    /// Optional region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    /// Server-set: the endpoint's health when the route has a `health_check` and the
    /// endpoint was probed (docs/health.md). Never stored with the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
}

/// A stored route: the document of CONTRACT §2, field order included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Tenant.
    pub tenant: TenantName,
    /// Service.
    pub service: ServiceName,
    /// Environment.
    pub env: EnvName,
    /// Version.
    pub version: VersionName,
    /// 1–64 endpoints.
    pub endpoints: Vec<Endpoint>,
    /// How long a client may cache a resolution.
    pub ttl_seconds: u32,
    /// At most 16 labels.
    pub labels: BTreeMap<LabelKey, LabelValue>,
    /// How the endpoints are probed, when they are (docs/health.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// An inactive route resolves as 404.
    pub active: bool,
    /// Grows by exactly 1 on every change.
    pub revision: u64,
    /// When the revision was written.
    pub updated_at: Timestamp,
    /// The `sub` of who wrote it.
    pub updated_by: String,
}

impl Route {
    /// The route's key.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            svc: ServiceKey {
                tenant: self.tenant.clone(),
                service: self.service.clone(),
                env: self.env.clone(),
            },
            version: self.version.clone(),
        }
    }

    /// Builds the stored document from a validated body.
    pub fn from_spec(
        key: &RouteKey,
        spec: RouteSpec,
        revision: u64,
        at: Timestamp,
        by: &str,
    ) -> Self {
        Route {
            tenant: key.svc.tenant.clone(),
            service: key.svc.service.clone(),
            env: key.svc.env.clone(),
            version: key.version.clone(),
            endpoints: spec.endpoints,
            ttl_seconds: spec.ttl_seconds,
            labels: spec.labels,
            health_check: spec.health_check,
            active: spec.active,
            revision,
            updated_at: at,
            updated_by: by.to_owned(),
        }
    }
}

/// What a PUT body may set: validated, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// 1–64 endpoints with unique ids.
    pub endpoints: Vec<Endpoint>,
    /// 1–3600, default 30.
    pub ttl_seconds: u32,
    /// At most 16.
    pub labels: BTreeMap<LabelKey, LabelValue>,
    /// Optional health check.
    pub health_check: Option<HealthCheck>,
    /// Default true.
    pub active: bool,
}

const SERVER_FIELDS: [&str; 7] = [
    "tenant",
    "service",
    "env",
    "version",
    "revision",
    "updated_at",
    "updated_by",
];

impl RouteSpec {
    /// Parses a PUT body strictly: unknown fields, `null`s, server-set fields and a key
    /// sent twice (at any depth) are 400, and the message names the field.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let value: Value = crate::strict_json::from_slice(body)
            .map_err(|e| Error::InvalidRequest(format!("body: not valid JSON ({e})")))?;
        let Value::Object(obj) = value else {
            return Err(Error::invalid("body", "must be a JSON object"));
        };
        let mut spec = RouteSpec {
            endpoints: Vec::new(),
            ttl_seconds: 30,
            labels: BTreeMap::new(),
            health_check: None,
            active: true,
        };
        let mut saw_endpoints = false;
        for (field, v) in &obj {
            if v.is_null() {
                return Err(Error::invalid(field, "must not be null"));
            }
            match field.as_str() {
                "endpoints" => {
                    spec.endpoints = parse_endpoints(v)?;
                    saw_endpoints = true;
                }
                "ttl_seconds" => spec.ttl_seconds = int_in(v, "ttl_seconds", 1, 3600)? as u32,
                "labels" => spec.labels = parse_labels(v)?,
                "health_check" => spec.health_check = Some(HealthCheck::from_json(v)?),
                "active" => {
                    spec.active = v
                        .as_bool()
                        .ok_or_else(|| Error::invalid("active", "must be a boolean"))?
                }
                f if SERVER_FIELDS.contains(&f) => {
                    return Err(Error::invalid(
                        f,
                        "is set by the server and must not be sent",
                    ));
                }
                f => return Err(Error::invalid(f, "unknown field")),
            }
        }
        if !saw_endpoints {
            return Err(Error::invalid("endpoints", "is required"));
        }
        Ok(spec)
    }
}

/// An integer in `min..=max`. A JSON number is an integer when it has no fractional
/// part, however it is written (`90`, `90.0`, `9e1`), as JSON Schema's `integer` says:
/// clients that hold numbers as floats must not get a 400 for a valid weight.
fn int_in(v: &Value, field: &str, min: u64, max: u64) -> Result<u64, Error> {
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64)
            .map(|f| f as u64)
    });
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::invalid(
            field,
            format!("must be an integer from {min} to {max}"),
        )),
    }
}

fn str_of<'a>(v: &'a Value, field: &str) -> Result<&'a str, Error> {
    v.as_str()
        .ok_or_else(|| Error::invalid(field, "must be a string"))
}

fn parse_endpoints(v: &Value) -> Result<Vec<Endpoint>, Error> {
    let Value::Array(items) = v else {
        return Err(Error::invalid("endpoints", "must be an array"));
    };
    if items.is_empty() || items.len() > 64 {
        return Err(Error::invalid("endpoints", "must hold 1 to 64 endpoints"));
    }
    let mut out: Vec<Endpoint> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("endpoints[{i}]");
        let Value::Object(obj) = item else {
            return Err(Error::invalid(&at, "must be an object"));
        };
        let ep = parse_endpoint(obj, &at)?;
        if out.iter().any(|e| e.id == ep.id) {
            return Err(Error::invalid(
                &format!("{at}.id"),
                "duplicates another endpoint's id",
            ));
        }
        out.push(ep);
    }
    Ok(out)
}

fn parse_endpoint(obj: &Map<String, Value>, at: &str) -> Result<Endpoint, Error> {
    let mut id = None;
    let mut url = None;
    let mut weight = 1;
    let mut priority = 0;
    let mut status = EndpointStatus::Active;
    let mut region = None;
    for (field, v) in obj {
        let name = format!("{at}.{field}");
        if v.is_null() {
            return Err(Error::invalid(&name, "must not be null"));
        }
        match field.as_str() {
            "id" => {
                id = Some(
                    EndpointId::parse(str_of(v, &name)?).map_err(|e| Error::invalid(&name, e))?,
                )
            }
            "url" => {
                let s = str_of(v, &name)?;
                check_url(s).map_err(|e| Error::invalid(&name, e))?;
                url = Some(s.to_owned());
            }
            "weight" => weight = int_in(v, &name, 0, 1000)? as u32,
            "priority" => priority = int_in(v, &name, 0, 9)? as u8,
            "status" => {
                status = match str_of(v, &name)? {
                    "active" => EndpointStatus::Active,
                    "draining" => EndpointStatus::Draining,
                    "disabled" => EndpointStatus::Disabled,
                    _ => {
                        return Err(Error::invalid(
                            &name,
                            "must be one of active, draining, disabled",
                        ));
                    }
                }
            }
            "region" => {
                region =
                    Some(Region::parse(str_of(v, &name)?).map_err(|e| Error::invalid(&name, e))?)
            }
            "health" => {
                return Err(Error::invalid(
                    &name,
                    "is set by the server and must not be sent",
                ));
            }
            _ => return Err(Error::invalid(&name, "unknown field")),
        }
    }
    Ok(Endpoint {
        id: id.ok_or_else(|| Error::invalid(&format!("{at}.id"), "is required"))?,
        url: url.ok_or_else(|| Error::invalid(&format!("{at}.url"), "is required"))?,
        weight,
        priority,
        status,
        region,
        health: None,
    })
}

fn parse_labels(v: &Value) -> Result<BTreeMap<LabelKey, LabelValue>, Error> {
    let Value::Object(obj) = v else {
        return Err(Error::invalid("labels", "must be an object of strings"));
    };
    if obj.len() > 16 {
        return Err(Error::invalid("labels", "must hold at most 16 pairs"));
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let name = format!("labels.{k}");
        let key = LabelKey::parse(k).map_err(|e| Error::invalid(&name, format!("key {e}")))?;
        if v.is_null() {
            return Err(Error::invalid(&name, "must not be null"));
        }
        let val = LabelValue::parse(str_of(v, &name)?).map_err(|e| Error::invalid(&name, e))?;
        out.insert(key, val);
    }
    Ok(out)
}

/// An absolute `http`/`https` URL with a host, no user-info, at most 2048 chars.
pub fn check_url(s: &str) -> Result<(), &'static str> {
    const RULE: &str =
        "must be an absolute http or https URL with a host, no user-info, at most 2048 chars";
    if s.len() > 2048 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(RULE);
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or(RULE)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(RULE);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(RULE)?;
        // A bracketed host must be a real IPv6 address: `[0]` or `[:]` is no host, and
        // clients' URL parsers reject it.
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(RULE);
        }
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':').ok_or(RULE)?),
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'~' | b':'));
    if !host_ok {
        return Err(RULE);
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|c| c.is_ascii_digit()) => {}
            _ => return Err(RULE),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<RouteSpec, Error> {
        RouteSpec::from_json(s.as_bytes())
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::InvalidRequest(m) => m.split(':').next().unwrap_or_default().to_owned(),
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn a_body_that_repeats_a_key_at_any_depth_is_400() {
        for body in [
            r#"{"endpoints":[{"id":"a","url":"https://a"}],"active":true,"active":false}"#,
            r#"{"endpoints":[{"id":"a","url":"https://a","weight":1,"weight":1000}]}"#,
            r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":{"t":"x","t":"y"}}"#,
        ] {
            match parse(body) {
                Err(Error::InvalidRequest(m)) => assert!(m.contains("duplicate key"), "{m}"),
                other => panic!("{body}: expected 400, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_minimal_body_gets_the_defaults() {
        let s = parse(r#"{"endpoints":[{"id":"a","url":"https://a.example"}]}"#).unwrap();
        assert_eq!(s.ttl_seconds, 30);
        assert!(s.active);
        assert!(s.labels.is_empty());
        let e = &s.endpoints[0];
        assert_eq!(
            (e.weight, e.priority, e.status, e.region.clone()),
            (1, 0, EndpointStatus::Active, None)
        );
    }

    #[test]
    fn a_full_body_is_kept_as_sent() {
        let s = parse(
            r#"{"endpoints":[{"id":"blue","url":"https://blue.x:8443","weight":90,"priority":1,"status":"draining","region":"eu-west-1"}],
                "ttl_seconds":3600,"labels":{"team":"payments"},"active":false}"#,
        )
        .unwrap();
        assert_eq!(s.ttl_seconds, 3600);
        assert!(!s.active);
        assert_eq!(s.labels.len(), 1);
        assert_eq!(s.endpoints[0].status, EndpointStatus::Draining);
        assert_eq!(s.endpoints[0].weight, 90);
    }

    #[test]
    fn integral_numbers_count_as_integers_however_written() {
        let s = parse(
            r#"{"endpoints":[{"id":"a","url":"https://a","weight":90.0,"priority":1e0}],"ttl_seconds":3.6e3}"#,
        )
        .unwrap();
        assert_eq!(
            (
                s.endpoints[0].weight,
                s.endpoints[0].priority,
                s.ttl_seconds
            ),
            (90, 1, 3600)
        );
        for bad in ["90.5", "1e300", "-0.5", "1000.0000001"] {
            let body =
                format!(r#"{{"endpoints":[{{"id":"a","url":"https://a","weight":{bad}}}]}}"#);
            assert_eq!(
                field_of(parse(&body).unwrap_err()),
                "endpoints[0].weight",
                "{bad}"
            );
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (r#"{}"#, "endpoints"),
            (r#"[]"#, "body"),
            (r#"{"endpoints":[]}"#, "endpoints"),
            (r#"{"endpoints":null}"#, "endpoints"),
            (r#"{"endpoints":[{"url":"https://a"}]}"#, "endpoints[0].id"),
            (r#"{"endpoints":[{"id":"a"}]}"#, "endpoints[0].url"),
            (
                r#"{"endpoints":[{"id":"A","url":"https://a"}]}"#,
                "endpoints[0].id",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"ftp://a"}]}"#,
                "endpoints[0].url",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://u:p@a"}]}"#,
                "endpoints[0].url",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://"}]}"#,
                "endpoints[0].url",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","weight":1001}]}"#,
                "endpoints[0].weight",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","weight":1.5}]}"#,
                "endpoints[0].weight",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","weight":-1}]}"#,
                "endpoints[0].weight",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","priority":10}]}"#,
                "endpoints[0].priority",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","status":"up"}]}"#,
                "endpoints[0].status",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","region":"EU"}]}"#,
                "endpoints[0].region",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","weigth":1}]}"#,
                "endpoints[0].weigth",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","region":null}]}"#,
                "endpoints[0].region",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"},{"id":"a","url":"https://b"}]}"#,
                "endpoints[1].id",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"ttl_seconds":0}"#,
                "ttl_seconds",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"ttl_seconds":3601}"#,
                "ttl_seconds",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"active":"yes"}"#,
                "active",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":{"a b":"x"}}"#,
                "labels.a b",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":{"a":""}}"#,
                "labels.a",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":{"a":1}}"#,
                "labels.a",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"revision":3}"#,
                "revision",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"tenant":"acme"}"#,
                "tenant",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"updated_by":"me"}"#,
                "updated_by",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"colour":"red"}"#,
                "colour",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":null}"#,
                "labels",
            ),
            (r#"{"endpoints": "#, "body"),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a","health":{"status":"healthy"}}]}"#,
                "endpoints[0].health",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"health_check":null}"#,
                "health_check",
            ),
            (
                r#"{"endpoints":[{"id":"a","url":"https://a"}],"health_check":{"path":"/","interval":10}}"#,
                "health_check.interval",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(parse(body).unwrap_err()), field, "{body}");
        }
    }

    #[test]
    fn too_many_endpoints_or_labels_are_rejected() {
        let eps: Vec<String> = (0..65)
            .map(|i| format!(r#"{{"id":"e{i}","url":"https://a"}}"#))
            .collect();
        let body = format!(r#"{{"endpoints":[{}]}}"#, eps.join(","));
        assert_eq!(field_of(parse(&body).unwrap_err()), "endpoints");
        let labels: Vec<String> = (0..17).map(|i| format!(r#""k{i}":"v""#)).collect();
        let body = format!(
            r#"{{"endpoints":[{{"id":"a","url":"https://a"}}],"labels":{{{}}}}}"#,
            labels.join(",")
        );
        assert_eq!(field_of(parse(&body).unwrap_err()), "labels");
    }

    #[test]
    fn urls_follow_the_contract() {
        for ok in [
            "http://a",
            "https://a.b:8443/x?y#z",
            "https://[::1]:80/",
            "https://[2001:db8::ffff:10.0.0.1]",
            "http://10.0.0.1",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        let long = format!("https://a/{}", "x".repeat(2040));
        for bad in [
            "a",
            "//a",
            "https://a:0",
            "https://a:99999",
            "https://a b",
            "mailto:x",
            "https://@a",
            "https://[0]",
            "https://[:]",
            "https://[1:2]:80",
            "https://[::1",
            "https://[::1]x",
            long.as_str(),
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_route_serialises_in_the_contract_shape() {
        let key = RouteKey::parse("acme", "checkout", "prod", "2.3.1").unwrap();
        let spec = parse(r#"{"endpoints":[{"id":"a","url":"https://a"}]}"#).unwrap();
        let r = Route::from_spec(&key, spec, 7, Timestamp::from_millis(0), "user-1");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["revision"], 7);
        assert_eq!(v["updated_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["endpoints"][0]["status"], "active");
        assert!(v["endpoints"][0].get("region").is_none());
        let back: Route = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_health_check_is_kept_and_round_trips_through_the_document() {
        let key = RouteKey::parse("acme", "checkout", "prod", "2.3.1").unwrap();
        let spec = parse(
            r#"{"endpoints":[{"id":"a","url":"https://a"}],"health_check":{"path":"/healthz","interval_seconds":10,"timeout_seconds":2,"scheme":"http"}}"#,
        )
        .unwrap();
        let r = Route::from_spec(&key, spec, 1, Timestamp::from_millis(0), "u");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["health_check"]["expected_status"], "200-399");
        assert_eq!(v["health_check"]["interval_seconds"], 10);
        let back: Route = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        let plain = Route::from_spec(
            &key,
            parse(r#"{"endpoints":[{"id":"a","url":"https://a"}]}"#).unwrap(),
            1,
            Timestamp::from_millis(0),
            "u",
        );
        assert!(
            serde_json::to_value(&plain)
                .unwrap()
                .get("health_check")
                .is_none()
        );
    }

    proptest! {
        #[test]
        fn the_body_parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn parsed_weights_are_kept_exactly(w in 0u32..=1000, p in 0u8..=9) {
            let body = format!(r#"{{"endpoints":[{{"id":"a","url":"https://a","weight":{w},"priority":{p}}}]}}"#);
            let s = parse(&body).unwrap();
            prop_assert_eq!(s.endpoints[0].weight, w);
            prop_assert_eq!(s.endpoints[0].priority, p);
        }
    }
}
