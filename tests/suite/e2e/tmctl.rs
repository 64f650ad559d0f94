//! tmctl against a real tm-local: routes commands and exit codes, plan / apply / prune,
//! conflicts (a concurrent change is reported, never overwritten), canary shifts with
//! abort, and the audit watch. tmctl runs in-process through `tmctl::run`, the same
//! entry point as its binary, with its own environment and captured output.

use http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tm_tests::{Http, TmLocal, admin, body, route_path, token};
use tmctl::error::code;

const ENV: &[(&str, &str)] = &[("TM_L1_TTL_MS", "200")];

/// A tmctl user: the server, a token, and a home of its own (no stray config file).
struct Ctl {
    env: HashMap<String, String>,
    _home: tempfile::TempDir,
}

/// What one tmctl run did.
#[derive(Debug)]
struct Ran {
    status: i32,
    out: String,
    err: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl Ctl {
    fn new(base: &str, token: &str) -> Self {
        let home = tempfile::tempdir().expect("home");
        let mut env = HashMap::new();
        env.insert("TM_URL".to_owned(), base.to_owned());
        env.insert("TM_TOKEN".to_owned(), token.to_owned());
        env.insert("HOME".to_owned(), home.path().display().to_string());
        env.insert(
            "TMCTL_STATE_DIR".to_owned(),
            home.path().join("state").display().to_string(),
        );
        Self { env, _home: home }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self._home.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }

    async fn run(&self, args: &[&str]) -> Ran {
        let mut argv = vec!["tmctl".to_owned()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin: &[u8] = &[];
        let status = {
            let mut io = tmctl::Io {
                out: &mut out,
                err: &mut err,
                err_is_tty: false,
                stdin: &mut stdin,
            };
            tmctl::run(argv, &self.env, &mut io).await
        };
        Ran {
            status,
            out: String::from_utf8_lossy(&out).into_owned(),
            err: String::from_utf8_lossy(&err).into_owned(),
        }
    }
}

fn routes_file(tenant: &str, routes: &[(&str, &[(&str, u32)])]) -> String {
    let mut s = format!("tenant: {tenant}\nroutes:\n");
    for (key, eps) in routes {
        let mut parts = key.split('/');
        let (svc, env, ver) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        s.push_str(&format!("  - service: {svc}\n    env: {env}\n    version: {ver}\n    labels: {{team: ops}}\n    endpoints:\n"));
        for (id, w) in *eps {
            s.push_str(&format!(
                "      - {{id: {id}, url: \"https://{id}.example.internal\", weight: {w}}}\n"
            ));
        }
    }
    s
}

#[tokio::test]
async fn plan_shows_the_exact_diff_and_apply_makes_the_deployed_routes_match_the_file() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let ctl = Ctl::new(&srv.base, &admin("ops-plan"));
    // GIVEN a routes file with two routes and nothing deployed
    let f = ctl.file(
        "routes.yaml",
        &routes_file(
            "ops-plan",
            &[
                ("checkout/prod/2.3.1", &[("blue", 90), ("green", 10)]),
                ("search/prod/1.0.0", &[("a", 1)]),
            ],
        ),
    );
    // WHEN planned
    let plan = ctl
        .run(&["plan", "-f", &f, "-o", "json", "--detailed-exitcode"])
        .await;
    // THEN both are creates, with their endpoints shown, and the exit code says "changes"
    assert_eq!(plan.status, code::CHANGES, "{plan:?}");
    let p = plan.json();
    let actions: Vec<(&str, &str)> = p["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap(),
                c["route"]["service"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions, [("create", "checkout"), ("create", "search")]);
    assert_eq!(p["changes"][0]["details"][0]["what"], "endpoint blue");
    assert_eq!(p["changes"][0]["details"][0]["to"]["weight"], 90);
    let text = ctl.run(&["plan", "-f", &f]).await;
    assert!(
        text.out.contains("2 to create, 0 to change, 0 to delete"),
        "{}",
        text.out
    );
    assert!(
        text.out.contains("+ checkout/prod/2.3.1 (create)"),
        "{}",
        text.out
    );

    // WHEN applied
    let applied = ctl.run(&["apply", "-f", &f]).await;
    assert_eq!(applied.status, code::OK, "{applied:?}");
    // THEN the server holds exactly the file, and a new plan has nothing to do
    let tok = admin("ops-plan");
    let r = http
        .get(&route_path("ops-plan", "checkout", "prod", "2.3.1"), &tok)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["endpoints"][1]["weight"], 10);
    assert_eq!(r.json["labels"]["team"], "ops");
    let again = ctl.run(&["plan", "-f", &f, "--detailed-exitcode"]).await;
    assert_eq!(again.status, code::OK, "{again:?}");
    assert!(again.out.contains("No changes"), "{}", again.out);

    // WHEN the canary weight changes in the file
    let f = ctl.file(
        "routes.yaml",
        &routes_file(
            "ops-plan",
            &[
                ("checkout/prod/2.3.1", &[("blue", 50), ("green", 50)]),
                ("search/prod/1.0.0", &[("a", 1)]),
            ],
        ),
    );
    let p = ctl.run(&["plan", "-f", &f, "-o", "json"]).await.json();
    // THEN the plan names exactly the two weight changes, conditional on revision 1
    assert_eq!(p["changes"].as_array().unwrap().len(), 1, "{p}");
    let change = &p["changes"][0];
    assert_eq!(
        (change["action"].as_str(), change["revision"].as_u64()),
        (Some("update"), Some(1))
    );
    let details: Vec<(String, Value, Value)> = change["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["what"].as_str().unwrap().to_owned(),
                d["from"].clone(),
                d["to"].clone(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            ("endpoint blue weight".to_owned(), json!(90), json!(50)),
            ("endpoint green weight".to_owned(), json!(10), json!(50))
        ]
    );
    assert_eq!(p["unchanged"].as_array().unwrap().len(), 1);
    let applied = ctl.run(&["apply", "-f", &f, "-o", "json"]).await;
    assert_eq!(applied.status, code::OK, "{applied:?}");
    assert_eq!(applied.json()["results"][0]["revision"], 2);
    let r = http
        .get(&route_path("ops-plan", "checkout", "prod", "2.3.1"), &tok)
        .await;
    assert_eq!(r.json["endpoints"][0]["weight"], 50);
}

#[tokio::test]
async fn prune_deletes_what_the_file_no_longer_names_and_only_with_prune() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let ctl = Ctl::new(&srv.base, &admin("ops-prune"));
    let both = ctl.file(
        "all.yaml",
        &routes_file(
            "ops-prune",
            &[
                ("checkout/prod/1.0.0", &[("a", 1)]),
                ("legacy/prod/0.9.0", &[("b", 1)]),
            ],
        ),
    );
    assert_eq!(ctl.run(&["apply", "-f", &both]).await.status, code::OK);
    // GIVEN a file that no longer names legacy
    let one = ctl.file(
        "one.yaml",
        &routes_file("ops-prune", &[("checkout/prod/1.0.0", &[("a", 1)])]),
    );
    // WHEN planned and applied without --prune
    let p = ctl.run(&["plan", "-f", &one]).await;
    assert!(
        p.out
            .contains("! legacy/prod/0.9.0 is deployed but not in the file"),
        "{}",
        p.out
    );
    assert_eq!(ctl.run(&["apply", "-f", &one]).await.status, code::OK);
    // THEN legacy stays
    let tok = admin("ops-prune");
    let legacy = route_path("ops-prune", "legacy", "prod", "0.9.0");
    assert_eq!(http.get(&legacy, &tok).await.status, StatusCode::OK);
    // WHEN planned and applied with --prune
    let p = ctl
        .run(&["plan", "-f", &one, "--prune", "-o", "json"])
        .await
        .json();
    assert_eq!(p["changes"][0]["action"], "delete");
    assert_eq!(p["changes"][0]["revision"], 1);
    let applied = ctl.run(&["apply", "-f", &one, "--prune"]).await;
    assert_eq!(applied.status, code::OK, "{applied:?}");
    // THEN it is gone, and checkout is untouched
    assert_eq!(http.get(&legacy, &tok).await.status, StatusCode::NOT_FOUND);
    let checkout = http
        .get(&route_path("ops-prune", "checkout", "prod", "1.0.0"), &tok)
        .await;
    assert_eq!(checkout.json["revision"], 1);
}

