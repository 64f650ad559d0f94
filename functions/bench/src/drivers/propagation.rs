//! Write → visible, through a tm-local running on the real backends (DynamoDB Local,
//! Kafka, Redis): `changes` route changes per run, `parallel` routes changing at once.
//!
//! For each change the clock starts when the PUT's answer arrives (the change is
//! committed; nothing can see it earlier) and two pollers race:
//! - L2: `HGET` of the route's field in Redis every millisecond, until it holds the new
//!   revision: commit → outbox relay → Kafka → the MSK-style trigger → the event-consumer
//!   handler → Redis;
//! - end to end: `GET /v1/resolve/...` (exact version) every 5 ms until its `ETag` is the
//!   new revision: the above, then the resolver's L1 expiring (`TM_L1_TTL_MS`).
//!
//! Between two changes of a route the driver waits a random time below the L1 TTL, so a
//! change meets the route's L1 entry at any age.
//!
//! With `kafka` set, a probe consumer of its own (new group, latest offsets,
//! `fetch.wait.max.ms=5`) also notes when each event can first be read from the topic,
//! which splits the L2 figure into commit → on the broker (outbox relay and publisher) and
//! broker → Redis (tm-local's trigger, playing the MSK event source, and the handler).

use crate::load::Conn;
use crate::record::Record;
use crate::stats::percentile;
use anyhow::{Context, bail};
use http::Method;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The report row.
pub const ROW: &str = "propagation";

/// Settings.
pub struct Args {
    /// tm-local.
    pub addr: SocketAddr,
    /// A token with `routes:write` and `routes:resolve` for the bench tenant.
    pub token: String,
    /// tm-local's `TM_REDIS_PREFIX`.
    pub redis_prefix: String,
    /// tm-local's `TM_L1_TTL_MS`.
    pub l1_ttl: Duration,
    /// Changes per run.
    pub changes: usize,
    /// Routes changing at once.
    pub parallel: usize,
    /// Runs.
    pub runs: u32,
    /// Bootstrap servers and topic of tm-local's events, for the probe consumer.
    pub kafka: Option<(String, String)>,
}

/// When each `(service, revision)` was first read from the topic by the probe.
type Seen = Arc<Mutex<HashMap<(String, u64), Instant>>>;

/// Starts the probe consumer; returns once it has its partitions.
async fn probe(brokers: &str, topic: &str) -> anyhow::Result<Seen> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("tm-bench-probe-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "5")
        .set("session.timeout.ms", "10000")
        .create()
        .context("creating the probe consumer")?;
    consumer.subscribe(&[topic])?;
    let seen: Seen = Arc::default();
    let out = seen.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            let polled = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
            if let Some(tx) = ready.take_if(|_| {
                consumer
                    .assignment()
                    .map(|a| a.count() > 0)
                    .unwrap_or(false)
            }) {
                let _ = tx.send(());
            }
            let Ok(Ok(m)) = polled else { continue };
            let at = Instant::now();
            let Some(v) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
            else {
                continue;
            };
            if let (Some(s), Some(r)) = (v["service"].as_str(), v["revision"].as_u64()) {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry((s.to_owned(), r))
                    .or_insert(at);
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(15), ready_rx)
        .await
        .context("the probe consumer got no partitions within 15 s")??;
    Ok(seen)
}

const TENANT: &str = crate::fixtures::TENANT;
const GIVE_UP: Duration = Duration::from_secs(10);

fn route_path(p: usize) -> String {
    format!("/v1/tenants/{TENANT}/services/prop-{p}/envs/prod/versions/1.0.0")
}

fn resolve_path(p: usize) -> String {
    format!("/v1/resolve/{TENANT}/prop-{p}/prod/1.0.0?key=user-1")
}

fn body(n: usize) -> String {
    format!(
        r#"{{"endpoints":[{{"id":"blue","url":"https://blue.prop.internal","weight":{}}},{{"id":"green","url":"https://green.prop.internal","weight":10}}]}}"#,
        1 + n % 999
    )
}

