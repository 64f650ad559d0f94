//! Per-tenant token buckets kept in the process: the [`TenantLimiter`] of every function
//! and of tm-local. A request is admitted or refused from memory, never waiting on a
//! backend. When the process is one of a fleet (Lambda instances, several tm-locals), a
//! background task ([`TokenBuckets::reconcile`]) tells a [`UsageLedger`] (Redis) how many
//! requests each tenant sent this instance, a few times a second, and learns how many the
//! whole fleet received.
//!
//! # How a fleet shares one rate
//! Each instance's bucket for a tenant refills at the tenant's rate `r` times the
//! instance's *share*: the part of the tenant's recent requests (admitted or not) that
//! came to this instance, smoothed over the last few exchanges. The shares of a fleet add
//! up to 1, so the fleet admits `r` a second, split in proportion to where the demand
//! is: an instance that gets 10 % of a tenant's requests may admit 10 % of its rate, and
//! a tenant whose demand stays under its rate is never throttled. A new instance starts
//! with a share of 1 (its bucket holds the whole burst) until its first exchange, so a
//! fleet that scales out can overshoot by one burst per new instance, for one exchange
//! period. Measured with real processes on one Redis: docs/benchmarks.md ("rate limit
//! accuracy").
//!
//! # When the ledger cannot answer
//! Each instance keeps its last shares and goes on limiting with them: a Redis outage
//! never delays or refuses a request. The first failed exchange logs one warning, the
//! recovery one line; every failed exchange counts in `tm_ratelimit_degraded_total`.
//! What was counted during the outage is sent with the next exchange that succeeds.

use crate::config::RateLimit;
use crate::ports::{Admission, TenantLimiter, UsageLedger};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often an instance exchanges its usage with the fleet: five times a second lets a
/// shift of demand between instances move the shares within half a second, and costs
/// one Redis script call per function and period, whatever the request rate.
pub const EXCHANGE_PERIOD: Duration = Duration::from_millis(200);

/// How long a bucket nobody used is still exchanged (and kept).
const IDLE: Duration = Duration::from_secs(10);

/// The weight of the newest exchange in the smoothed request counts: about the last
/// three exchanges count.
const SMOOTHING: f64 = 0.4;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    used: Instant,
    /// Requests (admitted or not) seen here and not yet told to the ledger.
    unsent: u64,
    /// The fleet's total after the last exchange; `None` before the first.
    seen: Option<u64>,
    /// Smoothed requests per exchange: here, and on the rest of the fleet.
    own: f64,
    others: f64,
    /// This instance's part of the tenant's rate, 0–1.
    share: f64,
}

impl Bucket {
    fn new(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
            used: now,
            unsent: 0,
            seen: None,
            own: 0.0,
            others: 0.0,
            share: 1.0,
        }
    }

    /// Folds one exchange in: `sent` requests from here, `others` from the rest.
    fn learn(&mut self, sent: u64, others: u64) {
        self.own = SMOOTHING * sent as f64 + (1.0 - SMOOTHING) * self.own;
        self.others = SMOOTHING * others as f64 + (1.0 - SMOOTHING) * self.others;
        let all = self.own + self.others;
        if all > 0.0 {
            self.share = self.own / all;
        }
    }
}

/// The buckets of one process, by class (function) and tenant.
pub struct TokenBuckets {
    limit: RateLimit,
    // A std Mutex: held for a map lookup and a few float operations, never across an await.
    classes: Mutex<HashMap<&'static str, HashMap<String, Bucket>>>,
    degraded: AtomicBool,
}