#[tokio::test]
async fn a_route_changed_after_the_plan_is_a_conflict_and_is_never_overwritten() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let tok = admin("ops-conflict");
    let ctl = Ctl::new(&srv.base, &tok);
    let v1 = ctl.file(
        "v1.yaml",
        &routes_file("ops-conflict", &[("checkout/prod/1.0.0", &[("blue", 100)])]),
    );
    assert_eq!(ctl.run(&["apply", "-f", &v1]).await.status, code::OK);

    // GIVEN a plan reviewed at revision 1 (saved as JSON), and a plan held in memory
    let v2 = ctl.file(
        "v2.yaml",
        &routes_file(
            "ops-conflict",
            &[
                ("checkout/prod/1.0.0", &[("blue", 80), ("green", 20)]),
                ("new/prod/1.0.0", &[("x", 1)]),
            ],
        ),
    );
    let reviewed = ctl.run(&["plan", "-f", &v2, "-o", "json"]).await;
    let reviewed_path = ctl.file("plan.json", &reviewed.out);
    let desired = tmctl::spec::parse(&std::fs::read_to_string(&v2).unwrap(), "v2.yaml").unwrap();
    let client = tmctl::client::ApiClient::new(&srv.base, Some(tok.clone())).unwrap();
    let api = tmctl::api::Api::new(client, "ops-conflict".into());
    let deployed = tmctl::plan::deployed_from(&api.list_routes(None, None).await.unwrap()).unwrap();
    let stale = tmctl::plan::plan(&desired, &deployed, false);

    // WHEN someone else changes checkout and creates new/prod/1.0.0 in between
    let path = route_path("ops-conflict", "checkout", "prod", "1.0.0");
    let theirs = http
        .put(&path, &tok, &body(&[("blue", 1), ("red", 99)]))
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let created = http
        .put(
            &route_path("ops-conflict", "new", "prod", "1.0.0"),
            &tok,
            &body(&[("y", 1)]),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);

    // THEN applying the reviewed plan refuses before writing anything (exit 3)
    let refused = ctl
        .run(&["apply", "-f", &v2, "--plan", &reviewed_path])
        .await;
    assert_eq!(refused.status, code::CONFLICT, "{refused:?}");
    assert!(refused.err.contains("changed since"), "{}", refused.err);
    // AND applying the stale plan sends If-Match / If-None-Match and both writes are refused
    let report = tmctl::apply::apply(&api, &stale, false).await;
    let outcomes: Vec<tmctl::apply::Outcome> =
        report.results.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            tmctl::apply::Outcome::Conflict,
            tmctl::apply::Outcome::Conflict
        ]
    );
    assert_eq!(report.error().map(|e| e.exit_code()), Some(code::CONFLICT));
    // AND the other writer's changes are intact
    let now = http.get(&path, &tok).await;
    assert_eq!(now.json["revision"], 2);
    assert_eq!(now.json["endpoints"][1]["id"], "red");
    let new = http
        .get(&route_path("ops-conflict", "new", "prod", "1.0.0"), &tok)
        .await;
    assert_eq!(new.json["endpoints"][0]["id"], "y");
}

