//! Resolve answers (CONTRACT §4) and their encoding once per route revision: [`answer`]
//! makes the body naming one endpoint of a route; a [`Resolved`] route carries its
//! winning priority group and, for each candidate, the answer body naming that candidate,
//! encoded the first time it is served and kept with the in-process (L1) entry. An L1 hit
//! then costs the endpoint choice and a reference count, not a JSON encoding; the body is
//! byte for byte what [`answer`] encodes. The resolver ([`super::resolve`]) keeps
//! [`Resolved`] routes in L1; this module needs nothing of it.
//!
//! Every candidate gets its own body, so a route's bodies grow with the square of its
//! candidates (64 candidates with 2 KB URLs would be megabytes). Past [`RENDER_BUDGET`]
//! estimated bytes the route is encoded per request instead, as before.

use crate::domain::pick;
use crate::domain::route::{Endpoint, Route};
use crate::{Error, Result};
use bytes::Bytes;
use http::HeaderValue;
use serde::Serialize;
use std::sync::{Arc, OnceLock};

/// The most bytes one route's encoded answers may take, by [`body_estimate`] × candidates.
pub const RENDER_BUDGET: usize = 16 * 1024;

/// A route as resolve serves it: the route, its candidates and its encoded answers.
pub struct Resolved {
    route: Arc<Route>,
    /// Indexes into `route.endpoints` of the winning priority group, in route order.
    candidates: Vec<usize>,
    /// Every endpoint of the group is unhealthy: it failed open (docs/health.md).
    fail_open: bool,
    /// One lazily encoded body per candidate; empty when over [`RENDER_BUDGET`].
    bodies: Box<[OnceLock<Bytes>]>,
    etag: HeaderValue,
    cache_control: HeaderValue,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("route", &self.route.key().to_string())
            .field("revision", &self.route.revision)
            .field("candidates", &self.candidates)
            .finish()
    }
}

impl Resolved {
    /// Works out the candidates; encodes nothing yet.
    pub fn new(route: Arc<Route>) -> Self {
        let (group, fail_open) = pick::candidates_with_health(&route);
        let candidates: Vec<usize> = group
            .into_iter()
            .filter_map(|c| route.endpoints.iter().position(|e| std::ptr::eq(e, c)))
            .collect();
        let estimate: usize = body_estimate(&route, &candidates) * candidates.len();
        let bodies = if estimate <= RENDER_BUDGET {
            (0..candidates.len()).map(|_| OnceLock::new()).collect()
        } else {
            Box::default()
        };
        let etag = HeaderValue::from_str(&format!("\"{}\"", route.revision))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let cache_control = HeaderValue::from_str(&format!("max-age={}", route.ttl_seconds))
            .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"));
        Self {
            route,
            candidates,
            fail_open,
            bodies,
            etag,
            cache_control,
        }
    }

    /// The route.
    pub fn route(&self) -> &Arc<Route> {
        &self.route
    }

    /// `ETag: "<revision>"`.
    pub fn etag(&self) -> &HeaderValue {
        &self.etag
    }

    /// `Cache-Control: max-age=<ttl_seconds>`.
    pub fn cache_control(&self) -> &HeaderValue {
        &self.cache_control
    }

    /// Whether every endpoint of the winning group is unhealthy, so that it failed open
    /// (header `X-Health: fail-open`).
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// Whether the route has an endpoint to answer with.
    pub fn has_candidate(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Whether an `If-None-Match` header names this revision: a comma-separated list of
    /// entity tags, weak (`W/"7"`) or strong, or `*` (RFC 9110 §13.1.2: GET compares
    /// weakly). Anything that is not a valid tag matches nothing.
    pub fn etag_matches(&self, if_none_match: &str) -> bool {
        let mine = self.etag.as_bytes();
        if_none_match
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == mine)
    }

    /// The answer body: the candidate `key` sticks to, or a weighted random one without a
    /// key. 503 `no_available_endpoint` when the route has no candidate.
    pub fn body(&self, key: Option<&str>) -> Result<Bytes> {
        let cands: Vec<&Endpoint> = self
            .candidates
            .iter()
            .map(|&i| &self.route.endpoints[i])
            .collect();
        let chosen = pick::choose(&cands, key).ok_or(Error::NoAvailableEndpoint)?;
        let at = cands
            .iter()
            .position(|e| std::ptr::eq(*e, chosen))
            .ok_or(Error::NoAvailableEndpoint)?;
        let encode = || -> Result<Bytes> {
            serde_json::to_vec(&answer_for(&self.route, &cands, chosen, self.fail_open))
                .map(Bytes::from)
                .map_err(|e| Error::Internal(format!("encode answer: {e}")))
        };
        match self.bodies.get(at) {
            Some(slot) => match slot.get() {
                Some(b) => Ok(b.clone()),
                None => {
                    let b = encode()?;
                    Ok(slot.get_or_init(|| b).clone())
                }
            },
            None => encode(),
        }
    }

