//! The soak driver behind `scripts/soak.sh` (not in CI): a fixed request rate against a
//! running tm-local, 99 % resolves and 1 % PUTs over `SOAK_ROUTES` routes it seeds first,
//! sampled every `SOAK_SAMPLE` seconds: requests, errors, p50/p99 latency of the window (resolves and PUTs apart),
//! tm-local's resident set (`/proc/PID/status` VmRSS) and the load average.
//!
//! Environment: `SOAK_BASE` (`http://127.0.0.1:PORT`, loopback only), `SOAK_PID` (tm-local's
//! pid), `SOAK_RATE` (requests/s, default 2000), `SOAK_DURATION` (s, default 600),
//! `SOAK_ROUTES` (default 1000), `SOAK_SAMPLE` (s, default 10), `SOAK_WRITE_PERMILLE`
//! (default 10 = 1 %), `SOAK_INFLIGHT` (default 512: a request due while that many are in
//! flight is not sent, and counted as shed, apart from the errors), `SOAK_JSON` (output file). The
//! server must accept tokens signed with [`tm_tests::SECRET`].

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const TENANT: &str = "soak";

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one window collected.
#[derive(Default)]
struct Window {
    /// Resolves.
    latencies_us: Vec<u32>,
    /// PUTs.
    put_latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

struct Shared {
    window: Mutex<Window>,
    inflight: AtomicU64,
}

async fn send(
    client: &HttpClient,
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<StatusCode, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

fn route(i: usize) -> String {
    tm_tests::route_path(TENANT, &format!("svc-{i}"), "prod", "1.0.0")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let base = std::env::var("SOAK_BASE").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    assert!(
        base.starts_with("http://127.0.0.1:") || base.starts_with("http://localhost:"),
        "SOAK_BASE must be loopback: {base}"
    );
    let pid: u32 = var("SOAK_PID", 0);
    let rate: u64 = var("SOAK_RATE", 2000);
    let duration: u64 = var("SOAK_DURATION", 600);
    let routes: usize = var("SOAK_ROUTES", 1000);
    let sample: u64 = var("SOAK_SAMPLE", 10).max(1);
    let write_permille: u64 = var("SOAK_WRITE_PERMILLE", 10);
    let max_inflight: u64 = var("SOAK_INFLIGHT", 512);
    let out = std::env::var("SOAK_JSON").unwrap_or_else(|_| "soak.json".into());
    let token = tm_tests::admin(TENANT);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::try_from(max_inflight).unwrap_or(512))
        .build_http();

    // Seed.
    let seeded = Instant::now();
    let mut set: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
    for i in 0..routes {
        if set.len() >= 16
            && let Some(r) = set.join_next().await
        {
            r.expect("seed task").expect("seed");
        }
        let (c, b, t) = (client.clone(), base.clone(), token.clone());
        set.spawn(async move {
            let body = tm_tests::body(&[("blue", 90), ("green", 10)]);
            match send(&c, &b, Method::PUT, &route(i), &t, Some(body)).await {
                Ok(s) if s.is_success() => Ok(()),
                other => Err(format!("seeding route {i}: {other:?}")),
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("seed task").expect("seed");
    }
    eprintln!(
        "[soak] seeded {routes} routes in {:.1} s; driving {rate} req/s for {duration} s ({write_permille}‰ PUTs)",
        seeded.elapsed().as_secs_f64()
    );

    // Warm-up: one resolve of every route, so the soak measures the steady state rather
    // than the first miss of each route on DynamoDB Local.
    let warm = Instant::now();
    for i in 0..routes {
        if set.len() >= 16
            && let Some(r) = set.join_next().await
        {
            r.expect("warm-up task").expect("warm-up");
        }
        let (c, b, t) = (client.clone(), base.clone(), token.clone());
        set.spawn(async move {
            let path = format!("/v1/resolve/{TENANT}/svc-{i}/prod/latest");
            match send(&c, &b, Method::GET, &path, &t, None).await {
                Ok(s) if s.is_success() => Ok(()),
                other => Err(format!("warming route {i}: {other:?}")),
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("warm-up task").expect("warm-up");
    }
    eprintln!(
        "[soak] warmed {routes} routes in {:.1} s",
        warm.elapsed().as_secs_f64()
    );

    let shared = Arc::new(Shared {
        window: Mutex::new(Window::default()),
        inflight: AtomicU64::new(0),
    });
    let start = Instant::now();
    let end = start + Duration::from_secs(duration);
    let mut next_sample = start + Duration::from_secs(sample);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent: u64 = 0;
    let mut sent_at_sample: u64 = 0;
    let mut shed_total: u64 = 0;
    let mut shed: u64 = 0;
    let mut samples: Vec<Value> = Vec::new();
    let mut all_errors: BTreeMap<String, u64> = BTreeMap::new();
    let (mut total_req, mut total_writes) = (0u64, 0u64);
    let mut n: u64 = 0;
    println!(
        "{:>6} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "t_s", "req/s", "requests", "errors", "p50_ms", "p99_ms", "put_p99", "rss_mib", "load1"
    );
    loop {
        tick.tick().await;
        let now = Instant::now().min(end);
        // Open loop: send whatever the schedule says is due by now.
        let due = (now - start).as_secs_f64() * rate as f64;
        while (sent as f64) < due {
            sent += 1;
            n += 1;
            if shared.inflight.load(Ordering::Relaxed) >= max_inflight {
                shed += 1;
                continue;
            }
            shared.inflight.fetch_add(1, Ordering::Relaxed);
            let (c, b, t, sh) = (client.clone(), base.clone(), token.clone(), shared.clone());
            let i = fastrand_usize(n, routes);
            let write = n % 1000 < write_permille;
            tokio::spawn(async move {
                let began = Instant::now();
                let r = if write {
                    let w = u32::try_from(n % 100).unwrap_or(50);
                    let body = tm_tests::body(&[("blue", 100 - w), ("green", w.max(1))]);
                    send(&c, &b, Method::PUT, &route(i), &t, Some(body)).await
                } else {
                    let path = format!("/v1/resolve/{TENANT}/svc-{i}/prod/latest?key=u{n}");
                    send(&c, &b, Method::GET, &path, &t, None).await
                };
                let us = u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX);
                let mut w = sh.window.lock().expect("window");
                if write {
                    w.put_latencies_us.push(us);
                } else {
                    w.latencies_us.push(us);
                }
                match r {
                    Ok(s) if s.is_success() => {}
                    Ok(s) => {
                        *w.errors
                            .entry(format!(
                                "{} {}",
                                if write { "PUT" } else { "GET" },
                                s.as_u16()
                            ))
                            .or_default() += 1
                    }
                    Err(e) => {
                        let kind = format!("{} {e}", if write { "PUT" } else { "GET" });
                        *w.errors.entry(kind).or_default() += 1;
                    }
                }
                drop(w);
                sh.inflight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        if now >= next_sample {
            let w = std::mem::take(&mut *shared.window.lock().expect("window"));
            let mut lat = w.latencies_us;
            lat.sort_unstable();
            let mut put = w.put_latencies_us;
            put.sort_unstable();
            let errors: u64 = w.errors.values().sum::<u64>();
            for (k, v) in &w.errors {
                *all_errors.entry(k.clone()).or_default() += v;
            }
            let t = (now - start).as_secs_f64();
            let achieved = (sent - sent_at_sample) as f64 / sample as f64;
            let rss = rss_kib(pid);
            let row = json!({
                "t_s": t.round(),
                "rate": achieved.round(),
                "completed": lat.len() + put.len(),
                "writes": put.len(),
                "errors": errors,
                "errors_by_kind": w.errors,
                "shed": shed,
                "p50_ms": pct(&lat, 0.50),
                "p99_ms": pct(&lat, 0.99),
                "max_ms": pct(&lat, 1.0),
                "put_p50_ms": pct(&put, 0.50),
                "put_p99_ms": pct(&put, 0.99),
                "put_max_ms": pct(&put, 1.0),
                "rss_kib": rss,
                "load1": load1(),
            });
            println!(
                "{:>6.0} {:>8.0} {:>8} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>6.2}",
                t,
                achieved,
                lat.len() + put.len(),
                errors,
                pct(&lat, 0.50),
                pct(&lat, 0.99),
                pct(&put, 0.99),
                rss as f64 / 1024.0,
                load1()
            );
            total_req += (lat.len() + put.len()) as u64;
            total_writes += put.len() as u64;
            shed_total += shed;
            shed = 0;
            sent_at_sample = sent;
            samples.push(row);
            next_sample += Duration::from_secs(sample);
        }
        if now >= end {
            break;
        }
    }
    // Let the last requests finish (bounded).
    let drain = Instant::now();
    while shared.inflight.load(Ordering::Relaxed) > 0 && drain.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let w = std::mem::take(&mut *shared.window.lock().expect("window"));
    total_req += (w.latencies_us.len() + w.put_latencies_us.len()) as u64;
    total_writes += w.put_latencies_us.len() as u64;
    for (k, v) in &w.errors {
        *all_errors.entry(k.clone()).or_default() += v;
    }
    let errors: u64 = all_errors.values().sum();
    let summary = json!({
        "base": base,
        "rate_target": rate,
        "duration_s": duration,
        "routes": routes,
        "write_permille": write_permille,
        "sample_s": sample,
        "max_inflight": max_inflight,
        "requests": total_req,
        "writes": total_writes,
        "shed": shed_total,
        "errors": errors,
        "errors_by_kind": all_errors,
        "samples": samples,
    });
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&summary).expect("json") + "\n",
    )
    .expect("write SOAK_JSON");
    if let Ok(md) = std::env::var("SOAK_MD") {
        std::fs::write(&md, markdown(&summary)).expect("write SOAK_MD");
    }
    eprintln!("[soak] {total_req} requests ({total_writes} PUTs), {errors} errors; wrote {out}");
    if errors > 0 {
        std::process::exit(1);
    }
}

/// The soak table as Markdown: one row per sample, then the totals.
fn markdown(s: &Value) -> String {
    let mut md = String::from(
        "| t (s) | rate (req/s) | completed | PUTs | errors | resolve p50 (ms) | resolve p99 (ms) | resolve max (ms) | PUT p50 (ms) | PUT p99 (ms) | PUT max (ms) | tm-local RSS (MiB) | load (1 min) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let empty = Vec::new();
    let rows = s["samples"].as_array().unwrap_or(&empty);
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |\n",
            r["t_s"],
            r["rate"],
            r["completed"],
            r["writes"],
            r["errors"],
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
            r["put_p50_ms"].as_f64().unwrap_or(0.0),
            r["put_p99_ms"].as_f64().unwrap_or(0.0),
            r["put_max_ms"].as_f64().unwrap_or(0.0),
            r["rss_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            r["load1"].as_f64().unwrap_or(0.0),
        ));
    }
    let p99s: Vec<f64> = rows.iter().filter_map(|r| r["p99_ms"].as_f64()).collect();
    let put_p99s: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["put_p99_ms"].as_f64())
        .collect();
    let rss: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["rss_kib"].as_f64())
        .map(|k| k / 1024.0)
        .collect();
    let range = |v: &[f64]| -> (f64, f64) {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    let (p_lo, p_hi) = range(&p99s);
    let (w_lo, w_hi) = range(&put_p99s);
    let (r_lo, r_hi) = range(&rss);
    let (r_first, r_last) = (
        rss.first().copied().unwrap_or(0.0),
        rss.last().copied().unwrap_or(0.0),
    );
    md.push_str(&format!(
        "\nTotals: {} requests ({} PUTs), **{} errors** {}; {} requests not sent (shed by the driver's in-flight limit). \
         Per-window p99 of resolves between {:.2} and {:.2} ms, of PUTs between {:.1} and {:.1} ms. RSS {:.1} MiB at the first sample, {:.1} MiB at the last \
         (range {:.1}-{:.1} MiB).\n",
        s["requests"],
        s["writes"],
        s["errors"],
        if s["errors_by_kind"].as_object().is_some_and(|m| !m.is_empty()) {
            format!("({})", s["errors_by_kind"])
        } else {
            String::new()
        },
        s["shed"],
        p_lo,
        p_hi,
        w_lo,
        w_hi,
        r_first,
        r_last,
        r_lo,
        r_hi,
    ));
    md
}

/// A cheap, well-spread route index for request `n` (the SplitMix64 sequence).
fn fastrand_usize(n: u64, bound: usize) -> usize {
    let z = tm_core::domain::pick::splitmix64(n.wrapping_add(0x9e37_79b9_7f4a_7c15));
    usize::try_from(z % bound.max(1) as u64).unwrap_or(0)
}
