//! The table's key layout: every partition and sort key the adapter writes or queries,
//! and the parsers that turn stored keys back into names (docs/dynamodb.md has the table).
//!
//! `#` separates names. It sorts below every character a name may hold (`-`, `.`, `0-9`,
//! `A-Z`, `_`, `a-z`), so byte order of a route's sort key is (service, env, version)
//! order, and no separator can be confused with a name character.

use crate::domain::names::{EnvName, RouteKey, ServiceKey, ServiceName, TenantName};
use crate::{Error, Result};

/// Partition key attribute (string).
pub(super) const PK: &str = "pk";
/// Sort key attribute (string).
pub(super) const SK: &str = "sk";

const TENANT: &str = "TENANT#";
const ROUTE: &str = "ROUTE#";
const HEALTH: &str = "HEALTH#";
const HISTORY: &str = "HISTORY#";
const REV: &str = "REV#";
const AUDIT: &str = "AUDIT#";
const SEQ: &str = "SEQ#";

/// The audit counter's sort key, in the tenant's audit partition. It sorts outside the
/// `SEQ#` range, so audit queries never see it.
pub(super) const COUNTER_SK: &str = "COUNTER";
/// The outbox's partition before it was sharded: still read (and emptied) by `pending`,
/// never written.
pub(super) const LEGACY_OUTBOX_PK: &str = "OUTBOX";
/// How many partitions the outbox is spread over (`OUTBOX#00` .. `OUTBOX#07`). Each
/// DynamoDB partition takes about 1000 write units a second; see docs/dynamodb.md for
/// what that means in commits.
pub(super) const OUTBOX_SHARDS: u16 = 8;

/// The outbox shard of an event key (`tenant/service/env`): FNV-1a, so every process and
/// release agrees. (Order never depends on it: `pending` merges the shards by id.)
pub(super) fn outbox_shard(event_key: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event_key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(OUTBOX_SHARDS)) as u16
}

/// The partition key of an outbox shard.
pub(super) fn outbox_pk(shard: u16) -> String {
    format!("OUTBOX#{shard:02}")
}

/// Every partition `pending` reads: the shards, then the legacy partition.
pub(super) fn outbox_pks() -> Vec<String> {
    let mut pks: Vec<String> = (0..OUTBOX_SHARDS).map(outbox_pk).collect();
    pks.push(LEGACY_OUTBOX_PK.to_owned());
    pks
}

/// The id callers see for an outbox item: its sort key, prefixed with its shard
/// (`03@{sk}`); a legacy item's id is its bare sort key.
pub(super) fn outbox_id(pk: &str, sk: &str) -> Option<String> {
    if pk == LEGACY_OUTBOX_PK {
        return Some(sk.to_owned());
    }
    let shard = pk.strip_prefix("OUTBOX#")?;
    let n: u16 = shard.parse().ok()?;
    (shard.len() == 2 && n < OUTBOX_SHARDS).then(|| format!("{shard}@{sk}"))
}

/// An outbox id back to the item's `(pk, sk)`, or `None` for an id this adapter could
/// not have made.
pub(super) fn parse_outbox_id(id: &str) -> Option<(String, String)> {
    parse_outbox_key(id).filter(|(_, sk)| is_outbox_sk(sk))
}

/// The partition parked outbox entries are moved to (by `park`): never read by
/// `pending`. Each keeps the id it had as its sort key.
pub(super) const PARKED_OUTBOX_PK: &str = "OUTBOX#PARKED";

/// The `(pk, sk)` of any item an outbox partition can hold, from the id `pending` gave it
/// (`03@{sk}`, or a legacy bare sort key), whatever its sort key looks like: an item that
/// does not decode may have a malformed one, and must still be parked.
pub(super) fn parse_outbox_key(id: &str) -> Option<(String, String)> {
    let shard = id.split_once('@').and_then(|(shard, sk)| {
        let n: u16 = shard.parse().ok()?;
        (shard.len() == 2 && n < OUTBOX_SHARDS).then(|| (outbox_pk(n), sk.to_owned()))
    });
    match shard {
        Some((pk, sk)) if !sk.is_empty() => Some((pk, sk)),
        Some(_) => None,
        None => (!id.is_empty()).then(|| (LEGACY_OUTBOX_PK.to_owned(), id.to_owned())),
    }
}
/// The key `Probe::ping` reads; no item is ever stored there.
pub(super) const PING: &str = "PING";

