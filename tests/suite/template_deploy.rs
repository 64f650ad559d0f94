//! The SAM template (`infra/template.yaml`) checked for what breaks or blinds a real
//! deployment, offline: limits AWS enforces (a Kafka trigger's function timeout), the
//! order of creation (topics before the MSK trigger), no secret resolved into an
//! environment at deploy time (so a rotation reaches the function), reservations a new account can turn off, partial batch
//! responses the trigger honours, alarms that neither go blind nor page on an idle topic,
//! a relay timeout that covers the relay's budget, and docs that quote the template.
//!
//! [`check`] returns every problem; the first test runs it on the real template and
//! docs, the others on copies with one fix undone, so each check is seen to fail.
//! [`check_reserved_total`] (template, docs and `samconfig.toml`) and
//! [`check_relay_timeout`] (template and the relay's source) work the same way.
//! Like `template.rs`, it reads the YAML with `yaml-rust2`, which keeps the values of
//! CloudFormation's short tags (`!Ref X` reads as `X`, `!Sub "..."` as the string).

use std::path::PathBuf;
use yaml_rust2::{Yaml, YamlLoader};

/// The longest function timeout a Kafka event source mapping accepts (seconds).
const KAFKA_TRIGGER_MAX_TIMEOUT: i64 = 840;

/// What the outbox relay's timeout must leave beyond its drain budget (seconds): the
/// drain is cut at `BUDGET`, but a run on a cold environment also spends time before it
/// (configuration, the DynamoDB client, the MSK IAM signer) and after it (the metrics
/// flush, the answer). Topic creation, the relay's other kind of run, gives up after
/// 12 s and so fits within the same bound.
const RELAY_TIMEOUT_MARGIN_SECS: i64 = 10;

fn repo_file(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Every deployment problem of `template` (and of `deploy_doc`, the deployment guide,
/// where it quotes the template); empty when there is none.
fn check(template: &str, deploy_doc: &str) -> Vec<String> {
    let docs = match YamlLoader::load_from_str(template) {
        Ok(d) => d,
        Err(e) => return vec![format!("the template is not YAML: {e}")],
    };
    let t = &docs[0];
    let mut problems = Vec::new();
    check_consumer_timeout(t, &mut problems);
    check_write_timeout(t, &mut problems);
    check_topics_before_trigger(t, &mut problems);
    check_no_secret_in_environment(t, &mut problems);
    check_reserved_concurrency_is_optional(t, &mut problems);
    check_partial_batch_responses(t, &mut problems);
    check_alarms(t, deploy_doc, &mut problems);
    check_docs_quote_the_batching_window(t, deploy_doc, &mut problems);
    problems
}

fn resources(t: &Yaml) -> Vec<(&str, &Yaml)> {
    t["Resources"]
        .as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k, v)))
                .collect()
        })
        .unwrap_or_default()
}

/// The function resources with an MSK event, and that event.
fn msk_consumers(t: &Yaml) -> Vec<(&str, &Yaml, &Yaml)> {
    let mut out = Vec::new();
    for (name, r) in resources(t) {
        if let Some(events) = r["Properties"]["Events"].as_hash() {
            for e in events.values() {
                if e["Type"].as_str() == Some("MSK") {
                    out.push((name, r, e));
                }
            }
        }
    }
    out
}

fn number(y: &Yaml) -> Option<i64> {
    y.as_i64()
        .or_else(|| y.as_str().and_then(|s| s.parse().ok()))
}

/// The template's functions built from the workspace binary `binary`.
fn functions_of<'a>(t: &'a Yaml, binary: &str) -> Vec<(&'a str, &'a Yaml)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .collect()
}

