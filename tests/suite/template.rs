//! The SAM template (`infra/template.yaml`) checked against the code: every operation of
//! the contract has a route on the function that serves it and no other route exists but
//! the `$default` catch-all to the write function; every function is given every variable
//! it must have and none it does not read; and every function's role is granted exactly
//! the DynamoDB and MSK actions its adapters call.
//!
//! [`check`] reads the template text and returns every mismatch. The first test runs it
//! on the real template; the others run it on copies with a route, a variable or an
//! action taken away or added, so the check is seen to fail.
//!
//! The YAML is read with `yaml-rust2`, which accepts CloudFormation's short tags (`!Ref`,
//! `!Sub`, `!If`, ...) and drops them, keeping the tagged value. That is enough here: the
//! check reads only keys and literal values, which is what the template's header promises
//! (literal `Method` + `Path` pairs, literal variable names and policy statements).

use http::Method;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tm_core::config::Config;
use tm_http::api::{Function, Op, match_route};
use yaml_rust2::{Yaml, YamlLoader};

/// What the code says one function needs from its deployment.
struct FunctionSpec {
    /// The binary, as `Metadata.BuildProperties.Binary` names it.
    binary: &'static str,
    /// Variables the template must set.
    env: &'static [&'static str],
    /// Variables the template may set.
    optional_env: &'static [&'static str],
    /// The role's actions: the union of these sets.
    iam: &'static [&'static [&'static str]],
}

const FUNCTIONS: [FunctionSpec; 5] = [
    FunctionSpec {
        binary: "tm-resolve",
        env: tm_resolve::ENV_VARS,
        optional_env: tm_resolve::OPTIONAL_ENV_VARS,
        iam: tm_resolve::IAM_ACTIONS,
    },
    FunctionSpec {
        binary: "tm-write",
        env: tm_write::ENV_VARS,
        optional_env: tm_write::OPTIONAL_ENV_VARS,
        iam: tm_write::IAM_ACTIONS,
    },
    FunctionSpec {
        binary: "tm-event-consumer",
        env: tm_event_consumer::ENV_VARS,
        optional_env: tm_event_consumer::OPTIONAL_ENV_VARS,
        iam: tm_event_consumer::IAM_ACTIONS,
    },
    FunctionSpec {
        binary: "tm-outbox-relay",
        env: tm_outbox_relay::ENV_VARS,
        optional_env: tm_outbox_relay::OPTIONAL_ENV_VARS,
        iam: tm_outbox_relay::IAM_ACTIONS,
    },
    FunctionSpec {
        binary: "tm-prober",
        env: tm_prober::ENV_VARS,
        optional_env: tm_prober::OPTIONAL_ENV_VARS,
        iam: tm_prober::IAM_ACTIONS,
    },
];

/// Variables `Config` reads that only tm-local uses (no Lambda may be given them).
const LOCAL_ONLY_ENV: [&str; 3] = ["TM_JWT_SECRET", "TM_KAFKA_GROUP", "TM_CURSOR_SECRET"];

/// The action prefixes compared. What SAM adds by itself (logs, X-Ray, VPC networking,
/// the MSK execution role's `kafka:` actions) is not the adapters' business.
const CHECKED_SERVICES: [&str; 3] = ["dynamodb:", "kafka-cluster:", "secretsmanager:"];

/// The API Gateway catch-all route.
const CATCH_ALL: &str = "$default";

/// Which binary serves an operation.
fn serving_binary(function: Function) -> &'static str {
    match function {
        Function::Health | Function::Resolve => "tm-resolve",
        Function::Write => "tm-write",
    }
}

/// Concrete requests covering every operation of the contract; resolve also with
/// percent-encoded requirements, as clients send them.
const EXAMPLES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/resolve/acme/checkout/prod/latest"),
    ("GET", "/v1/resolve/acme/checkout/prod/2.3.1"),
    ("GET", "/v1/resolve/acme/checkout/prod/%5E2"),
    ("GET", "/v1/resolve/acme/checkout/prod/%3E%3D1.2%2C%20%3C2"),
    ("GET", "/v1/tenants/acme/routes"),
    ("GET", "/v1/tenants/acme/audit"),
    (
        "PUT",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1",
    ),
    (
        "GET",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1",
    ),
    (
        "DELETE",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1",
    ),
    (
        "POST",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1/activate",
    ),
    (
        "POST",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1/deactivate",
    ),
    (
        "GET",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1/history",
    ),
    (
        "GET",
        "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1/status",
    ),
];

/// Every operation's name. [`op_name`] has no wildcard arm, so a new operation does not
/// compile until it is named there, and a test fails until it is listed here and has an
/// example.
const OP_NAMES: [&str; 12] = [
    "Healthz",
    "Readyz",
    "Resolve",
    "ListRoutes",
    "Audit",
    "PutRoute",
    "GetRoute",
    "DeleteRoute",
    "Activate",
    "Deactivate",
    "History",
    "Status",
];

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Healthz => "Healthz",
        Op::Readyz => "Readyz",
        Op::Resolve(_) => "Resolve",
        Op::ListRoutes(_) => "ListRoutes",
        Op::Audit(_) => "Audit",
        Op::PutRoute(_) => "PutRoute",
        Op::GetRoute(_) => "GetRoute",
        Op::DeleteRoute(_) => "DeleteRoute",
        Op::Activate(_) => "Activate",
        Op::Deactivate(_) => "Deactivate",
        Op::History(_) => "History",
        Op::Status(_) => "Status",
    }
}

