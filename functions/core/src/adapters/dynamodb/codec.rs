//! Items: how each record is laid out as DynamoDB attributes, and strict decoding.
//!
//! Documents (route, history entry, audit entry, event) are stored as one JSON string
//! attribute, in exactly the serde form the rest of the crate uses, so the domain types
//! stay the single definition of their shape. Decoding is strict: a missing or mistyped
//! attribute, JSON that does not parse (the route document refuses unknown fields), or a
//! document that disagrees with its item's key is an `Error::Internal`, never a default.
//! Attributes this build does not know are ignored, so a newer writer does not break an
//! older reader during a rolling deploy.

use super::keys;
use crate::domain::event::{AuditEntry, HistoryEntry, RouteEvent};
use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, TenantName};
use crate::domain::route::Route;
use crate::domain::timefmt::Timestamp;
use crate::ports::{OutboxEntry, ParkedEntry, StoredRoute};
use crate::{Error, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// One item as the SDK carries it.
pub(super) type Item = HashMap<String, AttributeValue>;

/// What the item is: `route`, `health`, `history`, `audit`, `outbox`, `parked` or
/// `counter`.
const KIND: &str = "kind";
/// Route item: the stored revision (number).
pub(super) const REV: &str = "rev";
/// Route item: the live route's JSON; absent on a tombstone.
pub(super) const DOC: &str = "doc";
/// Route item: the env name, for the env-only list filter.
pub(super) const ENV: &str = "env";
/// Route item: present (`1`) when the live route has a `health_check`, so the prober's
/// scan filters on it without reading documents.
pub(super) const CHECKED: &str = "hc";
/// Health item: the state's JSON.
const STATE: &str = "state";
/// History and audit items: the entry's JSON.
const ENTRY: &str = "entry";
/// Outbox item: the event's JSON.
const EVENT: &str = "event";
/// Counter item: the tenant's last audit sequence number.
pub(super) const SEQ: &str = "seq";
/// Counter item: the outbox order time of the tenant's last commit (ms).
const LAST_MS: &str = "last_ms";
/// Parked item: why the entry was set aside.
const REASON: &str = "reason";
/// Parked item: when (RFC 3339).
const PARKED_AT: &str = "parked_at";
/// Parked item: the outbox item as it was stored, every attribute (a map).
const ORIGINAL: &str = "item";

fn corrupt(what: &str, item: &Item, why: impl std::fmt::Display) -> Error {
    let pk = item
        .get(keys::PK)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    let sk = item
        .get(keys::SK)
        .and_then(|v| v.as_s().ok())
        .map_or("?", String::as_str);
    Error::Internal(format!("dynamodb: stored {what} item {pk} / {sk}: {why}"))
}

/// A string attribute value.
pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute value.
pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The primary key of an item.
pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

fn get_s<'a>(what: &str, item: &'a Item, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(_) => Err(corrupt(
            what,
            item,
            format!("attribute {name} is not a string"),
        )),
        None => Err(corrupt(what, item, format!("attribute {name} is missing"))),
    }
}

fn get_u64(what: &str, item: &Item, name: &str) -> Result<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| {
            corrupt(
                what,
                item,
                format!("attribute {name} is not an unsigned integer: {v}"),
            )
        }),
        Some(_) => Err(corrupt(
            what,
            item,
            format!("attribute {name} is not a number"),
        )),
        None => Err(corrupt(what, item, format!("attribute {name} is missing"))),
    }
}

