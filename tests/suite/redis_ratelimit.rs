//! The rate limiter's fleet ledger on the real shared Redis (127.0.0.1:6379), each test
//! under its own key prefix: an exchange adds and answers running totals per function
//! and tenant and keeps the hash alive for an hour; and a fleet of real processes, each
//! limiting in memory and reconciling through Redis, admits the configured rate
//! (±15 %) for 1, 4 and 16 processes.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tm_core::adapters::redis_cache::RedisCache;
use tm_core::adapters::redis_ratelimit::ledger_key;
use tm_core::ports::UsageLedger;

/// A prefix of its own; its keys are deleted when it drops.
struct Prefix(String);

impl Prefix {
    fn new(test: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self(format!("tmrl:{test}:{}:{nanos}:", std::process::id()))
    }

    async fn cache(&self) -> RedisCache {
        RedisCache::connect("redis://127.0.0.1:6379", &self.0)
            .await
            .expect("the shared Redis on 127.0.0.1:6379")
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = cli(&["--scan", "--pattern", &format!("{}*", self.0)]);
        for k in keys.lines().filter(|k| !k.is_empty()) {
            cli(&["DEL", k]);
        }
    }
}

fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", "6379", "--raw"])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn deltas(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

#[tokio::test]
async fn an_exchange_adds_to_the_fleets_totals_per_function_and_tenant() {
    let prefix = Prefix::new("ledger");
    let (a, b) = (prefix.cache().await, prefix.cache().await);
    // GIVEN one instance's counts
    let totals = a
        .exchange("resolve", &deltas(&[("acme", 5), ("other", 2)]))
        .await
        .unwrap();
    assert_eq!(totals, vec![5, 2]);
    // WHEN another instance adds its own
    let totals = b
        .exchange("resolve", &deltas(&[("other", 1), ("acme", 3)]))
        .await
        .unwrap();
    // THEN it reads the fleet's totals back, in its own order
    assert_eq!(totals, vec![3, 8]);
    // AND the write function counts apart from resolve
    assert_eq!(
        a.exchange("write", &deltas(&[("acme", 1)])).await.unwrap(),
        vec![1]
    );
    // AND an exchange of nothing new only reads
    assert_eq!(
        a.exchange("resolve", &deltas(&[("acme", 0)]))
            .await
            .unwrap(),
        vec![8]
    );
    let key = ledger_key(&prefix.0, "resolve");
    let pttl: i64 = cli(&["PTTL", &key]).parse().unwrap();
    assert!(
        pttl > 3_500_000 && pttl <= 3_600_000,
        "an idle ledger expires after an hour: pttl {pttl}"
    );
}

/// Where cargo put the worker binary.
const WORKER: &str = env!("CARGO_BIN_EXE_limiter-worker");

/// Starts `n` real processes sharing one tenant's limit of `rps` through Redis, each
/// offered `offered` requests a second, and answers the fleet's admitted rate over the
/// measuring window (after a warm-up that covers the first exchanges).
fn fleet_rate(test: &str, n: usize, rps: f64, offered: f64) -> f64 {
    let prefix = Prefix::new(test);
    let (warmup, run) = (2_000u64, 10_000u64);
    let start_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1_500;
    let children: Vec<_> = (0..n)
        .map(|_| {
            Command::new(WORKER)
                .args([
                    "redis://127.0.0.1:6379",
                    &prefix.0,
                    &rps.to_string(),
                    &(rps as u64).to_string(),
                    &offered.to_string(),
                    &start_at.to_string(),
                    &warmup.to_string(),
                    &run.to_string(),
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("limiter-worker")
        })
        .collect();
    let mut admitted = 0u64;
    for child in children {
        let out = child.wait_with_output().expect("worker output");
        assert!(out.status.success(), "worker failed: {out:?}");
        admitted += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .expect("worker prints its admitted count");
    }
    admitted as f64 / Duration::from_millis(run - warmup).as_secs_f64()
}

fn assert_within_15_percent(n: usize, rate: f64, rps: f64) {
    println!("{n} process(es) sharing {rps}/s admitted {rate:.1}/s");
    assert!(
        (rps * 0.85..=rps * 1.15).contains(&rate),
        "{n} process(es): admitted {rate:.1}/s for a limit of {rps}/s"
    );
}

#[tokio::test]
async fn one_process_over_its_limit_admits_the_configured_rate() {
    let rate = tokio::task::spawn_blocking(|| fleet_rate("n1", 1, 40.0, 100.0))
        .await
        .unwrap();
    assert_within_15_percent(1, rate, 40.0);
}

#[tokio::test]
async fn four_processes_sharing_one_redis_admit_the_configured_rate_together() {
    let rate = tokio::task::spawn_blocking(|| fleet_rate("n4", 4, 40.0, 100.0))
        .await
        .unwrap();
    assert_within_15_percent(4, rate, 40.0);
}

#[tokio::test]
async fn sixteen_processes_sharing_one_redis_admit_the_configured_rate_together() {
    let rate = tokio::task::spawn_blocking(|| fleet_rate("n16", 16, 40.0, 100.0))
        .await
        .unwrap();
    assert_within_15_percent(16, rate, 40.0);
}