impl TokenBuckets {
    /// Buckets refilling at `limit.rps`, holding at most `limit.burst` (at least 1).
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            classes: Mutex::new(HashMap::new()),
            degraded: AtomicBool::new(false),
        }
    }

    fn burst(&self) -> f64 {
        f64::from(self.limit.burst.max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, HashMap<String, Bucket>>> {
        self.classes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`TenantLimiter::admit`] at a given time.
    pub fn admit_at(&self, class: &'static str, tenant: &str, now: Instant) -> Admission {
        let (rate, burst) = (self.limit.rps, self.burst());
        let mut classes = self.lock();
        let buckets = classes.entry(class).or_default();
        let bucket = match buckets.get_mut(tenant) {
            Some(b) => b,
            None => buckets
                .entry(tenant.to_owned())
                .or_insert(Bucket::new(burst, now)),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        // At least one token fits, so an instance with a tiny share still gets a request
        // through now and then, and its next exchange raises the share.
        let room = (burst * bucket.share).max(1.0);
        bucket.tokens = (bucket.tokens + elapsed * rate * bucket.share).min(room);
        bucket.at = bucket.at.max(now);
        bucket.used = bucket.at;
        bucket.unsent += 1;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Admission::Allowed
        } else {
            // The fleet-wide wait: a client is told when the tenant's rate allows it
            // again, whichever instance it reaches.
            let wait = (1.0 - bucket.tokens) / rate;
            Admission::Throttled {
                retry_after_secs: (wait.ceil() as u64).max(1),
            }
        }
    }

    /// One exchange with the fleet: sends how many requests each recently used bucket
    /// saw since the last exchange and updates its share from what the others saw
    /// meanwhile. Idle buckets are dropped. `Err` (the ledger's) keeps the counts and the
    /// shares for next time.
    pub async fn exchange_once(&self, ledger: &dyn UsageLedger) -> crate::Result<()> {
        let now = Instant::now();
        let batches: Vec<(&'static str, Vec<(String, u64)>)> = {
            let mut classes = self.lock();
            classes
                .iter_mut()
                .map(|(class, buckets)| {
                    buckets.retain(|_, b| b.unsent > 0 || now.duration_since(b.used) < IDLE);
                    let deltas = buckets
                        .iter_mut()
                        .map(|(t, b)| (t.clone(), std::mem::take(&mut b.unsent)))
                        .collect();
                    (*class, deltas)
                })
                .filter(|(_, d): &(_, Vec<_>)| !d.is_empty())
                .collect()
        };
        let mut failed = None;
        for (class, deltas) in batches {
            let totals = match ledger.exchange(class, &deltas).await {
                Ok(t) if t.len() == deltas.len() => Ok(t),
                Ok(t) => Err(crate::Error::Internal(format!(
                    "usage ledger answered {} totals for {} tenants",
                    t.len(),
                    deltas.len()
                ))),
                Err(e) => Err(e),
            };
            let mut classes = self.lock();
            let buckets = classes.entry(class).or_default();
            match totals {
                Ok(totals) => {
                    for ((tenant, sent), total) in deltas.iter().zip(totals) {
                        let Some(b) = buckets.get_mut(tenant) else {
                            continue;
                        };
                        // The others' share of the growth; a total below what we had seen
                        // (the ledger's key expired or was reset) starts a new baseline.
                        if let Some(seen) = b.seen {
                            let others = total.saturating_sub(seen).saturating_sub(*sent);
                            b.learn(*sent, others);
                        }
                        b.seen = Some(total);
                    }
                }
                Err(e) => {
                    for (tenant, sent) in &deltas {
                        if let Some(b) = buckets.get_mut(tenant) {
                            b.unsent += sent;
                        }
                    }
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Exchanges with the fleet every `period` until the process ends (spawn it once, at
    /// start-up). Logs once per outage and once per recovery.
    pub async fn reconcile(
        self: std::sync::Arc<Self>,
        ledger: std::sync::Arc<dyn UsageLedger>,
        period: Duration,
    ) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.exchange_once(ledger.as_ref()).await {
                Ok(()) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("rate limiter: the fleet's usage ledger answers again");
                    }
                }
                Err(e) => {
                    crate::metrics::figures().limiter_degraded();
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "rate limiter: the fleet's usage ledger does not answer; keeping the last shares until it does");
                    }
                }
            }
        }
    }

    /// Whether the last exchange failed.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }
}

