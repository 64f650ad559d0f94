//! Single flight: concurrent callers asking for the same key share one computation, so a
//! burst of misses on one route costs one backend read.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Coalesces concurrent computations per key. Results are not kept after the flight lands.
pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// Runs `work` unless a flight for `key` is already under way, in which case it waits
    /// for that flight's result.
    pub async fn run<F, Fut>(&self, key: &K, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(key.clone()).or_default().clone()
        };
        let value = cell.get_or_init(work).await.clone();
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Only the flight that is still registered under the key is removed.
        if flights.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(key);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_callers_share_one_computation() {
        let sf = Arc::new(SingleFlight::<String, u64>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(1000));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (sf, calls, barrier) = (sf.clone(), calls.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                sf.run(&"k".to_owned(), || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    7
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_landed_flight_does_not_answer_later_callers() {
        let sf = SingleFlight::<u8, u64>::default();
        assert_eq!(sf.run(&1, || async { 1 }).await, 1);
        assert_eq!(sf.run(&1, || async { 2 }).await, 2);
    }
}
