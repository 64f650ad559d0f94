//! `tm-bench`: the benchmark drivers and the report generator behind `scripts/bench.sh`.
//! Each subcommand parses its flags and hands them to the library (`tm_bench`).

use anyhow::{Context, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tm_bench::drivers::{
    burst, coldstart, consumer, criterion, lambda_redis, memory, miss, propagation, zipf,
};
use tm_bench::record::{Machine, Record, load_average};
use tm_bench::report;

const USAGE: &str = "usage: tm-bench <command> [--flag value ...]
  machine      --out FILE [--set K=V]... [--tool TEXT]...   describe the machine
  record       --row R --series S --run N --value X --unit U [--note TEXT] [--busy CORES]
  criterion    --dir target/criterion --run N [--since-ms EPOCH_MS]
  miss         --table T [--routes 200] [--runs 5]
  burst        --table T [--concurrency 1000] [--trials 5]
  zipf         [--routes 100000] [--resolves 1000000] [--exponent 1.1] [--runs 3]
               [--concurrency 32] [--l1-ttl-ms 1000]
  consumer     [--batches 100] [--batch 100] [--partitions 3] [--run 0]
  propagation  --addr HOST:PORT --token T --redis-prefix P [--l1-ttl-ms 1000]
               [--changes 200] [--parallel 8] [--runs 3] [--kafka-brokers B --kafka-topic T]
  coldstart    --bin target/release/tm-resolve --table T [--runs 10]
  lambda-redis --bin target/release/tm-resolve --table T [--resolves 2000] [--frozen 20] [--run 0]
               [--write-bin target/release/tm-write]
  memory       --addr HOST:PORT --pid PID --token T --redis-prefix P [--routes 100000]
               [--resolves 1000000] [--connections 32] [--every 100000]
  bare         --listen HOST:PORT --body-file F             serve F's bytes to every request
  cleanup      --prefix P                                   delete Redis keys under P
  drop-table   --table T                                    delete a DynamoDB table
  report       --results FILE --machine FILE --md FILE --json FILE [--keep EARLIER.json]
Backends come from the environment as for the functions: TM_REDIS_URL (default
redis://127.0.0.1:6379), AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION and credentials.";

struct Flags {
    one: HashMap<String, String>,
    many: HashMap<String, Vec<String>>,
}

impl Flags {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut one = HashMap::new();
        let mut many: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}");
            };
            let value = it
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            one.insert(name.to_owned(), value.clone());
            many.entry(name.to_owned()).or_default().push(value.clone());
        }
        Ok(Self { one, many })
    }

    fn str(&self, name: &str) -> anyhow::Result<String> {
        self.one
            .get(name)
            .cloned()
            .with_context(|| format!("--{name} is required"))
    }

    fn or<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.one.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("--{name} {v:?}: {e}")),
        }
    }

    fn req<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.str(name)?;
        v.parse()
            .map_err(|e| anyhow::anyhow!("--{name} {v:?}: {e}"))
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.many.get(name).cloned().unwrap_or_default()
    }
}

fn now_rfc3339() -> String {
    tm_core::domain::timefmt::Timestamp::now().to_string()
}

