//! Tenant isolation, exhaustively: every endpoint × every kind of caller, each with the
//! exact status the contract gives, on an existing and on a missing route. Every cell gets
//! its own route, so a write in one cell cannot change the answer of another.

use http::{Method, StatusCode};
use tm_tests::{Http, Reply, TmLocal, admin, body, route_path, token};

const ALL: &str = "routes:read routes:write routes:resolve";

/// Who calls: the tenants and scopes in the token.
struct Caller {
    name: &'static str,
    tenants: &'static str,
    /// `None`: every scope except the ones the endpoint needs.
    scope: Option<&'static str>,
    /// Whether the contract lets this caller through to acme's data.
    allowed: bool,
}

const CALLERS: &[Caller] = &[
    Caller {
        name: "own tenant",
        tenants: "acme",
        scope: Some(ALL),
        allowed: true,
    },
    Caller {
        name: "own tenant among several",
        tenants: "zeta acme other",
        scope: Some(ALL),
        allowed: true,
    },
    Caller {
        name: "any tenant (*)",
        tenants: "*",
        scope: Some(ALL),
        allowed: true,
    },
    Caller {
        name: "other tenant",
        tenants: "other",
        scope: Some(ALL),
        allowed: false,
    },
    Caller {
        name: "near-miss tenant names",
        tenants: "acm acme-x ACME acme.",
        scope: Some(ALL),
        allowed: false,
    },
    Caller {
        name: "own tenant, missing scope",
        tenants: "acme",
        scope: None,
        allowed: false,
    },
    Caller {
        name: "own tenant, no scope at all",
        tenants: "acme",
        scope: Some(""),
        allowed: false,
    },
];

/// One endpoint, on a route that exists or not.
struct Case {
    name: &'static str,
    method: Method,
    /// The path for route `acme/{service}/prod/1.0.0`.
    path: fn(&str) -> String,
    /// Scopes that allow it (any one).
    needs: &'static [&'static str],
    /// Whether the cell's route exists before the request.
    exists: bool,
    with_body: bool,
    /// The status for an allowed caller.
    ok: StatusCode,
}

fn route(s: &str) -> String {
    route_path("acme", s, "prod", "1.0.0")
}

const READ: &[&str] = &["routes:read"];
const WRITE: &[&str] = &["routes:write"];
const RESOLVE: &[&str] = &["routes:resolve", "routes:read"];

fn history(s: &str) -> String {
    format!("{}/history", route(s))
}
fn status(s: &str) -> String {
    format!("{}/status", route(s))
}
fn activate(s: &str) -> String {
    format!("{}/activate", route(s))
}
fn deactivate(s: &str) -> String {
    format!("{}/deactivate", route(s))
}
fn list(s: &str) -> String {
    format!("/v1/tenants/acme/routes?service={s}")
}
fn audit(_: &str) -> String {
    "/v1/tenants/acme/audit".into()
}
fn resolve(s: &str) -> String {
    format!("/v1/resolve/acme/{s}/prod/1.0.0")
}
fn resolve_latest(s: &str) -> String {
    format!("/v1/resolve/acme/{s}/prod/latest")
}

const EXISTS: bool = true;
const MISSING: bool = false;

