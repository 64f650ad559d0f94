//! The targets of the benchmark issue, checked against the records of one `bench.sh`
//! run, and the report: `docs/benchmarks.md` (the generated part between two markers;
//! the hand-written rest of the file is kept) and `docs/benchmarks.json`.
//!
//! Every figure is min / median / max over runs. A ratio is computed per run, figure over
//! the baseline measured in the same run (they were interleaved), and then summarised;
//! a target is checked on the median (of the ratios, for a ratio target), except
//! "exactly" targets, which every run must meet.
//!
//! A ratio is only as good as the quiet it was taken in: a run in which other processes
//! kept more than the run's `BENCH_QUIET_MAX` cores busy ([`BUSY_LIMIT`] unless the settings
//! name another; bench.sh samples it around each run) is left out of every ratio, and a
//! ratio target none of whose runs was quiet is "not judged".

use crate::record::{Machine, Record};
use crate::stats::{Summary, summarize};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most CPU cores other processes may keep busy around a run whose ratio counts, when
/// the run's settings do not name `BENCH_QUIET_MAX`.
pub const BUSY_LIMIT: f64 = 0.5;

/// The busy limit of a run: its `BENCH_QUIET_MAX` setting, or [`BUSY_LIMIT`].
fn busy_limit(settings: &BTreeMap<String, String>) -> f64 {
    settings
        .get("BENCH_QUIET_MAX")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(BUSY_LIMIT)
}

/// How a line's target is checked.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Check {
    /// Median per-run ratio figure / baseline ≥ x.
    RatioAtLeast(f64),
    /// Median per-run (figure / baseline − 1) ≤ x.
    OverheadAtMost(f64),
    /// Median ≤ x.
    AtMost(f64),
    /// Median ≥ x.
    AtLeast(f64),
    /// Every run equals x.
    Exactly(f64),
    /// Median ≤ median of the named series (same row) + x.
    AtMostSeriesPlus(&'static str, f64),
    /// No target: shown for context.
    Info,
    /// No target: shown for context, the ratio as an overhead (figure / baseline − 1).
    InfoOverhead,
}

/// One line of the results table.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Line {
    /// The record row.
    pub row: &'static str,
    /// What the line measures.
    pub label: &'static str,
    /// The figure's series.
    pub series: &'static str,
    /// The baseline's series (same row), if any.
    pub baseline: Option<&'static str>,
    /// How the baseline is named in the table.
    pub baseline_label: &'static str,
    /// The target as the issue words it.
    pub target: &'static str,
    /// How it is checked.
    pub check: Check,
}

const fn line(
    row: &'static str,
    label: &'static str,
    series: &'static str,
    baseline: Option<&'static str>,
    baseline_label: &'static str,
    target: &'static str,
    check: Check,
) -> Line {
    Line {
        row,
        label,
        series,
        baseline,
        baseline_label,
        target,
        check,
    }
}