#[tokio::test]
async fn routes_commands_answer_tables_json_and_documented_exit_codes() {
    let (srv, _dir) = TmLocal::start(ENV);
    let tok = admin("ops-cmds");
    let ctl = Ctl::new(&srv.base, &tok);
    let t = ["-t", "ops-cmds"];
    // A missing route is exit 4; a bad route reference exit 2
    let missing = ctl
        .run(&[&t[..], &["routes", "get", "checkout/prod/1.0.0"]].concat())
        .await;
    assert_eq!(missing.status, code::NOT_FOUND, "{missing:?}");
    assert_eq!(
        ctl.run(&[&t[..], &["routes", "get", "checkout/prod"]].concat())
            .await
            .status,
        code::USAGE
    );
    assert_eq!(
        ctl.run(&["routes", "get", "checkout/prod/1.0.0"])
            .await
            .status,
        code::USAGE,
        "no tenant"
    );
    // put, create-only twice (412 → 3), get, list, history
    let b = ctl.file("b.json", &body(&[("blue", 90), ("green", 10)]));
    let put = ctl
        .run(
            &[
                &t[..],
                &[
                    "routes",
                    "put",
                    "checkout/prod/1.0.0",
                    "-f",
                    &b,
                    "--create-only",
                    "-o",
                    "json",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(put.status, code::OK, "{put:?}");
    assert_eq!(put.json()["revision"], 1);
    let again = ctl
        .run(
            &[
                &t[..],
                &[
                    "routes",
                    "put",
                    "checkout/prod/1.0.0",
                    "-f",
                    &b,
                    "--create-only",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(again.status, code::CONFLICT, "{again:?}");
    let stale = ctl
        .run(
            &[
                &t[..],
                &[
                    "routes",
                    "put",
                    "checkout/prod/1.0.0",
                    "-f",
                    &b,
                    "--if-match",
                    "7",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(stale.status, code::CONFLICT);
    let get = ctl
        .run(&[&t[..], &["routes", "get", "checkout/prod/1.0.0"]].concat())
        .await;
    assert!(
        get.out.contains("revision  1") && get.out.contains("green"),
        "{}",
        get.out
    );
    let list = ctl.run(&[&t[..], &["routes", "list"]].concat()).await;
    assert!(list.out.starts_with("SERVICE"), "{}", list.out);
    assert!(list.out.contains("blue:90 green:10"), "{}", list.out);
    let hist = ctl
        .run(
            &[
                &t[..],
                &["routes", "history", "checkout/prod/1.0.0", "-o", "json"],
            ]
            .concat(),
        )
        .await;
    assert_eq!(hist.json()[0]["type"], "route.created");
    // resolve and status
    let res = ctl
        .run(
            &[
                &t[..],
                &[
                    "resolve",
                    "checkout/prod/latest",
                    "--key",
                    "user-1",
                    "-o",
                    "json",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(res.status, code::OK, "{res:?}");
    assert_eq!(res.json()["version"], "1.0.0");
    let st = ctl
        .run(&[&t[..], &["status", "checkout/prod/1.0.0", "-o", "json"]].concat())
        .await;
    assert_eq!(st.json()["revision"], 1);
    let ready = ctl.run(&["status"]).await;
    assert_eq!(ready.status, code::OK, "{ready:?}");
    assert!(ready.out.contains("ready"), "{}", ready.out);
    // delete with a stale If-Match is 3, then for real, then 4
    let del = ["routes", "delete", "checkout/prod/1.0.0"];
    assert_eq!(
        ctl.run(&[&t[..], &del[..], &["--if-match", "9"]].concat())
            .await
            .status,
        code::CONFLICT
    );
    assert_eq!(ctl.run(&[&t[..], &del[..]].concat()).await.status, code::OK);
    assert_eq!(
        ctl.run(&[&t[..], &del[..]].concat()).await.status,
        code::NOT_FOUND
    );
    // a token for another tenant is exit 5
    let other = Ctl::new(&srv.base, &token("x", "someone-else", "routes:read"));
    assert_eq!(
        other
            .run(&[&t[..], &["routes", "list"]].concat())
            .await
            .status,
        code::AUTH
    );
}

#[tokio::test]
async fn a_shift_walks_the_canary_step_by_step_and_abort_restores_the_recorded_weights() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let tok = admin("ops-shift");
    let ctl = Ctl::new(&srv.base, &tok);
    let path = route_path("ops-shift", "checkout", "prod", "2.3.1");
    // GIVEN blue takes everything and green nothing, with a DR endpoint in reserve
    let start = json!({"endpoints": [
        {"id": "blue", "url": "https://blue.example.internal", "weight": 100},
        {"id": "green", "url": "https://green.example.internal", "weight": 0},
        {"id": "dr", "url": "https://dr.example.internal", "weight": 1, "priority": 1}
    ]});
    assert_eq!(
        http.put(&path, &tok, &start.to_string()).await.status,
        StatusCode::CREATED
    );
    // WHEN green is shifted in steps of 40
    let t = ["-t", "ops-shift"];
    let ran = ctl
        .run(
            &[
                &t[..],
                &[
                    "shift",
                    "checkout/prod/2.3.1",
                    "--to",
                    "green",
                    "--step",
                    "40",
                    "--every",
                    "50ms",
                    "-o",
                    "json",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(ran.status, code::OK, "{ran:?}");
    // THEN each step is reported as resolve served it: 40, 80, 100 % for green
    let steps: Vec<Value> = ran
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let percents: Vec<u64> = steps
        .iter()
        .map(|s| s["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents, [40, 80, 100]);
    assert_eq!(steps[0]["candidates"], json!([["blue", 60], ["green", 40]]));
    assert_eq!(
        steps[2]["resolved"], "green",
        "only green has weight at 100 %"
    );
    let now = http.get(&path, &tok).await;
    assert_eq!(now.json["revision"], 4);
    assert_eq!(now.json["endpoints"][0]["weight"], 0);
    assert_eq!(now.json["endpoints"][1]["weight"], 100);
    assert_eq!(
        now.json["endpoints"][2]["weight"], 1,
        "the DR group is untouched"
    );
    // WHEN aborted
    let abort = ctl
        .run(&[&t[..], &["shift", "checkout/prod/2.3.1", "--abort"]].concat())
        .await;
    assert_eq!(abort.status, code::OK, "{abort:?}");
    // THEN the recorded weights are back
    let back = http.get(&path, &tok).await;
    assert_eq!(back.json["endpoints"][0]["weight"], 100);
    assert_eq!(back.json["endpoints"][1]["weight"], 0);
    assert_eq!(back.json["revision"], 5);
    // AND with nothing recorded any more, a second abort is "not found"
    let twice = ctl
        .run(&[&t[..], &["shift", "checkout/prod/2.3.1", "--abort"]].concat())
        .await;
    assert_eq!(twice.status, code::NOT_FOUND, "{twice:?}");
}

#[tokio::test]
async fn abort_refuses_to_overwrite_a_change_made_after_the_shift() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let tok = admin("ops-abort");
    let ctl = Ctl::new(&srv.base, &tok);
    let path = route_path("ops-abort", "checkout", "prod", "1.0.0");
    assert_eq!(
        http.put(&path, &tok, &body(&[("blue", 90), ("green", 10)]))
            .await
            .status,
        StatusCode::CREATED
    );
    let t = ["-t", "ops-abort"];
    let ran = ctl
        .run(
            &[
                &t[..],
                &[
                    "shift",
                    "checkout/prod/1.0.0",
                    "--to",
                    "green",
                    "--step",
                    "90",
                    "--every",
                    "0s",
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(ran.status, code::OK, "{ran:?}");
    assert!(ran.out.contains("step 1/1"), "{}", ran.out);
    // GIVEN someone changes the route after the shift
    assert_eq!(
        http.put(&path, &tok, &body(&[("teal", 1)])).await.status,
        StatusCode::OK
    );
    // WHEN the shift is aborted THEN it is a conflict and their change stays
    let abort = ctl
        .run(&[&t[..], &["shift", "checkout/prod/1.0.0", "--abort"]].concat())
        .await;
    assert_eq!(abort.status, code::CONFLICT, "{abort:?}");
    assert_eq!(
        http.get(&path, &tok).await.json["endpoints"][0]["id"],
        "teal"
    );
}

#[tokio::test]
async fn watch_follows_the_audit_feed_oldest_first() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let tok = admin("ops-watch");
    let ctl = Ctl::new(&srv.base, &tok);
    let since = tm_core::domain::timefmt::Timestamp::now().to_string();
    let args = [
        "-t",
        "ops-watch",
        "watch",
        "--since",
        &since,
        "--every",
        "100ms",
        "--count",
        "3",
        "-o",
        "json",
    ];
    let watching = ctl.run(&args);
    // WHEN three changes are made while it watches (on the same task: tmctl's output
    // writers are not Send)
    let path = route_path("ops-watch", "checkout", "prod", "1.0.0");
    let changes = async {
        http.put(&path, &tok, &body(&[("a", 1)])).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        http.put(&path, &tok, &body(&[("a", 2)])).await;
        http.delete(&path, &tok).await;
    };
    // THEN it prints each once, oldest first, and stops after three
    let (ran, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(watching, changes)
    })
    .await
    .expect("watch stops after --count entries");
    assert_eq!(ran.status, code::OK, "{ran:?}");
    let types: Vec<String> = ran
        .out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["route.created", "route.updated", "route.deleted"]);
}

#[tokio::test]
async fn the_tmctl_binary_exits_with_the_documented_codes() {
    let (srv, _dir) = TmLocal::start(ENV);
    let home = tempfile::tempdir().expect("home");
    let run = |args: &[&str], token: &str| {
        std::process::Command::new(tm_tests::tmctl_bin())
            .args(args)
            .env("HOME", home.path())
            .env("TM_URL", &srv.base)
            .env("TM_TOKEN", token)
            .env_remove("TM_TENANT")
            .env_remove("TMCTL_CONFIG")
            .output()
            .expect("run tmctl")
    };
    let tok = admin("ops-bin");
    let missing = run(&["-t", "ops-bin", "routes", "get", "a/b/1"], &tok);
    assert_eq!(missing.status.code(), Some(code::NOT_FOUND), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    assert_eq!(run(&["frobnicate"], &tok).status.code(), Some(code::USAGE));
    assert_eq!(
        run(&["-t", "ops-bin", "routes", "list"], "not-a-token")
            .status
            .code(),
        Some(code::AUTH)
    );
    let listed = run(&["-t", "ops-bin", "routes", "list", "-o", "json"], &tok);
    assert_eq!(listed.status.code(), Some(code::OK));
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).expect("JSON"),
        json!([])
    );
    let help = run(&["--help"], &tok);
    assert_eq!(help.status.code(), Some(code::OK));
    assert!(String::from_utf8_lossy(&help.stdout).contains("shift"));
}