/// Every endpoint of CONTRACT §3-§4, on an existing route and on a missing one.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Method as M;
    use StatusCode as S;
    let case = |name: &'static str, method, path: fn(&str) -> String, needs, exists, ok| Case {
        name, method, path, needs, exists, with_body: name.starts_with("PUT"), ok,
    };
    vec![
        case("PUT replaces",       M::PUT,    route,          WRITE,   EXISTS,  S::OK),
        case("PUT creates",        M::PUT,    route,          WRITE,   MISSING, S::CREATED),
        case("GET",                M::GET,    route,          READ,    EXISTS,  S::OK),
        case("GET missing",        M::GET,    route,          READ,    MISSING, S::NOT_FOUND),
        case("DELETE",             M::DELETE, route,          WRITE,   EXISTS,  S::NO_CONTENT),
        case("DELETE missing",     M::DELETE, route,          WRITE,   MISSING, S::NOT_FOUND),
        case("activate",           M::POST,   activate,       WRITE,   EXISTS,  S::OK),
        case("activate missing",   M::POST,   activate,       WRITE,   MISSING, S::NOT_FOUND),
        case("deactivate",         M::POST,   deactivate,     WRITE,   EXISTS,  S::OK),
        case("deactivate missing", M::POST,   deactivate,     WRITE,   MISSING, S::NOT_FOUND),
        case("history",            M::GET,    history,        READ,    EXISTS,  S::OK),
        case("history missing",    M::GET,    history,        READ,    MISSING, S::NOT_FOUND),
        case("status",             M::GET,    status,         READ,    EXISTS,  S::OK),
        case("status missing",     M::GET,    status,         READ,    MISSING, S::NOT_FOUND),
        case("list",               M::GET,    list,           READ,    EXISTS,  S::OK),
        case("list empty",         M::GET,    list,           READ,    MISSING, S::OK),
        case("audit",              M::GET,    audit,          READ,    EXISTS,  S::OK),
        case("resolve",            M::GET,    resolve,        RESOLVE, EXISTS,  S::OK),
        case("resolve latest",     M::GET,    resolve_latest, RESOLVE, EXISTS,  S::OK),
        case("resolve missing",    M::GET,    resolve,        RESOLVE, MISSING, S::NOT_FOUND),
    ]
}

