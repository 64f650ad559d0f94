//! The embedded store: one `redb` database file holding routes (with tombstones), their
//! health state, history, the tenant audit log and the outbox. Every change is one write transaction, so a crash
//! leaves either all of it or none of it.
//!
//! Outbox entries the relay sets aside ([`Outbox::park`]) move, in one transaction, to
//! their own table (`outbox_parked`) under the same sequence number, with the stored bytes
//! unchanged and the reason beside them; [`Outbox::unpark`] moves them back.

use crate::domain::event::{AuditEntry, HistoryEntry, RouteEvent};
use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, ServiceKey, VersionName};
use crate::domain::route::Route;
use crate::domain::timefmt::Timestamp;
use crate::ports::{
    AuditPage, AuditQuery, Commit, Consistency, HealthStore, HistoryReader, ListQuery, Outbox,
    OutboxEntry, ParkedEntry, PendingEntries, Probe, RouteReader, RouteWriter, StoredRoute,
    UndecodableEntry,
};
use crate::{Error, Result};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// Route key text (`t\0s\0e\0v`) → `StoredRoute` JSON. `\0` sorts below every name
/// character, so byte order is (tenant, service, env, version) order.
const ROUTES: TableDefinition<&str, &[u8]> = TableDefinition::new("routes");
/// (route key text, revision) → `HistoryEntry` JSON.
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
/// (tenant, sequence) → `AuditEntry` JSON.
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// Sequence → `RouteEvent` JSON, deleted once published.
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Sequence → [`Parked`] JSON: outbox entries set aside by the relay.
const OUTBOX_PARKED: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_parked");
/// Route key text → `RouteHealth` JSON (docs/health.md), written only by the prober.
const HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("health");
/// Named counters: `outbox`, `audit/{tenant}`.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// How far a later commit's timestamp may trail an earlier one's (two writers racing).
const AUDIT_SKEW_MS: i64 = 60_000;

/// The embedded, disk-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn fault(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("embedded store: {e}"))
}

fn key_text(key: &RouteKey) -> String {
    format!(
        "{}\0{}\0{}\0{}",
        key.svc.tenant, key.svc.service, key.svc.env, key.version
    )
}

fn svc_prefix(svc: &ServiceKey) -> String {
    format!("{}\0{}\0{}\0", svc.tenant, svc.service, svc.env)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| Error::Internal(format!("decode stored item: {e}")))
}

/// A parked outbox entry as stored: the outbox value's bytes (base64) and why.
#[derive(serde::Serialize, serde::Deserialize)]
struct Parked {
    reason: String,
    parked_at: Timestamp,
    raw: String,
}

