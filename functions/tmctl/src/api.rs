//! The Traffic Manager API as typed calls for one tenant: routes, history, audit,
//! status, resolve and readiness (CONTRACT §3, §4, §5).

use crate::client::{ApiClient, Precondition, Reply, encode};
use crate::error::{CtlError, Result};
use http::{Method, StatusCode};
use serde_json::Value;
use std::fmt;
use tm_core::domain::names::RouteKey;

/// Most items asked for per page.
const PAGE: usize = 500;

/// `service/env/version` (or `service/env/selector` for resolve), as typed by a user.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RouteRef {
    /// Service.
    pub service: String,
    /// Environment.
    pub env: String,
    /// Version (or selector).
    pub version: String,
}

impl RouteRef {
    /// Parses `service/env/version`; with `tenant`, the names are checked against the
    /// contract's rules so a typo is a usage error before any request.
    pub fn parse(text: &str, tenant: &str) -> Result<Self> {
        let r = Self::parse_selector(text)?;
        RouteKey::parse(tenant, &r.service, &r.env, &r.version)
            .map_err(|e| CtlError::Usage(format!("{text}: {e}")))?;
        Ok(r)
    }

    /// Parses `service/env/selector` without checking the selector (it may be `latest`
    /// or a range such as `^2`).
    pub fn parse_selector(text: &str) -> Result<Self> {
        let mut parts = text.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(s), Some(e), Some(v)) if !s.is_empty() && !e.is_empty() && !v.is_empty() => {
                Ok(Self {
                    service: s.to_owned(),
                    env: e.to_owned(),
                    version: v.to_owned(),
                })
            }
            _ => Err(CtlError::Usage(format!(
                "{text:?}: expected <service>/<env>/<version>"
            ))),
        }
    }
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.env, self.version)
    }
}

/// The API of one tenant.
#[derive(Clone)]
pub struct Api {
    client: ApiClient,
    tenant: String,
}

