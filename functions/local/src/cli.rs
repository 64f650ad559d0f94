//! The command line of CONTRACT §8, parsed by hand (it is small and stable).

use std::path::PathBuf;

/// Help text.
pub const USAGE: &str = "usage:
  tm-local [--listen 127.0.0.1:8080] [--data-dir .tm-data]
  tm-local init [--data-dir .tm-data]
  tm-local token --sub NAME --tenants \"acme other\" --scope \"routes:read routes:write routes:resolve\" [--ttl 3600] [--data-dir .tm-data]

Backends come from the environment (TM_TABLE_NAME, TM_REDIS_URL, TM_KAFKA_BROKERS, ...);
with none set, embedded ones keep everything under --data-dir.";

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve HTTP.
    Serve {
        /// Listen address.
        listen: String,
        /// Data directory.
        data_dir: PathBuf,
    },
    /// Create what the configured backends lack.
    Init {
        /// Data directory.
        data_dir: PathBuf,
    },
    /// Print an HS256 token.
    Token {
        /// Data directory (for the generated secret).
        data_dir: PathBuf,
        /// `sub`.
        sub: String,
        /// `tm_tenants`.
        tenants: String,
        /// `scope`.
        scope: String,
        /// Lifetime.
        ttl_secs: u64,
    },
    /// Print usage.
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let (sub, rest) = match args.first().map(String::as_str) {
        Some("init") => ("init", &args[1..]),
        Some("token") => ("token", &args[1..]),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        _ => ("serve", args),
    };
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut data_dir = PathBuf::from(".tm-data");
    let (mut name, mut tenants, mut scope, mut ttl) = (None, None, None, 3600u64);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match (sub, flag.as_str()) {
            (_, "-h" | "--help") => return Ok(Command::Help),
            ("serve", "--listen") => listen = value()?,
            (_, "--data-dir") => data_dir = PathBuf::from(value()?),
            ("token", "--sub") => name = Some(value()?),
            ("token", "--tenants") => tenants = Some(value()?),
            ("token", "--scope") => scope = Some(value()?),
            ("token", "--ttl") => {
                ttl = value()?
                    .parse()
                    .ok()
                    .filter(|t| (1..=31_536_000).contains(t))
                    .ok_or("--ttl must be a number of seconds from 1 to 31536000")?
            }
            _ => return Err(format!("unknown argument '{flag}'")),
        }
    }
    Ok(match sub {
        "init" => Command::Init { data_dir },
        "token" => Command::Token {
            data_dir,
            sub: name.filter(|s| !s.is_empty()).ok_or("token needs --sub")?,
            tenants: tenants
                .filter(|s| !s.trim().is_empty())
                .ok_or("token needs --tenants")?,
            scope: scope
                .filter(|s| !s.trim().is_empty())
                .ok_or("token needs --scope")?,
            ttl_secs: ttl,
        },
        _ => Command::Serve { listen, data_dir },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Result<Command, String> {
        parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_serve_on_8080_with_dot_tm_data() {
        assert_eq!(
            p(&[]).unwrap(),
            Command::Serve {
                listen: "127.0.0.1:8080".into(),
                data_dir: ".tm-data".into()
            }
        );
    }

    #[test]
    fn token_needs_its_claims() {
        assert!(p(&["token", "--sub", "u"]).is_err());
        let c = p(&[
            "token",
            "--sub",
            "u",
            "--tenants",
            "acme",
            "--scope",
            "routes:read",
            "--ttl",
            "60",
        ])
        .unwrap();
        assert!(matches!(c, Command::Token { ttl_secs: 60, .. }));
        assert!(
            p(&[
                "token",
                "--sub",
                "u",
                "--tenants",
                "a",
                "--scope",
                "s",
                "--ttl",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn unknown_flags_are_refused() {
        assert!(p(&["--port", "1"]).is_err());
        assert!(p(&["init", "--listen", "x"]).is_err());
        assert!(p(&["--listen"]).is_err());
    }
}
