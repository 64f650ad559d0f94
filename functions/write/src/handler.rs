//! An admitted [`Call`] ↔ `WriteService`: names and bodies are parsed here, at the edge,
//! into the core's validated types; every error becomes the contract's response.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use lambda_http::{Body, Request, Response};
use tm_core::domain::event::ChangeType;
use tm_core::domain::names::{EnvName, RouteKey, ServiceName, TenantName};
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::domain::timefmt::Timestamp;
use tm_core::services::write::{Actor, AuditFilter, Preconditions, WriteService};
use tm_core::{Error, Result};
use tm_http::api::{self, Op, RouteParams};
use tm_http::call::Call;
use tracing::Instrument;

/// The write function's handler.
pub struct WriteHandler {
    service: WriteService,
}

fn key_of(p: &RouteParams) -> Result<RouteKey> {
    RouteKey::parse(&p.tenant, &p.service, &p.env, &p.version)
}

fn tenant_of(t: &str) -> Result<TenantName> {
    TenantName::parse(t).map_err(|e| Error::invalid("tenant", e))
}

/// A precondition header as text. One that is present but not visible ASCII is 400: it
/// must never count as absent, which would make the write unconditional.
fn precondition_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Error::invalid(name, "must be visible ASCII")),
    }
}

fn preconditions(headers: &HeaderMap) -> Result<Preconditions> {
    Ok(Preconditions {
        if_match: api::parse_if_match(precondition_header(headers, "If-Match")?)?,
        if_none_match_any: false,
    })
}

fn route_response(status: StatusCode, route: &Route, cid: &str) -> Response<String> {
    let mut resp = api::json_response(status, route, cid);
    api::set_etag(&mut resp, route.revision);
    resp
}

/// A query parameter that must be a valid name when present.
fn name_param<T>(
    call: &Call,
    field: &str,
    parse: fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    call.query(field)
        .map(|v| parse(&v).map_err(|e| Error::invalid(field, e)))
        .transpose()
}

fn time_param(call: &Call, field: &str) -> Result<Option<Timestamp>> {
    call.query(field)
        .map(|v| Timestamp::parse(&v).map_err(|e| Error::invalid(field, e)))
        .transpose()
}

impl WriteHandler {
    /// A handler over the service.
    pub fn new(service: WriteService) -> Self {
        Self { service }
    }

    /// Answers one admitted call; never fails (errors are responses).
    pub async fn serve(&self, call: Call) -> http::Response<Bytes> {
        let span = tracing::info_span!("write", correlation_id = %call.correlation_id);
        let answered = self.dispatch(&call).instrument(span).await;
        answered
            .unwrap_or_else(|e| api::error_response(&e, &call.correlation_id))
            .map(Bytes::from)
    }

    /// The Lambda transport without a throttle: an API Gateway v2 request in, the Lambda
    /// response out (handler tests feed it real event JSON).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        tm_http::lambda::invoke(req, None, |call| self.serve(call)).await
    }

    async fn dispatch(&self, call: &Call) -> Result<Response<String>> {
        let cid = call.correlation_id.as_str();
        let actor = || Actor {
            sub: call
                .principal
                .as_ref()
                .map(|p| p.sub.clone())
                .unwrap_or_default(),
            correlation_id: cid.to_owned(),
        };
        let limit = || api::parse_limit(call.query("limit").as_deref());
        let cursor = call.query("cursor");
        match &call.op {
            Op::PutRoute(p) => {
                let key = key_of(p)?;
                let mut pre = preconditions(&call.headers)?;
                pre.if_none_match_any =
                    api::parse_if_none_match(precondition_header(&call.headers, "If-None-Match")?)?;
                let spec = RouteSpec::from_json(&call.body)?;
                let (route, created) = self.service.put(&key, spec, pre, &actor()).await?;
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(route_response(status, &route, cid))
            }
            Op::GetRoute(p) => {
                let route = self.service.get(&key_of(p)?).await?;
                Ok(route_response(StatusCode::OK, &route, cid))
            }
            Op::DeleteRoute(p) => {
                let key = key_of(p)?;
                self.service
                    .delete(&key, preconditions(&call.headers)?, &actor())
                    .await?;
                Ok(api::base_response(
                    StatusCode::NO_CONTENT,
                    String::new(),
                    cid,
                ))
            }
            Op::Activate(p) | Op::Deactivate(p) => {
                let key = key_of(p)?;
                let active = matches!(call.op, Op::Activate(_));
                let route = self
                    .service
                    .set_active(&key, active, preconditions(&call.headers)?, &actor())
                    .await?;
                Ok(route_response(StatusCode::OK, &route, cid))
            }
            Op::History(p) => {
                let key = key_of(p)?;
                let page = self
                    .service
                    .history(&key, limit()?, cursor.as_deref())
                    .await?;
                Ok(api::json_response(StatusCode::OK, &page, cid))
            }
            Op::Status(p) => {
                let status = self.service.status(&key_of(p)?).await?;
                Ok(api::json_response(StatusCode::OK, &status, cid))
            }
            Op::ListRoutes(t) => {
                let tenant = tenant_of(t)?;
                let service = name_param(call, "service", ServiceName::parse)?;
                let env = name_param(call, "env", EnvName::parse)?;
                let page = self
                    .service
                    .list(&tenant, service, env, limit()?, cursor.as_deref())
                    .await?;
                Ok(api::json_response(StatusCode::OK, &page, cid))
            }
            Op::Audit(t) => {
                let tenant = tenant_of(t)?;
                let kind = call.query("type")
                    .map(|v| {
                        ChangeType::parse(&v).ok_or_else(|| {
                            Error::invalid("type", "must be one of route.created, route.updated, route.activated, route.deactivated, route.deleted")
                        })
                    })
                    .transpose()?;
                let filter = AuditFilter {
                    kind,
                    since: time_param(call, "since")?,
                    until: time_param(call, "until")?,
                };
                let page = self
                    .service
                    .audit(&tenant, filter, limit()?, cursor.as_deref())
                    .await?;
                Ok(api::json_response(StatusCode::OK, &page, cid))
            }
            // Served by the resolve function; API Gateway never routes them here.
            Op::Resolve(_) | Op::Healthz | Op::Readyz => Err(Error::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn request(name: &'static str, value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_bytes(value).unwrap());
        h
    }

    #[test]
    fn a_precondition_that_is_not_text_is_400_never_ignored() {
        let bad = request("if-match", b"\"1\"\xe9");
        assert!(matches!(
            preconditions(&bad),
            Err(Error::InvalidRequest(m)) if m.starts_with("If-Match")
        ));
        let bad = request("if-none-match", b"*\xff");
        assert!(matches!(
            precondition_header(&bad, "If-None-Match"),
            Err(Error::InvalidRequest(m)) if m.starts_with("If-None-Match")
        ));
        let good = request("if-match", b"\"7\"");
        assert_eq!(
            preconditions(&good).unwrap().if_match,
            Some(api::IfMatch::Revision(7))
        );
        let none = HeaderMap::new();
        assert_eq!(preconditions(&none).unwrap().if_match, None);
    }
}