/// A Kafka trigger rejects a function whose timeout is above 840 s: the timeout (a
/// literal, or a parameter whose default and maximum) must stay within it.
fn check_consumer_timeout(t: &Yaml, problems: &mut Vec<String>) {
    for (name, r, _) in msk_consumers(t) {
        let timeout = &r["Properties"]["Timeout"];
        let limits: Vec<(String, Option<i64>)> = match number(timeout) {
            Some(n) => vec![("Timeout".into(), Some(n))],
            None => {
                let param = timeout.as_str().unwrap_or("?");
                let p = &t["Parameters"][param];
                vec![
                    (format!("{param} MaxValue"), number(&p["MaxValue"])),
                    (format!("{param} Default"), number(&p["Default"])),
                ]
            }
        };
        for (what, value) in limits {
            match value {
                Some(v) if v <= KAFKA_TRIGGER_MAX_TIMEOUT => {}
                Some(v) => problems.push(format!(
                    "{name}: {what} is {v} s, above the {KAFKA_TRIGGER_MAX_TIMEOUT} s a Kafka trigger accepts"
                )),
                None => problems.push(format!(
                    "{name}: {what} is not bounded, and a Kafka trigger accepts at most {KAFKA_TRIGGER_MAX_TIMEOUT} s"
                )),
            }
        }
    }
}

/// The write function's timeout must leave room above a write's whole deadline.
fn check_write_timeout(t: &Yaml, problems: &mut Vec<String>) {
    let deadline = tm_core::services::write::WRITE_DEADLINE;
    let least = deadline.as_secs() as i64 + 1;
    for (name, r) in resources(t) {
        if r["Metadata"]["BuildProperties"]["Binary"].as_str() != Some("tm-write") {
            continue;
        }
        let timeout = &r["Properties"]["Timeout"];
        let min = number(timeout).or_else(|| {
            let p = &t["Parameters"][timeout.as_str().unwrap_or("?")];
            number(&p["MinValue"]).or_else(|| number(&p["Default"]))
        });
        if min.is_none_or(|m| m < least) {
            problems.push(format!(
                "{name}: its timeout may be {min:?} s, below the {least} s a write may need (WRITE_DEADLINE {deadline:?})"
            ));
        }
    }
}

/// The MSK trigger must be created after its topics exist: its function `DependsOn` a
/// custom resource whose `Topics` name the trigger's topics.
fn check_topics_before_trigger(t: &Yaml, problems: &mut Vec<String>) {
    let all = resources(t);
    for (name, r, event) in msk_consumers(t) {
        let depends: Vec<&str> = match &r["DependsOn"] {
            Yaml::Array(a) => a.iter().filter_map(Yaml::as_str).collect(),
            Yaml::String(s) => vec![s.as_str()],
            _ => Vec::new(),
        };
        let topics: Vec<&str> = event["Properties"]["Topics"]
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        let creates_them = depends.iter().any(|d| {
            all.iter().any(|(n, res)| {
                n == d
                    && res["Type"]
                        .as_str()
                        .is_some_and(|ty| ty.starts_with("Custom::"))
                    && res["Properties"]["Topics"].as_vec().is_some_and(|made| {
                        topics
                            .iter()
                            .all(|topic| made.iter().any(|m| m.as_str() == Some(topic)))
                    })
            })
        });
        if !creates_them {
            problems.push(format!(
                "{name}: its MSK trigger on {topics:?} does not DependsOn a custom resource that creates those topics, so it may start on a missing topic"
            ));
        }
    }
}

