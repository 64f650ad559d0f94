//! Applying a plan: every create is a PUT with `If-None-Match: *`, every update a PUT
//! with `If-Match` on the revision the plan read, every delete a DELETE with `If-Match`,
//! so a route changed by someone else since the plan is never overwritten: it is
//! reported as a conflict and left as it is. The other changes still go through (each
//! is independent); the run then exits with the conflict code.

use crate::api::{Api, RouteRef};
use crate::client::Precondition;
use crate::error::CtlError;
use crate::plan::{Action, Plan};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How one change ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done; the route's new revision (none for a delete).
    Applied,
    /// The route changed since the plan (412): nothing was written.
    Conflict,
    /// Another error: nothing was written for this route.
    Failed,
}

/// One change's result.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// Which route.
    pub route: RouteRef,
    /// What was asked.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// The new revision (create, update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Why it did not apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per change, in plan order.
    pub results: Vec<Applied>,
}

impl Report {
    /// The error the run as a whole ends with: a conflict wins over other failures
    /// (it tells the user to plan again), `None` when everything applied.
    pub fn error(&self) -> Option<CtlError> {
        let failed: Vec<&Applied> = self
            .results
            .iter()
            .filter(|r| r.outcome != Outcome::Applied)
            .collect();
        if failed.is_empty() {
            return None;
        }
        let names = |o: Outcome| {
            failed
                .iter()
                .filter(|r| r.outcome == o)
                .map(|r| r.route.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let conflicts = names(Outcome::Conflict);
        if !conflicts.is_empty() {
            return Some(CtlError::Conflict(format!(
                "changed since the plan, left as they are: {conflicts}; run plan again"
            )));
        }
        Some(CtlError::Incomplete(format!(
            "not applied: {}",
            names(Outcome::Failed)
        )))
    }
}

/// A progress bar on stderr, drawn only when `visible` (stderr is a terminal) and the
/// plan is long enough to wait for.
fn progress(len: usize, visible: bool) -> ProgressBar {
    if !visible || len < 5 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// Applies every change of `plan`, in order.
pub async fn apply(api: &Api, plan: &Plan, show_progress: bool) -> Report {
    let bar = progress(plan.changes.len(), show_progress);
    let mut results = Vec::with_capacity(plan.changes.len());
    for change in &plan.changes {
        bar.set_message(format!("{:?} {}", change.action, change.route).to_lowercase());
        let pre = match (change.action, change.revision) {
            (Action::Create, _) => Precondition::Absent,
            (_, Some(r)) => Precondition::Revision(r),
            (_, None) => Precondition::None,
        };
        let done = match (change.action, &change.body) {
            (Action::Delete, _) => api.delete_route(&change.route, pre).await.map(|()| None),
            (_, Some(body)) => api
                .put_route(&change.route, body, pre)
                .await
                .map(|doc| doc["revision"].as_u64()),
            (_, None) => Err(CtlError::Usage(format!(
                "{}: the plan has no body to write",
                change.route
            ))),
        };
        let (outcome, revision, error) = match done {
            Ok(rev) => (Outcome::Applied, rev, None),
            Err(e @ CtlError::Conflict(_)) => (Outcome::Conflict, None, Some(e.to_string())),
            Err(e) => (Outcome::Failed, None, Some(e.to_string())),
        };
        results.push(Applied {
            route: change.route.clone(),
            action: change.action,
            outcome,
            revision,
            error,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Report { results }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    fn result(route: &str, outcome: Outcome) -> Applied {
        Applied {
            route: RouteRef::parse_selector(route).unwrap(),
            action: Action::Update,
            outcome,
            revision: None,
            error: None,
        }
    }

    #[test]
    fn a_conflict_decides_the_exit_code_over_other_failures_and_names_the_routes() {
        let all_ok = Report {
            results: vec![result("a/b/1", Outcome::Applied)],
        };
        assert!(all_ok.error().is_none());
        let failed = Report {
            results: vec![
                result("a/b/1", Outcome::Applied),
                result("a/b/2", Outcome::Failed),
            ],
        };
        let e = failed.error().unwrap();
        assert_eq!(e.exit_code(), code::ERROR);
        assert!(e.to_string().contains("a/b/2"));
        let both = Report {
            results: vec![
                result("a/b/2", Outcome::Failed),
                result("a/b/3", Outcome::Conflict),
            ],
        };
        let e = both.error().unwrap();
        assert_eq!(e.exit_code(), code::CONFLICT);
        assert!(e.to_string().contains("a/b/3") && !e.to_string().contains("a/b/2"));
    }

    #[test]
    fn no_progress_bar_is_drawn_off_a_terminal_or_for_short_plans() {
        assert!(progress(100, false).is_hidden());
        assert!(progress(3, true).is_hidden());
    }
}
