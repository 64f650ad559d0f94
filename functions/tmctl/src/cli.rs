//! The command line (docs/tmctl.md): global flags, subcommands and their arguments.

use crate::output::Format;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

/// tmctl: operate a Traffic Manager from the terminal.
#[derive(Debug, Parser)]
#[command(name = "tmctl", version, about, long_about = None)]
pub struct Cli {
    /// Server base URL [env: TM_URL; config: url; default http://127.0.0.1:8080].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Tenant [env: TM_TENANT; config: tenant]. `plan` and `apply` take it from the file.
    #[arg(short, long, global = true)]
    pub tenant: Option<String>,
    /// Config file [env: TMCTL_CONFIG; default ~/.config/tmctl/config.yaml].
    #[arg(long, global = true)]
    pub config: Option<String>,
    /// Output: a table for people or JSON for scripts.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read and write single routes.
    #[command(subcommand)]
    Routes(RoutesCmd),
    /// Resolve service/env/selector (latest, a version, or a range such as ^2).
    Resolve {
        /// service/env/selector.
        route: String,
        /// Sticky key.
        #[arg(long)]
        key: Option<String>,
    },
    /// A route's propagation status, or the server's readiness when no route is given.
    Status {
        /// service/env/version.
        route: Option<String>,
    },
    /// Show what `apply` would change.
    Plan(FileArgs),
    /// Make the deployed routes match the file (If-Match on every write).
    Apply {
        /// The file and pruning.
        #[command(flatten)]
        file: FileArgs,
        /// A plan saved with `plan -o json` and reviewed: apply only if the fresh plan
        /// is the same (else exit 3).
        #[arg(long)]
        plan: Option<String>,
    },
    /// Shift a canary: walk traffic to one endpoint step by step.
    Shift {
        /// service/env/version.
        route: String,
        /// The endpoint id that takes the traffic.
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        /// Percentage points per step.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
        step: u32,
        /// Pause between steps (e.g. 30s, 500ms, 2m).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        every: Duration,
        /// Restore the weights recorded before the shift.
        #[arg(long)]
        abort: bool,
    },
    /// Follow the tenant's audit feed.
    Watch {
        /// Start at this instant (RFC 3339); default now.
        #[arg(long)]
        since: Option<String>,
        /// Poll interval.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        every: Duration,
        /// Stop after this many entries.
        #[arg(long)]
        count: Option<usize>,
    },
}

/// `-f routes.yaml [--prune]`.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// The routes file.
    #[arg(short, long)]
    pub file: String,
    /// Delete deployed routes the file does not name.
    #[arg(long)]
    pub prune: bool,
    /// Exit 7 when the plan has changes (0 when none).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// `routes ...`.
#[derive(Debug, Subcommand)]
pub enum RoutesCmd {
    /// Show one route.
    Get {
        /// service/env/version.
        route: String,
    },
    /// Create or replace a route from a JSON body file (`-` for stdin).
    Put {
        /// service/env/version.
        route: String,
        /// JSON body: endpoints, and optionally ttl_seconds, labels, active.
        #[arg(short, long)]
        file: String,
        /// Only if the route is at this revision.
        #[arg(long, conflicts_with = "create_only")]
        if_match: Option<u64>,
        /// Only if the route does not exist.
        #[arg(long)]
        create_only: bool,
    },
    /// Delete a route.
    Delete {
        /// service/env/version.
        route: String,
        /// Only if the route is at this revision.
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// List the tenant's routes.
    List {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Only this environment (with --service).
        #[arg(long, requires = "service")]
        env: Option<String>,
    },
    /// A route's change history, newest first.
    History {
        /// service/env/version.
        route: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// `30s`, `500ms`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_read_the_way_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shift_needs_a_target_unless_it_aborts() {
        assert!(Cli::try_parse_from(["tmctl", "shift", "s/e/1"]).is_err());
        assert!(Cli::try_parse_from(["tmctl", "shift", "s/e/1", "--abort"]).is_ok());
        let c = Cli::try_parse_from([
            "tmctl", "shift", "s/e/1", "--to", "green", "--step", "10", "--every", "30s",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Shift { step: 10, .. }));
        assert!(
            Cli::try_parse_from(["tmctl", "shift", "s/e/1", "--to", "g", "--step", "0"]).is_err()
        );
    }
}