/// No secret is resolved into a function's environment at deploy time
/// (`{{resolve:secretsmanager:...}}`): the value would sit in plain text in the function's
/// configuration and a rotation would never reach it. Functions read secrets at run time
/// (the cursor keys: `TM_CURSOR_SECRET_ID`).
fn check_no_secret_in_environment(t: &Yaml, problems: &mut Vec<String>) {
    for (name, r) in resources(t) {
        let Some(vars) = r["Properties"]["Environment"]["Variables"].as_hash() else {
            continue;
        };
        for (var, value) in vars {
            let text = match value {
                Yaml::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            if text.contains("{{resolve:secretsmanager:") {
                problems.push(format!(
                    "{name}: {} resolves a secret into the environment at deploy time; read it at run time instead",
                    var.as_str().unwrap_or("?")
                ));
            }
        }
    }
}

/// A reservation a new account cannot turn off fails its deployment: Lambda keeps part of
/// the account's concurrency unreserved, and a new account's quota may leave nothing to
/// reserve. Every `ReservedConcurrentExecutions` must be
/// `!If [<condition>, !Ref <parameter>, !Ref AWS::NoValue]` with the condition
/// `!Not [!Equals [!Ref <parameter>, -1]]` and the parameter allowing -1.
fn check_reserved_concurrency_is_optional(t: &Yaml, problems: &mut Vec<String>) {
    for (name, r) in resources(t) {
        let reserved = &r["Properties"]["ReservedConcurrentExecutions"];
        if reserved.is_badvalue() {
            continue;
        }
        let Some(param) = reservation_parameter(t, reserved) else {
            let what = match (number(reserved), conditional_reservation(reserved)) {
                (Some(n), _) => format!("fixed at {n}"),
                (None, Some((condition, param))) => format!(
                    "kept unless {condition}, which is not `!Not [!Equals [!Ref {param}, -1]]`"
                ),
                (None, None) => {
                    "not `!If [<condition>, !Ref <parameter>, !Ref AWS::NoValue]`".to_owned()
                }
            };
            problems.push(format!(
                "{name}: ReservedConcurrentExecutions is {what}, so an account with a small concurrency quota cannot deploy it (make it a parameter, -1 = none reserved)"
            ));
            continue;
        };
        if number(&t["Parameters"][param]["MinValue"]) != Some(-1) {
            problems.push(format!(
                "{name}: its reservation parameter {param} does not allow -1 (none reserved)"
            ));
        }
    }
}

/// The parameter of a reservation written `!If [C, !Ref P, !Ref AWS::NoValue]` whose
/// condition C is `!Not [!Equals [!Ref P, -1]]` (read without tags: `[C, P,
/// AWS::NoValue]` and `[[P, -1]]`); `None` for any other form.
fn reservation_parameter<'a>(t: &Yaml, reserved: &'a Yaml) -> Option<&'a str> {
    let (condition, param) = conditional_reservation(reserved)?;
    let test = &t["Conditions"][condition][0];
    (test[0].as_str() == Some(param) && number(&test[1]) == Some(-1)).then_some(param)
}

/// The condition and parameter of `!If [C, !Ref P, !Ref AWS::NoValue]`.
fn conditional_reservation(reserved: &Yaml) -> Option<(&str, &str)> {
    let parts: Vec<&str> = reserved.as_vec()?.iter().filter_map(Yaml::as_str).collect();
    match parts[..] {
        [condition, param, "AWS::NoValue"] => Some((condition, param)),
        _ => None,
    }
}

/// The reservation parameters of every function, in template order.
fn reservation_parameters(t: &Yaml) -> Vec<&str> {
    resources(t)
        .into_iter()
        .filter_map(|(_, r)| {
            reservation_parameter(t, &r["Properties"]["ReservedConcurrentExecutions"])
        })
        .collect()
}

/// The Kafka trigger honours the handler's `batchItemFailures` only with
/// `FunctionResponseTypes: [ReportBatchItemFailures]`; without it a batch the handler
/// answered counts as a success, the trigger commits past the failed records, and their
/// routes' cache entries stay stale.
fn check_partial_batch_responses(t: &Yaml, problems: &mut Vec<String>) {
    for (name, _, event) in msk_consumers(t) {
        let reported = event["Properties"]["FunctionResponseTypes"]
            .as_vec()
            .is_some_and(|types| {
                types
                    .iter()
                    .any(|x| x.as_str() == Some("ReportBatchItemFailures"))
            });
        if !reported {
            problems.push(format!(
                "{name}: its MSK trigger has no FunctionResponseTypes: [ReportBatchItemFailures], so AWS ignores the partial batch failures the handler reports and commits past the failed records"
            ));
        }
    }
}

fn alarms(t: &Yaml) -> Vec<(&str, &Yaml)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|(n, r)| (n, &r["Properties"]))
        .collect()
}