/// One `HttpApi` event of a function.
struct TemplateRoute {
    binary: String,
    event: String,
    method: String,
    path: String,
    /// `Auth.Authorizer: NONE`: no token needed.
    open: bool,
}

/// One function of this workspace as the template declares it.
struct TemplateFunction {
    resource: String,
    binary: String,
    env: BTreeSet<String>,
    /// Granted actions of the checked services, as written.
    actions: BTreeSet<String>,
}

/// Every mismatch between the template and the code, one sentence each; empty when they
/// agree.
fn check(template: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let docs = match YamlLoader::load_from_str(template) {
        Ok(docs) => docs,
        Err(e) => return vec![format!("the template is not YAML: {e}")],
    };
    let Some(resources) = docs.first().and_then(|d| d["Resources"].as_hash()) else {
        return vec!["the template has no Resources".into()];
    };
    let globals = &docs[0]["Globals"]["Function"];
    let global_env = literal_keys(
        &globals["Environment"]["Variables"],
        "Globals",
        &mut problems,
    );

    let mut functions = Vec::new();
    let mut routes = Vec::new();
    for (name, resource) in resources {
        let name = name.as_str().unwrap_or("?");
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let build = &resource["Metadata"];
        let Some(binary) = build["BuildProperties"]["Binary"].as_str() else {
            if build["BuildMethod"].as_str() == Some("rust-cargolambda") {
                problems.push(format!(
                    "{name}: a cargo-lambda function without Metadata.BuildProperties.Binary"
                ));
            }
            // Not a binary of this workspace (the inline deploy-time helper).
            continue;
        };
        let props = &resource["Properties"];
        let mut env = global_env.clone();
        env.extend(literal_keys(
            &props["Environment"]["Variables"],
            name,
            &mut problems,
        ));
        functions.push(TemplateFunction {
            resource: name.to_owned(),
            binary: binary.to_owned(),
            env,
            actions: granted_actions(name, props, &mut problems),
        });
        routes.extend(http_routes(name, binary, &props["Events"], &mut problems));
    }

    check_functions(&functions, &mut problems);
    check_routes(&routes, &mut problems);
    problems
}

/// The keys of a literal map (an absent one has none).
fn literal_keys(map: &Yaml, owner: &str, problems: &mut Vec<String>) -> BTreeSet<String> {
    match map {
        Yaml::Hash(h) => h
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        Yaml::BadValue | Yaml::Null => BTreeSet::new(),
        _ => {
            problems.push(format!(
                "{owner}: Environment.Variables is not a literal map"
            ));
            BTreeSet::new()
        }
    }
}

/// The actions of the checked services that a function's `Policies` allow.
fn granted_actions(name: &str, props: &Yaml, problems: &mut Vec<String>) -> BTreeSet<String> {
    let mut granted = BTreeSet::new();
    if !props["Role"].is_badvalue() {
        problems.push(format!(
            "{name}: has its own Role, so its Policies (if any) are not what it is granted"
        ));
    }
    let policies = match &props["Policies"] {
        Yaml::Array(list) => list.iter().collect(),
        Yaml::BadValue => Vec::new(),
        one => vec![one],
    };
    for policy in policies {
        let statements = match &policy["Statement"] {
            Yaml::Array(list) => list.iter().collect(),
            Yaml::Hash(_) => vec![&policy["Statement"]],
            _ => {
                let what = policy
                    .as_str()
                    .or_else(|| {
                        policy
                            .as_hash()
                            .and_then(|h| h.keys().next())
                            .and_then(Yaml::as_str)
                    })
                    .unwrap_or("?");
                problems.push(format!(
                    "{name}: policy {what} is not a literal policy document, so its actions cannot be checked"
                ));
                continue;
            }
        };
        for statement in statements {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            if !statement["NotAction"].is_badvalue() {
                problems.push(format!(
                    "{name}: a statement with NotAction grants every action but those"
                ));
            }
            let actions: Vec<&Yaml> = match &statement["Action"] {
                Yaml::Array(list) => list.iter().collect(),
                one => vec![one],
            };
            for action in actions {
                let Some(action) = action.as_str() else {
                    problems.push(format!("{name}: an Action that is not a literal string"));
                    continue;
                };
                if action == "*" {
                    problems.push(format!("{name}: grants every action (\"*\")"));
                } else if CHECKED_SERVICES
                    .iter()
                    .any(|s| action.to_ascii_lowercase().starts_with(s))
                {
                    granted.insert(action.to_owned());
                }
            }
        }
    }
    granted
}