    /// Memory the encoded answers may take (for the L1 budget): zero when the route is
    /// encoded per request.
    pub fn bodies_bytes(&self) -> usize {
        if self.bodies.is_empty() {
            0
        } else {
            // Each body is one heap block (rounded up to 16, plus 16) and a `Bytes` header.
            let one = body_estimate(&self.route, &self.candidates);
            self.bodies.len() * (one.div_ceil(16) * 16 + 16 + size_of::<OnceLock<Bytes>>())
        }
    }
}

/// One endpoint in an answer. Answers borrow from the route they were made from: they
/// exist to be encoded once, and copying every name and URL into new strings first was
/// a tenth of an in-process resolve's allocations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chosen<'a> {
    /// Id.
    pub id: &'a str,
    /// URL.
    pub url: &'a str,
    /// Region, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
}

/// One candidate in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate<'a> {
    /// Id.
    pub id: &'a str,
    /// URL.
    pub url: &'a str,
    /// Weight.
    pub weight: u32,
    /// Region, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
}

/// The resolve response body (CONTRACT §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Service.
    pub service: &'a str,
    /// Environment.
    pub env: &'a str,
    /// The version chosen.
    pub version: &'a str,
    /// The endpoint to call.
    pub endpoint: Chosen<'a>,
    /// The winning priority group.
    pub candidates: Vec<Candidate<'a>>,
    /// The route's revision.
    pub revision: u64,
    /// How long the client may cache this answer.
    pub ttl_seconds: u32,
    /// Every candidate was unhealthy, so the group failed open (header `X-Health:
    /// fail-open`; docs/health.md). Not part of the body.
    #[serde(skip)]
    pub fail_open: bool,
}

/// Chooses the endpoint; 503 `no_available_endpoint` when the route has no candidate.
pub fn answer<'a>(route: &'a Route, key: Option<&str>) -> Result<Answer<'a>> {
    let (cands, fail_open) = pick::candidates_with_health(route);
    let chosen: &Endpoint = pick::choose(&cands, key).ok_or(Error::NoAvailableEndpoint)?;
    Ok(answer_for(route, &cands, chosen, fail_open))
}

/// The answer naming `chosen` among `cands` (the route's winning priority group;
/// `fail_open` when every endpoint of it is unhealthy).
pub fn answer_for<'a>(
    route: &'a Route,
    cands: &[&'a Endpoint],
    chosen: &'a Endpoint,
    fail_open: bool,
) -> Answer<'a> {
    Answer {
        tenant: route.tenant.as_str(),
        service: route.service.as_str(),
        env: route.env.as_str(),
        version: route.version.as_str(),
        endpoint: Chosen {
            id: chosen.id.as_str(),
            url: &chosen.url,
            region: chosen.region.as_ref().map(|r| r.as_str()),
        },
        candidates: cands
            .iter()
            .map(|e| Candidate {
                id: e.id.as_str(),
                url: &e.url,
                weight: e.weight,
                region: e.region.as_ref().map(|r| r.as_str()),
            })
            .collect(),
        revision: route.revision,
        ttl_seconds: route.ttl_seconds,
        fail_open,
    }
}

