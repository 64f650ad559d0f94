//! The resolve Lambda's cold start under a local Runtime API ([`RuntimeApi`]): the clock
//! starts just before `exec` of the release binary and stops when its first answer (a
//! resolve of a seeded route, API Gateway v2 event) reaches the Runtime API. In between:
//! process start, `Config::from_env`, the SDK's configuration chain, the Redis
//! connection, the runtime's first poll, and the resolve itself. The process is then
//! measured (`VmRSS`, `VmHWM`) and killed.
//!
//! Two series: `L2 hit` (the route is in Redis, the common case for a new instance of a
//! busy function: one warm-up start fills it first) and `store read` (a key prefix no run
//! used, so the first answer also reads DynamoDB Local and fills Redis).

use super::{delete_prefix, dynamo, seed_route, unique_prefix};
use crate::fixtures;
use crate::record::{Record, rss_mb};
use crate::runtime_api::RuntimeApi;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The report row.
pub const ROW: &str = "coldstart";

/// Settings.
pub struct Args {
    /// The resolve Lambda binary (`target/release/tm-resolve`).
    pub bin: PathBuf,
    /// DynamoDB table.
    pub table: String,
    /// Cold starts per series.
    pub runs: u32,
}

struct Start {
    millis: f64,
    rss: f64,
    peak: f64,
}

async fn start_once(args: &Args, api: &RuntimeApi, prefix: &str, n: u32) -> anyhow::Result<Start> {
    let event = fixtures::resolve_event(fixtures::TENANT, "svc-0", "prod", "1.0.0", Some("u-1"));
    api.arm(&format!("cold-{n}"), event.to_string());
    let started = Instant::now();
    let mut child = std::process::Command::new(&args.bin)
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "tm-resolve")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tm-resolve")
        .env("TM_TABLE_NAME", &args.table)
        .env("TM_REDIS_URL", super::redis_url())
        .env("TM_REDIS_PREFIX", prefix)
        .env("TM_L1_TTL_MS", "1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.bin.display()))?;
    let pid = child.id();
    let reply = tokio::time::timeout(Duration::from_secs(10), api.reply()).await;
    let Ok(reply) = reply else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("no answer within 10 s");
    };
    let millis = (reply.at - started).as_secs_f64() * 1e3;
    let (rss, peak) = rss_mb(pid).unwrap_or((f64::NAN, f64::NAN));
    let _ = child.kill();
    let _ = child.wait();
    if reply.kind != "response" || !reply.body.contains("\"statusCode\":200") {
        bail!("the function answered {}: {}", reply.kind, reply.body);
    }
    Ok(Start { millis, rss, peak })
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.bin)
        .with_context(|| format!("reading {}", args.bin.display()))?
        .len();
    let (store, _) = dynamo(&args.table).await?;
    seed_route(&store, 0, "1.0.0", 3).await?;
    let api = RuntimeApi::start().await?;
    let warm_prefix = unique_prefix("cold");
    // Fills Redis under warm_prefix, and the page cache with the binary.
    start_once(args, &api, &warm_prefix, 0).await?;
    let mut prefixes = vec![warm_prefix.clone()];
    for run in 0..args.runs {
        let s = start_once(args, &api, &warm_prefix, 1 + run).await?;
        Record::new(ROW, "exec → first answer (L2 hit)", run, s.millis, "ms").emit();
        Record::new(ROW, "RSS after first answer", run, s.rss, "MB")
            .note(format!("VmHWM {:.1} MB", s.peak))
            .emit();
        Record::new(ROW, "peak RSS (VmHWM)", run, s.peak, "MB").emit();
        let fresh = unique_prefix("cold");
        let s = start_once(args, &api, &fresh, 1000 + run).await?;
        prefixes.push(fresh);
        Record::new(ROW, "exec → first answer (store read)", run, s.millis, "ms").emit();
        Record::new(ROW, "binary size", run, size as f64 / 1e6, "MB")
            .note(format!("{} ({size} bytes)", args.bin.display()))
            .emit();
    }
    for p in prefixes {
        delete_prefix(&p).await?;
    }
    Ok(())
}