fn check_kind(what: &str, item: &Item) -> Result<()> {
    let kind = get_s(what, item, KIND)?;
    if kind != what {
        return Err(corrupt(what, item, format!("kind is {kind}")));
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("dynamodb: encode: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, item: &Item, name: &str) -> Result<T> {
    serde_json::from_str(get_s(what, item, name)?)
        .map_err(|e| corrupt(what, item, format!("attribute {name}: {e}")))
}

/// A route item: the live route, or a tombstone (no `doc`) keeping the revision.
pub(super) fn route_item(key: &RouteKey, revision: u64, route: Option<&Route>) -> Result<Item> {
    let mut item = self::key(keys::tenant_pk(&key.svc.tenant), keys::route_sk(key));
    item.insert(KIND.to_owned(), s("route"));
    item.insert(REV.to_owned(), n(revision));
    item.insert(ENV.to_owned(), s(key.svc.env.as_str()));
    if let Some(r) = route {
        item.insert(DOC.to_owned(), s(to_json(r)?));
        if r.health_check.is_some() {
            item.insert(CHECKED.to_owned(), n(1));
        }
    }
    Ok(item)
}

/// A health item: the state's `seq` (number, for the write condition) and its JSON.
pub(super) fn health_item(key: &RouteKey, health: &RouteHealth) -> Result<Item> {
    let mut item = self::key(keys::tenant_pk(&key.svc.tenant), keys::health_sk(key));
    item.insert(KIND.to_owned(), s("health"));
    item.insert(SEQ.to_owned(), n(health.seq));
    item.insert(STATE.to_owned(), s(to_json(health)?));
    Ok(item)
}

/// Decodes a health item.
pub(super) fn decode_health(item: &Item) -> Result<RouteHealth> {
    const W: &str = "health";
    check_kind(W, item)?;
    let seq = get_u64(W, item, SEQ)?;
    let health: RouteHealth = from_json(W, item, STATE)?;
    if health.seq != seq {
        return Err(corrupt(W, item, "state disagrees with its seq"));
    }
    Ok(health)
}

/// Decodes a route item into its key and stored state.
pub(super) fn decode_route(item: &Item) -> Result<(RouteKey, StoredRoute)> {
    const W: &str = "route";
    check_kind(W, item)?;
    let key = keys::parse_route_keys(get_s(W, item, keys::PK)?, get_s(W, item, keys::SK)?)?;
    let revision = get_u64(W, item, REV)?;
    if revision == 0 {
        return Err(corrupt(W, item, "revision 0"));
    }
    if get_s(W, item, ENV)? != key.svc.env.as_str() {
        return Err(corrupt(W, item, "env attribute disagrees with the key"));
    }
    let route: Option<Route> = match item.get(DOC) {
        None => None,
        Some(_) => Some(from_json(W, item, DOC)?),
    };
    if route
        .as_ref()
        .is_some_and(|r| r.key() != key || r.revision != revision)
    {
        return Err(corrupt(
            W,
            item,
            "document disagrees with the key or revision",
        ));
    }
    Ok((
        key,
        StoredRoute {
            revision,
            route,
            health: None,
        },
    ))
}

/// A history item.
pub(super) fn history_item(key: &RouteKey, entry: &HistoryEntry) -> Result<Item> {
    let mut item = self::key(keys::history_pk(key), keys::rev_sk(entry.revision));
    item.insert(KIND.to_owned(), s("history"));
    item.insert(ENTRY.to_owned(), s(to_json(entry)?));
    Ok(item)
}

/// Decodes a history item.
pub(super) fn decode_history(item: &Item) -> Result<HistoryEntry> {
    const W: &str = "history";
    check_kind(W, item)?;
    let revision = keys::parse_rev_sk(get_s(W, item, keys::SK)?)?;
    let entry: HistoryEntry = from_json(W, item, ENTRY)?;
    if entry.revision != revision || entry.route.as_ref().is_some_and(|r| r.revision != revision) {
        return Err(corrupt(W, item, "entry disagrees with its revision"));
    }
    Ok(entry)
}

/// An audit item.
pub(super) fn audit_item(tenant: &TenantName, seq: u64, entry: &AuditEntry) -> Result<Item> {
    let mut item = key(keys::audit_pk(tenant), keys::seq_sk(seq));
    item.insert(KIND.to_owned(), s("audit"));
    item.insert(ENTRY.to_owned(), s(to_json(entry)?));
    Ok(item)
}

/// Decodes an audit item into its sequence number and entry.
pub(super) fn decode_audit(item: &Item) -> Result<(u64, AuditEntry)> {
    const W: &str = "audit";
    check_kind(W, item)?;
    let seq = keys::parse_seq_sk(get_s(W, item, keys::SK)?)?;
    Ok((seq, from_json(W, item, ENTRY)?))
}

/// An outbox item in partition `pk` (its shard) with sort key `sk`.
pub(super) fn outbox_item(pk: &str, sk: &str, event: &RouteEvent) -> Result<Item> {
    let mut item = key(pk, sk);
    item.insert(KIND.to_owned(), s("outbox"));
    item.insert(EVENT.to_owned(), s(to_json(event)?));
    Ok(item)
}

/// Decodes an outbox item; the event must pass its own consistency check.
pub(super) fn decode_outbox(item: &Item) -> Result<OutboxEntry> {
    const W: &str = "outbox";
    check_kind(W, item)?;
    let sk = get_s(W, item, keys::SK)?;
    let pk = get_s(W, item, keys::PK)?;
    let id = keys::outbox_id(pk, sk)
        .filter(|_| keys::is_outbox_sk(sk))
        .ok_or_else(|| corrupt(W, item, "malformed id"))?;
    let event: RouteEvent = from_json(W, item, EVENT)?;
    event.check().map_err(|why| corrupt(W, item, why))?;
    if sk.split('#').nth(1) != Some(event.tenant.as_str()) {
        return Err(corrupt(W, item, "event of another tenant"));
    }
    Ok(OutboxEntry { id, event })
}

/// Why an outbox item does not decode (the message of [`decode_outbox`]'s error).
pub(super) fn why(e: Error) -> String {
    match e {
        Error::Internal(m) | Error::Unavailable(m) | Error::InvalidRequest(m) => m,
        other => other.to_string(),
    }
}

/// The parked item of outbox item `original` (whose id is `id`): in the parked partition
/// under that id, holding the original item unchanged with the reason and the time.
pub(super) fn parked_item(id: &str, original: &Item, reason: &str, at: &Timestamp) -> Item {
    let mut item = key(keys::PARKED_OUTBOX_PK, id);
    item.insert(KIND.to_owned(), s("parked"));
    item.insert(REASON.to_owned(), s(reason));
    item.insert(PARKED_AT.to_owned(), s(at.to_string()));
    item.insert(ORIGINAL.to_owned(), AttributeValue::M(original.clone()));
    item
}

/// Decodes a parked item: the entry as callers see it, and the original item.
pub(super) fn decode_parked(item: &Item) -> Result<(ParkedEntry, Item)> {
    const W: &str = "parked";
    check_kind(W, item)?;
    let id = get_s(W, item, keys::SK)?.to_owned();
    let reason = get_s(W, item, REASON)?.to_owned();
    let parked_at =
        Timestamp::parse(get_s(W, item, PARKED_AT)?).map_err(|e| corrupt(W, item, e))?;
    let original = match item.get(ORIGINAL) {
        Some(AttributeValue::M(m)) => m.clone(),
        _ => {
            return Err(corrupt(
                W,
                item,
                format!("attribute {ORIGINAL} is not a map"),
            ));
        }
    };
    let origin = (original.get(keys::PK), original.get(keys::SK));
    let belongs = match origin {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
            keys::outbox_id(pk, sk).as_deref() == Some(id.as_str())
        }
        _ => false,
    };
    if !belongs {
        return Err(corrupt(W, item, "the original item's key is not its id"));
    }
    let event = match original.get(EVENT) {
        Some(AttributeValue::S(text)) => Some(text.clone()),
        _ => None,
    };
    Ok((
        ParkedEntry {
            id,
            reason,
            parked_at,
            event,
        },
        original,
    ))
}

/// A tenant's audit counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counter {
    /// The last audit sequence number handed out (0: none yet).
    pub(super) seq: u64,
    /// The outbox order time of the last commit (ms since the epoch).
    pub(super) last_ms: u64,
}