/// An upper estimate of one answer's encoded length: the fixed text, the names, and each
/// candidate twice at most (as `endpoint` and in `candidates`). JSON escapes are rare in
/// names and URLs (names allow none); a URL may still need some, hence the slack.
fn body_estimate(route: &Route, candidates: &[usize]) -> usize {
    let names = route.tenant.as_str().len()
        + route.service.as_str().len()
        + route.env.as_str().len()
        + route.version.as_str().len();
    let per: usize = candidates
        .iter()
        .map(|&i| {
            let e = &route.endpoints[i];
            e.id.as_str().len()
                + e.url.len() * 5 / 4
                + e.region.as_ref().map_or(0, |r| r.as_str().len() + 12)
                + 48
        })
        .max()
        .unwrap_or(0);
    160 + names + per * (candidates.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::RouteKey;
    use crate::domain::route::RouteSpec;
    use crate::domain::timefmt::Timestamp;

    fn route(body: &str) -> Arc<Route> {
        let key = RouteKey::parse("acme", "checkout", "prod", "2.3.1").unwrap();
        let spec = RouteSpec::from_json(body.as_bytes()).unwrap();
        Arc::new(Route::from_spec(
            &key,
            spec,
            7,
            Timestamp::from_millis(0),
            "u",
        ))
    }

    const CANARY: &str = r#"{"endpoints":[
        {"id":"blue","url":"https://blue","weight":90,"region":"eu-west-1"},
        {"id":"green","url":"https://green","weight":10},
        {"id":"off","url":"https://off","status":"draining"},
        {"id":"dr","url":"https://dr","priority":1}]}"#;

    #[test]
    fn a_pre_encoded_body_is_byte_for_byte_the_encoded_answer() {
        // GIVEN a canary route
        let r = route(CANARY);
        let resolved = Resolved::new(r.clone());
        for key in ["user-1", "user-2", "user-3", "a", "b", "zz"] {
            // WHEN the same key is answered twice (the second from the kept body)
            let first = resolved.body(Some(key)).unwrap();
            let again = resolved.body(Some(key)).unwrap();
            // THEN both are exactly what encoding the answer gives
            let expected = serde_json::to_vec(&answer(&r, Some(key)).unwrap()).unwrap();
            assert_eq!(first.as_ref(), expected.as_slice());
            assert_eq!(again, first);
        }
        assert!(resolved.bodies_bytes() > 0);
    }

    #[test]
    fn without_a_key_the_body_names_a_random_candidate_of_the_winning_group() {
        let resolved = Resolved::new(route(CANARY));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let v: serde_json::Value =
                serde_json::from_slice(&resolved.body(None).unwrap()).unwrap();
            seen.insert(v["endpoint"]["id"].as_str().unwrap().to_owned());
            assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["blue", "green"],
            "both weights get traffic, and nothing outside the group"
        );
    }

    #[test]
    fn a_route_without_candidates_answers_no_available_endpoint() {
        let resolved = Resolved::new(route(
            r#"{"endpoints":[{"id":"a","url":"https://a","weight":0}]}"#,
        ));
        assert!(!resolved.has_candidate());
        assert!(matches!(
            resolved.body(Some("k")),
            Err(Error::NoAvailableEndpoint)
        ));
    }

    #[test]
    fn a_route_over_the_budget_is_encoded_per_request_with_the_same_bytes() {
        // GIVEN 64 endpoints with long URLs: 64 bodies of ~10 KB each would be 640 KB
        let eps: Vec<String> = (0..64)
            .map(|i| {
                format!(
                    r#"{{"id":"e{i}","url":"https://h{i}.example/{}"}}"#,
                    "p".repeat(120)
                )
            })
            .collect();
        let r = route(&format!(r#"{{"endpoints":[{}]}}"#, eps.join(",")));
        let resolved = Resolved::new(r.clone());
        // THEN nothing is kept, and the answer is still the encoded one
        assert_eq!(resolved.bodies_bytes(), 0);
        let got = resolved.body(Some("k")).unwrap();
        let expected = serde_json::to_vec(&answer(&r, Some("k")).unwrap()).unwrap();
        assert_eq!(got.as_ref(), expected.as_slice());
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let resolved = Resolved::new(route(CANARY));
        assert_eq!(resolved.etag(), "\"7\"");
        assert_eq!(resolved.cache_control(), "max-age=30");
        for yes in ["\"7\"", "W/\"7\"", "\"3\", \"7\"", " \"1\" ,W/\"7\" ", "*"] {
            assert!(resolved.etag_matches(yes), "{yes}");
        }
        for no in ["\"8\"", "7", "\"77\"", "", "W/7", "\"7"] {
            assert!(!resolved.etag_matches(no), "{no}");
        }
    }

    #[test]
    fn an_answer_lists_the_winning_group_and_rejects_empty_ones() {
        let key = RouteKey::parse("t", "s", "e", "1").unwrap();
        let spec = RouteSpec::from_json(
            br#"{"endpoints":[{"id":"a","url":"https://a","region":"eu-west-1"},{"id":"b","url":"https://b","priority":1}]}"#,
        )
        .unwrap();
        let route = Route::from_spec(&key, spec, 3, Timestamp::from_millis(0), "u");
        let a = answer(&route, Some("k")).unwrap();
        assert_eq!(a.endpoint.id, "a");
        assert_eq!(a.endpoint.region, Some("eu-west-1"));
        assert_eq!(a.candidates.len(), 1);
        let none =
            RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a","weight":0}]}"#)
                .unwrap();
        let route = Route::from_spec(&key, none, 1, Timestamp::from_millis(0), "u");
        assert_eq!(
            answer(&route, None).unwrap_err(),
            Error::NoAvailableEndpoint
        );
    }
}