/// OffsetLag must read silence as "nothing waiting": Lambda reports it only while the
/// trigger polls records, so on an idle topic (the usual state: routes change rarely)
/// there is no datapoint, and any other TreatMissingData pages on every quiet stretch.
/// docs/deploy.md must say so. API 5xx and the trigger's failed invocations must be
/// watched (they, not OffsetLag, see a trigger that polls but cannot deliver).
fn check_alarms(t: &Yaml, doc: &str, problems: &mut Vec<String>) {
    let all = alarms(t);
    let on = |metric: &str| -> Vec<&(&str, &Yaml)> {
        all.iter()
            .filter(|(_, p)| p["MetricName"].as_str() == Some(metric))
            .collect()
    };
    let lag = on("OffsetLag");
    if lag.is_empty() {
        problems.push("no alarm watches the MSK trigger's OffsetLag".into());
    }
    for (name, p) in lag {
        let missing = p["TreatMissingData"].as_str().unwrap_or("missing");
        if missing != "notBreaching" {
            problems.push(format!(
                "{name}: OffsetLag with TreatMissingData {missing}: Lambda reports no OffsetLag while the topic is idle, so the alarm would fire or go to INSUFFICIENT_DATA on every quiet stretch (use notBreaching)"
            ));
        }
        if !doc.contains("`TreatMissingData: notBreaching`") {
            problems.push(format!(
                "{name}: docs/deploy.md does not explain the OffsetLag alarm's `TreatMissingData: notBreaching`"
            ));
        }
    }
    if !on("5xx")
        .iter()
        .any(|(_, p)| p["Namespace"].as_str() == Some("AWS/ApiGateway"))
    {
        problems.push("no alarm watches the HTTP API's 5xx answers".into());
    }
    if !on("FailedInvokeEventCount").iter().any(|(_, p)| {
        p["Dimensions"].as_vec().is_some_and(|d| {
            d.iter()
                .any(|x| x["Name"].as_str() == Some("EventSourceMappingUUID"))
        })
    }) {
        problems.push("no alarm watches the MSK trigger's failed invocations (FailedInvokeEventCount per EventSourceMappingUUID)".into());
    }
}

/// docs/deploy.md must state the trigger's batching window as the template sets it.
fn check_docs_quote_the_batching_window(t: &Yaml, doc: &str, problems: &mut Vec<String>) {
    for (name, _, event) in msk_consumers(t) {
        let window = number(&event["Properties"]["MaximumBatchingWindowInSeconds"]);
        let Some(window) = window else {
            continue;
        };
        let quoted = format!("MaximumBatchingWindowInSeconds: {window}");
        if !doc.contains(&quoted) {
            problems.push(format!(
                "{name}: docs/deploy.md does not say `{quoted}`, which the template sets"
            ));
        }
        if window == 0 && doc.contains("batching window (500 ms by default)") {
            problems.push(format!(
                "{name}: docs/deploy.md claims a 500 ms batching window, the template sets none"
            ));
        }
    }
}

/// The reservations the template's defaults add up to, and those of the `prod` settings
/// in `samconfig` (its overrides, else the defaults; -1 counts as none), must be the total
/// that docs/deploy.md states as "reserve N in total" (if it states one).
fn check_reserved_total(template: &str, deploy_doc: &str, samconfig: &str) -> Vec<String> {
    let docs = match YamlLoader::load_from_str(template) {
        Ok(d) => d,
        Err(e) => return vec![format!("the template is not YAML: {e}")],
    };
    let t = &docs[0];
    let params = reservation_parameters(t);
    let prod = samconfig_overrides(samconfig, "prod");
    let default_of = |p: &str| number(&t["Parameters"][p]["Default"]).unwrap_or(0);
    let defaults: i64 = params.iter().map(|&p| default_of(p).max(0)).sum();
    let in_prod: i64 = params
        .iter()
        .map(|&p| {
            prod.get(p)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| default_of(p))
                .max(0)
        })
        .sum();
    let mut problems = Vec::new();
    for stated in stated_reserved_totals(deploy_doc) {
        if stated != defaults {
            problems.push(format!(
                "docs/deploy.md says {stated} reserved in total, but the template's defaults reserve {defaults} ({})",
                params.join(" + ")
            ));
        }
        if stated != in_prod {
            problems.push(format!(
                "docs/deploy.md says {stated} reserved in total, but the prod settings in samconfig.toml reserve {in_prod}"
            ));
        }
    }
    problems
}

/// Every N in "reserve N in total" or "reserves N in total".
fn stated_reserved_totals(doc: &str) -> Vec<i64> {
    let words: Vec<&str> = doc.split_whitespace().collect();
    words
        .windows(4)
        .filter(|w| {
            matches!(w[0], "reserve" | "reserves") && w[2] == "in" && w[3].starts_with("total")
        })
        .filter_map(|w| w[1].parse().ok())
        .collect()
}

