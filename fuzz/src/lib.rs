//! The properties the fuzz targets check, one function per target, each taking the raw
//! fuzz input. Every parser that sees client or broker bytes must never panic, and must
//! answer in a way the rest of the system can rely on:
//! - [`route_body`]: `RouteSpec::from_json` (PUT bodies).
//! - [`names`]: the name rules (§1), the route table and the header parsers.
//! - [`selector`]: `Selector::parse` and version selection over a fixed set of routes.
//! - [`cursor`]: `CursorKey::open` (opaque pagination cursors).
//! - [`jwt`]: `jwt::verify` (tm-local's authorizer).
//! - [`msk_records`]: `Consumer::apply` over `MemoryCache` (the event consumer).
//!
//! The same functions run under libFuzzer (`fuzz_targets/`, driven by `scripts/fuzz.sh`)
//! and as plain tests over the seed corpus (`cargo test` in this directory).

use arbitrary::Unstructured;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::Method;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tm_core::Error;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_http::api;
use tm_core::cursor::CursorKey;
use tm_core::domain::event::{ChangeType, RouteEvent, SCHEMA};
use tm_core::domain::names::{
    self, EndpointId, EnvName, LabelKey, LabelValue, Region, RouteKey, ServiceName, TenantName,
    VersionName,
};
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::domain::select::{self, Selector, VersionSet};
use tm_core::domain::timefmt::Timestamp;
use tm_core::ports::SharedCache;
use tm_core::services::consume::{Consumer, Outcome};

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// PUT bodies: never a panic; an accepted body obeys every rule of §2, survives a round
/// trip through its JSON form unchanged, and makes a route document that does too.
pub fn route_body(data: &[u8]) {
    let spec = match RouteSpec::from_json(data) {
        Ok(spec) => spec,
        Err(Error::InvalidRequest(msg)) => {
            assert!(!msg.is_empty());
            return;
        }
        Err(other) => panic!("a body is only ever 400, got {other:?}"),
    };
    assert!((1..=64).contains(&spec.endpoints.len()));
    assert!((1..=3600).contains(&spec.ttl_seconds));
    assert!(spec.labels.len() <= 16);
    for (i, e) in spec.endpoints.iter().enumerate() {
        assert!(e.weight <= 1000 && e.priority <= 9);
        assert!(tm_core::domain::route::check_url(&e.url).is_ok());
        assert!(
            spec.endpoints[..i].iter().all(|o| o.id != e.id),
            "endpoint ids are unique"
        );
    }
    // The accepted body, written back as JSON, parses to the same spec.
    let again = json!({
        "endpoints": spec.endpoints,
        "ttl_seconds": spec.ttl_seconds,
        "labels": spec.labels,
        "active": spec.active,
    });
    let reparsed = RouteSpec::from_json(again.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("an accepted body written back is refused: {e:?}\n{again}"));
    assert_eq!(reparsed, spec);
    let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").expect("valid key");
    let route = Route::from_spec(&key, spec, 7, Timestamp::from_millis(0), "fuzz");
    let doc = serde_json::to_string(&route).expect("a route serialises");
    let back: Route = serde_json::from_str(&doc).expect("a stored route reads back");
    assert_eq!(back, route);
}