/// Every line of the table, in the order.
pub const LINES: &[Line] = &[
    line(
        "http_l1",
        "resolve over HTTP, L1 hit (tm-local, keep-alive, wrk -t2 -c32, JWT checked)",
        "tm-local",
        Some("nginx"),
        "nginx static 120-byte JSON",
        "≥ 60 % of nginx req/s",
        Check::RatioAtLeast(0.60),
    ),
    line(
        "http_l1",
        "… tm-local's whole request path vs a bare tokio + hyper server answering the same bytes",
        "tm-local",
        Some("bare hyper"),
        "bare tokio + hyper, same bytes",
        "≥ 90 % of bare hyper req/s",
        Check::RatioAtLeast(0.90),
    ),
    line(
        "http_l1",
        "… the same with RUST_LOG=warn (no info logging at all)",
        "tm-local, RUST_LOG=warn",
        Some("nginx"),
        "nginx static 120-byte JSON",
        "(context)",
        Check::Info,
    ),
    line(
        "http_l1",
        "… this build vs the build before it (BENCH_BEFORE, same runs)",
        "tm-local",
        Some("tm-local, before"),
        "the build before (BENCH_BEFORE)",
        "(context)",
        Check::Info,
    ),
    line(
        "http_l1",
        "… the build before it vs nginx (BENCH_BEFORE)",
        "tm-local, before",
        Some("nginx"),
        "nginx static 120-byte JSON",
        "(context)",
        Check::Info,
    ),
    line(
        "http_l2",
        "resolve over HTTP, L1 off, shared-cache hit on real Redis (wrk -t2 -c32)",
        "tm-local",
        Some("redis-benchmark GET"),
        "redis-benchmark GET, -c 32",
        "≥ 50 %",
        Check::RatioAtLeast(0.50),
    ),
    line(
        "http_l2",
        "… the same vs nginx static JSON under the same wrk load (the HTTP ceiling)",
        "tm-local",
        Some("nginx"),
        "nginx static 120-byte JSON",
        "(context)",
        Check::Info,
    ),
    line(
        "http_l2",
        "… this build vs the build before it (BENCH_BEFORE, same runs)",
        "tm-local",
        Some("tm-local, before"),
        "the build before (BENCH_BEFORE)",
        "(context)",
        Check::Info,
    ),
    line(
        "http_l2",
        "… the build before it vs redis-benchmark GET (BENCH_BEFORE)",
        "tm-local, before",
        Some("redis-benchmark GET"),
        "redis-benchmark GET, -c 32",
        "(context)",
        Check::Info,
    ),
    line(
        "http_l2",
        "… redis-benchmark GET vs nginx static JSON: what 50 % of Redis asks of HTTP",
        "redis-benchmark GET",
        Some("nginx"),
        "nginx static 120-byte JSON",
        "(context)",
        Check::Info,
    ),
    line(
        "miss",
        "resolve, cache miss to DynamoDB Local (handler, L1 off, Redis miss + GetItem + fill)",
        "resolve (miss)",
        Some("GetItem (SDK)"),
        "raw GetItem loop, SDK",
        "≤ 10 % overhead",
        Check::OverheadAtMost(0.10),
    ),
    line(
        "miss",
        "… the same without a shared cache (resolver overhead alone)",
        "resolve (miss, no shared cache)",
        Some("GetItem (SDK)"),
        "raw GetItem loop, SDK",
        "(context)",
        Check::InfoOverhead,
    ),
    line(
        "miss",
        "… floor of any cache-aside miss: one shared-cache lookup (Redis HGET round trip)",
        "Redis HGET round trip",
        Some("GetItem (SDK)"),
        "raw GetItem loop, SDK",
        "(context)",
        Check::Info,
    ),
    line(
        "criterion",
        "core selection, sticky key, 3 endpoints (criterion)",
        "sticky choice, 3 endpoints",
        None,
        "—",
        "≤ 200 ns",
        Check::AtMost(200.0),
    ),
    line(
        "criterion",
        "core selection, sticky key, 64 endpoints (criterion)",
        "sticky choice, 64 endpoints",
        None,
        "—",
        "≤ 2 µs",
        Check::AtMost(2000.0),
    ),
    line(
        "criterion",
        "… candidates + sticky choice, 64 endpoints (criterion)",
        "candidates + sticky choice, 64 endpoints",
        None,
        "—",
        "(context)",
        Check::Info,
    ),
    line(
        "criterion",
        "latest over 100 versions (criterion)",
        "latest over 100 versions",
        None,
        "—",
        "≤ 5 µs",
        Check::AtMost(5000.0),
    ),
    line(
        "criterion",
        "range over 100 versions (criterion)",
        "range over 100 versions",
        None,
        "—",
        "≤ 5 µs",
        Check::AtMost(5000.0),
    ),
    line(
        "zipf",
        "Zipf(1.1), 100k routes, 1M resolves, steady state: shared-cache hit",
        "shared-cache hit (steady)",
        None,
        "—",
        "≥ 99 %",
        Check::AtLeast(99.0),
    ),
    line(
        "zipf",
        "Zipf(1.1), 100k routes, 1M resolves, steady state: store reads",
        "store reads (steady)",
        None,
        "—",
        "≤ 1 % of resolves",
        Check::AtMost(1.0),
    ),
    line(
        "zipf",
        "… cold shared cache (empty Redis): store reads vs the first-touch lower bound",
        "store reads (cold)",
        Some("store reads, lower bound (cold)"),
        "distinct routes drawn",
        "(context)",
        Check::Info,
    ),
    line(
        "burst",
        "1,000 concurrent misses on one key: store reads",
        "store reads",
        None,
        "—",
        "exactly 1",
        Check::Exactly(1.0),
    ),
    line(
        "propagation",
        "write → visible in Redis (L2), 200 changes, real Kafka + Redis: p99",
        "L2 p99",
        None,
        "—",
        "≤ 100 ms",
        Check::AtMost(100.0),
    ),
    line(
        "propagation",
        "write → visible through resolve (end to end): p99",
        "end-to-end p99",
        None,
        "—",
        "≤ L1 TTL + 50 ms",
        Check::AtMostSeriesPlus("L1 TTL", 50.0),
    ),
    line(
        "consumer",
        "event-consumer, 100-record MSK batches into Redis",
        "event-consumer",
        Some("redis-benchmark SET -P 100"),
        "redis-benchmark SET, -P 100",
        "≥ 20,000 events/s",
        Check::AtLeast(20_000.0),
    ),
    line(
        "coldstart",
        "resolve Lambda cold start: exec → first answer (local Runtime API, L2 hit)",
        "exec → first answer (L2 hit)",
        None,
        "—",
        "≤ 30 ms",
        Check::AtMost(30.0),
    ),
    line(
        "coldstart",
        "… first answer needing a store read",
        "exec → first answer (store read)",
        None,
        "—",
        "(context)",
        Check::Info,
    ),
    line(
        "coldstart",
        "resolve Lambda binary size (release, stripped)",
        "binary size",
        None,
        "—",
        "≤ 10 MB",
        Check::AtMost(10.0),
    ),
    line(
        "coldstart",
        "resolve Lambda peak RSS after the first answer (VmHWM)",
        "peak RSS (VmHWM)",
        None,
        "—",
        "≤ 30 MB",
        Check::AtMost(30.0),
    ),
    line(
        "memory",
        "tm-local RSS after 1M resolves over 100k routes",
        "RSS after 1M resolves",
        None,
        "—",
        "≤ 200 MB",
        Check::AtMost(200.0),
    ),
    line(
        "memory",
        "tm-local RSS growth over the last fifth of the run (3M resolves: flat)",
        "RSS growth over the last fifth",
        None,
        "—",
        "flat over time (≤ 2 %)",
        Check::AtMost(2.0),
    ),
    line(
        "lambda_redis",
        "resolve Lambda, rate limit on: Redis commands per resolve (INFO commandstats, scripts included)",
        "Redis commands per resolve",
        None,
        "—",
        "≤ 0.1",
        Check::AtMost(0.1),
    ),
    line(
        "lambda_redis",
        "resolve Lambda, Redis frozen (SIGSTOP): slowest answer, store reads included",
        "slowest resolve, Redis frozen",
        None,
        "—",
        "≤ 250 ms",
        Check::AtMost(250.0),
    ),
    line(
        "lambda_redis",
        "write Lambda, Redis frozen: slowest PUT (201)",
        "slowest PUT, Redis frozen",
        None,
        "—",
        "≤ 1000 ms",
        Check::AtMost(1000.0),
    ),
    line(
        "lambda_redis",
        "… resolves answered 200 while Redis is frozen",
        "resolves answered 200, Redis frozen",
        None,
        "—",
        "100 %",
        Check::Exactly(100.0),
    ),
];