/// The function's `HttpApi` events.
fn http_routes(
    name: &str,
    binary: &str,
    events: &Yaml,
    problems: &mut Vec<String>,
) -> Vec<TemplateRoute> {
    let mut routes = Vec::new();
    let Some(events) = events.as_hash() else {
        return routes;
    };
    for (event, spec) in events {
        if spec["Type"].as_str() != Some("HttpApi") {
            continue;
        }
        let event = event.as_str().unwrap_or("?");
        let props = &spec["Properties"];
        let (method, path) = match (props["Method"].as_str(), props["Path"].as_str()) {
            (Some(m), Some(p)) => (m.to_ascii_uppercase(), p.to_owned()),
            // SAM's catch-all when both are left out.
            (None, None) => ("ANY".to_owned(), CATCH_ALL.to_owned()),
            _ => {
                problems.push(format!(
                    "{name}.{event}: an HttpApi event needs a literal Method and Path"
                ));
                continue;
            }
        };
        routes.push(TemplateRoute {
            binary: binary.to_owned(),
            event: format!("{name}.{event}"),
            method,
            path,
            open: props["Auth"]["Authorizer"].as_str() == Some("NONE"),
        });
    }
    routes
}

/// (b) and (c): each function exactly once, with its variables and its actions.
fn check_functions(functions: &[TemplateFunction], problems: &mut Vec<String>) {
    for f in functions {
        if !FUNCTIONS.iter().any(|spec| spec.binary == f.binary) {
            problems.push(format!(
                "{}: binary {} is not a function of this workspace",
                f.resource, f.binary
            ));
        }
    }
    for spec in &FUNCTIONS {
        let found: Vec<&TemplateFunction> = functions
            .iter()
            .filter(|f| f.binary == spec.binary)
            .collect();
        let [f] = found.as_slice() else {
            problems.push(format!(
                "{}: declared {} times, expected once",
                spec.binary,
                found.len()
            ));
            continue;
        };
        let who = format!("{} ({})", spec.binary, f.resource);

        for var in spec.env {
            if !f.env.contains(*var) {
                problems.push(format!(
                    "{who}: environment variable {var} is not set, and the function needs it"
                ));
            }
        }
        for var in &f.env {
            if !spec.env.contains(&var.as_str()) && !spec.optional_env.contains(&var.as_str()) {
                problems.push(format!(
                    "{who}: environment variable {var} is set, but the function never reads it"
                ));
            }
        }

        let needed: BTreeSet<&str> = spec
            .iam
            .iter()
            .flat_map(|set| set.iter().copied())
            .collect();
        for action in &needed {
            if !f.actions.iter().any(|g| glob_matches(g, action)) {
                problems.push(format!(
                    "{who}: IAM action {action} is not granted, and its adapters call it"
                ));
            }
        }
        for granted in &f.actions {
            if !needed.iter().any(|a| a.eq_ignore_ascii_case(granted)) {
                problems.push(format!(
                    "{who}: IAM action {granted} is granted, but none of its adapters calls it"
                ));
            }
        }
    }
}

