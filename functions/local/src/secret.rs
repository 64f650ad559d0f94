//! The HS256 secret: `TM_JWT_SECRET`, or one generated into `<data-dir>/jwt-secret` the
//! first time (so `tm-local token` and the server agree without configuration).

use anyhow::Context;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;
use tm_core::config::Secret;

const FILE: &str = "jwt-secret";

/// The secret, and whether it came from the data dir (the server then warns).
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secret> {
    Ok(resolve(data_dir)?.0)
}

/// The secret and whether it was read or generated in the data dir.
pub fn resolve(data_dir: &Path) -> anyhow::Result<(Secret, bool)> {
    if let Some(s) = std::env::var("TM_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return Ok((Secret::new(s), false));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(FILE);
    if let Ok(s) = std::fs::read_to_string(&path)
        && !s.trim().is_empty()
    {
        return Ok((Secret::new(s.trim()), true));
    }
    let fresh: String = (0..4).map(|_| format!("{:016x}", fastrand_u64())).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => f
            .write_all(fresh.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let s = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            return Ok((Secret::new(s.trim()), true));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    Ok((Secret::new(fresh), true))
}

fn fastrand_u64() -> u64 {
    // uuid v4 draws from the OS generator: good enough for a local signing secret.
    let b = *uuid::Uuid::new_v4().as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A token with the contract's claims.
pub fn mint_token(secret: &Secret, sub: &str, tenants: &str, scope: &str, ttl_secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(sub));
    claims.insert("scope".into(), Value::from(scope));
    claims.insert("tm_tenants".into(), Value::from(tenants));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + ttl_secs as i64));
    tm_core::jwt::mint(secret.expose().as_bytes(), &claims)
}
