//! The convergence checker: for every route key the store holds (live routes and
//! tombstones), is the shared cache's entry the store's state? Run after a fault, once
//! things have settled, it proves that no event was lost, none was applied out of order,
//! and no redelivery or replay left an older revision behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use tm_core::domain::names::{RouteKey, ServiceKey, TenantName};
use tm_core::ports::{Consistency, ListQuery, RouteReader, RouteWriter, SharedCache};

/// What the comparison found.
#[derive(Debug, Default)]
pub(crate) struct Convergence {
    /// Route keys the store holds (tombstones included).
    pub(crate) keys: usize,
    /// Keys whose cache entry is exactly the store's state.
    pub(crate) equal: usize,
    /// Keys the cache holds nothing for (a later read fills them from the store).
    pub(crate) absent: Vec<String>,
    /// Keys where the cache says something else than the store.
    pub(crate) wrong: Vec<String>,
}

impl Convergence {
    /// Every key is in the cache, and equal.
    pub(crate) fn exact(&self) -> bool {
        self.wrong.is_empty() && self.absent.is_empty() && self.equal == self.keys
    }
}

impl fmt::Display for Convergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys, {} equal, {} absent {:?}, {} wrong {:?}",
            self.keys,
            self.equal,
            self.absent.len(),
            self.absent,
            self.wrong.len(),
            self.wrong
        )
    }
}

/// Compares every route key of `tenant` in `store` with `cache`. Live routes are found by
/// listing the tenant; `services` adds `(tenant, service, env)`s whose routes may all be
/// deleted (a listing skips tombstones).
pub(crate) async fn compare<S>(
    store: &S,
    cache: &dyn SharedCache,
    tenant: &str,
    services: &[ServiceKey],
) -> Convergence
where
    S: RouteReader + RouteWriter + ?Sized,
{
    let tenant = TenantName::parse(tenant).expect("tenant name");
    let mut svcs: BTreeSet<String> = services.iter().map(ServiceKey::event_key).collect();
    let mut by_name: BTreeMap<String, ServiceKey> = services
        .iter()
        .map(|s| (s.event_key(), s.clone()))
        .collect();
    let mut after = None;
    loop {
        let page = store
            .list(&ListQuery {
                tenant: tenant.clone(),
                service: None,
                env: None,
                after: after.clone(),
                limit: 500,
            })
            .await
            .expect("list the store");
        for r in &page {
            let key = r.key();
            svcs.insert(key.svc.event_key());
            by_name.insert(key.svc.event_key(), key.svc.clone());
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.key()),
            _ => break,
        }
    }
    let mut out = Convergence::default();
    for name in &svcs {
        let svc = &by_name[name];
        let stored = store
            .versions(svc, Consistency::Strong)
            .await
            .expect("read the store");
        for (version, state) in &stored {
            out.keys += 1;
            let key = RouteKey {
                svc: svc.clone(),
                version: version.clone(),
            };
            match cache.get(&key).await.expect("read the cache") {
                None => out.absent.push(key.to_string()),
                Some(c)
                    if c.revision == state.revision
                        && c.route.as_deref() == state.route.as_ref() =>
                {
                    out.equal += 1
                }
                Some(c) => out.wrong.push(format!(
                    "{key}: store revision {} ({}), cache revision {} ({})",
                    state.revision,
                    if state.route.is_some() {
                        "live"
                    } else {
                        "deleted"
                    },
                    c.revision,
                    if c.route.is_some() { "live" } else { "deleted" },
                )),
            }
        }
        // A complete set in the cache must not hold a live route the store lacks.
        if let Some(entries) = cache.versions(svc).await.expect("read the cache") {
            for e in entries {
                let Some(route) = e.route else { continue };
                let matches = stored.iter().any(|(v, s)| {
                    *v == route.version && s.revision == e.revision && s.route.is_some()
                });
                if !matches {
                    out.wrong.push(format!(
                        "{}: the cache's set holds revision {} the store does not",
                        route.key(),
                        e.revision
                    ));
                }
            }
        }
    }
    out
}