/// Every series of one row, in first-seen order.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// Row.
    pub row: String,
    /// Series.
    pub series: String,
    /// Unit.
    pub unit: String,
    /// Summary of the runs.
    pub summary: Option<Summary>,
    /// Values by run.
    pub values: BTreeMap<u32, f64>,
    /// Load average (1 min) range over the runs.
    pub load1: Option<(f64, f64)>,
    /// Other processes' busy cores around each run, where measured.
    pub busy: BTreeMap<u32, f64>,
    /// Distinct notes.
    pub notes: Vec<String>,
    /// Where the runs were kept from an earlier report: that run (see [`carry_over`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_run: Option<String>,
}

/// A checked line.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The line.
    pub line: Line,
    /// Unit of the figure.
    pub unit: String,
    /// The figure.
    pub figure: Option<Summary>,
    /// The baseline and its unit.
    pub baseline: Option<(Summary, String)>,
    /// Per-run ratios figure / baseline, summarised, over the quiet runs only.
    pub ratio: Option<Summary>,
    /// Runs with both a figure and a baseline left out of the ratio: the machine was busy.
    pub busy_runs: usize,
    /// `pass`, `miss`, `info` or `not run`.
    pub result: String,
    /// Set when the figure was kept from an earlier report: that run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub earlier_run: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The machine and the run's settings.
    pub machine: Machine,
    /// Settings of the run.
    pub settings: BTreeMap<String, String>,
    /// The table.
    pub lines: Vec<Outcome>,
    /// Every series.
    pub series: Vec<Series>,
    /// Every record.
    pub records: Vec<Record>,
}

