//! tm-local's `GET /metrics`: Prometheus text, no token, and figures that move with the
//! traffic (resolves by layer, negative answers, store reads, the relay's events).

use http::{Method, StatusCode};
use tm_tests::{Http, TmLocal, admin, body, route_path};

/// The sum of every sample of `name` whose labels contain `labels` (all when empty).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Every `*_bucket` series the Grafana dashboard's Prometheus queries name.
fn dashboard_bucket_series() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard");
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tm_") && w.ends_with("_bucket"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    assert!(
        !names.is_empty(),
        "the dashboard reads no histogram buckets?"
    );
    names
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_a_token_and_move_with_resolves() {
    let (srv, _dir) = TmLocal::start(&[("TM_L1_TTL_MS", "60000")]);
    let http = Http::new(&srv.base);
    // GIVEN a fresh server: every figure is listed, at zero
    let first = http.send(Method::GET, "/metrics", None, &[], None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(
        first.header("content-type").starts_with("text/plain"),
        "{:?}",
        first.headers
    );
    assert!(
        first
            .text
            .contains("# TYPE tm_resolve_requests_total counter"),
        "{}",
        first.text
    );
    assert!(
        first
            .text
            .contains("# TYPE tm_resolve_latency_seconds histogram"),
        "{}",
        first.text
    );
    assert_eq!(sample(&first.text, "tm_resolve_requests_total", ""), 0.0);
    assert!(
        first
            .text
            .contains("# TYPE tm_write_requests_total counter"),
        "{}",
        first.text
    );

    // WHEN a route is created and resolved four times (L2 or store, then L1 hits) and an
    // unknown route twice
    let tok = admin("metrics");
    let put = http
        .put(
            &route_path("metrics", "checkout", "prod", "1.0.0"),
            &tok,
            &body(&[("a", 1)]),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    for _ in 0..4 {
        let r = http
            .get("/v1/resolve/metrics/checkout/prod/1.0.0", &tok)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    for _ in 0..2 {
        let r = http
            .get("/v1/resolve/metrics/nothing/prod/1.0.0", &tok)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let after = http.send(Method::GET, "/metrics", None, &[], None).await;
    let t = &after.text;
    // THEN the figures say so
    assert_eq!(sample(t, "tm_resolve_requests_total", ""), 4.0, "{t}");
    assert_eq!(
        sample(t, "tm_resolve_requests_total", "layer=\"hit-l1\""),
        3.0,
        "{t}"
    );
    assert_eq!(
        sample(t, "tm_resolve_latency_seconds_count", ""),
        4.0,
        "{t}"
    );
    assert!(sample(t, "tm_resolve_latency_seconds_sum", "") > 0.0, "{t}");
    assert_eq!(sample(t, "tm_resolve_negative_total", ""), 2.0, "{t}");
    // (the management API: one PUT answered 201)
    assert_eq!(
        sample(t, "tm_write_requests_total", "status=\"2xx\""),
        1.0,
        "{t}"
    );
    assert_eq!(sample(t, "tm_write_requests_total", ""), 1.0, "{t}");
    assert_eq!(sample(t, "tm_write_latency_seconds_count", ""), 1.0, "{t}");
    // AND every histogram the dashboard reads by its buckets is exported with buckets
    // (a series the server never writes draws an empty panel, and nothing says why)
    for bucket in dashboard_bucket_series() {
        assert!(
            t.lines().any(|l| l.starts_with(&format!("{bucket}{{"))),
            "the dashboard queries {bucket}, which /metrics does not export:\n{t}"
        );
    }
    assert_eq!(sample(t, "tm_publish_deferred_total", ""), 0.0, "{t}");
    assert_eq!(
        sample(t, "tm_resolve_negative_total", "layer=\"hit-l1\""),
        1.0,
        "{t}"
    );
    // (the unknown route was in no cache, so its first resolve read the store; the
    // created one may already be in the shared cache, put there by its event)
    assert!(
        sample(t, "tm_store_reads_total", "op=\"get\"") >= 1.0,
        "{t}"
    );
    // AND the write's event goes through the relay and the consumer (in the background:
    // the relay marks it published after the consumer took it)
    let relayed = tm_tests::eventually(std::time::Duration::from_secs(5), || async {
        let t = http
            .send(Method::GET, "/metrics", None, &[], None)
            .await
            .text;
        sample(&t, "tm_outbox_published_total", "") >= 1.0
            && sample(&t, "tm_consumer_batch_records_count", "") >= 1.0
            && t.contains("tm_consumer_lag_seconds_bucket")
    })
    .await;
    assert!(
        relayed.is_some(),
        "{}",
        http.send(Method::GET, "/metrics", None, &[], None)
            .await
            .text
    );

    // AND only GET is allowed
    let post = http.send(Method::POST, "/metrics", None, &[], None).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), "GET");
}

#[test]
fn the_grafana_dashboard_shows_every_figure_from_cloudwatch_and_from_prometheus() {
    use tm_core::metrics as m;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/grafana-dashboard.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let targets: Vec<&serde_json::Value> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .collect();
    let cloudwatch: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["metricName"].as_str())
        .collect();
    let prometheus: String = targets
        .iter()
        .filter_map(|t| t["expr"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for name in [
        m::RESOLVE_REQUESTS,
        m::RESOLVE_NEGATIVE,
        m::RESOLVE_LATENCY,
        m::STORE_READS,
        m::CONSUMER_BATCH,
        m::CONSUMER_LAG,
        m::DEAD_LETTERS,
        m::OUTBOX_BACKLOG,
        m::OUTBOX_PUBLISHED,
        m::WRITE_REQUESTS,
        m::WRITE_LATENCY,
        m::PUBLISH_DEFERRED,
        m::HEALTH_PROBES,
        m::HEALTH_TRANSITIONS,
        m::LIMITER_DEGRADED,
        m::OUTBOX_PARKED,
    ] {
        assert!(cloudwatch.contains(&name), "no CloudWatch panel for {name}");
        assert!(prometheus.contains(name), "no Prometheus panel for {name}");
    }
    for t in &targets {
        if t.get("metricName").is_some() {
            assert_eq!(t["namespace"], m::NAMESPACE);
        }
    }
}