fn outbox_id(id: &str) -> Result<u64> {
    id.parse()
        .map_err(|_| Error::Internal(format!("bad outbox id {id}")))
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path` and its tables.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(fault)?;
        let tx = db.begin_write().map_err(fault)?;
        tx.open_table(ROUTES).map_err(fault)?;
        tx.open_table(HISTORY).map_err(fault)?;
        tx.open_table(AUDIT).map_err(fault)?;
        tx.open_table(OUTBOX).map_err(fault)?;
        tx.open_table(OUTBOX_PARKED).map_err(fault)?;
        tx.open_table(COUNTERS).map_err(fault)?;
        tx.open_table(HEALTH).map_err(fault)?;
        tx.commit().map_err(fault)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs blocking database work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Internal(format!("store task: {e}")))?
    }
}

fn commit_blocking(db: &Database, c: &Commit) -> Result<String> {
    let e = &c.event;
    let key = e.key();
    let kt = key_text(&key);
    let tx = db.begin_write().map_err(fault)?;
    let outbox_id;
    {
        let mut routes = tx.open_table(ROUTES).map_err(fault)?;
        let current: Option<StoredRoute> = match routes.get(kt.as_str()).map_err(fault)? {
            Some(v) => Some(from_json(v.value())?),
            None => None,
        };
        if current.as_ref().map(|s| s.revision) != c.expected_revision {
            return Err(Error::Conflict);
        }
        let stored = StoredRoute {
            revision: e.revision,
            route: e.route.clone(),
            health: None,
        };
        routes
            .insert(kt.as_str(), to_json(&stored)?.as_slice())
            .map_err(fault)?;

        let mut history = tx.open_table(HISTORY).map_err(fault)?;
        history
            .insert(
                (kt.as_str(), e.revision),
                to_json(&e.history_entry())?.as_slice(),
            )
            .map_err(fault)?;

        outbox_id = append_audit_and_outbox(&tx, e)?;
    }
    tx.commit().map_err(fault)?;
    Ok(outbox_id)
}

/// Appends the event's audit entry (next tenant sequence) and its outbox entry inside
/// `tx`; returns the outbox id.
fn append_audit_and_outbox(tx: &redb::WriteTransaction, e: &RouteEvent) -> Result<String> {
    let mut counters = tx.open_table(COUNTERS).map_err(fault)?;
    let audit_name = format!("audit/{}", e.tenant);
    let audit_seq = counters
        .get(audit_name.as_str())
        .map_err(fault)?
        .map(|v| v.value())
        .unwrap_or(0)
        + 1;
    let outbox_seq = counters
        .get("outbox")
        .map_err(fault)?
        .map(|v| v.value())
        .unwrap_or(0)
        + 1;
    counters
        .insert(audit_name.as_str(), audit_seq)
        .map_err(fault)?;
    counters.insert("outbox", outbox_seq).map_err(fault)?;

    let mut audit = tx.open_table(AUDIT).map_err(fault)?;
    audit
        .insert(
            (e.tenant.as_str(), audit_seq),
            to_json(&e.audit_entry())?.as_slice(),
        )
        .map_err(fault)?;
    let mut outbox = tx.open_table(OUTBOX).map_err(fault)?;
    outbox
        .insert(outbox_seq, to_json(e)?.as_slice())
        .map_err(fault)?;
    Ok(outbox_seq.to_string())
}

fn save_health_blocking(
    db: &Database,
    key: &RouteKey,
    expected: Option<u64>,
    health: &RouteHealth,
    event: Option<&RouteEvent>,
) -> Result<Option<String>> {
    let kt = key_text(key);
    let tx = db.begin_write().map_err(fault)?;
    let outbox_id;
    {
        let mut table = tx.open_table(HEALTH).map_err(fault)?;
        let current: Option<RouteHealth> = match table.get(kt.as_str()).map_err(fault)? {
            Some(v) => Some(from_json(v.value())?),
            None => None,
        };
        if current.map(|h| h.seq) != expected {
            return Err(Error::Conflict);
        }
        table
            .insert(kt.as_str(), to_json(health)?.as_slice())
            .map_err(fault)?;
        outbox_id = event.map(|e| append_audit_and_outbox(&tx, e)).transpose()?;
    }
    tx.commit().map_err(fault)?;
    Ok(outbox_id)
}

/// The health state of `kt` in an open read transaction.
fn read_health(tx: &redb::ReadTransaction, kt: &str) -> Result<Option<RouteHealth>> {
    let table = tx.open_table(HEALTH).map_err(fault)?;
    match table.get(kt).map_err(fault)? {
        Some(v) => Ok(Some(from_json(v.value())?)),
        None => Ok(None),
    }
}

#[async_trait]
impl RouteReader for EmbeddedStore {
    async fn get(&self, key: &RouteKey, _read: Consistency) -> Result<Option<StoredRoute>> {
        // redb reads are memory-mapped and fast: no need to leave the async thread.
        let tx = self.db.begin_read().map_err(fault)?;
        let routes = tx.open_table(ROUTES).map_err(fault)?;
        let kt = key_text(key);
        match routes.get(kt.as_str()).map_err(fault)? {
            Some(v) => {
                let mut stored: StoredRoute = from_json(v.value())?;
                stored.health = read_health(&tx, &kt)?;
                Ok(Some(stored))
            }
            None => Ok(None),
        }
    }

    async fn versions(
        &self,
        svc: &ServiceKey,
        _read: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        let prefix = svc_prefix(svc);
        let end = format!("{}\u{1}", &prefix[..prefix.len() - 1]);
        let tx = self.db.begin_read().map_err(fault)?;
        let routes = tx.open_table(ROUTES).map_err(fault)?;
        let mut out = Vec::new();
        for item in routes.range(prefix.as_str()..end.as_str()).map_err(fault)? {
            let (k, v) = item.map_err(fault)?;
            let version =
                VersionName::parse(&k.value()[prefix.len()..]).map_err(Error::Internal)?;
            let mut stored: StoredRoute = from_json(v.value())?;
            stored.health = read_health(&tx, k.value())?;
            out.push((version, stored));
        }
        Ok(out)
    }
}

#[async_trait]
impl HealthStore for EmbeddedStore {
    async fn checked_routes(&self) -> Result<Vec<Route>> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(fault)?;
            let routes = tx.open_table(ROUTES).map_err(fault)?;
            let mut out = Vec::new();
            for item in routes.iter().map_err(fault)? {
                let (_, v) = item.map_err(fault)?;
                let stored: StoredRoute = from_json(v.value())?;
                out.extend(stored.route.filter(|r| r.health_check.is_some()));
            }
            Ok(out)
        })
        .await
    }

    async fn health(&self, key: &RouteKey) -> Result<Option<RouteHealth>> {
        let tx = self.db.begin_read().map_err(fault)?;
        read_health(&tx, &key_text(key))
    }

    async fn save_health(
        &self,
        key: &RouteKey,
        expected: Option<u64>,
        health: &RouteHealth,
        event: Option<&RouteEvent>,
    ) -> Result<Option<String>> {
        let (key, health, event) = (key.clone(), health.clone(), event.cloned());
        self.blocking(move |db| save_health_blocking(db, &key, expected, &health, event.as_ref()))
            .await
    }
}

#[async_trait]
impl RouteWriter for EmbeddedStore {
    async fn commit(&self, commit: &Commit) -> Result<String> {
        let c = commit.clone();
        self.blocking(move |db| commit_blocking(db, &c)).await
    }

    async fn list(&self, q: &ListQuery) -> Result<Vec<Route>> {
        let mut prefix = format!("{}\0", q.tenant);
        if let Some(s) = &q.service {
            prefix.push_str(&format!("{s}\0"));
            if let Some(e) = &q.env {
                prefix.push_str(&format!("{e}\0"));
            }
        }
        let end = format!("{}\u{1}", &prefix[..prefix.len() - 1]);
        let start = match &q.after {
            // Strictly after the cursor's key: append a byte below every name character.
            Some(k) => format!("{}\0", key_text(k)).max(prefix.clone()),
            None => prefix.clone(),
        };
        let tx = self.db.begin_read().map_err(fault)?;
        let routes = tx.open_table(ROUTES).map_err(fault)?;
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for item in routes.range(start.as_str()..end.as_str()).map_err(fault)? {
            let (_, v) = item.map_err(fault)?;
            let stored: StoredRoute = from_json(v.value())?;
            let Some(route) = stored.route else { continue };
            if q.env.as_ref().is_some_and(|e| &route.env != e) {
                continue;
            }
            out.push(route);
            if out.len() >= q.limit {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl HistoryReader for EmbeddedStore {
    async fn history(
        &self,
        key: &RouteKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let kt = key_text(key);
        let tx = self.db.begin_read().map_err(fault)?;
        let history = tx.open_table(HISTORY).map_err(fault)?;
        let upper = before.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for item in history
            .range((kt.as_str(), 0)..(kt.as_str(), upper))
            .map_err(fault)?
            .rev()
        {
            let (_, v) = item.map_err(fault)?;
            out.push(from_json(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage> {
        let tenant = q.tenant.as_str();
        let tx = self.db.begin_read().map_err(fault)?;
        let audit = tx.open_table(AUDIT).map_err(fault)?;
        let upper = q.before_seq.unwrap_or(u64::MAX);
        let mut out = AuditPage::default();
        let mut examined = 0;
        for item in audit
            .range((tenant, 0)..(tenant, upper))
            .map_err(fault)?
            .rev()
        {
            let (k, v) = item.map_err(fault)?;
            let seq = k.value().1;
            let entry: AuditEntry = from_json(v.value())?;
            // Commit order and time order agree up to concurrent writers' clock skew, so
            // the scan stops well past `since` rather than at the first older entry.
            if q.since
                .is_some_and(|s| entry.at.millis() < s.millis() - AUDIT_SKEW_MS)
            {
                break;
            }
            examined += 1;
            let outside =
                q.since.is_some_and(|s| entry.at < s) || q.until.is_some_and(|u| entry.at >= u);
            if !outside && q.kind.is_none_or(|t| entry.kind == t) {
                out.items.push((seq, entry));
                if out.items.len() >= q.limit {
                    break;
                }
            }
            if examined >= q.max_scan {
                out.stopped_at = Some(seq);
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Outbox for EmbeddedStore {
    async fn pending_all(&self, limit: usize) -> Result<PendingEntries> {
        let tx = self.db.begin_read().map_err(fault)?;
        let outbox = tx.open_table(OUTBOX).map_err(fault)?;
        let mut out = PendingEntries::default();
        for item in outbox.iter().map_err(fault)?.take(limit) {
            let (k, v) = item.map_err(fault)?;
            let id = k.value().to_string();
            match serde_json::from_slice::<RouteEvent>(v.value()) {
                Ok(event) => out.entries.push(OutboxEntry { id, event }),
                Err(e) => out.undecodable.push(UndecodableEntry {
                    id,
                    reason: format!("stored event is not a route event: {e}"),
                }),
            }
        }
        Ok(out)
    }

    async fn mark_published(&self, ids: &[String]) -> Result<()> {
        let ids: Vec<u64> = ids.iter().map(|i| outbox_id(i)).collect::<Result<_>>()?;
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(fault)?;
            {
                let mut outbox = tx.open_table(OUTBOX).map_err(fault)?;
                for id in ids {
                    outbox.remove(id).map_err(fault)?;
                }
            }
            tx.commit().map_err(fault)
        })
        .await
    }

    /// One write transaction: the entry leaves `outbox` and lands in `outbox_parked`.
    async fn park(&self, id: &str, reason: &str) -> Result<()> {
        let id = outbox_id(id)?;
        let reason = reason.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(fault)?;
            {
                let mut outbox = tx.open_table(OUTBOX).map_err(fault)?;
                let raw = match outbox.remove(id).map_err(fault)? {
                    Some(v) => v.value().to_vec(),
                    None => return Ok(()),
                };
                let parked = Parked {
                    reason,
                    parked_at: Timestamp::now(),
                    raw: B64.encode(raw),
                };
                tx.open_table(OUTBOX_PARKED)
                    .map_err(fault)?
                    .insert(id, to_json(&parked)?.as_slice())
                    .map_err(fault)?;
            }
            tx.commit().map_err(fault)
        })
        .await
    }

    async fn parked(&self, limit: usize) -> Result<Vec<ParkedEntry>> {
        let tx = self.db.begin_read().map_err(fault)?;
        let table = tx.open_table(OUTBOX_PARKED).map_err(fault)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(fault)?.take(limit) {
            let (k, v) = item.map_err(fault)?;
            let p: Parked = from_json(v.value())?;
            let raw = B64
                .decode(&p.raw)
                .map_err(|e| Error::Internal(format!("parked outbox entry {}: {e}", k.value())))?;
            out.push(ParkedEntry {
                id: k.value().to_string(),
                reason: p.reason,
                parked_at: p.parked_at,
                event: String::from_utf8(raw).ok(),
            });
        }
        Ok(out)
    }

    /// One write transaction: the stored bytes go back to `outbox` under the same id.
    async fn unpark(&self, id: &str) -> Result<bool> {
        let id = outbox_id(id)?;
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(fault)?;
            {
                let mut table = tx.open_table(OUTBOX_PARKED).map_err(fault)?;
                let p: Parked = match table.remove(id).map_err(fault)? {
                    Some(v) => from_json(v.value())?,
                    None => return Ok(false),
                };
                let raw = B64
                    .decode(&p.raw)
                    .map_err(|e| Error::Internal(format!("parked outbox entry {id}: {e}")))?;
                tx.open_table(OUTBOX)
                    .map_err(fault)?
                    .insert(id, raw.as_slice())
                    .map_err(fault)?;
            }
            tx.commit().map_err(fault)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl Probe for EmbeddedStore {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn ping(&self) -> Result<()> {
        let tx = self.db.begin_read().map_err(fault)?;
        tx.open_table(ROUTES).map_err(fault)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{ChangeType, SCHEMA};
    use crate::ports::EventPublisher;
    use crate::services::relay::Relay;
    use std::sync::Mutex;

    fn event(service: &str) -> RouteEvent {
        let key = RouteKey::parse("acme", service, "prod", "1.0.0").unwrap();
        RouteEvent {
            schema: SCHEMA,
            event_id: format!("e-{service}"),
            kind: ChangeType::Deleted,
            tenant: key.svc.tenant.clone(),
            service: key.svc.service.clone(),
            env: key.svc.env.clone(),
            version: key.version.clone(),
            revision: 1,
            occurred_at: Timestamp::now(),
            actor: "t".into(),
            correlation_id: "c".into(),
            route: None,
            health: None,
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl EventPublisher for Recorder {
        async fn publish(&self, events: &[RouteEvent]) -> Result<()> {
            self.0
                .lock()
                .unwrap()
                .extend(events.iter().map(|e| e.service.to_string()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_undecodable_outbox_entry_is_parked_and_every_other_entry_published() {
        // GIVEN three committed events, and between them an outbox entry that is not an
        // event (written straight into the table)
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
        for s in ["alpha", "beta"] {
            store
                .commit(&Commit {
                    expected_revision: None,
                    event: event(s),
                })
                .await
                .unwrap();
        }
        let bad = b"{\"schema\":1,\"type\":\"route.upd";
        {
            let tx = store.db.begin_write().unwrap();
            tx.open_table(OUTBOX).unwrap().insert(3, &bad[..]).unwrap();
            let mut counters = tx.open_table(COUNTERS).unwrap();
            counters.insert("outbox", 3).unwrap();
            drop(counters);
            tx.commit().unwrap();
        }
        store
            .commit(&Commit {
                expected_revision: None,
                event: event("gamma"),
            })
            .await
            .unwrap();
        // ... which the read reports apart instead of failing
        let pending = store.pending_all(10).await.unwrap();
        assert_eq!(pending.entries.len(), 3);
        assert_eq!(pending.undecodable.len(), 1);
        assert_eq!(pending.undecodable[0].id, "3");
        assert_eq!(store.pending(10).await.unwrap().len(), 3);

        // WHEN the relay drains
        let publisher = Arc::new(Recorder::default());
        let relay = Relay::new(store.clone(), publisher.clone());
        assert_eq!(relay.drain().await.unwrap(), 3);

        // THEN every other event went out, in commit order, and the outbox is empty
        assert_eq!(*publisher.0.lock().unwrap(), ["alpha", "beta", "gamma"]);
        let left = store.pending_all(10).await.unwrap();
        assert!(left.entries.is_empty() && left.undecodable.is_empty());
        // AND the bad entry is parked with its bytes and reason, not lost
        let parked = store.parked(10).await.unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].id, "3");
        assert_eq!(
            parked[0].event.as_deref().map(str::as_bytes),
            Some(&bad[..])
        );
        assert!(
            parked[0]
                .reason
                .starts_with("undecodable: stored event is not a route event"),
            "{}",
            parked[0].reason
        );
        // AND parking it again (a second relay racing) changes nothing
        store.park("3", "again").await.unwrap();
        assert_eq!(store.parked(10).await.unwrap(), parked);
        // AND a replay puts the same bytes back in the outbox under the same id
        assert!(store.unpark("3").await.unwrap());
        let back = store.pending_all(10).await.unwrap();
        assert_eq!(back.undecodable.len(), 1);
        assert_eq!(back.undecodable[0].id, "3");
        assert!(store.parked(10).await.unwrap().is_empty());
    }
}