/// IAM's action matching: case-insensitive, `*` any run of characters, `?` one.
fn glob_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.split_first(), a.split_first()) {
            (None, None) => true,
            (Some((b'*', rest)), _) => go(rest, a) || (!a.is_empty() && go(p, &a[1..])),
            (Some((pc, prest)), Some((ac, arest))) => {
                (*pc == b'?' || pc.eq_ignore_ascii_case(ac)) && go(prest, arest)
            }
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// How well a route's path pattern matches a request path: `None` if it does not, else
/// the number of literal segments (API Gateway prefers the most specific route).
fn path_match(pattern: &str, path: &str) -> Option<usize> {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    let mut literals = 0;
    for (i, p) in pattern.iter().enumerate() {
        if p.starts_with('{') && p.ends_with("+}") {
            return (path.len() > i && path[i..].iter().all(|s| !s.is_empty())).then_some(literals);
        }
        let s = path.get(i)?;
        if p.starts_with('{') && p.ends_with('}') {
            if s.is_empty() {
                return None;
            }
        } else if p == s {
            literals += usize::from(!p.is_empty());
        } else {
            return None;
        }
    }
    (pattern.len() == path.len()).then_some(literals)
}

/// (a): every operation reaches its function through its own route; every route is one
/// of the contract's, on the function that serves it, behind the authorizer unless the
/// operation needs no token; and one `$default` catch-all, open, to the write function.
fn check_routes(routes: &[TemplateRoute], problems: &mut Vec<String>) {
    let specific: Vec<&TemplateRoute> = routes.iter().filter(|r| r.path != CATCH_ALL).collect();

    for (method, path) in EXAMPLES {
        let op = match match_route(&Method::from_bytes(method.as_bytes()).unwrap(), path) {
            Ok(op) => op,
            Err(e) => {
                problems.push(format!(
                    "example {method} {path} is not an operation of the contract ({e:?})"
                ));
                continue;
            }
        };
        let want = serving_binary(op.function());
        let best = specific
            .iter()
            .filter(|r| r.method == *method || r.method == "ANY")
            .filter_map(|r| path_match(&r.path, path).map(|lit| (lit, r.method == *method, r)))
            .max_by_key(|(lit, exact, _)| (*lit, *exact));
        match best {
            None => problems.push(format!(
                "{method} {path} ({}) has no route; API Gateway would send it to {CATCH_ALL} \
                 (tm-write) behind no authorizer instead of {want}",
                op_name(&op)
            )),
            Some((_, _, r)) if r.binary != want => problems.push(format!(
                "{method} {path} ({}) is routed to {} by {}, but is served by {want}",
                op_name(&op),
                r.binary,
                r.event
            )),
            Some(_) => {}
        }
    }

    let mut seen = BTreeMap::new();
    for r in &specific {
        if let Some(first) = seen.insert((r.method.clone(), r.path.clone()), r.event.clone()) {
            problems.push(format!(
                "{} {}: declared twice ({first} and {})",
                r.method, r.path, r.event
            ));
        }
        if r.path
            .split('/')
            .any(|s| s.starts_with('{') && s.ends_with("+}"))
        {
            problems.push(format!(
                "{} {} ({}): greedy path variables match paths the contract does not have",
                r.method, r.path, r.event
            ));
            continue;
        }
        let Ok(method) = Method::from_bytes(r.method.as_bytes()) else {
            problems.push(format!(
                "{} {} ({}): not an HTTP method",
                r.method, r.path, r.event
            ));
            continue;
        };
        if r.method == "ANY" {
            problems.push(format!(
                "ANY {} ({}): only {CATCH_ALL} may take every method; another method on this \
                 path must reach the write function's 405 before any 401",
                r.path, r.event
            ));
            continue;
        }
        // Any value stands in for a path variable: the route table does not check names.
        let sample: Vec<&str> = r
            .path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect();
        match match_route(&method, &sample.join("/")) {
            Err(e) => problems.push(format!(
                "{} {} ({}): not a route of the contract (match_route answers {e:?})",
                r.method, r.path, r.event
            )),
            Ok(op) => {
                let want = serving_binary(op.function());
                if r.binary != want {
                    problems.push(format!(
                        "{} {} ({}): {} is served by {want}, not {}",
                        r.method,
                        r.path,
                        r.event,
                        op_name(&op),
                        r.binary
                    ));
                }
                let needs_token = !op.scopes().is_empty();
                if needs_token && r.open {
                    problems.push(format!(
                        "{} {} ({}): has Authorizer NONE, but {} needs a token",
                        r.method,
                        r.path,
                        r.event,
                        op_name(&op)
                    ));
                } else if !needs_token && !r.open {
                    problems.push(format!(
                        "{} {} ({}): is behind the authorizer, but {} needs no token",
                        r.method,
                        r.path,
                        r.event,
                        op_name(&op)
                    ));
                }
            }
        }
    }

    let catch_all: Vec<&TemplateRoute> = routes.iter().filter(|r| r.path == CATCH_ALL).collect();
    match catch_all.as_slice() {
        [r] => {
            if r.binary != serving_binary(Function::Write) || r.method != "ANY" || !r.open {
                problems.push(format!(
                    "{} ({}): must be ANY, to tm-write, with Authorizer NONE, so unknown paths \
                     and methods answer 404/405 before 401 (found {} to {}{})",
                    CATCH_ALL,
                    r.event,
                    r.method,
                    r.binary,
                    if r.open { "" } else { " behind the authorizer" }
                ));
            }
        }
        found => problems.push(format!(
            "{CATCH_ALL}: declared {} times, expected once (to tm-write)",
            found.len()
        )),
    }
}

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")
}

fn template() -> String {
    let path = template_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The template without one item: the first line, after the first line starting with
/// `within`, whose text starts with `item`, and every following line indented deeper
/// (its children). Panics when there is no such line, so a mutation never silently
/// changes nothing.
fn without(text: &str, within: &str, item: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let (start, indent) = find(&lines, within, item);
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && indentation(l) <= indent)
        .map_or(lines.len(), |n| start + 1 + n);
    let mut kept = lines[..start].to_vec();
    kept.extend(&lines[end..]);
    kept.join("\n") + "\n"
}

/// The template with `line` (indentation included) inserted after the item that
/// [`without`] would remove.
fn with_line_after(text: &str, within: &str, item: &str, line: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let (at, _) = find(&lines, within, item);
    lines.insert(at + 1, line);
    lines.join("\n") + "\n"
}

/// `text` with its one occurrence of `from` replaced.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur exactly once"
    );
    text.replacen(from, to, 1)
}