fn scope_without(needs: &[&str]) -> String {
    ALL.split(' ')
        .filter(|s| !needs.contains(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The matrix: every caller × every endpoint, on tm-local started with `env`.
pub(super) async fn matrix(env: &[(&str, &str)]) {
    let mut env: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "TM_L1_TTL_MS")
        .collect();
    env.push(("TM_L1_TTL_MS", "0"));
    let (srv, _dir) = TmLocal::start(&env);
    let http = Http::new(&srv.base);
    let owner = admin("acme");
    let cases = cases();
    let new_body = body(&[("b", 1)]);
    let mut failures = Vec::new();
    let mut forbidden_bodies = Vec::new();
    for (ci, caller) in CALLERS.iter().enumerate() {
        for (ki, case) in cases.iter().enumerate() {
            let service = format!("c{ci}-k{ki}");
            if case.exists {
                let r = http.put(&route(&service), &owner, &body(&[("a", 1)])).await;
                assert_eq!(r.status, StatusCode::CREATED, "setup: {}", r.text);
            }
            let scope = caller
                .scope
                .map_or_else(|| scope_without(case.needs), str::to_owned);
            let tok = token("caller", caller.tenants, &scope);
            let path = (case.path)(&service);
            let r: Reply = http
                .send(
                    case.method.clone(),
                    &path,
                    Some(&tok),
                    &[],
                    case.with_body.then_some(new_body.as_str()),
                )
                .await;
            let want = if caller.allowed {
                case.ok
            } else {
                StatusCode::FORBIDDEN
            };
            if r.status != want {
                failures.push(format!(
                    "{} × {} ({} {path}): got {}, want {want}: {}",
                    caller.name, case.name, case.method, r.status, r.text
                ));
                continue;
            }
            if want == StatusCode::FORBIDDEN {
                if r.code() != "forbidden" {
                    failures.push(format!(
                        "{} × {}: code {}",
                        caller.name,
                        case.name,
                        r.code()
                    ));
                }
                forbidden_bodies.push(r.json["error"]["message"].clone());
                // Nothing changed: the route is as the owner left it, or still absent.
                let after = http.get(&route(&service), &owner).await;
                let unchanged = if case.exists {
                    after.status == StatusCode::OK
                        && after.json["revision"] == 1
                        && after.json["active"] == true
                } else {
                    after.status == StatusCode::NOT_FOUND
                };
                if !unchanged {
                    failures.push(format!(
                        "{} × {}: a refused request changed the route: {}",
                        caller.name, case.name, after.text
                    ));
                }
            } else if case.ok == StatusCode::OK && case.name.starts_with("list") {
                let items = r.json["items"].as_array().map_or(0, Vec::len);
                if items != usize::from(case.exists) {
                    failures.push(format!("{} × list: {items} items", caller.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    forbidden_bodies.dedup();
    assert_eq!(
        forbidden_bodies.len(),
        1,
        "every 403 says the same, whether or not the route exists: {forbidden_bodies:?}"
    );
}

/// Another tenant's lists, audit and resolve show nothing of acme's, on tm-local with `env`.
pub(super) async fn lists_are_per_tenant(env: &[(&str, &str)]) {
    let (srv, _dir) = TmLocal::start(env);
    let http = Http::new(&srv.base);
    let acme = admin("acme");
    let other = admin("other");
    for v in ["1.0.0", "2.0.0"] {
        let r = http
            .put(
                &route_path("acme", "web", "prod", v),
                &acme,
                &body(&[("a", 1)]),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mine = http
        .put(
            &route_path("other", "web", "prod", "0.9.0"),
            &other,
            &body(&[("z", 1)]),
        )
        .await;
    assert_eq!(mine.status, StatusCode::CREATED);
    let list = http.get("/v1/tenants/other/routes", &other).await;
    let versions: Vec<&str> = list.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["version"].as_str())
        .collect();
    assert_eq!(versions, ["0.9.0"]);
    let audit = http.get("/v1/tenants/other/audit", &other).await;
    assert_eq!(audit.json["items"].as_array().map(Vec::len), Some(1));
    // acme's routes under the same service/env names are not other's.
    let r = http.get("/v1/resolve/other/web/prod/2.0.0", &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = http.get("/v1/resolve/other/web/prod/latest", &other).await;
    assert_eq!(
        r.json["version"], "0.9.0",
        "acme's 2.0.0 is not other's latest"
    );
    // A cursor made for acme does not open other's list, even for a `*` token.
    let page = http.get("/v1/tenants/acme/routes?limit=1", &acme).await;
    let cursor = page.json["next_cursor"].as_str().expect("a second page");
    let star = token("root", "*", ALL);
    let r = http
        .get(
            &format!("/v1/tenants/other/routes?limit=1&cursor={cursor}"),
            &star,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "another tenant's cursor"
    );
    let r = http
        .get(
            &format!("/v1/tenants/acme/routes?limit=1&cursor={cursor}"),
            &star,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A `*` token still gets 400 for a malformed name, on tm-local with `env`.
pub(super) async fn star_token_still_validates(env: &[(&str, &str)]) {
    let (srv, _dir) = TmLocal::start(env);
    let http = Http::new(&srv.base);
    let star = token("root", "*", ALL);
    let acme = admin("acme");
    for path in [
        "/v1/tenants/Acme/routes".to_owned(),
        "/v1/tenants/-acme/audit".to_owned(),
        route_path("acme_1", "web", "prod", "1"),
        "/v1/resolve/ACME/web/prod/latest".to_owned(),
    ] {
        let r = http.get(&path, &star).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{path}"
        );
        let r = http.get(&path, &acme).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{path}: authorisation comes before validation"
        );
    }
}

#[tokio::test]
async fn every_endpoint_answers_every_caller_with_the_contracts_status() {
    matrix(&[]).await;
}

#[tokio::test]
async fn another_tenant_sees_nothing_of_acme_in_its_own_lists() {
    lists_are_per_tenant(&[]).await;
}

#[tokio::test]
async fn a_star_token_still_gets_400_for_a_name_that_breaks_the_rules() {
    star_token_still_validates(&[]).await;
}