/// Names, the route table and the header parsers: a name is accepted exactly when its
/// rule holds and is kept as sent (never normalised); nothing panics.
pub fn names(data: &[u8]) {
    let s = text(data);
    let s = s.as_str();
    fn same<T>(parsed: Result<T, String>, rule: bool, as_str: impl Fn(&T) -> &str, s: &str) {
        match parsed {
            Ok(v) => assert!(rule && as_str(&v) == s, "accepted {s:?} against its rule"),
            Err(msg) => assert!(!rule && msg.starts_with("must be"), "refused {s:?}"),
        }
    }
    let dns = names::is_dns_label(s);
    same(TenantName::parse(s), dns, |v| v.as_str(), s);
    same(ServiceName::parse(s), dns, |v| v.as_str(), s);
    same(EnvName::parse(s), dns, |v| v.as_str(), s);
    same(EndpointId::parse(s), dns, |v| v.as_str(), s);
    same(
        VersionName::parse(s),
        names::is_version_name(s),
        |v| v.as_str(),
        s,
    );
    same(
        LabelKey::parse(s),
        names::is_label_key(s),
        |v| v.as_str(),
        s,
    );
    same(
        LabelValue::parse(s),
        names::is_label_value(s),
        |v| v.as_str(),
        s,
    );
    same(Region::parse(s), names::is_region(s), |v| v.as_str(), s);
    if dns {
        assert!(s.len() <= 63 && !s.starts_with('-') && !s.ends_with('-'));
        assert!(
            s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        );
    }
    // A four-part key from the input split on '/'.
    let parts: Vec<&str> = s.splitn(4, '/').collect();
    if let [t, sv, e, v] = parts.as_slice()
        && let Ok(key) = RouteKey::parse(t, sv, e, v)
    {
        assert_eq!(
            (
                key.svc.tenant.as_str(),
                key.svc.service.as_str(),
                key.svc.env.as_str(),
                key.version.as_str()
            ),
            (*t, *sv, *e, *v)
        );
        assert_eq!(key.svc.event_key(), format!("{t}/{sv}/{e}"));
    }
    // The route table takes any path; an op it matches names the path's own tenant.
    for method in [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
    ] {
        match api::match_route(&method, s) {
            Ok(op) => {
                if let Some(t) = op.tenant() {
                    assert!(!t.is_empty());
                    let _ = api::allowed_methods(s);
                }
            }
            Err(e) => assert!(matches!(e, Error::NotFound | Error::MethodNotAllowed)),
        }
    }
    let _ = api::percent_decode(s);
    match api::parse_limit(Some(s)) {
        Ok(n) => assert!((1..=500).contains(&n)),
        Err(e) => assert!(matches!(e, Error::InvalidRequest(_))),
    }
    let _ = api::parse_if_match(Some(s));
    let _ = api::parse_if_none_match(Some(s));
    let cid = api::correlation_id(Some(s));
    assert!(api::is_valid_correlation_id(&cid));
    assert!(
        http::HeaderValue::from_str(&cid).is_ok(),
        "a correlation id is header-safe"
    );
    let _ = Timestamp::parse(s).map(|t| {
        let shown = t.to_string();
        assert_eq!(Timestamp::parse(&shown), Ok(t), "{shown}");
    });
}

fn fixed_routes() -> &'static (VersionSet, Vec<(String, bool)>) {
    static SET: OnceLock<(VersionSet, Vec<(String, bool)>)> = OnceLock::new();
    SET.get_or_init(|| {
        let versions: Vec<(String, bool)> = [
            ("0.1.0", true),
            ("1.0.0", true),
            ("1.2.3", true),
            ("1.10.0", true),
            ("v1.11.0", true),
            ("1.12.0", false),
            ("2.0.0-rc.1", true),
            ("2.0.0", true),
            ("2.1.0-beta", true),
            ("3.0.0", false),
            ("10.0.0-alpha", true),
            ("canary", true),
            ("1", true),
        ]
        .iter()
        .map(|(v, a)| ((*v).to_owned(), *a))
        .collect();
        let routes = versions.iter().map(|(v, active)| {
            let key = RouteKey::parse("acme", "checkout", "prod", v).expect("valid key");
            let mut spec = RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a"}]}"#)
                .expect("valid body");
            spec.active = *active;
            Arc::new(Route::from_spec(
                &key,
                spec,
                1,
                Timestamp::from_millis(0),
                "fuzz",
            ))
        });
        (VersionSet::new(routes), versions)
    })
}

