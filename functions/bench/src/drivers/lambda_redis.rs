//! The resolve Lambda's binary (`tm-resolve`) under a local Runtime API
//! ([`RuntimeApi`]), with the template's rate limit on (200 a second per tenant, burst
//! 400), on DynamoDB Local and a private `redis-server` this driver starts, so that it
//! can count that server's commands and freeze it:
//!
//! - **Redis commands per resolve** answered from the in-process cache: Redis's own
//!   `INFO commandstats` (commands run inside scripts included) before and after a run of
//!   sequential invocations at 150 a second (under the limit), divided by the resolves
//!   (the `INFO` calls themselves left out).
//! - **Redis frozen** (`SIGSTOP`): each resolve's time from the invocation to the
//!   function's answer, for a cached route and for exact versions it never read (store
//!   reads), with the share answered 200; and, with `--write-bin`, the write Lambda's
//!   (`tm-write`) PUTs meanwhile (its cursor keys from a `moto_server` Secrets Manager this
//!   driver starts, its events to the Kafka broker on 127.0.0.1:9092).

use super::{dynamo, seed_route};
use crate::fixtures;
use crate::record::Record;
use crate::runtime_api::RuntimeApi;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The report row.
pub const ROW: &str = "lambda_redis";

/// Settings.
pub struct Args {
    /// The resolve Lambda binary.
    pub bin: PathBuf,
    /// DynamoDB table.
    pub table: String,
    /// Resolves in the command-count run.
    pub resolves: u32,
    /// Uncached exact versions resolved while Redis is frozen.
    pub frozen: usize,
    /// The run number.
    pub run: u32,
    /// The write Lambda binary, to time PUTs while Redis is frozen.
    pub write_bin: Option<PathBuf>,
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The environment of a function under `api`.
fn lambda_command(
    bin: &PathBuf,
    name: &str,
    api: &RuntimeApi,
    table: &str,
    redis: &PrivateRedis,
) -> Command {
    let mut c = Command::new(bin);
    c.env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("TM_TABLE_NAME", table)
        .env("TM_REDIS_URL", format!("redis://127.0.0.1:{}", redis.port))
        // The template's defaults (TenantRateLimitRps, TenantRateLimitBurst).
        .env("TM_RATE_LIMIT_RPS", "200")
        .env("TM_RATE_LIMIT_BURST", "400")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A `moto_server` (Secrets Manager) on a free port holding one cursor secret; its
/// process and endpoint.
fn moto_with_secret(secret_id: &str) -> anyhow::Result<(Killed, String)> {
    let port = free_port()?;
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting moto_server (scripts/install-tools.sh moto)")?;
    let moto = Killed(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let body =
        serde_json::json!({"Name": secret_id, "SecretString": "bench-cursor-secret"}).to_string();
    for _ in 0..100 {
        let ok = Command::new("curl")
            .args(["-sf", "-X", "POST", &endpoint])
            .args(["-H", "X-Amz-Target: secretsmanager.CreateSecret"])
            .args(["-H", "Content-Type: application/x-amz-json-1.1"])
            .args(["-H", "Authorization: AWS4-HMAC-SHA256 Credential=local/20261208/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0"])
            .args(["-d", &body])
            .stdout(Stdio::null())
            .status()?
            .success();
        if ok {
            return Ok((moto, endpoint));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("moto_server did not take the cursor secret");
}

/// A `redis-server` of this driver's own on a free loopback port, stopped on drop.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let r = Self { child, port };
        for _ in 0..100 {
            if r.cli(&["PING"]).map(|o| o == "PONG").unwrap_or(false) {
                return Ok(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server on port {port} did not answer");
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .context("redis-cli")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Every command the server ran, `INFO` itself left out.
    fn commands(&self) -> anyhow::Result<u64> {
        let stats = self.cli(&["INFO", "commandstats"])?;
        Ok(stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|v| v.split(',').next())
            .filter_map(|v| v.parse::<u64>().ok())
            .sum())
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill {sig} redis-server");
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One invocation: the function's status code, its `X-Cache`, and the time from the
/// event being handed out to the answer.
async fn invoke(api: &RuntimeApi, id: String, event: String) -> anyhow::Result<(u16, String, f64)> {
    let started = Instant::now();
    api.arm(&id, event);
    let reply = tokio::time::timeout(Duration::from_secs(10), api.reply())
        .await
        .context("no answer within 10 s")?;
    let ms = (reply.at - started).as_secs_f64() * 1e3;
    if reply.kind != "response" {
        bail!("the function answered {}: {}", reply.kind, reply.body);
    }
    let v: serde_json::Value = serde_json::from_str(&reply.body)?;
    let status = v["statusCode"].as_u64().unwrap_or(0) as u16;
    let cache = v["headers"]["x-cache"].as_str().unwrap_or("").to_owned();
    Ok((status, cache, ms))
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let (store, _) = dynamo(&args.table).await?;
    for i in 0..=args.frozen {
        seed_route(&store, i, "1.0.0", 3).await?;
    }
    let redis = PrivateRedis::start()?;
    let api = RuntimeApi::start().await?;
    let _resolve = Killed(
        lambda_command(&args.bin, "tm-resolve", &api, &args.table, &redis)
            .env("TM_L1_TTL_MS", "1000")
            .spawn()
            .with_context(|| format!("starting {}", args.bin.display()))?,
    );
    let write = match &args.write_bin {
        None => None,
        Some(bin) => {
            let secret_id = format!("tm-bench-cursor-{}", std::process::id());
            let (moto, endpoint) = moto_with_secret(&secret_id)?;
            let api = RuntimeApi::start().await?;
            let child = lambda_command(bin, "tm-write", &api, &args.table, &redis)
                .env("TM_CURSOR_SECRET_ID", &secret_id)
                .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint)
                .env("TM_KAFKA_BROKERS", "127.0.0.1:9092")
                .env("TM_KAFKA_TOPIC", "tm-bench-lambda-events")
                .env("TM_KAFKA_AUTH", "none")
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            Some((api, Killed(child), moto))
        }
    };
    measure(args, &api, &redis, write.as_ref().map(|w| &w.0)).await
}

/// A PUT of version `version` of `svc-w`: its status and time to answer.
async fn put(api: &RuntimeApi, n: &str, version: &str) -> anyhow::Result<(u16, f64)> {
    let body = fixtures::spec_json(3, 1);
    let event = fixtures::put_event(fixtures::TENANT, "svc-w", "prod", version, &body).to_string();
    let (status, _, ms) = invoke(api, format!("put-{n}"), event).await?;
    Ok((status, ms))
}

async fn measure(
    args: &Args,
    api: &RuntimeApi,
    redis: &PrivateRedis,
    write: Option<&RuntimeApi>,
) -> anyhow::Result<()> {
    let cached = || {
        fixtures::resolve_event(fixtures::TENANT, "svc-0", "prod", "1.0.0", Some("u-1")).to_string()
    };
    for n in 0..3 {
        invoke(api, format!("warm-{n}"), cached()).await?;
    }
    // Commands per resolve, the rate limit on; 150 resolves a second, under the tenant's
    // 200, so that every one is answered.
    let before = redis.commands()?;
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / 150.0));
    let mut l1 = 0u32;
    for n in 0..args.resolves {
        pace.tick().await;
        let (status, cache, _) = invoke(api, format!("count-{n}"), cached()).await?;
        anyhow::ensure!(status == 200, "resolve {n} answered {status}");
        l1 += u32::from(cache == "hit-l1");
    }
    let took = started.elapsed();
    let commands = redis.commands()? - before;
    Record::new(ROW, "Redis commands per resolve", args.run, commands as f64 / f64::from(args.resolves), "commands")
        .note(format!(
            "{commands} commands over {} resolves in {:.1} s ({l1} answered hit-l1), rate limit 200/s burst 400 on",
            args.resolves,
            took.as_secs_f64()
        ))
        .emit();
    // The write function's cold start (secret, clients) before Redis freezes.
    let tag = format!("{}-{}", std::process::id(), args.run);
    if let Some(w) = write {
        let (status, _) = put(w, "warm", &format!("w{tag}-0")).await?;
        anyhow::ensure!(status == 201, "the first PUT answered {status}");
    }
    // Redis frozen.
    redis.signal("-STOP")?;
    let mut puts = Vec::new();
    if let Some(w) = write {
        for n in 1..=5 {
            puts.push(put(w, &n.to_string(), &format!("w{tag}-{n}")).await?);
        }
    }
    let (mut worst, mut ok, mut all) = (0f64, 0u32, 0u32);
    let mut worst_store = 0f64;
    for i in 1..=args.frozen {
        let uncached =
            fixtures::resolve_event(fixtures::TENANT, &format!("svc-{i}"), "prod", "1.0.0", None)
                .to_string();
        let (status, _, ms) = invoke(api, format!("frozen-store-{i}"), uncached).await?;
        worst_store = worst_store.max(ms);
        let (status2, _, ms2) = invoke(api, format!("frozen-l1-{i}"), cached()).await?;
        worst = worst.max(ms).max(ms2);
        ok += u32::from(status == 200) + u32::from(status2 == 200);
        all += 2;
    }
    redis.signal("-CONT")?;
    Record::new(ROW, "slowest resolve, Redis frozen", args.run, worst, "ms")
        .note(format!(
            "{ok} of {all} answered 200; {} exact versions never read before (store reads, slowest {worst_store:.0} ms) and as many cached ones",
            args.frozen
        ))
        .emit();
    Record::new(
        ROW,
        "resolves answered 200, Redis frozen",
        args.run,
        f64::from(ok) * 100.0 / f64::from(all.max(1)),
        "%",
    )
    .emit();
    if !puts.is_empty() {
        let slowest = puts.iter().map(|p| p.1).fold(0f64, f64::max);
        let created = puts.iter().filter(|p| p.0 == 201).count();
        Record::new(ROW, "slowest PUT, Redis frozen", args.run, slowest, "ms")
            .note(format!(
                "{created} of {} answered 201 (tm-write, rate limit on)",
                puts.len()
            ))
            .emit();
    }
    Ok(())
}