fn git(args: &[&str]) -> String {
    std::process::Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MachineFile {
    machine: Machine,
    settings: BTreeMap<String, String>,
}

async fn run(cmd: &str, f: &Flags) -> anyhow::Result<()> {
    match cmd {
        "machine" => {
            let mut machine = Machine::probe();
            machine.started_at = now_rfc3339();
            let commit = git(&["rev-parse", "--short", "HEAD"]);
            let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
            machine.commit = format!("{commit}{}", if dirty { "-dirty" } else { "" });
            machine.rustc = std::process::Command::new("rustc")
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            machine.tools = f.all("tool");
            let settings = f
                .all("set")
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let file = MachineFile { machine, settings };
            std::fs::write(f.str("out")?, serde_json::to_string_pretty(&file)?)?;
        }
        "record" => {
            let mut r = Record::new(
                &f.str("row")?,
                &f.str("series")?,
                f.req("run")?,
                f.req("value")?,
                &f.str("unit")?,
            );
            if let Ok(n) = f.str("note") {
                r = r.note(n);
            }
            if f.str("busy").is_ok() {
                r = r.busy(f.req("busy")?);
            }
            r.emit();
        }
        "criterion" => {
            let since = f
                .one
                .get("since-ms")
                .map(|v| v.parse::<u64>())
                .transpose()?
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
            let n = criterion::import(&PathBuf::from(f.str("dir")?), f.req("run")?, since)?;
            if n == 0 {
                bail!("no criterion estimates found");
            }
        }
        "miss" => {
            miss::run(&miss::Args {
                table: f.str("table")?,
                routes: f.or("routes", 200)?,
                runs: f.or("runs", 5)?,
            })
            .await?
        }
        "burst" => {
            burst::run(&burst::Args {
                table: f.str("table")?,
                concurrency: f.or("concurrency", 1000)?,
                trials: f.or("trials", 5)?,
            })
            .await?
        }
        "zipf" => {
            zipf::run(&zipf::Args {
                routes: f.or("routes", 100_000)?,
                resolves: f.or("resolves", 1_000_000)?,
                exponent: f.or("exponent", 1.1)?,
                runs: f.or("runs", 3)?,
                concurrency: f.or("concurrency", 32)?,
                l1_ttl: Duration::from_millis(f.or("l1-ttl-ms", 1000)?),
            })
            .await?
        }
        "consumer" => {
            consumer::run(&consumer::Args {
                batches: f.or("batches", 100)?,
                batch: f.or("batch", 100)?,
                partitions: f.or("partitions", 3)?,
                run: f.or("run", 0)?,
            })
            .await?
        }
        "propagation" => {
            propagation::run(&propagation::Args {
                addr: f.req("addr")?,
                token: f.str("token")?,
                redis_prefix: f.str("redis-prefix")?,
                l1_ttl: Duration::from_millis(f.or("l1-ttl-ms", 1000)?),
                changes: f.or("changes", 200)?,
                parallel: f.or("parallel", 8)?,
                runs: f.or("runs", 3)?,
                kafka: match (f.one.get("kafka-brokers"), f.one.get("kafka-topic")) {
                    (Some(b), Some(t)) => Some((b.clone(), t.clone())),
                    _ => None,
                },
            })
            .await?
        }
        "coldstart" => {
            coldstart::run(&coldstart::Args {
                bin: PathBuf::from(f.str("bin")?),
                table: f.str("table")?,
                runs: f.or("runs", 10)?,
            })
            .await?
        }
        "lambda-redis" => {
            lambda_redis::run(&lambda_redis::Args {
                bin: PathBuf::from(f.str("bin")?),
                table: f.str("table")?,
                resolves: f.or("resolves", 2000)?,
                frozen: f.or("frozen", 20)?,
                run: f.or("run", 0)?,
                write_bin: f.one.get("write-bin").map(PathBuf::from),
            })
            .await?
        }
        "memory" => {
            memory::run(&memory::Args {
                addr: f.req("addr")?,
                pid: f.req("pid")?,
                token: f.str("token")?,
                redis_prefix: f.str("redis-prefix")?,
                routes: f.or("routes", 100_000)?,
                resolves: f.or("resolves", 1_000_000)?,
                connections: f.or("connections", 32)?,
                every: f.or("every", 100_000)?,
            })
            .await?
        }
        "cleanup" => {
            let prefix = f.str("prefix")?;
            if prefix.len() < 4 {
                bail!("refusing to delete under the short prefix {prefix:?}");
            }
            let n = tm_bench::drivers::delete_prefix(&prefix).await?;
            eprintln!("deleted {n} keys under {prefix}");
        }
        "bare" => {
            let body = std::fs::read(f.str("body-file")?).context("reading --body-file")?;
            tm_bench::bare::serve(&f.str("listen")?, body.into()).await?;
        }
        "drop-table" => {
            let table = f.str("table")?;
            if !table.starts_with("tm-bench") {
                bail!("refusing to drop {table:?}: not a tm-bench table");
            }
            let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            let client = tm_core::adapters::dynamodb::aws_sdk_dynamodb::Client::new(&conf);
            match client.delete_table().table_name(&table).send().await {
                Ok(_) => eprintln!("dropped table {table}"),
                Err(e) => eprintln!(
                    "table {table} not dropped: {}",
                    tm_core::adapters::dynamodb::aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                ),
            }
        }
        "report" => {
            let machine: MachineFile =
                serde_json::from_str(&std::fs::read_to_string(f.str("machine")?)?)?;
            let mut m = machine.machine;
            m.load_end = load_average();
            let mut records = Vec::new();
            for (i, line) in std::fs::read_to_string(f.str("results")?)?
                .lines()
                .enumerate()
            {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Record>(line) {
                    Ok(r) => records.push(r),
                    Err(e) => eprintln!("results line {}: skipped ({e})", i + 1),
                }
            }
            if let Some(path) = f.all("keep").pop() {
                // A missing or unreadable earlier report only means nothing is kept.
                match std::fs::read_to_string(&path)
                    .map_err(anyhow::Error::from)
                    .and_then(|t| Ok(serde_json::from_str::<report::EarlierReport>(&t)?))
                {
                    Ok(earlier) => report::carry_over(&mut records, earlier),
                    Err(e) => eprintln!("earlier report {path}: nothing kept ({e})"),
                }
            }
            let rep = report::build(m, machine.settings, records);
            let md_path = f.str("md")?;
            let existing = std::fs::read_to_string(&md_path).ok();
            std::fs::write(
                &md_path,
                report::splice(existing.as_deref(), &report::markdown(&rep)),
            )?;
            std::fs::write(f.str("json")?, serde_json::to_string_pretty(&rep)? + "\n")?;
            for o in &rep.lines {
                eprintln!("{:8} {}", o.result, o.line.label);
            }
        }
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if cmd == "-h" || cmd == "--help" || cmd == "help" {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let flags = match Flags::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("tm-bench: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tm-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = SystemTime::now();
    match runtime.block_on(run(cmd, &flags)) {
        Ok(()) => {
            if !matches!(cmd.as_str(), "record" | "machine" | "criterion") {
                eprintln!(
                    "tm-bench {cmd}: done in {:.1} s",
                    started.elapsed().unwrap_or_default().as_secs_f64()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tm-bench {cmd}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
