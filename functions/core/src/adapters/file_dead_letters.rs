//! Dead letters as JSON lines in a file (tm-local's stand-in for the `-dlq` topic).

use crate::ports::{DeadLetter, DeadLetters};
use crate::{Error, Result};
use async_trait::async_trait;
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
