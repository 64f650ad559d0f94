//! The declarative routes file (`routes.yaml`, docs/tmctl.md): one tenant and the
//! routes it should have. Parsed strictly, like the server parses a PUT body: unknown
//! keys, `null`s, duplicate routes and anything the contract rejects are errors naming
//! the route and the field, before any request is made.
//!
//! ```yaml
//! tenant: acme
//! routes:
//!   - service: checkout
//!     env: prod
//!     version: 2.3.1
//!     ttl_seconds: 30
//!     labels: {team: payments}
//!     health_check: {path: /healthz, interval_seconds: 10}
//!     endpoints:
//!       - {id: blue, url: "https://blue.checkout.acme.internal:8443", weight: 90}
//!       - {id: green, url: "https://green.checkout.acme.internal:8443", weight: 10}
//! ```

use crate::api::RouteRef;
use crate::error::{CtlError, Result};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use tm_core::domain::names::{RouteKey, TenantName};
use tm_core::domain::route::RouteSpec;
use yaml_rust2::{Yaml, YamlLoader};

/// One route the file asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredRoute {
    /// Which route.
    pub key: RouteRef,
    /// The PUT body, exactly as it will be sent.
    pub body: Value,
    /// The same body, validated and with the contract's defaults applied.
    pub spec: RouteSpec,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The tenant.
    pub tenant: String,
    /// Its routes, keyed (and so ordered) by service, env, version.
    pub routes: BTreeMap<RouteRef, DesiredRoute>,
}

/// The route's names: the rest of a route's keys are [`BODY_KEYS`].
const NAME_KEYS: [&str; 3] = ["service", "env", "version"];
/// The route document's settable fields: what a routes file sets and a plan compares.
pub const BODY_KEYS: [&str; 5] = [
    "endpoints",
    "ttl_seconds",
    "labels",
    "health_check",
    "active",
];

/// Parses the text of a routes file. `source` names it in errors.
pub fn parse(text: &str, source: &str) -> Result<Desired> {
    let bad = |msg: String| CtlError::Usage(format!("{source}: {msg}"));
    let docs = YamlLoader::load_from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let [doc] = docs.as_slice() else {
        return Err(bad(format!(
            "expected one YAML document, found {}",
            docs.len()
        )));
    };
    let Yaml::Hash(top) = doc else {
        return Err(bad(
            "the top level must be a mapping with `tenant` and `routes`".into(),
        ));
    };
    let mut tenant = None;
    let mut routes_yaml = None;
    for (k, v) in top {
        match k.as_str() {
            Some("tenant") => {
                tenant = Some(scalar_text(v).ok_or_else(|| bad("`tenant` must be a name".into()))?)
            }
            Some("routes") => routes_yaml = Some(v),
            _ => return Err(bad(format!("unknown top-level key {}", show_key(k)))),
        }
    }
    let tenant = tenant.ok_or_else(|| bad("`tenant` is missing".into()))?;
    TenantName::parse(&tenant).map_err(|e| bad(format!("tenant {tenant:?} {e}")))?;
    let items: &[Yaml] = match routes_yaml {
        None | Some(Yaml::Null) => &[],
        Some(Yaml::Array(a)) => a,
        Some(_) => return Err(bad("`routes` must be a list".into())),
    };
    let lines = item_lines(text);
    // `routes[3] (line 41, checkout/prod/2.3.1)`: in a file of 200 routes, the index
    // alone finds nothing.
    let place = |i: usize| {
        let mut at = format!("routes[{i}]");
        let line = lines.get(i).map(|n| format!("line {n}"));
        let name = route_label(&items[i]);
        let parts: Vec<String> = line.into_iter().chain(name).collect();
        if !parts.is_empty() {
            at.push_str(&format!(" ({})", parts.join(", ")));
        }
        at
    };
    let mut routes = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let route = parse_route(item, &tenant).map_err(|m| bad(format!("{}: {m}", place(i))))?;
        let at = route.key.to_string();
        if routes.insert(route.key.clone(), route).is_some() {
            return Err(bad(format!("{}: {at} is named twice", place(i))));
        }
    }
    Ok(Desired { tenant, routes })
}