/// Selectors: `latest`, then an exact version, then a semver requirement, else 400; the
/// route chosen is the highest active one that the selector accepts.
pub fn selector(data: &[u8]) {
    let s = text(data);
    let (set, versions) = fixed_routes();
    let sel = match Selector::parse(&s) {
        Ok(sel) => sel,
        Err(e) => {
            assert!(matches!(e, Error::InvalidRequest(_)));
            assert!(s != "latest" && !names::is_version_name(&s));
            return;
        }
    };
    let chosen = set.choose(&sel);
    let active_semver = || {
        versions
            .iter()
            .filter(|(_, a)| *a)
            .filter_map(|(v, _)| select::parse_semver(v).map(|p| (p, v.as_str())))
    };
    match &sel {
        Selector::Latest => assert_eq!(s, "latest"),
        Selector::Exact(v) => {
            assert_eq!(v.as_str(), s);
            let active = versions.iter().any(|(x, a)| *a && x == &s);
            assert_eq!(
                chosen.is_some(),
                active,
                "an exact version never falls back"
            );
        }
        Selector::Range(req) => {
            assert!(!names::is_version_name(&s) && s != "latest");
            if let Some(r) = &chosen {
                let v = select::parse_semver(r.version.as_str()).expect("a range picks semver");
                assert!(req.matches(&v), "{s} picked {v}");
                assert!(r.active);
                let best = active_semver()
                    .filter(|(p, _)| req.matches(p))
                    .map(|(p, _)| p)
                    .max();
                assert_eq!(best.as_ref(), Some(&v), "{s}: the highest match");
            } else {
                assert!(
                    active_semver().all(|(p, _)| !req.matches(&p)),
                    "{s} found nothing"
                );
            }
        }
    }
}

/// Cursors: random text never opens; a sealed position (of the sizes the server makes)
/// opens only in its own scope and comes back exactly.
pub fn cursor(data: &[u8]) {
    let key = CursorKey::new(b"fuzz-cursor-key");
    let s = text(data);
    if let Ok(pos) = key.open("list|acme||", &s) {
        // Only a real seal opens; the fuzzer would have to forge an HMAC.
        assert_eq!(
            key.seal("list|acme||", &pos),
            s,
            "only a sealed cursor opens"
        );
    }
    let (scope, position) = s.split_once('\u{1}').unwrap_or(("list|acme||", s.as_str()));
    // The server's positions are short (at most service, env and version: 192 bytes);
    // `open` refuses any cursor over 2048 chars, so only positions up to 1 KiB must round
    // trip (a longer one makes a cursor over the limit, which the server never issues).
    if position.len() > 1024 {
        return;
    }
    let sealed = key.seal(scope, position);
    assert!(sealed.is_ascii() && !sealed.contains(['&', '=', '+', '/', ' ']));
    assert_eq!(key.open(scope, &sealed).ok().as_deref(), Some(position));
    let other_scope = format!("{scope}x");
    assert!(
        key.open(&other_scope, &sealed).is_err(),
        "another query's cursor"
    );
    assert!(
        CursorKey::new(b"other").open(scope, &sealed).is_err(),
        "another key's cursor"
    );
    if sealed.len() > 1 {
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        if let Ok(altered) = String::from_utf8(bytes) {
            assert!(key.open(scope, &altered).is_err(), "an altered cursor");
        }
    }
}

