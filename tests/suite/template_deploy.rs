//! The SAM template (`infra/template.yaml`) checked for what breaks or blinds a real
//! deployment, offline: limits AWS enforces (a Kafka trigger's function timeout), the
//! order of creation (topics before the MSK trigger), a cursor secret whose rotation
//! reaches the function, alarms that cannot go silent, and docs that quote the template.
//!
//! [`check`] returns every problem; the first test runs it on the real template and
//! docs, the others on copies with one fix undone, so each check is seen to fail.
//! Like `template.rs`, it reads the YAML with `yaml-rust2`, which keeps the values of
//! CloudFormation's short tags (`!Ref X` reads as `X`, `!Sub "..."` as the string).

use std::path::PathBuf;
use yaml_rust2::{Yaml, YamlLoader};

/// The longest function timeout a Kafka event source mapping accepts (seconds).
const KAFKA_TRIGGER_MAX_TIMEOUT: i64 = 840;

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
    check_cursor_secret_is_pinned(t, &mut problems);
    check_alarms(t, &mut problems);
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

/// Every `{{resolve:secretsmanager:...}}` in a function's environment must pin a version
/// id: `secret-id:SecretString:json-key:version-stage:version-id`. Unpinned, a rotation
/// leaves the template text unchanged and the deployed value is never refreshed.
fn check_cursor_secret_is_pinned(t: &Yaml, problems: &mut Vec<String>) {
    for (name, r) in resources(t) {
        let Some(vars) = r["Properties"]["Environment"]["Variables"].as_hash() else {
            continue;
        };
        for (var, value) in vars {
            let (Some(var), Some(value)) = (var.as_str(), value.as_str()) else {
                continue;
            };
            let Some(at) = value.find("{{resolve:secretsmanager:") else {
                continue;
            };
            let reference = &value[at + "{{resolve:secretsmanager:".len()..];
            let reference = reference.split("}}").next().unwrap_or("");
            // An ARN has colons of its own; the reference's parts are the last four.
            let parts: Vec<&str> = reference.rsplitn(5, ':').collect();
            let version_id = if parts.len() == 5 { parts[0] } else { "" };
            if version_id.is_empty() {
                problems.push(format!(
                    "{name}: {var} resolves a secret without a version id, so rotating the secret never reaches the function"
                ));
            }
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

/// OffsetLag must not read silence as health; API 5xx and the trigger's failed
/// invocations must be watched.
fn check_alarms(t: &Yaml, problems: &mut Vec<String>) {
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
        let silence_notifies = !p["InsufficientDataActions"].is_badvalue();
        if missing == "notBreaching" || (missing == "missing" && !silence_notifies) {
            problems.push(format!(
                "{name}: OffsetLag with TreatMissingData {missing} goes quiet when the trigger stops reporting (use breaching, or missing with InsufficientDataActions)"
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
fn an_unpinned_cursor_secret_is_reported() {
    let (template, doc) = current();
    let t = replaced(
        &template,
        ":SecretString:::${CursorSecretVersionId}}}",
        ":SecretString}}",
    );
    assert_reported(&check(&t, &doc), &["TM_CURSOR_SECRET", "version id"]);
}

#[test]
fn a_blind_offset_lag_alarm_and_missing_alarms_are_reported() {
    let (template, doc) = current();
    let t = replaced(
        &template,
        "      TreatMissingData: missing\n",
        "      TreatMissingData: notBreaching\n",
    );
    assert_reported(&check(&t, &doc), &["OffsetLag", "notBreaching"]);
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