/// The 1-based line of each item of the top-level `routes:` list, for errors: the lines
/// that open an item (`- `) at the indentation of the first one. A list written inline
/// (`routes: [...]`) has none, and its errors name the index alone.
fn item_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_routes = false;
    let mut indent = None;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let depth = line.len() - body.len();
        if depth == 0 && !body.starts_with('-') {
            in_routes = body.starts_with("routes:") && body.trim_end() == "routes:";
            continue;
        }
        if !in_routes || !(body.starts_with("- ") || body == "-") {
            continue;
        }
        match indent {
            None => {
                indent = Some(depth);
                out.push(n + 1);
            }
            Some(d) if d == depth => out.push(n + 1),
            _ => {}
        }
    }
    out
}

/// `service/env/version` of a route item, as far as it names them.
fn route_label(item: &Yaml) -> Option<String> {
    let Yaml::Hash(h) = item else { return None };
    let get = |k: &str| h.get(&Yaml::String(k.into())).and_then(scalar_text);
    let parts: Vec<String> = ["service", "env", "version"]
        .iter()
        .map(|k| get(k).unwrap_or_else(|| "?".into()))
        .collect();
    (parts.iter().any(|p| p != "?")).then(|| parts.join("/"))
}

fn parse_route(item: &Yaml, tenant: &str) -> std::result::Result<DesiredRoute, String> {
    let Yaml::Hash(h) = item else {
        return Err("each route must be a mapping".into());
    };
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut body = Map::new();
    for (k, v) in h {
        let key = k
            .as_str()
            .ok_or_else(|| format!("unknown key {}", show_key(k)))?;
        if BODY_KEYS.contains(&key) {
            body.insert(
                key.to_owned(),
                to_json(v).map_err(|m| format!("{key}: {m}"))?,
            );
        } else if NAME_KEYS.contains(&key) {
            let text = scalar_text(v).ok_or_else(|| format!("`{key}` must be a name"))?;
            names.insert(key, text);
        } else {
            return Err(format!(
                "unknown key `{key}` (known: {}, {})",
                NAME_KEYS.join(", "),
                BODY_KEYS.join(", ")
            ));
        }
    }
    let name = |k: &str| {
        names
            .get(k)
            .cloned()
            .ok_or_else(|| format!("`{k}` is missing"))
    };
    let key = RouteRef {
        service: name("service")?,
        env: name("env")?,
        version: name("version")?,
    };
    RouteKey::parse(tenant, &key.service, &key.env, &key.version)
        .map_err(|e| format!("{key}: {e}"))?;
    let body = Value::Object(body);
    let spec =
        RouteSpec::from_json(body.to_string().as_bytes()).map_err(|e| format!("{key}: {e}"))?;
    Ok(DesiredRoute { key, body, spec })
}

/// A name written as a YAML scalar: `2.3.1` is a string, but `2.3` is a float and `2` an
/// integer to YAML; all three are taken as their text, so versions need no quotes.
fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn show_key(k: &Yaml) -> String {
    scalar_text(k).map_or_else(|| format!("{k:?}"), |s| format!("`{s}`"))
}