/// Partition of a tenant's route items.
pub(super) fn tenant_pk(tenant: &TenantName) -> String {
    format!("{TENANT}{tenant}")
}

/// Sort key of a route item: `ROUTE#{service}#{env}#{version}`.
pub(super) fn route_sk(key: &RouteKey) -> String {
    format!("{ROUTE}{}#{}#{}", key.svc.service, key.svc.env, key.version)
}

/// Sort key of a route's health item, in the tenant partition beside the route item:
/// `HEALTH#{service}#{env}#{version}` (outside every `ROUTE#` range, so route queries
/// never see it).
pub(super) fn health_sk(key: &RouteKey) -> String {
    format!(
        "{HEALTH}{}#{}#{}",
        key.svc.service, key.svc.env, key.version
    )
}

/// The sort-key prefix of the health items of one `(tenant, service, env)`.
pub(super) fn health_prefix(svc: &ServiceKey) -> String {
    format!("{HEALTH}{}#{}#", svc.service, svc.env)
}

/// The version of a health item's sort key.
pub(super) fn parse_health_version(sk: &str) -> Option<&str> {
    sk.strip_prefix(HEALTH)?.split('#').nth(2)
}

/// The sort-key prefix shared by the routes of a service (and env): `ROUTE#`,
/// `ROUTE#{s}#` or `ROUTE#{s}#{e}#`. An env without a service adds nothing (it is a
/// filter then, not a prefix).
pub(super) fn route_prefix(service: Option<&ServiceName>, env: Option<&EnvName>) -> String {
    match (service, env) {
        (None, _) => ROUTE.to_owned(),
        (Some(s), None) => format!("{ROUTE}{s}#"),
        (Some(s), Some(e)) => format!("{ROUTE}{s}#{e}#"),
    }
}

/// The sort-key prefix of every version of one `(tenant, service, env)`.
pub(super) fn versions_prefix(svc: &ServiceKey) -> String {
    route_prefix(Some(&svc.service), Some(&svc.env))
}

/// An inclusive upper bound just above every key that starts with `prefix` (which ends
/// with `#`): the trailing `#` becomes `$`, the next byte. No stored key holds a `$`.
pub(super) fn prefix_end(prefix: &str) -> String {
    debug_assert!(prefix.ends_with('#'));
    format!("{}$", &prefix[..prefix.len() - 1])
}

/// An inclusive lower bound strictly after `key`'s route item: the key plus `#`. A key
/// that sorts after the route either extends its version with a name character (all
/// above `#`) or differs earlier, so nothing valid lies between the two.
pub(super) fn after_route_sk(key: &RouteKey) -> String {
    format!("{}#", route_sk(key))
}

/// Parses a route item's keys back into its route key, refusing anything else.
pub(super) fn parse_route_keys(pk: &str, sk: &str) -> Result<RouteKey> {
    let bad = || Error::Internal(format!("dynamodb: not a route item key: {pk} / {sk}"));
    let tenant = pk.strip_prefix(TENANT).ok_or_else(bad)?;
    let rest = sk.strip_prefix(ROUTE).ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('#').collect();
    let [service, env, version] = parts.as_slice() else {
        return Err(bad());
    };
    RouteKey::parse(tenant, service, env, version).map_err(|_| bad())
}

/// Partition of one route key's history: `HISTORY#{t}#{s}#{e}#{v}`.
pub(super) fn history_pk(key: &RouteKey) -> String {
    format!(
        "{HISTORY}{}#{}#{}#{}",
        key.svc.tenant, key.svc.service, key.svc.env, key.version
    )
}