/// The range `(lo, hi)` grown to take in `x` (a range of one value when there is none).
fn widen(range: Option<(f64, f64)>, x: f64) -> (f64, f64) {
    match range {
        Some((lo, hi)) => (lo.min(x), hi.max(x)),
        None => (x, x),
    }
}

fn collect(records: &[Record]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for r in records {
        let i = match out
            .iter()
            .position(|s| s.row == r.row && s.series == r.series)
        {
            Some(i) => i,
            None => {
                out.push(Series {
                    row: r.row.clone(),
                    series: r.series.clone(),
                    unit: r.unit.clone(),
                    summary: None,
                    values: BTreeMap::new(),
                    load1: None,
                    busy: BTreeMap::new(),
                    notes: Vec::new(),
                    earlier_run: r.earlier_run.clone(),
                });
                out.len() - 1
            }
        };
        let s = &mut out[i];
        s.values.insert(r.run, r.value);
        if let Some(b) = r.busy {
            s.busy.insert(r.run, b);
        }
        if let Some(l) = r.load1 {
            s.load1 = Some(widen(s.load1, l));
        }
        if let Some(n) = &r.note
            && !s.notes.contains(n)
        {
            s.notes.push(n.clone());
        }
    }
    for s in &mut out {
        s.summary = summarize(&s.values.values().copied().collect::<Vec<_>>());
    }
    out
}