impl Api {
    /// Calls for `tenant` through `client`.
    pub fn new(client: ApiClient, tenant: String) -> Self {
        Self { client, tenant }
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn route_path(&self, r: &RouteRef) -> String {
        format!(
            "/v1/tenants/{}/services/{}/envs/{}/versions/{}",
            encode(&self.tenant),
            encode(&r.service),
            encode(&r.env),
            encode(&r.version)
        )
    }

    /// The route document and its revision, or `None` when there is no such route.
    pub async fn get_route(&self, r: &RouteRef) -> Result<Option<(Value, u64)>> {
        let reply = self
            .client
            .send(Method::GET, &self.route_path(r), Precondition::None, None)
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let reply = ok(reply)?;
        let rev = revision_of(&reply);
        Ok(Some((reply.json, rev)))
    }

    /// Creates or replaces a route; answers the stored document.
    pub async fn put_route(&self, r: &RouteRef, body: &Value, pre: Precondition) -> Result<Value> {
        let reply = self
            .client
            .call(Method::PUT, &self.route_path(r), pre, Some(body))
            .await
            .map_err(|e| context(e, r))?;
        Ok(reply.json)
    }

    /// Deletes a route.
    pub async fn delete_route(&self, r: &RouteRef, pre: Precondition) -> Result<()> {
        self.client
            .call(Method::DELETE, &self.route_path(r), pre, None)
            .await
            .map_err(|e| context(e, r))?;
        Ok(())
    }

    /// Every route of the tenant (all pages), optionally of one service and env.
    pub async fn list_routes(
        &self,
        service: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<Value>> {
        let mut query = format!("limit={PAGE}");
        if let Some(s) = service {
            query.push_str(&format!("&service={}", encode(s)));
        }
        if let Some(e) = env {
            query.push_str(&format!("&env={}", encode(e)));
        }
        self.pages(
            &format!("/v1/tenants/{}/routes", encode(&self.tenant)),
            &query,
            usize::MAX,
        )
        .await
    }

    /// The route's history, newest first, at most `limit` items.
    pub async fn history(&self, r: &RouteRef, limit: usize) -> Result<Vec<Value>> {
        let query = format!("limit={}", limit.clamp(1, PAGE));
        self.pages(&format!("{}/history", self.route_path(r)), &query, limit)
            .await
            .map_err(|e| context(e, r))
    }

    /// The tenant's audit entries at or after `since` (RFC 3339), newest first.
    pub async fn audit_since(&self, since: &str) -> Result<Vec<Value>> {
        let query = format!("limit={PAGE}&since={}", encode(since));
        self.pages(
            &format!("/v1/tenants/{}/audit", encode(&self.tenant)),
            &query,
            usize::MAX,
        )
        .await
    }

    /// Whether the route's current revision reached the shared cache.
    pub async fn status(&self, r: &RouteRef) -> Result<Value> {
        let reply = self
            .client
            .call(
                Method::GET,
                &format!("{}/status", self.route_path(r)),
                Precondition::None,
                None,
            )
            .await
            .map_err(|e| context(e, r))?;
        Ok(reply.json)
    }

    /// Resolves `service/env/selector`, optionally with a sticky key; answers the body
    /// and the `X-Cache` header.
    pub async fn resolve(&self, r: &RouteRef, key: Option<&str>) -> Result<(Value, String)> {
        let mut path = format!(
            "/v1/resolve/{}/{}/{}/{}",
            encode(&self.tenant),
            encode(&r.service),
            encode(&r.env),
            encode(&r.version)
        );
        if let Some(k) = key {
            path.push_str(&format!("?key={}", encode(k)));
        }
        let reply = self
            .client
            .call(Method::GET, &path, Precondition::None, None)
            .await
            .map_err(|e| context(e, r))?;
        let cache = reply.x_cache.clone().unwrap_or_default();
        Ok((reply.json, cache))
    }

    /// `GET /readyz`: the backends and their state (200 or 503 both answer a body).
    pub async fn readiness(&self) -> Result<(bool, Value)> {
        let reply = self
            .client
            .send(Method::GET, "/readyz", Precondition::None, None)
            .await?;
        match reply.status.as_u16() {
            200 => Ok((true, reply.json)),
            503 => Ok((false, reply.json)),
            _ => Err(crate::client::error_of(&reply)),
        }
    }

    async fn pages(&self, path: &str, query: &str, max: usize) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}?{query}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={}", encode(c)));
            }
            let reply = self
                .client
                .call(Method::GET, &url, Precondition::None, None)
                .await?;
            if let Some(items) = reply.json["items"].as_array() {
                out.extend(items.iter().cloned());
            }
            cursor = reply.json["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || out.len() >= max {
                out.truncate(max);
                return Ok(out);
            }
        }
    }
}

fn ok(reply: Reply) -> Result<Reply> {
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(crate::client::error_of(&reply))
    }
}

/// The revision from the ETag, else from the document.
fn revision_of(reply: &Reply) -> u64 {
    reply
        .etag
        .or_else(|| reply.json["revision"].as_u64())
        .unwrap_or(0)
}

/// Names the route in not-found and conflict errors.
fn context(e: CtlError, r: &RouteRef) -> CtlError {
    match e {
        CtlError::NotFound(m) => CtlError::NotFound(format!("{r}: {m}")),
        CtlError::Conflict(m) => CtlError::Conflict(format!("{r}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_reference_is_three_checked_names() {
        let r = RouteRef::parse("checkout/prod/2.3.1", "acme").unwrap();
        assert_eq!(
            (r.service.as_str(), r.env.as_str(), r.version.as_str()),
            ("checkout", "prod", "2.3.1")
        );
        assert_eq!(r.to_string(), "checkout/prod/2.3.1");
        assert!(RouteRef::parse("checkout/prod", "acme").is_err());
        assert!(
            RouteRef::parse("Checkout/prod/1", "acme").is_err(),
            "uppercase service"
        );
        assert!(
            RouteRef::parse("checkout/prod/latest", "acme").is_err(),
            "latest is reserved"
        );
    }

    #[test]
    fn a_resolve_reference_may_carry_any_selector() {
        let r = RouteRef::parse_selector("checkout/prod/>=1.2, <2").unwrap();
        assert_eq!(r.version, ">=1.2, <2");
    }
}
