//! Dead letters as JSON lines in a file (tm-local's stand-in for the `-dlq` topic), and
//! the marks of the letters sent kept in the process ([`MemoryDeadLetterMarks`]).

use crate::ports::{DeadLetter, DeadLetterMarks, DeadLetters};
use crate::{Error, Result};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Appends each letter as one JSON line and syncs it to disk before returning.
pub struct FileDeadLetters {
    path: PathBuf,
    // Serialises appends so lines never interleave.
    lock: Mutex<()>,
}

impl FileDeadLetters {
    /// Letters go to `path` (created on first use).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }
}

#[async_trait]
impl DeadLetters for FileDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<()> {
        let fault = |e: std::io::Error| Error::Unavailable(format!("dead-letter file: {e}"));
        let mut line = serde_json::to_vec(letter).map_err(|e| Error::Internal(e.to_string()))?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fault)?;
        f.write_all(&line).map_err(fault)?;
        f.sync_data().map_err(fault)
    }
}

/// Marks of the letters this process sent, the most recent
/// [`MemoryDeadLetterMarks::CAPACITY`]: enough for a batch delivered again to the same
/// process (tm-local's triggers, a warm Lambda instance), nothing for one delivered to
/// another instance (shared marks do that: Redis in the Lambda).
#[derive(Default)]
pub struct MemoryDeadLetterMarks {
    // A std Mutex: held for a lookup or an insert, never across an await.
    inner: Mutex<MarkSet>,
}

/// Position → fingerprint, and the positions in insertion order (for eviction).
#[derive(Default)]
struct MarkSet {
    by_position: HashMap<String, String>,
    order: VecDeque<String>,
}

impl MemoryDeadLetterMarks {
    /// Most marks kept; the oldest goes first.
    pub const CAPACITY: usize = 100_000;
}

#[async_trait]
impl DeadLetterMarks for MemoryDeadLetterMarks {
    async fn was_sent(&self, letter: &DeadLetter) -> Result<bool> {
        let set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(set.by_position.get(&letter.position()) == Some(&letter.fingerprint()))
    }

    async fn mark_sent(&self, letter: &DeadLetter) -> Result<()> {
        let mut set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let position = letter.position();
        if set
            .by_position
            .insert(position.clone(), letter.fingerprint())
            .is_none()
        {
            set.order.push_back(position);
        }
        while set.order.len() > Self::CAPACITY {
            if let Some(old) = set.order.pop_front() {
                set.by_position.remove(&old);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(offset: i64, value: &str) -> DeadLetter {
        DeadLetter {
            topic: "route-events".into(),
            partition: 0,
            offset,
            key: Some("a2V5".into()),
            value: Some(value.into()),
            reason: "poison".into(),
        }
    }

    #[tokio::test]
    async fn a_mark_stands_for_its_record_only() {
        let marks = MemoryDeadLetterMarks::default();
        assert!(!marks.was_sent(&letter(7, "eA==")).await.unwrap());
        marks.mark_sent(&letter(7, "eA==")).await.unwrap();
        assert!(marks.was_sent(&letter(7, "eA==")).await.unwrap());
        assert!(
            !marks.was_sent(&letter(8, "eA==")).await.unwrap(),
            "another offset"
        );
        assert!(
            !marks.was_sent(&letter(7, "eQ==")).await.unwrap(),
            "another record at the same offset (a topic made again)"
        );
    }
}