/// Sort key of a history entry: the revision, zero-padded so text order is number order.
pub(super) fn rev_sk(revision: u64) -> String {
    format!("{REV}{revision:020}")
}

/// Lower bound of every history sort key.
pub(super) fn rev_floor() -> &'static str {
    REV
}

/// Parses a history entry's sort key.
pub(super) fn parse_rev_sk(sk: &str) -> Result<u64> {
    parse_padded(sk, REV)
}

/// Partition of a tenant's audit log and its counter: `AUDIT#{t}`.
pub(super) fn audit_pk(tenant: &TenantName) -> String {
    format!("{AUDIT}{tenant}")
}

/// Sort key of an audit entry: the tenant's sequence number, zero-padded.
pub(super) fn seq_sk(seq: u64) -> String {
    format!("{SEQ}{seq:020}")
}

/// Lower bound of every audit sort key.
pub(super) fn seq_floor() -> &'static str {
    SEQ
}

/// Parses an audit entry's sort key.
pub(super) fn parse_seq_sk(sk: &str) -> Result<u64> {
    parse_padded(sk, SEQ)
}

/// Sort key (and id) of an outbox entry: `{order_ms:015}#{tenant}#{seq:020}`. Ordered by
/// commit time (made monotonic per tenant, see `commit`), then tenant and audit sequence.
pub(super) fn outbox_sk(order_ms: u64, tenant: &TenantName, seq: u64) -> String {
    format!("{order_ms:015}#{tenant}#{seq:020}")
}

/// Checks that `id` is an outbox id this adapter made.
pub(super) fn is_outbox_sk(id: &str) -> bool {
    let parts: Vec<&str> = id.split('#').collect();
    match parts.as_slice() {
        [ms, tenant, seq] => {
            ms.len() == 15
                && seq.len() == 20
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
                && TenantName::parse(tenant).is_ok()
        }
        _ => false,
    }
}

