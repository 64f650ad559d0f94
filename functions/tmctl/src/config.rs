//! Where tmctl finds the server, the token and the tenant: a flag, else an environment
//! variable, else the config file, else a default. The token is never a flag (it would
//! land in shell history and `ps`): `TM_TOKEN` or the config file's `token`.
//!
//! The config file (`--config`, else `TMCTL_CONFIG`, else
//! `$XDG_CONFIG_HOME/tmctl/config.yaml`, else `~/.config/tmctl/config.yaml`) is YAML
//! with any of `url`, `token`, `tenant`; a missing default file is fine, a missing named
//! file is an error.

use crate::error::{CtlError, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use yaml_rust2::{Yaml, YamlLoader};

/// The server when nothing else says: tm-local's default address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What the command runs against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Base URL.
    pub url: String,
    /// Bearer token, when one was found.
    pub token: Option<String>,
    /// Tenant, when one was given.
    pub tenant: Option<String>,
    /// Where shifts keep their records.
    pub state_dir: PathBuf,
}

/// The environment tmctl reads (a map, so tests pass their own).
pub type Env = HashMap<String, String>;

fn get<'a>(env: &'a Env, k: &str) -> Option<&'a str> {
    env.get(k).map(String::as_str).filter(|s| !s.is_empty())
}

fn home_dir(env: &Env, xdg: &str, fallback: &str) -> Option<PathBuf> {
    get(env, xdg)
        .map(PathBuf::from)
        .or_else(|| get(env, "HOME").map(|h| PathBuf::from(h).join(fallback)))
}

/// The values a config file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileValues {
    /// `url`.
    pub url: Option<String>,
    /// `token`.
    pub token: Option<String>,
    /// `tenant`.
    pub tenant: Option<String>,
}

/// Parses a config file's text.
pub fn parse_file(text: &str, source: &str) -> Result<FileValues> {
    let bad = |m: String| CtlError::Usage(format!("{source}: {m}"));
    let docs = YamlLoader::load_from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let mut out = FileValues::default();
    let Some(doc) = docs.first() else {
        return Ok(out);
    };
    let Yaml::Hash(h) = doc else {
        return Err(bad("expected a mapping of url, token, tenant".into()));
    };
    for (k, v) in h {
        let value = v
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("{k:?} must be text")))?;
        match k.as_str() {
            Some("url") => out.url = Some(value),
            Some("token") => out.token = Some(value),
            Some("tenant") => out.tenant = Some(value),
            _ => {
                return Err(bad(format!(
                    "unknown key {k:?} (known: url, token, tenant)"
                )));
            }
        }
    }
    Ok(out)
}

/// Resolves the settings from flags, environment and config file.
pub fn resolve(
    flag_url: Option<&str>,
    flag_tenant: Option<&str>,
    flag_config: Option<&str>,
    env: &Env,
) -> Result<Settings> {
    let named = flag_config
        .or_else(|| get(env, "TMCTL_CONFIG"))
        .map(PathBuf::from);
    let file = match &named {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CtlError::Usage(format!("config file {}: {e}", path.display())))?;
            parse_file(&text, &path.display().to_string())?
        }
        None => match home_dir(env, "XDG_CONFIG_HOME", ".config")
            .map(|d| d.join("tmctl/config.yaml"))
        {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CtlError::Usage(format!("config file {}: {e}", path.display())))?;
                parse_file(&text, &path.display().to_string())?
            }
            _ => FileValues::default(),
        },
    };
    let url = flag_url
        .map(str::to_owned)
        .or_else(|| get(env, "TM_URL").map(str::to_owned))
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = get(env, "TM_TOKEN").map(str::to_owned).or(file.token);
    let tenant = flag_tenant
        .map(str::to_owned)
        .or_else(|| get(env, "TM_TENANT").map(str::to_owned))
        .or(file.tenant);
    let state_dir = get(env, "TMCTL_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| home_dir(env, "XDG_STATE_HOME", ".local/state").map(|d| d.join("tmctl")))
        .unwrap_or_else(|| PathBuf::from(".tmctl"));
    Ok(Settings {
        url,
        token,
        tenant,
        state_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_flag_beats_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "url: http://file:1\ntoken: file-token\ntenant: filet\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = resolve(None, None, Some(f), &env(&[])).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.as_deref(), s.tenant.as_deref()),
            ("http://file:1", Some("file-token"), Some("filet"))
        );
        let e = env(&[
            ("TM_URL", "http://env:2"),
            ("TM_TOKEN", "env-token"),
            ("TM_TENANT", "envt"),
        ]);
        let s = resolve(None, None, Some(f), &e).unwrap();
        assert_eq!(
            (s.url.as_str(), s.token.as_deref(), s.tenant.as_deref()),
            ("http://env:2", Some("env-token"), Some("envt"))
        );
        let s = resolve(Some("http://flag:3"), Some("flagt"), Some(f), &e).unwrap();
        assert_eq!(
            (s.url.as_str(), s.tenant.as_deref()),
            ("http://flag:3", Some("flagt"))
        );
    }

    #[test]
    fn the_default_file_is_optional_and_a_named_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(&[("HOME", dir.path().to_str().unwrap())]);
        let s = resolve(None, None, None, &e).unwrap();
        assert_eq!(s.url, DEFAULT_URL);
        assert_eq!(s.token, None);
        assert_eq!(s.state_dir, dir.path().join(".local/state/tmctl"));
        std::fs::create_dir_all(dir.path().join(".config/tmctl")).unwrap();
        std::fs::write(dir.path().join(".config/tmctl/config.yaml"), "token: t\n").unwrap();
        assert_eq!(
            resolve(None, None, None, &e).unwrap().token.as_deref(),
            Some("t")
        );
        let missing = resolve(None, None, Some("/nonexistent/tmctl.yaml"), &e).unwrap_err();
        assert_eq!(missing.exit_code(), crate::error::code::USAGE);
    }

    #[test]
    fn unknown_keys_in_the_config_file_are_rejected() {
        assert!(parse_file("url: x\ntokne: y\n", "c").is_err());
        assert!(parse_file("", "c").unwrap() == FileValues::default());
    }
}
