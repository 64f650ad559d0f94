//! Request ↔ `WriteService`: names and bodies are parsed here, at the edge, into the
//! core's validated types; every error becomes the contract's response.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use tm_core::domain::event::ChangeType;
use tm_core::domain::names::{EnvName, RouteKey, ServiceName, TenantName};
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::domain::timefmt::Timestamp;
use tm_core::services::write::{Actor, AuditFilter, Preconditions, WriteService};
use tm_core::{Error, Result};
use tm_http::api::{self, Op, RouteParams};
use tm_http::apigw::{self, Admitted};
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
fn precondition_header<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Error::invalid(name, "must be visible ASCII")),
    }
}

fn preconditions(req: &Request) -> Result<Preconditions> {
    Ok(Preconditions {
        if_match: api::parse_if_match(precondition_header(req, "If-Match")?)?,
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
    req: &Request,
    field: &str,
    parse: fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    apigw::query(req, field)
        .map(|v| parse(&v).map_err(|e| Error::invalid(field, e)))
        .transpose()
}

fn time_param(req: &Request, field: &str) -> Result<Option<Timestamp>> {
    apigw::query(req, field)
        .map(|v| Timestamp::parse(&v).map_err(|e| Error::invalid(field, e)))
        .transpose()
}

impl WriteHandler {
    /// A handler over the service.
    pub fn new(service: WriteService) -> Self {
        Self { service }
    }

    /// Answers one request; never fails (errors are responses).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!("write", correlation_id = tracing::field::Empty);
        let resp = apigw::serve(&req, |adm| {
            span.record("correlation_id", adm.correlation_id.as_str());
            async {
                let cid = adm.correlation_id.clone();
                (self.dispatch(&req, adm).await, cid)
            }
            .instrument(span.clone())
        })
        .await;
        tm_core::metrics::figures().wrote(resp.status().as_u16(), started.elapsed());
        resp
    }

    async fn dispatch(&self, req: &Request, adm: Admitted) -> Result<Response<String>> {
        let cid = adm.correlation_id.as_str();
        let actor = || Actor {
            sub: adm
                .principal
                .as_ref()
                .map(|p| p.sub.clone())
                .unwrap_or_default(),
            correlation_id: cid.to_owned(),
        };
        let limit = || api::parse_limit(apigw::query(req, "limit").as_deref());
        let cursor = apigw::query(req, "cursor");
        match &adm.op {
            Op::PutRoute(p) => {
                let key = key_of(p)?;
                let mut pre = preconditions(req)?;
                pre.if_none_match_any =
                    api::parse_if_none_match(precondition_header(req, "If-None-Match")?)?;
                let spec = RouteSpec::from_json(apigw::body_bytes(req))?;
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
                    .delete(&key, preconditions(req)?, &actor())
                    .await?;
                Ok(api::base_response(
                    StatusCode::NO_CONTENT,
                    String::new(),
                    cid,
                ))
            }
            Op::Activate(p) | Op::Deactivate(p) => {
                let key = key_of(p)?;
                let active = matches!(adm.op, Op::Activate(_));
                let route = self
                    .service
                    .set_active(&key, active, preconditions(req)?, &actor())
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
                let service = name_param(req, "service", ServiceName::parse)?;
                let env = name_param(req, "env", EnvName::parse)?;
                let page = self
                    .service
                    .list(&tenant, service, env, limit()?, cursor.as_deref())
                    .await?;
                Ok(api::json_response(StatusCode::OK, &page, cid))
            }
            Op::Audit(t) => {
                let tenant = tenant_of(t)?;
                let kind = apigw::query(req, "type")
                    .map(|v| {
                        ChangeType::parse(&v).ok_or_else(|| {
                            Error::invalid("type", "must be one of route.created, route.updated, route.activated, route.deactivated, route.deleted")
                        })
                    })
                    .transpose()?;
                let filter = AuditFilter {
                    kind,
                    since: time_param(req, "since")?,
                    until: time_param(req, "until")?,
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

    fn request(name: &'static str, value: &[u8]) -> Request {
        let mut req = Request::new(Body::Empty);
        req.headers_mut()
            .insert(name, HeaderValue::from_bytes(value).unwrap());
        req
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
        let none = Request::new(Body::Empty);
        assert_eq!(preconditions(&none).unwrap().if_match, None);
    }
}