fn check(line: &Line, series: &[Series], busy_limit: f64) -> Outcome {
    let find = |name: &str| {
        series
            .iter()
            .find(|s| s.row == line.row && s.series == name)
    };
    let fig = find(line.series);
    let base = line.baseline.and_then(find);
    let quiet = |s: &Series, run: &u32| s.busy.get(run).is_none_or(|b| *b <= busy_limit);
    let mut busy_runs = 0;
    let ratio = match (fig, base) {
        (Some(f), Some(b)) => {
            let mut r = Vec::new();
            for (run, v) in &f.values {
                let Some(bv) = b.values.get(run) else {
                    continue;
                };
                if quiet(f, run) && quiet(b, run) {
                    r.push(v / bv);
                } else {
                    busy_runs += 1;
                }
            }
            summarize(&r)
        }
        _ => None,
    };
    let ratio_target = matches!(
        line.check,
        Check::RatioAtLeast(_) | Check::OverheadAtMost(_)
    );
    let median = fig.and_then(|f| f.summary).map(|s| s.median);
    let verdict = |ok: bool| if ok { "pass" } else { "miss" };
    let result = match (line.check, median) {
        (Check::Info | Check::InfoOverhead, _) => "info",
        (_, None) => "not run",
        _ if ratio_target && ratio.is_none() && busy_runs > 0 => "not judged",
        (Check::RatioAtLeast(x), _) => match ratio {
            Some(r) => verdict(r.median >= x),
            None => "not run",
        },
        (Check::OverheadAtMost(x), _) => match ratio {
            Some(r) => verdict(r.median - 1.0 <= x),
            None => "not run",
        },
        (Check::AtMost(x), Some(m)) => verdict(m <= x),
        (Check::AtLeast(x), Some(m)) => verdict(m >= x),
        (Check::Exactly(x), Some(_)) => {
            let s = fig.and_then(|f| f.summary);
            verdict(s.is_some_and(|s| s.min == x && s.max == x))
        }
        (Check::AtMostSeriesPlus(other, x), Some(m)) => match find(other).and_then(|o| o.summary) {
            Some(o) => verdict(m <= o.median + x),
            None => "not run",
        },
    };
    Outcome {
        line: *line,
        unit: fig.map(|f| f.unit.clone()).unwrap_or_default(),
        figure: fig.and_then(|f| f.summary),
        baseline: base.and_then(|b| b.summary.map(|s| (s, b.unit.clone()))),
        ratio,
        busy_runs,
        result: result.to_owned(),
        earlier_run: fig.and_then(|f| f.earlier_run.clone()),
    }
}

/// What [`carry_over`] reads of an earlier `docs/benchmarks.json`.
#[derive(Debug, Deserialize)]
pub struct EarlierReport {
    /// Its machine (for when it ran and on which commit).
    pub machine: Machine,
    /// Its records.
    pub records: Vec<Record>,
}

/// Adds to `records` the earlier report's records of every row this run has no record
/// of (a run with `BENCH_ONLY`), each marked with the run that measured it, so that a
/// partial run updates its rows and keeps the others, saying where they come from.
pub fn carry_over(records: &mut Vec<Record>, earlier: EarlierReport) {
    let measured: std::collections::BTreeSet<String> =
        records.iter().map(|r| r.row.clone()).collect();
    let run = format!(
        "{} on `{}`",
        earlier.machine.started_at, earlier.machine.commit
    );
    records.extend(
        earlier
            .records
            .into_iter()
            .filter(|r| !measured.contains(&r.row))
            .map(|mut r| {
                r.earlier_run.get_or_insert_with(|| run.clone());
                r
            }),
    );
}

/// Checks every line against `records`.
pub fn build(machine: Machine, settings: BTreeMap<String, String>, records: Vec<Record>) -> Report {
    let series = collect(&records);
    let limit = busy_limit(&settings);
    let lines = LINES.iter().map(|l| check(l, &series, limit)).collect();
    Report {
        machine,
        settings,
        lines,
        series,
        records,
    }
}

fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 10_000.0 {
        let s = format!("{:.0}", x);
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn mmm(s: &Summary, unit: &str) -> String {
    if s.n == 1 || s.min == s.max {
        format!("{} {unit}", num(s.median))
    } else {
        format!(
            "{} / **{}** / {} {unit}",
            num(s.min),
            num(s.median),
            num(s.max)
        )
    }
}

fn ratio_text(o: &Outcome) -> String {
    let Some(r) = o.ratio else {
        return "—".into();
    };
    let pct = |x: f64| {
        if matches!(o.line.check, Check::OverheadAtMost(_) | Check::InfoOverhead) {
            format!("{:+.1} %", (x - 1.0) * 100.0)
        } else {
            format!("{:.1} %", x * 100.0)
        }
    };
    let text = if r.n == 1 || r.min == r.max {
        pct(r.median)
    } else {
        format!("{} / **{}** / {}", pct(r.min), pct(r.median), pct(r.max))
    };
    if o.busy_runs > 0 {
        format!(
            "{text} ({} quiet runs; {} left out: machine busy)",
            r.n, o.busy_runs
        )
    } else {
        text
    }
}

fn result_text(r: &str) -> &str {
    match r {
        "pass" => "✅ pass",
        "miss" => "❌ miss",
        "info" => "—",
        "not judged" => "⚠ not judged: no quiet run",
        _ => "not run",
    }
}

fn loads(l: &Option<[f64; 3]>) -> String {
    l.map(|l| format!("{:.2}, {:.2}, {:.2}", l[0], l[1], l[2]))
        .unwrap_or_else(|| "?".into())
}

/// The generated part of `docs/benchmarks.md`.
pub fn markdown(report: &Report) -> String {
    let m = &report.machine;
    let mut md = String::new();
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "Run of {} on commit `{}`: {} × {} ({} MiB), {}, Linux {}, {}.  ",
        m.started_at, m.commit, m.cpus, m.cpu, m.memory_mib, m.os, m.kernel, m.rustc
    );
    let _ = writeln!(
        md,
        "Load average (1, 5, 15 min) at the start: {}; at the end: {}. The machine is shared \
         with other builds, so absolute figures drift; each baseline was measured in the same \
         run, interleaved with its figure, and ratios are per run.  ",
        loads(&m.load_start),
        loads(&m.load_end)
    );
    if !m.tools.is_empty() {
        let _ = writeln!(md, "Tools: {}.  ", m.tools.join("; "));
    }
    if !report.settings.is_empty() {
        let s: Vec<String> = report
            .settings
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let _ = writeln!(md, "Settings: {}.", s.join(", "));
    }
    let mut kept: Vec<&str> = report
        .series
        .iter()
        .filter(|s| s.earlier_run.is_some())
        .map(|s| s.row.as_str())
        .collect();
    kept.dedup();
    if !kept.is_empty() {
        let _ = writeln!(
            md,
            "\nRows not measured in this run keep the figures of the run that last measured \
             them (named in their result column): {}.",
            kept.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\nFigures are min / **median** / max over the runs; a target is checked on the median \
         (of the per-run ratios for a ratio target; every run for \"exactly\").\n"
    );
    let _ = writeln!(
        md,
        "| measurement | figure | baseline (same run) | baseline figure | ratio | target | result |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for o in &report.lines {
        // A context line whose series was not measured (BENCH_BEFORE unset) says nothing.
        if o.result == "info" && o.figure.is_none() && o.earlier_run.is_none() {
            continue;
        }
        let fig = o
            .figure
            .map(|s| mmm(&s, &o.unit))
            .unwrap_or_else(|| "not run".into());
        let base = o
            .baseline
            .as_ref()
            .map(|(s, u)| mmm(s, u))
            .unwrap_or_else(|| "—".into());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            o.line.label,
            fig,
            o.line.baseline_label,
            base,
            ratio_text(o),
            o.line.target,
            match &o.earlier_run {
                Some(run) => format!("{} (earlier run: {run})", result_text(&o.result)),
                None => result_text(&o.result).to_owned(),
            }
        );
    }
    let _ = writeln!(md, "\n### Every series\n");
    let _ = writeln!(
        md,
        "| row | series | runs | min | median | max | unit | load (1 min, the bench's own included) | other processes (cores busy) | notes |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for s in &report.series {
        let Some(sum) = s.summary else { continue };
        let load = s
            .load1
            .map(|(lo, hi)| format!("{lo:.1}–{hi:.1}"))
            .unwrap_or_default();
        // The quiet gate's samples (bench.sh), where this series has them.
        let busy = s
            .busy
            .values()
            .fold(None, |range, b| Some(widen(range, *b)))
            .map(|(lo, hi)| format!("{lo:.2}–{hi:.2}"))
            .unwrap_or_default();
        let mut notes = s.notes.clone();
        if notes.len() > 3 {
            let more = notes.len() - 2;
            notes.truncate(2);
            notes.push(format!("… {more} more"));
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.row,
            s.series,
            sum.n,
            num(sum.min),
            num(sum.median),
            num(sum.max),
            s.unit,
            load,
            busy,
            notes.join("; ").replace('|', "\\|")
        );
    }
    md
}

/// The marker lines around the generated part.
pub const BEGIN: &str =
    "<!-- BEGIN GENERATED: scripts/bench.sh writes this part; edit outside it -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- END GENERATED -->";

/// `existing` with its generated part replaced by `generated` (or a new file around it).
pub fn splice(existing: Option<&str>, generated: &str) -> String {
    if let Some(text) = existing
        && let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END))
        && b < e
    {
        return format!("{}{BEGIN}\n{generated}{}", &text[..b], &text[e..]);
    }
    format!(
        "# Benchmarks\n\n`scripts/bench.sh` measures; this file is its report.\n\n{BEGIN}\n{generated}{END}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(row: &str, series: &str, run: u32, value: f64) -> Record {
        let mut r = Record::new(row, series, run, value, "x");
        r.load1 = None;
        r
    }

    #[test]
    fn ratio_targets_use_per_run_ratios() {
        let records = vec![
            rec("http_l1", "nginx", 0, 100.0),
            rec("http_l1", "tm-local", 0, 70.0),
            rec("http_l1", "nginx", 1, 200.0),
            rec("http_l1", "tm-local", 1, 100.0),
            rec("http_l1", "nginx", 2, 100.0),
            rec("http_l1", "tm-local", 2, 65.0),
        ];
        let r = build(Machine::default(), BTreeMap::new(), records);
        let o = &r.lines[0];
        let ratio = o.ratio.unwrap();
        assert_eq!((ratio.min, ratio.median, ratio.max), (0.5, 0.65, 0.7));
        assert_eq!(o.result, "pass");
    }

    #[test]
    fn exactly_needs_every_run_and_missing_rows_are_not_run() {
        let records = vec![
            rec("burst", "store reads", 0, 1.0),
            rec("burst", "store reads", 1, 2.0),
            rec("burst", "store reads", 2, 1.0),
        ];
        let r = build(Machine::default(), BTreeMap::new(), records);
        let burst = r.lines.iter().find(|o| o.line.row == "burst").unwrap();
        assert_eq!(burst.result, "miss");
        let zipf = r.lines.iter().find(|o| o.line.row == "zipf").unwrap();
        assert_eq!(zipf.result, "not run");
    }

    #[test]
    fn a_partial_run_keeps_the_other_rows_of_the_earlier_report_and_says_so() {
        let earlier_machine = Machine {
            started_at: "2026-12-01T10:00:00Z".into(),
            commit: "abc123".into(),
            ..Default::default()
        };
        let earlier = EarlierReport {
            machine: earlier_machine,
            records: vec![
                rec("http_l1", "nginx", 0, 1.0),
                rec("http_l1", "tm-local", 0, 1.0),
                rec("burst", "store reads", 0, 1.0),
            ],
        };
        let mut records = vec![
            rec("http_l1", "nginx", 0, 100.0),
            rec("http_l1", "tm-local", 0, 70.0),
        ];
        carry_over(&mut records, earlier);
        let r = build(Machine::default(), BTreeMap::new(), records);
        let l1 = r.lines.iter().find(|o| o.line.row == "http_l1").unwrap();
        assert_eq!(l1.ratio.unwrap().median, 0.7, "this run's figures win");
        assert_eq!(l1.earlier_run, None);
        let burst = r.lines.iter().find(|o| o.line.row == "burst").unwrap();
        assert_eq!(burst.result, "pass");
        assert_eq!(
            burst.earlier_run.as_deref(),
            Some("2026-12-01T10:00:00Z on `abc123`")
        );
        let md = markdown(&r);
        assert!(md.contains("(earlier run: 2026-12-01T10:00:00Z on `abc123`)"));
        assert!(md.contains("keep the figures of the run that last measured them"));
    }

    #[test]
    fn runs_on_a_busy_machine_are_left_out_of_ratios_and_shown() {
        let busy = |row: &str, series: &str, run: u32, value: f64, cores: f64| {
            let mut r = rec(row, series, run, value);
            r.busy = Some(cores);
            r
        };
        let records = vec![
            busy("http_l1", "nginx", 0, 100.0, 0.1),
            busy("http_l1", "tm-local", 0, 70.0, 0.1),
            // A build ran beside this run: its 30 % would fail the target.
            busy("http_l1", "nginx", 1, 100.0, 1.4),
            busy("http_l1", "tm-local", 1, 30.0, 1.4),
            busy("http_l2", "redis-benchmark GET", 0, 100.0, 0.9),
            busy("http_l2", "tm-local", 0, 60.0, 0.9),
        ];
        let r = build(Machine::default(), BTreeMap::new(), records);
        let l1 = r.lines.iter().find(|o| o.line.row == "http_l1").unwrap();
        assert_eq!(l1.ratio.unwrap().median, 0.7, "only the quiet run counts");
        assert_eq!((l1.busy_runs, l1.result.as_str()), (1, "pass"));
        let l2 = r.lines.iter().find(|o| o.line.row == "http_l2").unwrap();
        assert_eq!(l2.result, "not judged", "no quiet run: no verdict");
        let md = markdown(&r);
        assert!(md.contains("1 left out: machine busy"), "{md}");
        assert!(
            md.contains("| 0.10–1.40 |"),
            "the busy samples are shown: {md}"
        );
    }

    #[test]
    fn the_busy_limit_is_the_runs_bench_quiet_max() {
        let busy = |series: &str, run: u32, value: f64, cores: f64| {
            let mut r = rec("http_l1", series, run, value);
            r.busy = Some(cores);
            r
        };
        let records = || {
            vec![
                busy("nginx", 0, 100.0, 0.1),
                busy("tm-local", 0, 70.0, 0.1),
                busy("nginx", 1, 100.0, 0.8),
                busy("tm-local", 1, 30.0, 0.8),
            ]
        };
        let l1 = |settings: BTreeMap<String, String>| {
            let r = build(Machine::default(), settings, records());
            let o = r
                .lines
                .into_iter()
                .find(|o| o.line.row == "http_l1")
                .unwrap();
            (o.busy_runs, o.ratio.unwrap().n)
        };
        assert_eq!(l1(BTreeMap::new()), (1, 1), "0.5 by default");
        let loose = BTreeMap::from([("BENCH_QUIET_MAX".to_owned(), "1.0".to_owned())]);
        assert_eq!(l1(loose), (0, 2), "a looser limit counts both runs");
        let bad = BTreeMap::from([("BENCH_QUIET_MAX".to_owned(), "lots".to_owned())]);
        assert_eq!(l1(bad), (1, 1), "an unreadable setting keeps the default");
    }

    #[test]
    fn overhead_and_series_plus_targets() {
        let records = vec![
            rec("miss", "GetItem (SDK)", 0, 1000.0),
            rec("miss", "resolve (miss)", 0, 1080.0),
            rec("propagation", "end-to-end p99", 0, 1049.0),
            rec("propagation", "L1 TTL", 0, 1000.0),
        ];
        let r = build(Machine::default(), BTreeMap::new(), records);
        let miss = r.lines.iter().find(|o| o.line.row == "miss").unwrap();
        assert_eq!(miss.result, "pass");
        assert_eq!(ratio_text(miss), "+8.0 %");
        let e2e = r
            .lines
            .iter()
            .find(|o| o.line.series == "end-to-end p99")
            .unwrap();
        assert_eq!(e2e.result, "pass");
    }

    #[test]
    fn splicing_keeps_the_hand_written_parts() {
        let first = splice(None, "table v1\n");
        assert!(first.contains("table v1"));
        let edited =
            first.replace("# Benchmarks", "# Benchmarks\n\nNotes by hand.") + "\nMore notes.\n";
        let second = splice(Some(&edited), "table v2\n");
        assert!(second.contains("Notes by hand."));
        assert!(second.contains("More notes."));
        assert!(second.contains("table v2"));
        assert!(!second.contains("table v1"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(128_000.4), "128,000");
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.1234), "0.12");
    }
}