/// JWTs: any text is verified without panicking and, unless it was signed with the secret,
/// refused as 401; a minted token verifies to exactly its claims.
pub fn jwt(data: &[u8]) {
    const SECRET: &[u8] = b"fuzz-jwt-secret";
    let now = 1_800_000_000;
    let s = text(data);
    match tm_core::jwt::verify(SECRET, &s, now) {
        Ok(claims) => {
            // Signed with the secret: the fuzzer cannot get here without forging HMAC.
            panic!("an unsigned token was accepted: {s:?} -> {claims:?}");
        }
        Err(e) => assert!(matches!(e, Error::Unauthorized(_))),
    }
    // The input as claims: a minted token round-trips, and tampering is refused.
    let mut claims: Map<String, Value> = match serde_json::from_slice(data) {
        Ok(Value::Object(m)) => m,
        _ => {
            let mut m = Map::new();
            m.insert("sub".into(), Value::String(s.clone()));
            m
        }
    };
    let exp = claims.get("exp").and_then(Value::as_i64);
    if exp.is_none() {
        claims.insert("exp".into(), json!(now + 60));
    }
    let token = tm_core::jwt::mint(SECRET, &claims);
    let verdict = tm_core::jwt::verify(SECRET, &token, now);
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    let nbf_ok = claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_none_or(|nbf| now.saturating_add(tm_core::jwt::LEEWAY_SECS) >= nbf);
    let fresh = now <= exp.saturating_add(tm_core::jwt::LEEWAY_SECS);
    match verdict {
        Ok(back) => {
            assert!(fresh && nbf_ok, "an expired or early token was accepted");
            // Every claim comes back; a float only to within serde_json's parsing (without
            // its `float_roundtrip` feature a large float can move by one ulp, which the
            // fuzzer found). The claims the system reads are strings and integers: exact.
            let blur = |m: &Map<String, Value>| blur_floats(&Value::Object(m.clone()));
            assert_eq!(blur(&back), blur(&claims));
            let strings = tm_core::jwt::claims_as_strings(&back);
            assert_eq!(strings.len(), claims.len());
        }
        Err(e) => {
            assert!(matches!(e, Error::Unauthorized(_)));
            assert!(!fresh || !nbf_ok, "a fresh minted token was refused: {e:?}");
        }
    }
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = B64.encode(json!({"sub": "admin", "tm_tenants": "*", "exp": now + 60}).to_string());
    assert!(
        tm_core::jwt::verify(SECRET, &parts.join("."), now).is_err(),
        "a swapped payload"
    );
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{header}.{}.", token.split('.').nth(1).unwrap_or_default());
    assert!(
        tm_core::jwt::verify(SECRET, &unsigned, now).is_err(),
        "alg none"
    );
}

/// The value with every float replaced by a marker (floats are compared by kind only).
fn blur_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => Value::String("<float>".into()),
        Value::Array(a) => Value::Array(a.iter().map(blur_floats).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), blur_floats(v))).collect())
        }
        other => other.clone(),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

const VERSIONS: [&str; 4] = ["1.0.0", "2.0.0", "canary", "v3.0.0-rc.1"];
const KINDS: [ChangeType; 5] = [
    ChangeType::Created,
    ChangeType::Updated,
    ChangeType::Activated,
    ChangeType::Deactivated,
    ChangeType::Deleted,
];

/// What the consumer must do with a record.
enum Expect {
    /// A valid event with the right Kafka key: applied exactly when newer.
    Event(RouteKey, u64),
    /// Never applicable (bad envelope, wrong key, truncated JSON): dead-lettered.
    Poison,
    /// Raw fuzz bytes: anything but a panic or an out-of-order apply.
    Unknown,
}

/// A Kafka record's key and value, and what the consumer must do with it.
type Record = (Option<Vec<u8>>, Option<Vec<u8>>, Expect);

