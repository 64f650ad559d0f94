//! Following the tenant's audit feed: polls `GET /v1/tenants/{t}/audit?since=` and hands
//! on each entry once, oldest first. `since` is inclusive, so entries at the last seen
//! instant come back on the next poll; they are recognised and skipped.

use crate::api::Api;
use crate::error::Result;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// An entry's identity: route and revision (a revision is one change of one route).
fn identity(e: &Value) -> String {
    format!(
        "{}/{}/{}#{}",
        e["service"].as_str().unwrap_or_default(),
        e["env"].as_str().unwrap_or_default(),
        e["version"].as_str().unwrap_or_default(),
        e["revision"].as_u64().unwrap_or_default()
    )
}

/// The feed's position: the latest instant seen and the entries seen at it.
#[derive(Clone, Debug)]
pub struct Cursor {
    since: String,
    seen_at_since: HashSet<String>,
}

impl Cursor {
    /// Starts at `since` (RFC 3339).
    pub fn new(since: String) -> Self {
        Self {
            since,
            seen_at_since: HashSet::new(),
        }
    }

    /// The `since` to ask for next.
    pub fn since(&self) -> &str {
        &self.since
    }

    /// Takes one poll's answer (newest first) and returns the entries not seen before,
    /// oldest first.
    pub fn advance(&mut self, newest_first: Vec<Value>) -> Vec<Value> {
        let mut fresh = Vec::new();
        for e in newest_first.into_iter().rev() {
            let at = e["at"].as_str().unwrap_or_default().to_owned();
            let id = identity(&e);
            // RFC 3339 with fixed millisecond precision in UTC sorts as text.
            if at.as_str() < self.since.as_str()
                || (at == self.since && self.seen_at_since.contains(&id))
            {
                continue;
            }
            if at != self.since {
                self.since = at;
                self.seen_at_since.clear();
            }
            self.seen_at_since.insert(id);
            fresh.push(e);
        }
        fresh
    }
}

/// Polls every `every`, calling `emit` for each new entry, until `max` entries were
/// emitted (forever when `None`).
pub async fn watch(
    api: &Api,
    since: String,
    every: Duration,
    max: Option<usize>,
    emit: &mut dyn FnMut(&Value) -> Result<()>,
) -> Result<()> {
    let mut cursor = Cursor::new(since);
    let mut emitted = 0usize;
    loop {
        let page = api.audit_since(cursor.since()).await?;
        for e in cursor.advance(page) {
            emit(&e)?;
            emitted += 1;
            if max.is_some_and(|m| emitted >= m) {
                return Ok(());
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: &str, rev: u64, at: &str) -> Value {
        json!({"service": "s", "env": "e", "version": v, "revision": rev, "type": "route.updated", "at": at})
    }

    #[test]
    fn each_entry_is_handed_on_once_oldest_first_across_polls() {
        let mut c = Cursor::new("2026-01-01T00:00:00.000Z".into());
        let first = c.advance(vec![
            entry("1", 2, "2026-01-01T00:00:01.000Z"),
            entry("1", 1, "2026-01-01T00:00:00.500Z"),
        ]);
        let revs: Vec<u64> = first
            .iter()
            .map(|e| e["revision"].as_u64().unwrap())
            .collect();
        assert_eq!(revs, [1, 2]);
        assert_eq!(c.since(), "2026-01-01T00:00:01.000Z");
        // WHEN the next poll (since inclusive) returns the last one again plus a new one
        // at the same millisecond
        let second = c.advance(vec![
            entry("2", 1, "2026-01-01T00:00:01.000Z"),
            entry("1", 2, "2026-01-01T00:00:01.000Z"),
        ]);
        // THEN only the new one comes out
        assert_eq!(second.len(), 1);
        assert_eq!(second[0]["version"], "2");
        assert!(
            c.advance(vec![entry("1", 2, "2026-01-01T00:00:01.000Z")])
                .is_empty()
        );
    }
}