impl TenantLimiter for TokenBuckets {
    fn admit(&self, class: &'static str, tenant: &str) -> Admission {
        self.admit_at(class, tenant, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::Arc;

    fn buckets(rps: f64, burst: u32) -> TokenBuckets {
        TokenBuckets::new(RateLimit { rps, burst })
    }

    /// The ledger of a fleet, in memory: one running total per (class, tenant).
    #[derive(Default)]
    struct Ledger {
        totals: Mutex<HashMap<String, u64>>,
        down: AtomicBool,
    }

    #[async_trait]
    impl UsageLedger for Ledger {
        async fn exchange(&self, class: &str, deltas: &[(String, u64)]) -> crate::Result<Vec<u64>> {
            if self.down.load(Ordering::Relaxed) {
                return Err(crate::Error::Unavailable("ledger down".into()));
            }
            let mut totals = self.totals.lock().unwrap();
            Ok(deltas
                .iter()
                .map(|(t, d)| {
                    let v = totals.entry(format!("{class}/{t}")).or_default();
                    *v += d;
                    *v
                })
                .collect())
        }
    }

    #[test]
    fn a_tenant_gets_its_burst_then_waits_for_the_refill() {
        let l = buckets(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.admit_at("resolve", "acme", t0), Admission::Allowed);
        }
        assert_eq!(
            l.admit_at("resolve", "acme", t0),
            Admission::Throttled {
                retry_after_secs: 1
            }
        );
        assert!(
            matches!(
                l.admit_at("resolve", "acme", t0 + Duration::from_millis(499)),
                Admission::Throttled { .. }
            ),
            "half a token is not a token"
        );
        assert_eq!(
            l.admit_at("resolve", "acme", t0 + Duration::from_millis(500)),
            Admission::Allowed
        );
    }

    #[test]
    fn retry_after_is_the_whole_seconds_until_the_next_token() {
        let l = buckets(0.25, 1);
        let t0 = Instant::now();
        assert_eq!(l.admit_at("write", "acme", t0), Admission::Allowed);
        assert_eq!(
            l.admit_at("write", "acme", t0),
            Admission::Throttled {
                retry_after_secs: 4
            }
        );
    }

    #[test]
    fn tenants_and_functions_have_buckets_of_their_own() {
        let l = buckets(1.0, 1);
        let t0 = Instant::now();
        assert_eq!(l.admit_at("resolve", "acme", t0), Admission::Allowed);
        assert_ne!(l.admit_at("resolve", "acme", t0), Admission::Allowed);
        assert_eq!(l.admit_at("resolve", "other", t0), Admission::Allowed);
        assert_eq!(l.admit_at("write", "acme", t0), Admission::Allowed);
    }

    /// Runs `fleet` for `seconds` simulated seconds, instance `i` offered `offered[i]`
    /// requests a second, exchanging every 200 ms; what each admitted after the first
    /// `warmup` seconds.
    async fn simulate(
        fleet: &[TokenBuckets],
        offered: &[u64],
        seconds: u64,
        warmup: u64,
    ) -> Vec<u64> {
        let ledger = Ledger::default();
        let t0 = Instant::now();
        let mut admitted = vec![0u64; fleet.len()];
        for ms in 0..seconds * 1000 {
            let now = t0 + Duration::from_millis(ms);
            for (i, node) in fleet.iter().enumerate() {
                // `offered[i]` requests a second, evenly spread
                let due = (ms + 1) * offered[i] / 1000 - ms * offered[i] / 1000;
                for _ in 0..due {
                    if node.admit_at("resolve", "acme", now) == Admission::Allowed
                        && ms >= warmup * 1000
                    {
                        admitted[i] += 1;
                    }
                }
            }
            if ms % 200 == 199 {
                for node in fleet {
                    node.exchange_once(&ledger).await.unwrap();
                }
            }
        }
        admitted
    }

    #[tokio::test]
    async fn a_fleet_splits_the_rate_in_proportion_to_where_the_demand_is() {
        // GIVEN two instances, one offered 3 times the other's demand, limit 40 a second
        let fleet: Vec<TokenBuckets> = (0..2).map(|_| buckets(40.0, 40)).collect();
        let admitted = simulate(&fleet, &[150, 50], 12, 2).await;
        // THEN over 10 s the fleet admits 40 a second, about 3 to 1
        let total = (admitted[0] + admitted[1]) as f64 / 10.0;
        assert!((34.0..=46.0).contains(&total), "fleet rate {total}/s");
        let ratio = admitted[0] as f64 / admitted[1] as f64;
        assert!((2.4..=3.6).contains(&ratio), "split {admitted:?}");
    }

    #[tokio::test]
    async fn a_fleet_admits_the_configured_rate_not_n_times_it() {
        // GIVEN 8 instances, each offered 100 requests a second, with a limit of 50
        let fleet: Vec<TokenBuckets> = (0..8).map(|_| buckets(50.0, 50)).collect();
        let admitted = simulate(&fleet, &[100; 8], 17, 2).await;
        // THEN over 15 s the fleet admitted 50 a second, within 15 %
        let rate = admitted.iter().sum::<u64>() as f64 / 15.0;
        assert!((42.5..=57.5).contains(&rate), "fleet rate {rate}/s");
    }

    #[tokio::test]
    async fn a_tenant_under_its_rate_is_never_throttled_however_it_is_spread() {
        let fleet: Vec<TokenBuckets> = (0..4).map(|_| buckets(100.0, 100)).collect();
        let admitted = simulate(&fleet, &[40, 20, 10, 10], 10, 0).await;
        assert_eq!(admitted, vec![400, 200, 100, 100]);
    }

    #[tokio::test]
    async fn a_ledger_that_does_not_answer_keeps_the_counts_for_later() {
        let ledger = Ledger::default();
        let l = buckets(10.0, 10);
        let t0 = Instant::now();
        l.admit_at("resolve", "acme", t0);
        l.exchange_once(&ledger).await.unwrap();
        ledger.down.store(true, Ordering::Relaxed);
        for _ in 0..3 {
            l.admit_at("resolve", "acme", t0);
        }
        assert!(l.exchange_once(&ledger).await.is_err());
        assert_eq!(
            l.admit_at("resolve", "acme", t0),
            Admission::Allowed,
            "admission goes on"
        );
        ledger.down.store(false, Ordering::Relaxed);
        l.exchange_once(&ledger).await.unwrap();
        assert_eq!(
            ledger.totals.lock().unwrap()["resolve/acme"],
            5,
            "nothing counted is lost"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_reconciler_reports_an_outage_once_and_goes_on() {
        let ledger = Arc::new(Ledger::default());
        ledger.down.store(true, Ordering::Relaxed);
        let l = Arc::new(buckets(1.0, 1));
        l.admit("resolve", "acme");
        let task = tokio::spawn(l.clone().reconcile(ledger.clone(), EXCHANGE_PERIOD));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(l.degraded());
        ledger.down.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!l.degraded());
        assert_eq!(ledger.totals.lock().unwrap()["resolve/acme"], 1);
        task.abort();
    }
}