/// One record: a well-formed event (possibly invalid, truncated or under the wrong Kafka
/// key), or raw bytes.
fn record(u: &mut Unstructured<'_>) -> arbitrary::Result<Record> {
    if u.ratio(1, 4)? {
        let key: Option<Vec<u8>> = u.arbitrary()?;
        let value: Option<Vec<u8>> = u.arbitrary()?;
        return Ok((key, value, Expect::Unknown));
    }
    let tenant = *u.choose(&["acme", "other"])?;
    let version = *u.choose(&VERSIONS)?;
    let key = RouteKey::parse(tenant, "web", "prod", version).expect("valid key");
    let revision: u64 = u.int_in_range(0..=12)?;
    let kind = *u.choose(&KINDS)?;
    let weight: u16 = u.int_in_range(0..=1000)?;
    // Deletes carry no route, every other change does; one in ten breaks that rule.
    let include_route = (kind != ChangeType::Deleted) != u.ratio(1, 10)?;
    let route_revision = if u.ratio(1, 20)? {
        revision + 1
    } else {
        revision
    };
    let route = include_route.then(|| {
        let body = format!(r#"{{"endpoints":[{{"id":"a","url":"https://a","weight":{weight}}}]}}"#);
        let spec = RouteSpec::from_json(body.as_bytes()).expect("valid body");
        Route::from_spec(
            &key,
            spec,
            route_revision,
            Timestamp::from_millis(0),
            "fuzz",
        )
    });
    let event = RouteEvent {
        schema: if u.ratio(1, 20)? { 2 } else { SCHEMA },
        event_id: "e".into(),
        kind,
        tenant: key.svc.tenant.clone(),
        service: key.svc.service.clone(),
        env: key.svc.env.clone(),
        version: key.version.clone(),
        revision,
        occurred_at: Timestamp::from_millis(0),
        actor: "fuzz".into(),
        correlation_id: "c".into(),
        route,
        health: None,
    };
    let valid = event.check().is_ok();
    let mut value = serde_json::to_vec(&event).expect("an event serialises");
    // A strict prefix of a JSON object is never valid JSON.
    let truncated = u.ratio(1, 8)?;
    if truncated {
        let len = u.choose_index(value.len())?;
        value.truncate(len);
    }
    let right_key = u.ratio(9, 10)?;
    let kafka_key = if right_key {
        key.svc.event_key().into_bytes()
    } else {
        format!("{}/web/staging", key.svc.tenant).into_bytes()
    };
    let expect = if valid && right_key && !truncated {
        Expect::Event(key, revision)
    } else {
        Expect::Poison
    };
    Ok((Some(kafka_key), Some(value), expect))
}

/// Event records: every record is applied, skipped or dead-lettered (never a panic or a
/// retryable error, the cache being up); a valid event is applied exactly when it is
/// newer than what the cache holds, anything else is dead-lettered; in the end the cache
/// holds the highest revision applied for each key, whatever the order and repetitions.
pub fn msk_records(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let cache = Arc::new(MemoryCache::new());
    let consumer = Consumer::new(cache.clone());
    let mut highest: HashMap<RouteKey, u64> = HashMap::new();
    runtime().block_on(async {
        for _ in 0..64 {
            if u.is_empty() {
                break;
            }
            let Ok((key, value, expect)) = record(&mut u) else {
                break;
            };
            let outcome = consumer
                .apply(key.as_deref(), value.as_deref())
                .await
                .expect("the in-memory cache never fails");
            match expect {
                Expect::Event(k, rev) => {
                    let seen = highest.get(&k).copied().unwrap_or(0);
                    if rev > seen {
                        assert_eq!(outcome, Outcome::Applied, "revision {rev} over {seen}");
                        highest.insert(k, rev);
                    } else {
                        assert_eq!(outcome, Outcome::Skipped, "revision {rev} not over {seen}");
                    }
                }
                Expect::Poison => {
                    assert!(
                        matches!(&outcome, Outcome::Poison(r) if !r.is_empty()),
                        "dead-lettered with a reason, got {outcome:?}"
                    );
                }
                Expect::Unknown => {
                    if outcome == Outcome::Applied {
                        let event: RouteEvent =
                            serde_json::from_slice(value.as_deref().unwrap_or_default())
                                .expect("only an event is applied");
                        let k = event.key();
                        let seen = highest.get(&k).copied().unwrap_or(0);
                        assert!(event.revision > seen, "an older revision was applied");
                        highest.insert(k, event.revision);
                    }
                }
            }
        }
        for (k, rev) in &highest {
            let cached = cache
                .get(k)
                .await
                .expect("get")
                .expect("applied keys are cached");
            assert_eq!(
                cached.revision, *rev,
                "{k}: the cache holds the highest revision"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs every target over its seed corpus (fuzz/seeds/<target>/), so the properties are
    /// checked on stable too, with `cargo test` in this directory.
    #[test]
    fn every_seed_holds_every_property() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("route_body", route_body),
            ("names", names),
            ("selector", selector),
            ("cursor", cursor),
            ("jwt", jwt),
            ("msk_records", msk_records),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for (name, target) in targets {
            let dir = root.join(name);
            let mut n = 0;
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.expect("entry").path();
                target(&std::fs::read(&path).expect("seed"));
                n += 1;
            }
            assert!(n > 0, "{name} has seeds");
        }
    }
}
