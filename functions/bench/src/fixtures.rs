//! What the drivers feed in: routes, their events, MSK batches and API Gateway v2 resolve
//! requests, built through the same public types the functions use.

use anyhow::Context;
use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tm_core::domain::event::{ChangeType, RouteEvent, SCHEMA};
use tm_core::domain::names::RouteKey;
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::domain::timefmt::Timestamp;

/// The tenant every driver writes under.
pub const TENANT: &str = "bench";

/// A PUT body with `n` endpoints: the first three look like a canary route (blue 90,
/// green 10, dr as failover), the rest are extra endpoints at priority 0.
pub fn spec_json(n: usize, salt: u64) -> String {
    let mut eps = vec![
        format!(
            r#"{{"id":"blue","url":"https://blue-{salt}.checkout.internal:8443","weight":90}}"#
        ),
        format!(
            r#"{{"id":"green","url":"https://green-{salt}.checkout.internal:8443","weight":10}}"#
        ),
        r#"{"id":"dr","url":"https://dr.checkout.internal","priority":1}"#.to_owned(),
    ];
    for i in 3..n {
        eps.push(format!(
            r#"{{"id":"e{i}","url":"https://e{i}.checkout.internal","weight":{}}}"#,
            1 + i % 50
        ));
    }
    eps.truncate(n.max(1));
    format!(r#"{{"endpoints":[{}]}}"#, eps.join(","))
}

/// The route key of the `i`-th bench service (one version, `1.0.0`, unless given).
pub fn key(i: usize, version: &str) -> RouteKey {
    RouteKey::parse(TENANT, &format!("svc-{i}"), "prod", version).expect("valid bench names")
}

/// A route as the write function would store it.
pub fn route(key: &RouteKey, revision: u64, endpoints: usize) -> Route {
    let spec = RouteSpec::from_json(spec_json(endpoints, revision).as_bytes())
        .expect("the bench spec is valid");
    Route::from_spec(key, spec, revision, Timestamp::now(), "bench")
}

/// The event of a change that wrote `route` at `revision`.
pub fn event(route: Route, revision: u64) -> RouteEvent {
    RouteEvent {
        schema: SCHEMA,
        event_id: format!("bench-{}-{revision}-{}", route.service, fastrand::u64(..)),
        kind: if revision == 1 {
            ChangeType::Created
        } else {
            ChangeType::Updated
        },
        tenant: route.tenant.clone(),
        service: route.service.clone(),
        env: route.env.clone(),
        version: route.version.clone(),
        revision,
        occurred_at: route.updated_at,
        actor: "bench".into(),
        correlation_id: format!("bench-{revision}"),
        route: Some(route),
        health: None,
    }
}

/// An MSK batch of `events`, spread over `partitions` partitions by event key (as the
/// publisher's partitioner keeps one key on one partition), offsets from `first_offset`.
pub fn msk_batch(
    events: &[RouteEvent],
    topic: &str,
    partitions: usize,
    first_offset: i64,
) -> anyhow::Result<KafkaEvent> {
    let partitions = partitions.max(1);
    let mut by_partition: Vec<Vec<Value>> = vec![Vec::new(); partitions];
    for (n, e) in events.iter().enumerate() {
        let key = e.key().svc.event_key();
        let p = (tm_core::domain::pick::fnv1a(0xcbf2_9ce4_8422_2325, key.as_bytes())
            % partitions as u64) as usize;
        let value = serde_json::to_vec(e)?;
        by_partition[p].push(json!({
            "topic": topic,
            "partition": p,
            "offset": first_offset + n as i64,
            "timestamp": 1_795_867_200_000i64,
            "timestampType": "CREATE_TIME",
            "key": B64.encode(key.as_bytes()),
            "value": B64.encode(value),
            "headers": [],
        }));
    }
    let records: serde_json::Map<String, Value> = by_partition
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(p, r)| (format!("{topic}-{p}"), Value::Array(r)))
        .collect();
    let batch = json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/bench/abcd-1234",
        "bootstrapServers": "127.0.0.1:9092",
        "records": records,
    });
    serde_json::from_value(batch).context("building the MSK batch")
}