fn find(lines: &[&str], within: &str, item: &str) -> (usize, usize) {
    let scope = lines
        .iter()
        .position(|l| l.trim_start().starts_with(within))
        .unwrap_or_else(|| panic!("no line starts with {within:?}"));
    let at = lines[scope..]
        .iter()
        .position(|l| l.trim_start().starts_with(item))
        .map(|n| scope + n)
        .unwrap_or_else(|| panic!("no line starts with {item:?} after {within:?}"));
    (at, indentation(lines[at]))
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Runs the check on a mutated template and returns its problems, after making sure the
/// mutation changed something (the unmutated template passes: the first test).
fn problems_of(mutated: &str) -> Vec<String> {
    assert_ne!(mutated, template(), "the mutation changed nothing");
    let problems = check(mutated);
    assert!(!problems.is_empty(), "the check missed the mutation");
    problems
}

fn assert_reported(problems: &[String], words: &[&str]) {
    assert!(
        problems.iter().any(|p| words.iter().all(|w| p.contains(w))),
        "no problem mentions all of {words:?}; got:\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn the_template_maps_every_route_and_gives_each_function_exactly_its_variables_and_actions() {
    let problems = check(&template());
    assert!(
        problems.is_empty(),
        "{} disagrees with the code:\n- {}",
        template_path().display(),
        problems.join("\n- ")
    );
}

#[test]
fn the_template_check_fails_when_a_route_is_removed() {
    let problems = problems_of(&without(&template(), "WriteFunction:", "Audit:"));
    assert_reported(&problems, &["GET /v1/tenants/acme/audit", "no route"]);
    let problems = problems_of(&without(&template(), "ResolveFunction:", "Readyz:"));
    assert_reported(&problems, &["GET /readyz", "no route"]);
}

#[test]
fn the_template_check_fails_when_a_route_is_not_the_contracts() {
    let t = replaced(
        &template(),
        "Path: /v1/tenants/{tenant}/audit\n",
        "Path: /v1/tenants/{tenant}/audits\n",
    );
    let problems = problems_of(&t);
    assert_reported(
        &problems,
        &[
            "GET /v1/tenants/{tenant}/audits",
            "not a route of the contract",
        ],
    );
    assert_reported(&problems, &["GET /v1/tenants/acme/audit", "no route"]);
}

#[test]
fn the_template_check_fails_when_a_route_is_on_the_wrong_function() {
    let t = without(&template(), "WriteFunction:", "Audit:");
    let t = with_line_after(
        &t,
        "ResolveFunction:",
        "Events:",
        "        Audit:\n          Type: HttpApi\n          Properties:\n            ApiId: !Ref HttpApi\n            Method: GET\n            Path: /v1/tenants/{tenant}/audit",
    );
    let problems = problems_of(&t);
    assert_reported(
        &problems,
        &["GET /v1/tenants/acme/audit", "routed to tm-resolve"],
    );
    assert_reported(&problems, &["Audit is served by tm-write, not tm-resolve"]);
}

#[test]
fn the_template_check_fails_when_authorization_is_wrong() {
    let open_health = without(&template(), "Healthz:", "Auth:");
    assert_reported(
        &problems_of(&open_health),
        &["GET /healthz", "needs no token"],
    );
    let t = with_line_after(
        &template(),
        "RouteStatus:",
        "PayloadFormatVersion:",
        "            Auth:\n              Authorizer: NONE",
    );
    assert_reported(
        &problems_of(&t),
        &["/status", "Authorizer NONE", "needs a token"],
    );
    let closed_catch_all = without(&template(), "CatchAll:", "Auth:");
    assert_reported(
        &problems_of(&closed_catch_all),
        &["$default", "behind the authorizer"],
    );
}

#[test]
fn the_template_check_fails_when_an_environment_variable_is_removed() {
    let problems = problems_of(&without(&template(), "ResolveFunction:", "TM_L1_TTL_MS:"));
    assert_reported(&problems, &["tm-resolve", "TM_L1_TTL_MS is not set"]);
    let problems = problems_of(&without(
        &template(),
        "OutboxRelayFunction:",
        "TM_KAFKA_AUTH:",
    ));
    assert_reported(&problems, &["tm-outbox-relay", "TM_KAFKA_AUTH is not set"]);
}

#[test]
fn the_template_check_fails_when_a_function_gets_a_variable_it_never_reads() {
    let t = with_line_after(
        &template(),
        "EventConsumerFunction:",
        "TM_KAFKA_AUTH:",
        "          TM_TABLE_NAME: !Ref RoutesTable",
    );
    assert_reported(
        &problems_of(&t),
        &[
            "tm-event-consumer",
            "TM_TABLE_NAME is set, but the function never reads it",
        ],
    );
}

#[test]
fn the_template_check_fails_when_an_iam_action_is_removed() {
    let problems = problems_of(&without(
        &template(),
        "WriteFunction:",
        "- dynamodb:PutItem",
    ));
    assert_reported(&problems, &["tm-write", "dynamodb:PutItem is not granted"]);
    let t = without(
        &template(),
        "OutboxRelayFunction:",
        "- kafka-cluster:CreateTopic",
    );
    assert_reported(
        &problems_of(&t),
        &[
            "tm-outbox-relay",
            "kafka-cluster:CreateTopic is not granted",
        ],
    );
}

#[test]
fn the_template_check_fails_when_an_iam_action_no_adapter_calls_is_granted() {
    let t = with_line_after(
        &template(),
        "ResolveFunction:",
        "- dynamodb:Query",
        "                - dynamodb:DeleteItem",
    );
    assert_reported(
        &problems_of(&t),
        &[
            "tm-resolve",
            "dynamodb:DeleteItem is granted, but none of its adapters calls it",
        ],
    );
    let t = with_line_after(
        &template(),
        "EventConsumerFunction:",
        "- kafka-cluster:ReadData",
        "                - kafka-cluster:*",
    );
    assert_reported(
        &problems_of(&t),
        &["tm-event-consumer", "kafka-cluster:* is granted"],
    );
}

#[test]
fn the_template_check_fails_on_policies_it_cannot_read() {
    let t = with_line_after(
        &template(),
        "ResolveFunction:",
        "Policies:",
        "        - AmazonDynamoDBReadOnlyAccess",
    );
    assert_reported(
        &problems_of(&t),
        &["ResolveFunction", "AmazonDynamoDBReadOnlyAccess"],
    );
    let t = with_line_after(
        &template(),
        "WriteFunction:",
        "Policies:",
        "        - DynamoDBCrudPolicy:\n            TableName: !Ref RoutesTable",
    );
    assert_reported(&problems_of(&t), &["WriteFunction", "DynamoDBCrudPolicy"]);
}

#[test]
fn the_template_check_reads_short_tags_and_rejects_what_is_not_a_template() {
    // Tags on scalars, sequences and maps are kept as plain values.
    let docs = YamlLoader::load_from_str(
        "a: !Ref B\nb: !If [C, !Ref D, !Ref AWS::NoValue]\nc: !Sub\n  x: y\n",
    )
    .unwrap();
    assert_eq!(docs[0]["a"].as_str(), Some("B"));
    assert_eq!(docs[0]["b"][1].as_str(), Some("D"));
    assert_eq!(docs[0]["c"]["x"].as_str(), Some("y"));
    let broken = check("a: [unclosed");
    assert!(
        broken.len() == 1 && broken[0].starts_with("the template is not YAML"),
        "{broken:?}"
    );
    assert_eq!(
        check("Resources: 3\n"),
        vec!["the template has no Resources".to_owned()]
    );
}

#[test]
fn every_operation_of_the_contract_has_an_example_request() {
    let covered: BTreeSet<&str> = EXAMPLES
        .iter()
        .map(|(m, p)| {
            let op = match_route(&Method::from_bytes(m.as_bytes()).unwrap(), p)
                .unwrap_or_else(|e| panic!("{m} {p}: {e:?}"));
            op_name(&op)
        })
        .collect();
    assert_eq!(covered, OP_NAMES.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn every_variable_config_reads_belongs_to_a_function_or_to_tm_local_and_no_other_is_named() {
    let read = std::cell::RefCell::new(BTreeSet::new());
    Config::from_lookup(|k| {
        read.borrow_mut().insert(k.to_owned());
        None
    })
    .unwrap();
    let read = read.into_inner();
    let mut named: BTreeSet<String> = LOCAL_ONLY_ENV.iter().map(|v| v.to_string()).collect();
    for spec in &FUNCTIONS {
        for var in spec.env.iter().chain(spec.optional_env) {
            if var.starts_with("TM_") {
                assert!(
                    read.contains(*var),
                    "{}: Config never reads {var}",
                    spec.binary
                );
                named.insert(var.to_string());
            }
            assert!(
                !(spec.env.contains(var) && spec.optional_env.contains(var)),
                "{}: {var} is both required and optional",
                spec.binary
            );
        }
    }
    assert_eq!(
        read, named,
        "a variable Config reads is claimed by no function"
    );
}

#[test]
fn every_action_a_function_needs_is_of_a_service_the_check_compares() {
    for spec in &FUNCTIONS {
        for action in spec.iam.iter().flat_map(|set| set.iter()) {
            assert!(
                CHECKED_SERVICES.iter().any(|s| action.starts_with(s)),
                "{}: {action} would be ignored by the check",
                spec.binary
            );
        }
    }
}

#[test]
fn path_patterns_match_as_api_gateway_does() {
    assert_eq!(
        path_match("/v1/tenants/{tenant}/routes", "/v1/tenants/acme/routes"),
        Some(3)
    );
    assert_eq!(
        path_match("/v1/tenants/{tenant}/routes", "/v1/tenants//routes"),
        None
    );
    assert_eq!(
        path_match("/v1/tenants/{tenant}/routes", "/v1/tenants/acme/routes/x"),
        None
    );
    assert_eq!(path_match("/v1/{proxy+}", "/v1/a/b"), Some(1));
    assert_eq!(path_match("/v1/{proxy+}", "/v1"), None);
    assert!(glob_matches("dynamodb:*", "dynamodb:GetItem"));
    assert!(glob_matches("DynamoDB:get?tem", "dynamodb:GetItem"));
    assert!(!glob_matches("dynamodb:Get*", "dynamodb:PutItem"));
}

// -----------------------------------------------------------------------------------------
// samconfig.toml: the prod settings cannot be deployed with their placeholders. The
// refusal is scripts/validate-template.sh --deploy <env> (step 0); these tests run it, with
// --placeholders-only (no venv, seconds), on copies of samconfig.toml.
// -----------------------------------------------------------------------------------------

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn repo_text(path: &str) -> String {
    let p = repo_root().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The placeholders samconfig.toml's prod section ships with (the issuer and the alarm
/// address), and an all-zero secret version id, the shape of the one it shipped while the
/// stack pinned the cursor secret's version: the check refuses any all-zero id.
const PROD_PLACEHOLDERS: [(&str, &str); 3] = [
    ("JwtIssuer", "https://idp.example.com/"),
    (
        "CursorSecretVersionId",
        "00000000-0000-0000-0000-000000000000",
    ),
    ("AlarmEmail", "oncall@example.com"),
];

/// What an operator would put in place of the shipped placeholders.
const PROD_FILLED: [(&str, &str); 2] = [
    (
        "JwtIssuer",
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Tq3Lw9XzB",
    ),
    ("AlarmEmail", "traffic-oncall@payments.acme-corp.io"),
];

/// `samconfig` with `key` set to `value` in `[<env>.deploy.parameters]`: its line replaced,
/// or added at the top of `parameter_overrides` when the key is not there.
fn with_override(samconfig: &str, env: &str, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = samconfig.lines().map(str::to_owned).collect();
    let header = format!("[{env}.deploy.parameters]");
    let section = lines
        .iter()
        .position(|l| l.trim() == header)
        .unwrap_or_else(|| panic!("samconfig.toml has no {header}"));
    let list = section
        + lines[section..]
            .iter()
            .position(|l| l.trim_start().starts_with("parameter_overrides = ["))
            .unwrap_or_else(|| panic!("{header} has no parameter_overrides list"));
    let end = list
        + lines[list..]
            .iter()
            .position(|l| l.trim() == "]")
            .expect("parameter_overrides ends with a line `]`");
    let line = format!("  \"{key}={value}\",");
    let prefix = format!("\"{key}=");
    match (list..end).find(|&i| lines[i].trim_start().starts_with(&prefix)) {
        Some(i) => lines[i] = line,
        None => lines.insert(list + 1, line),
    }
    lines.join("\n") + "\n"
}

/// Runs `scripts/validate-template.sh --deploy <env> --placeholders-only` on `samconfig`
/// (written to a temporary file): whether it passed, and what it printed.
fn placeholder_check(samconfig: &str, env: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("samconfig.toml");
    std::fs::write(&path, samconfig).expect("write the samconfig copy");
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/validate-template.sh"))
        .args(["--deploy", env, "--placeholders-only"])
        .env("TM_SAMCONFIG", &path)
        .output()
        .expect("run scripts/validate-template.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn prod_settings_that_keep_a_placeholder_are_refused_naming_each_parameter() {
    let mut samconfig = repo_text("samconfig.toml");
    for (key, value) in PROD_PLACEHOLDERS {
        samconfig = with_override(&samconfig, "prod", key, value);
    }
    let (passed, out) = placeholder_check(&samconfig, "prod");
    assert!(!passed, "prod with placeholders was not refused:\n{out}");
    for (key, value) in PROD_PLACEHOLDERS {
        assert!(
            out.lines()
                .any(|l| l.starts_with("error: ") && l.contains(&format!("[prod] {key}={value}"))),
            "no error names {key}:\n{out}"
        );
    }
    assert!(
        out.contains("[prod] cannot be deployed: 3 parameter(s)"),
        "{out}"
    );

    // One placeholder left is refused alone, by name (an issuer at an example host other
    // than the shipped one).
    let mut samconfig = repo_text("samconfig.toml");
    for (key, value) in PROD_FILLED {
        samconfig = with_override(&samconfig, "prod", key, value);
    }
    let samconfig = with_override(
        &samconfig,
        "prod",
        "JwtIssuer",
        "https://example.eu.auth0.com/",
    );
    let (passed, out) = placeholder_check(&samconfig, "prod");
    assert!(!passed, "an example.* issuer was not refused:\n{out}");
    let errors: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("error: [prod] "))
        .collect();
    assert!(
        errors.len() == 2
            && errors[0].contains("JwtIssuer=https://example.eu.auth0.com/")
            && errors[1].contains("cannot be deployed: 1 parameter(s)"),
        "{out}"
    );
}

#[test]
fn prod_settings_filled_in_and_the_dev_settings_pass_the_placeholder_check() {
    let real = repo_text("samconfig.toml");
    let mut samconfig = real.clone();
    for (key, value) in PROD_FILLED {
        samconfig = with_override(&samconfig, "prod", key, value);
    }
    let (passed, out) = placeholder_check(&samconfig, "prod");
    assert!(passed, "filled-in prod settings were refused:\n{out}");
    // dev may keep its examples: the refusal is for Stage=prod.
    let (passed, out) = placeholder_check(&real, "dev");
    assert!(passed, "the dev settings were refused:\n{out}");
}

// -----------------------------------------------------------------------------------------
// The repository stands alone: README.md and docs/ link only to files of this repository.
// -----------------------------------------------------------------------------------------

/// README.md and every Markdown file under docs/, as paths relative to the root.
fn markdown_files() -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &str, out: &mut Vec<String>) {
        let entries =
            std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("read {dir}: {e}"));
        let mut names: Vec<String> = entries
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        for name in names {
            let path = format!("{dir}/{name}");
            if root.join(&path).is_dir() {
                walk(root, &path, out);
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut files = vec!["README.md".to_owned()];
    walk(&repo_root(), "docs", &mut files);
    files
}

/// The link targets of a Markdown text: inline links and images `[..](target)`,
/// reference definitions `[label]: target` and HTML `href="..."` / `src="..."`. Fenced
/// code blocks and code spans are skipped (what they show is not a link).
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Outside code spans: the even pieces between backticks.
        let prose: String = line.split('`').step_by(2).collect();
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => return true,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(rest.len(), |(i, _)| i);
            let inside = rest[..end].trim();
            let target = match inside.strip_prefix('<') {
                Some(angled) => angled.split('>').next().unwrap_or(""),
                None => inside.split_whitespace().next().unwrap_or(""),
            };
            targets.push(target.to_owned());
            rest = &rest[end..];
        }
        // `[label]: target` on a line of its own.
        if let Some(label) = prose.trim_start().strip_prefix('[')
            && let Some(close) = label.find(']')
            && let Some(after) = label[close + 1..].strip_prefix(':')
            && let Some(target) = after.split_whitespace().next()
        {
            targets.push(target.trim_matches(['<', '>']).to_owned());
        }
        for attribute in ["href=\"", "src=\""] {
            for piece in prose.split(attribute).skip(1) {
                targets.push(piece.split('"').next().unwrap_or("").to_owned());
            }
        }
    }
    targets
}

/// Every relative link of `file` (a path from the root; `text` is its content) that
/// leaves the repository or names a file that does not exist, one sentence each. Links
/// with a scheme (`https:`, `mailto:`, ...) and bare `#anchors` are not checked.
fn broken_links(root: &std::path::Path, file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for target in link_targets(text) {
        let path = target.split(['#', '?']).next().unwrap_or("");
        let scheme = path.split_once(':').is_some_and(|(s, _)| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        });
        if path.is_empty() || scheme {
            continue;
        }
        // Relative to the file's folder; a leading `/` is the repository root (as GitHub
        // renders it).
        let mut parts: Vec<&str> = match file.rsplit_once('/') {
            _ if path.starts_with('/') => Vec::new(),
            Some((folder, _)) => folder.split('/').collect(),
            None => Vec::new(),
        };
        let mut leaves = false;
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => leaves |= parts.pop().is_none(),
                name => parts.push(name),
            }
            if leaves {
                break;
            }
        }
        if leaves {
            problems.push(format!(
                "{file}: the link {target} leaves the repository (a clone does not have it)"
            ));
        } else if !root.join(parts.join("/")).exists() {
            problems.push(format!(
                "{file}: the link {target} points at {}, which does not exist",
                parts.join("/")
            ));
        }
    }
    problems
}