/// A counter item.
pub(super) fn counter_item(tenant: &TenantName, c: Counter) -> Item {
    let mut item = key(keys::audit_pk(tenant), keys::COUNTER_SK);
    item.insert(KIND.to_owned(), s("counter"));
    item.insert(SEQ.to_owned(), n(c.seq));
    item.insert(LAST_MS.to_owned(), n(c.last_ms));
    item
}

/// Decodes a counter item.
pub(super) fn decode_counter(item: &Item) -> Result<Counter> {
    const W: &str = "counter";
    check_kind(W, item)?;
    Ok(Counter {
        seq: get_u64(W, item, SEQ)?,
        last_ms: get_u64(W, item, LAST_MS)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::route::RouteSpec;
    use crate::domain::timefmt::Timestamp;

    fn route(rev: u64) -> Route {
        let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
        let spec =
            RouteSpec::from_json(br#"{"endpoints":[{"id":"blue","url":"https://blue.example"}]}"#)
                .unwrap();
        Route::from_spec(&key, spec, rev, Timestamp::from_millis(0), "u")
    }

    #[test]
    fn route_items_round_trip_live_and_as_tombstones() {
        let r = route(3);
        let item = route_item(&r.key(), 3, Some(&r)).unwrap();
        assert_eq!(
            decode_route(&item).unwrap(),
            (
                r.key(),
                StoredRoute {
                    revision: 3,
                    route: Some(r.clone()),
                    health: None,
                }
            )
        );
        let item = route_item(&r.key(), 4, None).unwrap();
        assert_eq!(
            decode_route(&item).unwrap().1,
            StoredRoute {
                revision: 4,
                route: None,
                health: None,
            }
        );
    }

    #[test]
    fn route_items_that_disagree_or_lack_attributes_are_refused() {
        let r = route(3);
        let mut item = route_item(&r.key(), 4, Some(&r)).unwrap();
        assert!(decode_route(&item).is_err(), "revision mismatch");
        item = route_item(&r.key(), 3, Some(&r)).unwrap();
        item.insert(REV.into(), s("3"));
        assert!(decode_route(&item).is_err(), "mistyped revision");
        item = route_item(&r.key(), 3, Some(&r)).unwrap();
        item.remove(KIND);
        assert!(decode_route(&item).is_err(), "no kind");
        item = route_item(&r.key(), 3, Some(&r)).unwrap();
        item.insert(DOC.into(), s(r#"{"tenant":"acme"}"#));
        assert!(decode_route(&item).is_err(), "partial document");
        item = route_item(&r.key(), 3, Some(&r)).unwrap();
        item.insert(REV.into(), n(0));
        assert!(decode_route(&item).is_err(), "revision 0");
        item = route_item(&r.key(), 3, Some(&r)).unwrap();
        item.insert(ENV.into(), s("staging"));
        assert!(decode_route(&item).is_err(), "env mismatch");
    }

    #[test]
    fn a_parked_item_keeps_the_original_item_and_finds_its_way_back() {
        let mut original = key(keys::outbox_pk(3), "junk-sort-key");
        original.insert(KIND.into(), s("outbox"));
        original.insert(EVENT.into(), s("{not json"));
        let at = Timestamp::parse("2026-11-28T12:00:00.000Z").unwrap();
        let item = parked_item("03@junk-sort-key", &original, "undecodable", &at);
        let (entry, back) = decode_parked(&item).unwrap();
        assert_eq!(back, original);
        assert_eq!(
            entry,
            ParkedEntry {
                id: "03@junk-sort-key".into(),
                reason: "undecodable".into(),
                parked_at: at,
                event: Some("{not json".into()),
            }
        );
        let elsewhere = parked_item("04@junk-sort-key", &original, "x", &at);
        assert!(decode_parked(&elsewhere).is_err(), "id and origin disagree");
    }

    #[test]
    fn counters_decode_only_as_counters() {
        let t = TenantName::parse("acme").unwrap();
        let c = Counter {
            seq: 9,
            last_ms: 12,
        };
        assert_eq!(decode_counter(&counter_item(&t, c)).unwrap(), c);
        let mut item = counter_item(&t, c);
        item.insert(KIND.into(), s("audit"));
        assert!(decode_counter(&item).is_err());
    }
}