/// The `Key=Value` pairs of `[<env>.deploy.parameters] parameter_overrides` in
/// samconfig.toml, read line by line (one quoted pair per line, `#` comments between).
fn samconfig_overrides(samconfig: &str, env: &str) -> std::collections::BTreeMap<String, String> {
    let header = format!("[{env}.deploy.parameters]");
    let mut pairs = std::collections::BTreeMap::new();
    let (mut in_section, mut in_list) = (false, false);
    for line in samconfig.lines().map(str::trim) {
        if !in_list && line.starts_with('[') && line.ends_with(']') {
            in_section = line == header;
            continue;
        }
        if !in_section || line.starts_with('#') {
            continue;
        }
        in_list |= line.starts_with("parameter_overrides");
        if in_list {
            for quoted in line.split('"').skip(1).step_by(2) {
                if let Some((k, v)) = quoted.split_once('=') {
                    pairs.insert(k.to_owned(), v.to_owned());
                }
            }
            in_list = !line.ends_with(']');
        }
    }
    pairs
}

/// `N` of `const BUDGET: Duration = Duration::from_secs(N);` in the relay's main.rs.
fn relay_budget_secs(relay_main: &str) -> Option<i64> {
    relay_main.lines().find_map(|line| {
        line.trim()
            .strip_prefix("const BUDGET: Duration = Duration::from_secs(")?
            .strip_suffix(");")?
            .replace('_', "")
            .parse()
            .ok()
    })
}

/// The outbox relay's timeout (its parameter's MinValue) must cover its drain budget,
/// read from `relay_main` (functions/outbox-relay/src/main.rs), plus
/// [`RELAY_TIMEOUT_MARGIN_SECS`]: a timeout below it kills runs that are still within
/// their budget.
fn check_relay_timeout(template: &str, relay_main: &str) -> Vec<String> {
    let docs = match YamlLoader::load_from_str(template) {
        Ok(d) => d,
        Err(e) => return vec![format!("the template is not YAML: {e}")],
    };
    let t = &docs[0];
    let Some(budget) = relay_budget_secs(relay_main) else {
        return vec![
            "functions/outbox-relay/src/main.rs has no `const BUDGET: Duration = Duration::from_secs(N);` line to check the relay's timeout against".into(),
        ];
    };
    let least = budget + RELAY_TIMEOUT_MARGIN_SECS;
    let relays = functions_of(t, "tm-outbox-relay");
    if relays.is_empty() {
        return vec!["the template has no tm-outbox-relay function".into()];
    }
    let mut problems = Vec::new();
    for (name, r) in relays {
        let timeout = &r["Properties"]["Timeout"];
        let (what, min) = match number(timeout) {
            Some(n) => ("Timeout".to_owned(), Some(n)),
            None => {
                let param = timeout.as_str().unwrap_or("?");
                (
                    format!("{param} MinValue"),
                    number(&t["Parameters"][param]["MinValue"]),
                )
            }
        };
        if min.is_none_or(|m| m < least) {
            let min = min.map_or_else(|| "unset".to_owned(), |m| format!("{m} s"));
            problems.push(format!(
                "{name}: {what} is {min}, below the relay's drain budget (BUDGET, {budget} s) plus {RELAY_TIMEOUT_MARGIN_SECS} s for start-up and topic creation: {least} s"
            ));
        }
    }
    problems
}

fn current() -> (String, String) {
    (
        repo_file("infra/template.yaml"),
        repo_file("docs/deploy.md"),
    )
}

/// `text` with its one occurrence of `from` replaced.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