fn parse_padded(sk: &str, prefix: &str) -> Result<u64> {
    sk.strip_prefix(prefix)
        .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::Internal(format!("dynamodb: malformed sort key {sk}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, e: &str, v: &str) -> RouteKey {
        RouteKey::parse("acme", s, e, v).unwrap()
    }

    #[test]
    fn route_sort_keys_sort_like_the_name_tuples() {
        let names = ["a", "a-b", "a0", "b", "a1", "z9"];
        let versions = [
            "a",
            "a-b",
            "a.b",
            "a0",
            "a_b",
            "A",
            "1.0.0",
            "1.0.0-rc.1",
            "10",
        ];
        let mut keys = Vec::new();
        for s in names {
            for e in names {
                for v in versions {
                    keys.push(key(s, e, v));
                }
            }
        }
        let mut by_tuple = keys.clone();
        by_tuple.sort_by(|x, y| {
            (
                x.svc.service.as_str(),
                x.svc.env.as_str(),
                x.version.as_str(),
            )
                .cmp(&(
                    y.svc.service.as_str(),
                    y.svc.env.as_str(),
                    y.version.as_str(),
                ))
        });
        let mut by_sk = keys;
        by_sk.sort_by_key(route_sk);
        assert_eq!(by_sk, by_tuple);
    }

    #[test]
    fn the_after_bound_lies_between_a_key_and_its_successor() {
        let k = key("a", "b", "c");
        let after = after_route_sk(&k);
        assert!(after > route_sk(&k));
        for next in [
            key("a", "b", "c-"),
            key("a", "b", "c0"),
            key("a", "b", "d"),
            key("a", "b0", "a"),
        ] {
            assert!(after < route_sk(&next), "{next}");
        }
    }

    #[test]
    fn prefix_ends_bound_exactly_the_keys_under_the_prefix() {
        let p = route_prefix(ServiceName::parse("a").ok().as_ref(), None);
        let end = prefix_end(&p);
        assert!(route_sk(&key("a", "z", "Z")) < end);
        assert!(route_sk(&key("a-b", "a", "a")) > end);
        assert!(route_sk(&key("a0", "a", "a")) > end);
    }

    #[test]
    fn stored_keys_parse_back_and_foreign_keys_do_not() {
        let k = key("checkout", "prod", "2.3.1");
        assert_eq!(
            parse_route_keys(&tenant_pk(&k.svc.tenant), &route_sk(&k)).unwrap(),
            k
        );
        assert!(parse_route_keys("TENANT#acme", "ROUTE#a#b").is_err());
        assert!(parse_route_keys("TENANT#acme", "ROUTE#a#b#c#d").is_err());
        assert!(parse_route_keys("AUDIT#acme", "ROUTE#a#b#c").is_err());
        assert!(parse_route_keys("TENANT#Acme", "ROUTE#a#b#c").is_err());
        assert_eq!(parse_rev_sk(&rev_sk(7)).unwrap(), 7);
        assert_eq!(parse_seq_sk(&seq_sk(u64::MAX)).unwrap(), u64::MAX);
        assert!(parse_seq_sk("SEQ#12").is_err());
        assert!(parse_rev_sk(&seq_sk(1)).is_err());
        let t = TenantName::parse("acme").unwrap();
        assert!(is_outbox_sk(&outbox_sk(1_700_000_000_000, &t, 3)));
        assert!(!is_outbox_sk("1#acme#3"));
        assert!(!is_outbox_sk("garbage"));
    }

    #[test]
    fn outbox_ids_name_their_shard_and_parse_back_and_legacy_ids_still_work() {
        let t = TenantName::parse("acme").unwrap();
        let sk = outbox_sk(1_700_000_000_000, &t, 3);
        let id = outbox_id(&outbox_pk(5), &sk).unwrap();
        assert_eq!(id, format!("05@{sk}"));
        assert_eq!(parse_outbox_id(&id), Some((outbox_pk(5), sk.clone())));
        assert_eq!(
            parse_outbox_id(&sk),
            Some((LEGACY_OUTBOX_PK.to_owned(), sk.clone())),
            "an entry written before sharding"
        );
        for bad in [
            format!("08@{sk}"),
            format!("5@{sk}"),
            format!("xx@{sk}"),
            "05@garbage".to_owned(),
        ] {
            assert_eq!(parse_outbox_id(&bad), None, "{bad}");
        }
        assert_eq!(outbox_id("TENANT#acme", &sk), None);
    }

    #[test]
    fn any_item_of_an_outbox_partition_can_be_found_again_from_its_id() {
        for (pk, sk) in [
            (outbox_pk(3), "not#a#valid#sort key"),
            (outbox_pk(7), "x@y"),
            (LEGACY_OUTBOX_PK.to_owned(), "garbage"),
        ] {
            let id = outbox_id(&pk, sk).unwrap();
            assert_eq!(parse_outbox_key(&id), Some((pk, sk.to_owned())), "{id}");
        }
        assert_eq!(parse_outbox_key(""), None);
        assert_eq!(parse_outbox_key("03@"), None);
        assert_eq!(outbox_id(PARKED_OUTBOX_PK, "x"), None, "parked is no shard");
    }

    #[test]
    fn event_keys_spread_over_every_outbox_shard() {
        let mut seen = [0u32; OUTBOX_SHARDS as usize];
        for n in 0..800 {
            seen[outbox_shard(&format!("tenant-{n}/checkout/prod")) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
        assert_eq!(
            outbox_shard("acme/checkout/prod"),
            outbox_shard("acme/checkout/prod")
        );
    }

    #[test]
    fn padded_numbers_sort_like_numbers() {
        assert!(rev_sk(9) < rev_sk(10));
        assert!(seq_sk(99) < seq_sk(100));
        assert!(rev_floor() < rev_sk(0).as_str());
        assert!(seq_floor() < seq_sk(0).as_str());
        assert!(COUNTER_SK < seq_floor());
    }
}