#[test]
fn the_readme_and_docs_link_only_to_files_inside_the_repository() {
    let files = markdown_files();
    assert!(
        files.iter().any(|f| f == "docs/api.md") && files.iter().any(|f| f == "docs/deploy.md"),
        "{files:?}"
    );
    let root = repo_root();
    let problems: Vec<String> = files
        .iter()
        .flat_map(|f| broken_links(&root, f, &repo_text(f)))
        .collect();
    assert!(problems.is_empty(), "- {}", problems.join("\n- "));
}

#[test]
fn links_that_leave_the_repository_or_name_missing_files_are_reported() {
    let root = repo_root();
    let readme = "The contract is [`../shared/CONTRACT.md`](../shared/CONTRACT.md); deploying \
                  in [docs/deploy.md](docs/deploy.md#5-deploy), the API in \
                  [the guide](<docs/api.md> \"title\"); [gone](docs/nowhere.md), \
                  ![a picture](docs/none.png), [web](https://example.com/a/../../b), \
                  [mail](mailto:ops@example.com), [here](#how-it-works), \
                  <a href=\"../other/x.md\">x</a>\n\
                  [ref]: ../../outside.md\n\
                  ```sh\n[not a link](../in-a-code-block.md)\n```\n\
                  A span: `[not a link](../in-a-code-span.md)`.\n";
    let problems = broken_links(&root, "README.md", readme);
    assert_reported(
        &problems,
        &[
            "README.md",
            "../shared/CONTRACT.md",
            "leaves the repository",
        ],
    );
    assert_reported(&problems, &["docs/nowhere.md", "does not exist"]);
    assert_reported(&problems, &["docs/none.png", "does not exist"]);
    assert_reported(&problems, &["../other/x.md", "leaves the repository"]);
    assert_reported(&problems, &["../../outside.md", "leaves the repository"]);
    assert_eq!(problems.len(), 5, "- {}", problems.join("\n- "));
    // Relative to the linking file's own folder.
    let deploy = "[t](../infra/template.yaml), [api](api.md#errors), [root](/README.md)";
    assert_eq!(
        broken_links(&root, "docs/deploy.md", deploy),
        Vec::<String>::new()
    );
    assert_reported(
        &broken_links(&root, "docs/deploy.md", "[c](../../shared/CONTRACT.md)"),
        &["docs/deploy.md", "leaves the repository"],
    );
    assert_reported(
        &broken_links(&root, "docs/deploy.md", "[r](README.md)"),
        &["docs/README.md", "does not exist"],
    );
}