async fn put(conn: &mut Conn, token: &str, p: usize, n: usize) -> anyhow::Result<u64> {
    let a = conn
        .send(Method::PUT, &route_path(p), token, Some(&body(n)))
        .await?;
    if !a.status.is_success() {
        bail!(
            "PUT answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    a.etag_revision().context("PUT answered without an ETag")
}

async fn cached_revision(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    p: usize,
) -> anyhow::Result<u64> {
    let key = format!("{prefix}{{{TENANT}/prop-{p}/prod}}");
    let json: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("1.0.0")
        .query_async(redis)
        .await?;
    Ok(json
        .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
        .and_then(|v| v.get("rev")?.as_u64())
        .unwrap_or(0))
}

struct Sample {
    write: Duration,
    l2: Duration,
    e2e: Duration,
    /// Commit → first read from the topic by the probe.
    broker: Option<Duration>,
}

/// The changes of one route, one after the other.
async fn route_worker(
    args: &Args,
    p: usize,
    changes: usize,
    seen: Option<&Seen>,
) -> anyhow::Result<Vec<Sample>> {
    let mut writer = Conn::open(args.addr).await?;
    let mut reader = Conn::open(args.addr).await?;
    let client = redis::Client::open(super::redis_url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let mut rng = fastrand::Rng::new();
    let mut out = Vec::with_capacity(changes);
    for n in 0..changes {
        let pause = args.l1_ttl.mul_f64(rng.f64());
        tokio::time::sleep(pause).await;
        let sent = Instant::now();
        let rev = put(&mut writer, &args.token, p, n + rng.usize(..1000)).await?;
        let committed = Instant::now();
        let l2 = async {
            loop {
                if cached_revision(&mut redis, &args.redis_prefix, p).await? >= rev {
                    return anyhow::Ok(committed.elapsed());
                }
                if committed.elapsed() > GIVE_UP {
                    bail!("revision {rev} of prop-{p} never reached Redis");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let e2e = async {
            loop {
                let a = reader.get(&resolve_path(p), &args.token).await?;
                if a.status == 200 && a.etag_revision().unwrap_or(0) >= rev {
                    return anyhow::Ok(committed.elapsed());
                }
                if committed.elapsed() > GIVE_UP {
                    bail!("revision {rev} of prop-{p} never became visible to resolve");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let (l2, e2e) = tokio::try_join!(l2, e2e)?;
        let broker = seen.and_then(|s| {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(format!("prop-{p}"), rev))
                .map(|at| at.saturating_duration_since(committed))
        });
        out.push(Sample {
            write: committed - sent,
            l2,
            e2e,
            broker,
        });
    }
    Ok(out)
}

fn ms(d: &[Duration]) -> Vec<f64> {
    d.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let seen = match &args.kafka {
        Some((brokers, topic)) => Some(probe(brokers, topic).await?),
        None => None,
    };
    // Create the routes and wait until each is visible.
    let mut conn = Conn::open(args.addr).await?;
    for p in 0..args.parallel {
        let rev = put(&mut conn, &args.token, p, 0).await?;
        let started = Instant::now();
        loop {
            let a = conn.get(&resolve_path(p), &args.token).await?;
            if a.status == 200 && a.etag_revision().unwrap_or(0) >= rev {
                break;
            }
            if started.elapsed() > GIVE_UP {
                bail!("route prop-{p} never became visible to resolve");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for run in 0..args.runs {
        let per_route = args.changes.div_ceil(args.parallel);
        let workers: Vec<_> = (0..args.parallel)
            .map(|p| route_worker(args, p, per_route, seen.as_ref()))
            .collect();
        let samples: Vec<Sample> = futures_join_all(workers)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let l2 = ms(&samples.iter().map(|s| s.l2).collect::<Vec<_>>());
        let e2e = ms(&samples.iter().map(|s| s.e2e).collect::<Vec<_>>());
        let write = ms(&samples.iter().map(|s| s.write).collect::<Vec<_>>());
        let broker = ms(&samples.iter().filter_map(|s| s.broker).collect::<Vec<_>>());
        let after_broker = ms(&samples
            .iter()
            .filter_map(|s| s.broker.map(|b| s.l2.saturating_sub(b)))
            .collect::<Vec<_>>());
        let n = samples.len();
        let note = format!(
            "{n} changes over {} routes; L1 TTL {} ms",
            args.parallel,
            args.l1_ttl.as_millis()
        );
        for (series, values, p) in [
            ("L2 p50", &l2, 50.0),
            ("L2 p99", &l2, 99.0),
            ("L2 max", &l2, 100.0),
            ("end-to-end p50", &e2e, 50.0),
            ("end-to-end p99", &e2e, 99.0),
            ("end-to-end max", &e2e, 100.0),
            ("write (PUT) p50", &write, 50.0),
            ("commit → on the broker p50", &broker, 50.0),
            ("commit → on the broker p99", &broker, 99.0),
            ("broker → Redis p50", &after_broker, 50.0),
            ("broker → Redis p99", &after_broker, 99.0),
        ] {
            if values.is_empty() {
                continue;
            }
            Record::new(
                ROW,
                series,
                run,
                percentile(values, p).unwrap_or(f64::NAN),
                "ms",
            )
            .note(note.clone())
            .emit();
        }
        Record::new(ROW, "L1 TTL", run, args.l1_ttl.as_secs_f64() * 1e3, "ms").emit();
    }
    Ok(())
}

/// Runs the futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F, T>(futs: Vec<F>) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    let mut done = vec![false; futs.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(v)) => {
                    out[i] = Some(v);
                    done[i] = true;
                }
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(out.into_iter().flatten().collect())
}
