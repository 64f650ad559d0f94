//! Route change events (CONTRACT §7): the Kafka value, and the history/audit entries that
//! share its types.

use super::health::RouteHealth;
use super::names::{EnvName, RouteKey, ServiceKey, ServiceName, TenantName, VersionName};
use super::route::Route;
use super::timefmt::Timestamp;
use serde::{Deserialize, Serialize};

/// The event schema this build writes and reads.
pub const SCHEMA: u32 = 1;

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeType {
    /// A PUT where no live route existed.
    #[serde(rename = "route.created")]
    Created,
    /// A PUT over a live route.
    #[serde(rename = "route.updated")]
    Updated,
    /// `POST .../activate` on an inactive route.
    #[serde(rename = "route.activated")]
    Activated,
    /// `POST .../deactivate` on an active route.
    #[serde(rename = "route.deactivated")]
    Deactivated,
    /// DELETE.
    #[serde(rename = "route.deleted")]
    Deleted,
    /// The prober saw an endpoint turn healthy or unhealthy (docs/health.md). Changes the
    /// route's health state, never its revision.
    #[serde(rename = "route.health_changed")]
    HealthChanged,
}

impl ChangeType {
    /// The wire name, e.g. `route.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Created => "route.created",
            ChangeType::Updated => "route.updated",
            ChangeType::Activated => "route.activated",
            ChangeType::Deactivated => "route.deactivated",
            ChangeType::Deleted => "route.deleted",
            ChangeType::HealthChanged => "route.health_changed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Updated,
            Self::Activated,
            Self::Deactivated,
            Self::Deleted,
            Self::HealthChanged,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// The event published on `route-events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEvent {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// A UUID, unique per change.
    pub event_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ChangeType,
    /// Tenant.
    pub tenant: TenantName,
    /// Service.
    pub service: ServiceName,
    /// Environment.
    pub env: EnvName,
    /// Version.
    pub version: VersionName,
    /// The revision this change wrote (the delete's own revision for a delete).
    pub revision: u64,
    /// When the change committed.
    pub occurred_at: Timestamp,
    /// Who made it (`sub`).
    pub actor: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// The route after the change; `null` for a delete and a health change.
    pub route: Option<Route>,
    /// `route.health_changed` only: the route's health state after the change (its `seq`
    /// orders health changes; `revision` is then the route revision that was probed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<RouteHealth>,
}

impl RouteEvent {
    /// The route key the event is about.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            svc: ServiceKey {
                tenant: self.tenant.clone(),
                service: self.service.clone(),
                env: self.env.clone(),
            },
            version: self.version.clone(),
        }
    }

    /// Checks what serde cannot: the schema, and that the route (when present) is the one
    /// the envelope names, at the same revision, and absent exactly for deletes.
    pub fn check(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!("unknown schema {}", self.schema));
        }
        if self.kind == ChangeType::HealthChanged {
            return match (&self.route, &self.health) {
                (None, Some(_)) if self.revision > 0 => Ok(()),
                (None, Some(_)) => Err("revision 0".into()),
                _ => Err("a route.health_changed event carries health and no route".into()),
            };
        }
        if self.health.is_some() {
            return Err(format!("a {} event carries health", self.kind.as_str()));
        }
        match (&self.route, self.kind) {
            (Some(_), ChangeType::Deleted) => Err("a route.deleted event carries a route".into()),
            (None, k) if k != ChangeType::Deleted => {
                Err(format!("a {} event has no route", k.as_str()))
            }
            (Some(r), _) if r.key() != self.key() || r.revision != self.revision => {
                Err("the route does not match the event's key or revision".into())
            }
            _ if self.revision == 0 => Err("revision 0".into()),
            _ => Ok(()),
        }
    }
}

/// One entry of a route's history (`GET .../history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Revision written.
    pub revision: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ChangeType,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// The route after the change; `null` for a delete.
    pub route: Option<Route>,
}

/// One entry of a tenant's audit log (`GET /v1/tenants/{t}/audit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Service.
    pub service: ServiceName,
    /// Environment.
    pub env: EnvName,
    /// Version.
    pub version: VersionName,
    /// Revision written.
    pub revision: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: ChangeType,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub by: String,
    /// The request's correlation id.
    pub correlation_id: String,
}

impl RouteEvent {
    /// The history entry for this change.
    pub fn history_entry(&self) -> HistoryEntry {
        HistoryEntry {
            revision: self.revision,
            kind: self.kind,
            at: self.occurred_at,
            by: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            route: self.route.clone(),
        }
    }

    /// The audit entry for this change.
    pub fn audit_entry(&self) -> AuditEntry {
        AuditEntry {
            service: self.service.clone(),
            env: self.env.clone(),
            version: self.version.clone(),
            revision: self.revision,
            kind: self.kind,
            at: self.occurred_at,
            by: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, route: &str) -> String {
        format!(
            r#"{{"schema":1,"event_id":"e1","type":"{kind}","tenant":"acme","service":"checkout","env":"prod",
            "version":"2.3.1","revision":8,"occurred_at":"2026-11-28T12:00:00.000Z","actor":"u",
            "correlation_id":"c","route":{route}}}"#
        )
    }

    #[test]
    fn a_delete_event_parses_and_checks() {
        let e: RouteEvent = serde_json::from_str(&event("route.deleted", "null")).unwrap();
        assert_eq!(e.kind, ChangeType::Deleted);
        assert!(e.check().is_ok());
        assert_eq!(e.key().svc.event_key(), "acme/checkout/prod");
    }

    #[test]
    fn inconsistent_events_fail_the_check() {
        let e: RouteEvent = serde_json::from_str(&event("route.updated", "null")).unwrap();
        assert!(e.check().is_err());
        let mut e: RouteEvent = serde_json::from_str(&event("route.deleted", "null")).unwrap();
        e.schema = 2;
        assert!(e.check().is_err());
    }

    #[test]
    fn a_health_event_carries_health_and_no_route() {
        let with_health = event("route.health_changed", "null").replace(
            r#""route":null"#,
            r#""route":null,"health":{"seq":3,"endpoints":[]}"#,
        );
        let e: RouteEvent = serde_json::from_str(&with_health).unwrap();
        assert_eq!(e.kind, ChangeType::HealthChanged);
        assert!(e.check().is_ok());
        let bare: RouteEvent =
            serde_json::from_str(&event("route.health_changed", "null")).unwrap();
        assert!(bare.check().is_err());
        let mut deleted: RouteEvent =
            serde_json::from_str(&event("route.deleted", "null")).unwrap();
        deleted.health = e.health.clone();
        assert!(deleted.check().is_err(), "only health events carry health");
    }

    #[test]
    fn unknown_types_do_not_parse() {
        assert!(serde_json::from_str::<RouteEvent>(&event("route.exploded", "null")).is_err());
        assert_eq!(
            ChangeType::parse("route.activated"),
            Some(ChangeType::Activated)
        );
        assert_eq!(ChangeType::parse("x"), None);
    }
}