/// An API Gateway v2 event as the JWT authorizer hands it over: `method` on `path`
/// (matched by `route_key`), a caller of `tenant` holding `scope`.
fn api_gateway_event(
    method: &str,
    route_key: &str,
    path: &str,
    tenant: &str,
    scope: &str,
) -> Value {
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "bench.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "authorizer": {"jwt": {"claims": {
                "sub": "bench", "scope": scope, "tm_tenants": tenant,
                "exp": "4102444800"
            }, "scopes": null}},
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "tm-bench"},
            "requestId": "bench",
            "routeKey": route_key,
            "stage": "$default",
            "time": "28/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_795_867_200_000i64
        },
        "isBase64Encoded": false
    })
}

/// The API Gateway v2 event of `GET /v1/resolve/{tenant}/{service}/{env}/{selector}`
/// (with `?key=` when given), as the JWT authorizer hands it over.
pub fn resolve_event(
    tenant: &str,
    service: &str,
    env: &str,
    selector: &str,
    key: Option<&str>,
) -> Value {
    let path = format!("/v1/resolve/{tenant}/{service}/{env}/{selector}");
    let route_key = "GET /v1/resolve/{tenant}/{service}/{env}/{selector}";
    let mut event = api_gateway_event("GET", route_key, &path, tenant, "routes:resolve");
    event["pathParameters"] =
        json!({"tenant": tenant, "service": service, "env": env, "selector": selector});
    if let Some(k) = key {
        event["rawQueryString"] = json!(format!("key={k}"));
        event["queryStringParameters"] = json!({ "key": k });
    }
    event
}

/// The API Gateway v2 event of `PUT /v1/tenants/{tenant}/services/{service}/envs/{env}/versions/{version}`
/// with a JSON `body`, as the JWT authorizer hands it over (a writer of `tenant`).
pub fn put_event(tenant: &str, service: &str, env: &str, version: &str, body: &str) -> Value {
    let path = format!("/v1/tenants/{tenant}/services/{service}/envs/{env}/versions/{version}");
    let route_key = "PUT /v1/tenants/{tenant}/services/{service}/envs/{env}/versions/{version}";
    let mut event = api_gateway_event("PUT", route_key, &path, tenant, "routes:write routes:read");
    event["headers"]["content-type"] = json!("application/json");
    event["pathParameters"] =
        json!({"tenant": tenant, "service": service, "env": env, "version": version});
    event["body"] = json!(body);
    event
}

/// [`resolve_event`] parsed the way `lambda_http` parses what Lambda delivers.
pub fn resolve_request(
    service: &str,
    selector: &str,
    key: Option<&str>,
) -> anyhow::Result<lambda_http::Request> {
    let event = resolve_event(TENANT, service, "prod", selector, key);
    lambda_http::request::from_str(&event.to_string()).context("parsing the API Gateway event")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_for_every_size() {
        for n in [1, 3, 64] {
            let spec = RouteSpec::from_json(spec_json(n, 1).as_bytes()).unwrap();
            assert_eq!(spec.endpoints.len(), n);
        }
    }

    #[test]
    fn a_batch_keeps_every_event_and_one_key_on_one_partition() {
        let events: Vec<_> = (0..100)
            .map(|i| event(route(&key(i % 7, "1.0.0"), 1 + i as u64, 3), 1 + i as u64))
            .collect();
        let batch = msk_batch(&events, "route-events", 3, 0).unwrap();
        let total: usize = batch.records.values().map(Vec::len).sum();
        assert_eq!(total, 100);
        for records in batch.records.values() {
            let p = records[0].partition;
            assert!(records.iter().all(|r| r.partition == p));
        }
    }

    #[test]
    fn the_resolve_event_parses_as_api_gateway_v2() {
        let req = resolve_request("svc-1", "latest", Some("user-1")).unwrap();
        assert_eq!(req.uri().path(), "/v1/resolve/bench/svc-1/prod/latest");
    }
}
