//! Rendering: aligned tables and plan text for people, JSON for scripts.

use crate::apply::{Outcome, Report};
use crate::plan::{Action, Op, Plan};
use serde_json::Value;

/// How results are printed (`-o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns and readable text.
    Table,
    /// One JSON document (one per line for streams: `watch`, `shift`).
    Json,
}

/// Columns padded to their widest cell, two spaces apart; trailing spaces trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths[i] - c.chars().count() + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as short text: strings without quotes.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `blue:90 green:10` from a route's endpoints.
pub fn endpoint_weights(endpoints: &Value) -> String {
    endpoints
        .as_array()
        .map(|eps| {
            eps.iter()
                .map(|e| {
                    let mut s = format!("{}:{}", text(&e["id"]), text(&e["weight"]));
                    if e["priority"].as_u64().unwrap_or(0) > 0 {
                        s.push_str(&format!("/p{}", text(&e["priority"])));
                    }
                    if e["status"].as_str().is_some_and(|st| st != "active") {
                        s.push_str(&format!("({})", text(&e["status"])));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The route table of `routes list`.
pub fn routes_table(routes: &[Value]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                text(&r["service"]),
                text(&r["env"]),
                text(&r["version"]),
                text(&r["revision"]),
                text(&r["active"]),
                endpoint_weights(&r["endpoints"]),
                text(&r["updated_at"]),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "ENV",
            "VERSION",
            "REV",
            "ACTIVE",
            "ENDPOINTS",
            "UPDATED",
        ],
        &rows,
    )
}

/// One route in detail (`routes get`).
pub fn route_detail(r: &Value) -> String {
    let mut out = format!(
        "route     {}/{}/{}\nrevision  {}\nactive    {}\nttl       {}s\nupdated   {} by {}\n",
        text(&r["service"]),
        text(&r["env"]),
        text(&r["version"]),
        text(&r["revision"]),
        text(&r["active"]),
        text(&r["ttl_seconds"]),
        text(&r["updated_at"]),
        text(&r["updated_by"])
    );
    if let Some(labels) = r["labels"].as_object().filter(|l| !l.is_empty()) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        out.push_str(&format!("labels    {}\n", l.join(" ")));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = r["endpoints"]
        .as_array()
        .map(|eps| {
            eps.iter()
                .map(|e| {
                    vec![
                        text(&e["id"]),
                        text(&e["weight"]),
                        text(&e["priority"]),
                        text(&e["status"]),
                        e.get("region").map_or("-".into(), text),
                        text(&e["url"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(
        &["ENDPOINT", "WEIGHT", "PRIORITY", "STATUS", "REGION", "URL"],
        &rows,
    ));
    out
}

/// History entries (`routes history`).
pub fn history_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|h| {
            vec![
                text(&h["revision"]),
                text(&h["type"]),
                text(&h["at"]),
                text(&h["by"]),
                endpoint_weights(&h["route"]["endpoints"]),
                text(&h["correlation_id"]),
            ]
        })
        .collect();
    table(
        &["REV", "TYPE", "AT", "BY", "ENDPOINTS", "CORRELATION"],
        &rows,
    )
}

/// One audit entry as a line (`watch`).
pub fn audit_line(e: &Value) -> String {
    format!(
        "{}  {:<17}  {}/{}/{}  rev {}  by {}  ({})",
        text(&e["at"]),
        text(&e["type"]),
        text(&e["service"]),
        text(&e["env"]),
        text(&e["version"]),
        text(&e["revision"]),
        text(&e["by"]),
        text(&e["correlation_id"])
    )
}

/// A resolve answer.
pub fn resolve_detail(a: &Value, x_cache: &str) -> String {
    let mut out = format!(
        "endpoint  {}  {}\nversion   {}\nrevision  {}\nttl       {}s\ncache     {}\n\n",
        text(&a["endpoint"]["id"]),
        text(&a["endpoint"]["url"]),
        text(&a["version"]),
        text(&a["revision"]),
        text(&a["ttl_seconds"]),
        if x_cache.is_empty() { "-" } else { x_cache }
    );
    let rows: Vec<Vec<String>> = a["candidates"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|e| vec![text(&e["id"]), text(&e["weight"]), text(&e["url"])])
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(&["CANDIDATE", "WEIGHT", "URL"], &rows));
    out
}

fn sign(op: Op) -> char {
    match op {
        Op::Add => '+',
        Op::Remove => '-',
        Op::Change => '~',
    }
}

fn compact(v: &Value) -> String {
    match v.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        None => text(v),
    }
}

/// The plan for people: one block per route, one line per field.
pub fn plan_text(plan: &Plan) -> String {
    let (c, u, d) = plan.counts();
    let mut out = format!(
        "Plan for tenant {}: {c} to create, {u} to change, {d} to delete, {} unchanged.\n",
        plan.tenant,
        plan.unchanged.len()
    );
    for ch in &plan.changes {
        let (mark, what) = match ch.action {
            Action::Create => ('+', "create".to_owned()),
            Action::Update => (
                '~',
                format!("update, revision {}", ch.revision.unwrap_or(0)),
            ),
            Action::Delete => (
                '-',
                format!("delete, revision {}", ch.revision.unwrap_or(0)),
            ),
        };
        out.push_str(&format!("\n{mark} {} ({what})\n", ch.route));
        for d in &ch.details {
            let line = match (d.op, &d.from, &d.to) {
                (Op::Change, Some(a), Some(b)) => {
                    format!("{}: {} -> {}", d.what, compact(a), compact(b))
                }
                (_, _, Some(b)) => format!("{}: {}", d.what, compact(b)),
                (_, Some(a), None) => format!("{} (was {})", d.what, compact(a)),
                _ => d.what.clone(),
            };
            out.push_str(&format!("    {} {line}\n", sign(d.op)));
        }
    }
    for r in &plan.unmanaged {
        out.push_str(&format!(
            "\n! {r} is deployed but not in the file (kept; --prune deletes it)\n"
        ));
    }
    if !plan.has_changes() {
        out.push_str("\nNo changes: the deployed routes match the file.\n");
    }
    out
}

/// The apply report for people.
pub fn report_text(report: &Report) -> String {
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            vec![
                r.route.to_string(),
                format!("{:?}", r.action).to_lowercase(),
                match r.outcome {
                    Outcome::Applied => "applied".into(),
                    Outcome::Conflict => "CONFLICT".into(),
                    Outcome::Failed => "FAILED".into(),
                },
                r.revision.map_or("-".into(), |v| v.to_string()),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["ROUTE", "ACTION", "RESULT", "REV", "ERROR"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_on_the_widest_cell() {
        let t = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONG\nxyz  1\nq    22\n");
    }

    #[test]
    fn endpoints_show_weight_and_only_unusual_priority_and_status() {
        let eps = json!([
            {"id": "blue", "weight": 90, "priority": 0, "status": "active"},
            {"id": "dr", "weight": 1, "priority": 1, "status": "draining"}
        ]);
        assert_eq!(endpoint_weights(&eps), "blue:90 dr:1/p1(draining)");
    }
}