/// YAML → JSON for a route body: strings, integers, booleans, lists and mappings with
/// string keys. A `null` stays `null` (the server's parser names it); floats are
/// rejected, since no body field is fractional.
fn to_json(v: &Yaml) -> std::result::Result<Value, String> {
    Ok(match v {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::Number(Number::from(*i)),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        Yaml::Real(s) => return Err(format!("{s} is not an integer")),
        Yaml::Array(a) => Value::Array(
            a.iter()
                .map(to_json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let k = scalar_text(k).ok_or_else(|| format!("key {k:?} is not text"))?;
                let v = to_json(v).map_err(|e| format!("{k}: {e}"))?;
                m.insert(k, v);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err("aliases and bad values are not allowed".into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
tenant: acme
routes:
  - service: checkout
    env: prod
    version: 2.3.1
    labels: {team: payments}
    endpoints:
      - {id: blue, url: "https://blue.example.internal", weight: 90}
      - {id: green, url: "https://green.example.internal", weight: 10}
  - service: search
    env: prod
    version: 2.3
    ttl_seconds: 60
    active: false
    endpoints:
      - id: a
        url: https://a.example.internal
"#;

    #[test]
    fn a_routes_file_becomes_validated_bodies_with_defaults() {
        let d = parse(FILE, "routes.yaml").unwrap();
        assert_eq!(d.tenant, "acme");
        let keys: Vec<String> = d.routes.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["checkout/prod/2.3.1", "search/prod/2.3"]);
        let checkout = &d.routes.values().next().unwrap();
        assert_eq!(checkout.spec.ttl_seconds, 30, "default ttl");
        assert!(checkout.spec.active, "default active");
        assert_eq!(checkout.body["endpoints"][0]["weight"], 90);
        assert!(
            checkout.body.get("ttl_seconds").is_none(),
            "the body is sent as written"
        );
        let search = d.routes.values().nth(1).unwrap();
        assert!(!search.spec.active);
        assert_eq!(search.spec.endpoints[0].weight, 1, "default weight");
    }

    #[test]
    fn mistakes_are_usage_errors_naming_the_route_and_field() {
        let cases = [
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, version: '1', endpoints: [{id: a, url: 'https://a.x', wieght: 2}]}",
                "wieght",
            ),
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, version: '1', endpionts: []}",
                "endpionts",
            ),
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, endpoints: [{id: a, url: 'https://a.x'}]}",
                "version",
            ),
            ("tenant: Acme\nroutes: []", "tenant"),
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, version: '1', ttl_seconds: 1.5, endpoints: [{id: a, url: 'https://a.x'}]}",
                "ttl_seconds",
            ),
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, version: '1', labels: null, endpoints: [{id: a, url: 'https://a.x'}]}",
                "labels",
            ),
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, version: '1', endpoints: [{id: a, url: 'https://a.x'}]}\n  - {service: s, env: e, version: '1', endpoints: [{id: a, url: 'https://a.x'}]}",
                "twice",
            ),
            ("tenant: acme\nextra: 1", "extra"),
            (
                "tenant: acme\nroutes:\n  - {service: s, env: e, version: '1', endpoints: [{id: a, url: 'ftp://a.x'}]}",
                "url",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(text, "f.yaml").expect_err(text);
            assert_eq!(e.exit_code(), crate::error::code::USAGE);
            assert!(e.to_string().contains(needle), "{e} should name {needle}");
        }
    }

    #[test]
    fn a_health_check_is_part_of_the_body_with_its_defaults() {
        let d = parse(
            "tenant: acme\nroutes:\n  - service: s\n    env: e\n    version: '1'\n    health_check: {path: /healthz, interval_seconds: 10}\n    endpoints: [{id: a, url: 'https://a.x'}]\n",
            "f",
        )
        .unwrap();
        let r = d.routes.values().next().unwrap();
        assert_eq!(r.body["health_check"]["path"], "/healthz");
        let check = r.spec.health_check.as_ref().expect("health check kept");
        assert_eq!(check.interval_seconds, 10);
        let bad = parse(
            "tenant: acme\nroutes:\n  - service: s\n    env: e\n    version: '1'\n    health_check: {path: /healthz, interval_seconds: 5}\n    endpoints: [{id: a, url: 'https://a.x'}]\n",
            "f",
        )
        .expect_err("interval below 10 s");
        assert!(bad.to_string().contains("health_check.interval"), "{bad}");
    }

    #[test]
    fn an_error_names_the_route_and_its_line() {
        let text = "tenant: acme\nroutes:\n  - service: a\n    env: prod\n    version: '1'\n    endpoints: [{id: a, url: 'https://a.x'}]\n\n  # the second\n  - service: checkout\n    env: prod\n    version: 2.3.1\n    colour: blue\n    endpoints: [{id: a, url: 'https://a.x'}]\n";
        let e = parse(text, "f.yaml")
            .expect_err("colour is no key")
            .to_string();
        assert!(
            e.contains("routes[1] (line 9, checkout/prod/2.3.1): unknown key `colour`"),
            "{e}"
        );
        // An inline list names the route without a line
        let inline = "tenant: acme\nroutes: [{service: s, env: e, version: '1', colour: x}]";
        let e = parse(inline, "f.yaml").expect_err("colour").to_string();
        assert!(e.contains("routes[0] (s/e/1): unknown key"), "{e}");
    }

    #[test]
    fn a_file_without_routes_wants_none() {
        let d = parse("tenant: acme\nroutes: []\n", "f").unwrap();
        assert!(d.routes.is_empty());
    }
}