fn assert_reported(problems: &[String], words: &[&str]) {
    assert!(
        problems.iter().any(|p| words.iter().all(|w| p.contains(w))),
        "no problem mentions all of {words:?}; got:\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn the_template_is_deployable_and_its_alarms_cannot_go_blind() {
    let (template, doc) = current();
    let problems = check(&template, &doc);
    assert!(problems.is_empty(), "- {}", problems.join("\n- "));
}

#[test]
fn a_consumer_timeout_above_840_seconds_is_reported() {
    let (template, doc) = current();
    let t = replaced(&template, "    MaxValue: 840\n", "    MaxValue: 900\n");
    assert_reported(&check(&t, &doc), &["ConsumerTimeout MaxValue", "900"]);
}

#[test]
fn a_write_timeout_below_the_write_deadline_is_reported() {
    let (template, doc) = current();
    let t = replaced(
        &template,
        "    Default: 10\n    MinValue: 10\n",
        "    Default: 10\n    MinValue: 1\n",
    );
    assert_reported(&check(&t, &doc), &["WriteFunction", "WRITE_DEADLINE"]);
}

#[test]
fn a_trigger_that_does_not_wait_for_its_topics_is_reported() {
    let (template, doc) = current();
    let t = replaced(&template, "    DependsOn: KafkaTopics\n", "");
    assert_reported(&check(&t, &doc), &["EventConsumerFunction", "DependsOn"]);
}

#[test]
fn a_secret_resolved_into_a_functions_environment_is_reported() {
    let (template, doc) = current();
    let t = replaced(
        &template,
        "TM_CURSOR_SECRET_ID: !Ref CursorSecretId",
        "TM_CURSOR_SECRET: \"{{resolve:secretsmanager:cursor:SecretString}}\"",
    );
    assert_reported(&check(&t, &doc), &["TM_CURSOR_SECRET", "deploy time"]);
}

#[test]
fn an_offset_lag_alarm_that_pages_on_an_idle_topic_and_missing_alarms_are_reported() {
    let (template, doc) = current();
    let lag = "Threshold: !Ref ConsumerOffsetLagThreshold\n      ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: notBreaching\n";
    for other in ["missing", "breaching", "ignore"] {
        let t = replaced(&template, lag, &lag.replace("notBreaching", other));
        assert_reported(
            &check(&t, &doc),
            &["EventConsumerOffsetLagAlarm", other, "idle"],
        );
    }
    let d = doc.replace("`TreatMissingData: notBreaching`", "`TreatMissingData`");
    assert_reported(
        &check(&template, &d),
        &["docs/deploy.md", "TreatMissingData: notBreaching"],
    );
    let t = replaced(
        &template,
        "      MetricName: 5xx\n",
        "      MetricName: 4xx\n",
    );
    assert_reported(&check(&t, &doc), &["5xx"]);
    let t = replaced(
        &template,
        "      MetricName: FailedInvokeEventCount\n",
        "      MetricName: PolledEventCount\n",
    );
    assert_reported(&check(&t, &doc), &["FailedInvokeEventCount"]);
}

#[test]
fn docs_that_misquote_the_batching_window_are_reported() {
    let (template, doc) = current();
    let d = replaced(
        &doc,
        "batching window (`MaximumBatchingWindowInSeconds: 0` in the template: no\n  wait; Kafka triggers would otherwise wait 500 ms)",
        "batching window (500 ms by default)",
    );
    assert_reported(&check(&template, &d), &["500 ms"]);
}

#[test]
fn a_reservation_that_cannot_be_turned_off_is_reported() {
    let (template, doc) = current();
    let t = replaced(
        &template,
        "ReservedConcurrentExecutions: !If [ReserveProber, !Ref ProberReservedConcurrency, !Ref AWS::NoValue]",
        "ReservedConcurrentExecutions: 1",
    );
    assert_reported(&check(&t, &doc), &["ProberFunction", "fixed at 1"]);
    let t = replaced(
        &template,
        "ReserveRelay: !Not [!Equals [!Ref RelayReservedConcurrency, -1]]",
        "ReserveRelay: !Equals [!Ref Stage, prod]",
    );
    assert_reported(
        &check(&t, &doc),
        &["OutboxRelayFunction", "kept unless ReserveRelay", "-1"],
    );
    let t = replaced(
        &template,
        "    Default: 10\n    MinValue: -1\n",
        "    Default: 10\n    MinValue: 0\n",
    );
    assert_reported(
        &check(&t, &doc),
        &["ConsumerReservedConcurrency", "does not allow -1"],
    );
}

fn current_samconfig() -> String {
    repo_file("samconfig.toml")
}

#[test]
fn the_reserved_total_in_the_docs_is_what_the_defaults_and_prod_reserve() {
    let (template, doc) = current();
    assert!(
        !stated_reserved_totals(&doc).is_empty(),
        "docs/deploy.md no longer states the reserved total"
    );
    let problems = check_reserved_total(&template, &doc, &current_samconfig());
    assert!(problems.is_empty(), "- {}", problems.join("\n- "));
}

#[test]
fn a_reserved_total_the_docs_misstate_is_reported() {
    let (template, doc) = current();
    let samconfig = current_samconfig();
    let totals = stated_reserved_totals(&doc);
    let [stated] = totals[..] else {
        panic!("docs/deploy.md states the reserved total once");
    };
    let d = doc.replace(
        &format!("reserve {stated} in total"),
        &format!("reserve {} in total", stated - 1),
    );
    let (says, reserve) = (
        format!("says {}", stated - 1),
        format!("defaults reserve {stated}"),
    );
    assert_reported(
        &check_reserved_total(&template, &d, &samconfig),
        &[says.as_str(), reserve.as_str()],
    );
    // A default changed without the docs.
    let t = replaced(
        &template,
        "    Default: 200\n    MinValue: -1\n",
        "    Default: 300\n    MinValue: -1\n",
    );
    let reserve = format!("defaults reserve {}", stated + 100);
    assert_reported(
        &check_reserved_total(&t, &doc, &samconfig),
        &[reserve.as_str(), "ResolveReservedConcurrency"],
    );
    let s = replaced(
        &samconfig,
        "  \"ProberReservedConcurrency=1\",\n",
        "  \"ProberReservedConcurrency=5\",\n",
    );
    let reserve = format!("reserve {}", stated + 4);
    assert_reported(
        &check_reserved_total(&template, &doc, &s),
        &["prod settings", reserve.as_str()],
    );
}

#[test]
fn the_msk_trigger_must_report_partial_batch_failures() {
    let (template, doc) = current();
    let t = replaced(
        &template,
        "            FunctionResponseTypes:\n              - ReportBatchItemFailures\n",
        "",
    );
    assert_reported(
        &check(&t, &doc),
        &[
            "EventConsumerFunction",
            "ReportBatchItemFailures",
            "commits past",
        ],
    );
}

#[test]
fn the_relay_timeout_covers_its_drain_budget_with_a_margin() {
    let relay = repo_file("functions/outbox-relay/src/main.rs");
    let budget = relay_budget_secs(&relay).expect("BUDGET in functions/outbox-relay/src/main.rs");
    assert!(budget > 0);
    let problems = check_relay_timeout(&current().0, &relay);
    assert!(problems.is_empty(), "- {}", problems.join("\n- "));
}

#[test]
fn a_relay_timeout_below_budget_plus_margin_is_reported() {
    let (template, _) = current();
    let relay = repo_file("functions/outbox-relay/src/main.rs");
    let budget = relay_budget_secs(&relay).unwrap();
    let least = budget + RELAY_TIMEOUT_MARGIN_SECS;
    // The minimum the template allows, then one second short of budget + margin.
    let block = template
        .find("  RelayTimeout:\n")
        .expect("a RelayTimeout parameter");
    let at = block
        + template[block..]
            .find("    MinValue: ")
            .expect("RelayTimeout's MinValue");
    let eol = at + template[at..].find('\n').unwrap();
    let at_least: i64 = template[at + "    MinValue: ".len()..eol].parse().unwrap();
    assert!(
        at_least >= least,
        "RelayTimeout MinValue {at_least} < {least}"
    );
    let t = format!(
        "{}    MinValue: {}{}",
        &template[..at],
        least - 1,
        &template[eol..]
    );
    let bound = format!("{least} s");
    assert_reported(
        &check_relay_timeout(&t, &relay),
        &[
            "OutboxRelayFunction",
            "RelayTimeout MinValue",
            "BUDGET",
            bound.as_str(),
        ],
    );
    // A longer budget in the code needs a longer timeout in the template.
    let longer = replaced(
        &relay,
        &format!("Duration::from_secs({budget});"),
        &format!("Duration::from_secs({at_least});"),
    );
    let budget_named = format!("BUDGET, {at_least} s");
    assert_reported(
        &check_relay_timeout(&template, &longer),
        &["RelayTimeout MinValue", budget_named.as_str()],
    );
    let gone = relay.replace("const BUDGET: Duration", "const DRAIN: Duration");
    assert_reported(
        &check_relay_timeout(&template, &gone),
        &["no `const BUDGET"],
    );
}
