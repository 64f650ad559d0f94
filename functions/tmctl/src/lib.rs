//! tmctl: the Traffic Manager command line, for people (tables) and scripts (JSON, exit
//! codes). The bin only wires; everything lives here:
//! - [`cli`]: the command line.
//! - [`config`]: URL, token and tenant from flags, environment and config file.
//! - [`client`]: HTTP(S) with a bearer token and contract error bodies.
//! - [`api`]: the API as typed calls for one tenant.
//! - [`spec`]: the declarative routes file.
//! - [`plan`]: the diff from the file to what is deployed (pure).
//! - [`apply`]: conditional writes of a plan, conflicts reported, never overwritten.
//! - [`shift`]: canary shifts, step by step, checked through resolve, with abort.
//! - [`watch`]: following the audit feed.
//! - [`output`]: tables and text.
//! - [`error`]: the error type and the exit codes.

pub mod api;
pub mod apply;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod output;
pub mod plan;
pub mod shift;
pub mod spec;
pub mod watch;

use api::{Api, RouteRef};
use clap::Parser;
use cli::{Cli, Command, FileArgs, RoutesCmd};
use client::{ApiClient, Precondition};
use config::{Env, Settings};
use error::{CtlError, Result, code};
use output::Format;
use serde_json::{Value, json};
use std::io::Write;

/// Where a command writes: results to `out`, diagnostics and progress to `err`.
pub struct Io<'a> {
    /// Results.
    pub out: &'a mut dyn Write,
    /// Errors and progress.
    pub err: &'a mut dyn Write,
    /// Whether `err` is a terminal (progress bars only then).
    pub err_is_tty: bool,
    /// Standard input, for `routes put -f -`.
    pub stdin: &'a mut dyn std::io::Read,
}

/// Runs one command line (`args[0]` is the program name) and answers the exit code.
pub async fn run(args: Vec<String>, env: &Env, io: &mut Io<'_>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let (stream, status): (&mut dyn Write, i32) = if e.use_stderr() {
                (&mut *io.err, code::USAGE)
            } else {
                (&mut *io.out, code::OK)
            };
            let _ = write!(stream, "{e}");
            return status;
        }
    };
    match execute(cli, env, io).await {
        Ok(status) => status,
        Err(e) => {
            let _ = writeln!(io.err, "tmctl: {e}");
            e.exit_code()
        }
    }
}

fn tenant(settings: &Settings) -> Result<String> {
    let t = settings.tenant.clone().ok_or_else(|| {
        CtlError::Usage(
            "no tenant: pass -t/--tenant, set TM_TENANT, or set `tenant` in the config file".into(),
        )
    })?;
    tm_core::domain::names::TenantName::parse(&t)
        .map_err(|e| CtlError::Usage(format!("tenant {t:?} {e}")))?;
    Ok(t)
}

fn emit_json(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CtlError::Io(e.to_string()))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn emit_line(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string(v).map_err(|e| CtlError::Io(e.to_string()))?;
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

async fn execute(cli: Cli, env: &Env, io: &mut Io<'_>) -> Result<i32> {
    let fmt = cli.output;
    let mut settings = config::resolve(
        cli.url.as_deref(),
        cli.tenant.as_deref(),
        cli.config.as_deref(),
        env,
    )?;
    let client = ApiClient::new(&settings.url, settings.token.clone())?;
    match cli.command {
        Command::Routes(cmd) => {
            let api = Api::new(client, tenant(&settings)?);
            routes(&api, cmd, fmt, io).await
        }
        Command::Resolve { route, key } => {
            let api = Api::new(client, tenant(&settings)?);
            let r = RouteRef::parse_selector(&route)?;
            let (answer, cache) = api.resolve(&r, key.as_deref()).await?;
            match fmt {
                Format::Json => emit_json(io.out, &answer)?,
                Format::Table => write!(io.out, "{}", output::resolve_detail(&answer, &cache))?,
            }
            Ok(code::OK)
        }
        Command::Status { route: Some(route) } => {
            let api = Api::new(client, tenant(&settings)?);
            let r = RouteRef::parse(&route, api.tenant())?;
            let st = api.status(&r).await?;
            match fmt {
                Format::Json => emit_json(io.out, &st)?,
                Format::Table => write!(
                    io.out,
                    "{}",
                    output::table(
                        &["ROUTE", "REVISION", "CACHED", "IN_SYNC"],
                        &[vec![
                            r.to_string(),
                            output::text(&st["revision"]),
                            output::text(&st["cached_revision"]),
                            output::text(&st["in_sync"])
                        ]]
                    )
                )?,
            }
            Ok(code::OK)
        }
        Command::Status { route: None } => {
            let api = Api::new(client, settings.tenant.clone().unwrap_or_default());
            let (ready, body) = api.readiness().await?;
            match fmt {
                Format::Json => emit_json(io.out, &body)?,
                Format::Table => {
                    writeln!(
                        io.out,
                        "server    {}\nstatus    {}\n",
                        settings.url,
                        output::text(&body["status"])
                    )?;
                    let rows: Vec<Vec<String>> = body["backends"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| vec![k.clone(), output::text(v)])
                                .collect()
                        })
                        .unwrap_or_default();
                    write!(io.out, "{}", output::table(&["BACKEND", "STATE"], &rows))?;
                }
            }
            Ok(if ready { code::OK } else { code::ERROR })
        }
        Command::Plan(file) => {
            let (api, plan) = make_plan(client, &mut settings, &file).await?;
            drop(api);
            match fmt {
                Format::Json => emit_json(io.out, &plan)?,
                Format::Table => write!(io.out, "{}", output::plan_text(&plan))?,
            }
            Ok(if file.detailed_exitcode && plan.has_changes() {
                code::CHANGES
            } else {
                code::OK
            })
        }
        Command::Apply {
            file,
            plan: reviewed,
        } => {
            let (api, plan) = make_plan(client, &mut settings, &file).await?;
            if let Some(path) = reviewed {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CtlError::Usage(format!("reviewed plan {path}: {e}")))?;
                let saved: plan::Plan = serde_json::from_str(&text).map_err(|e| {
                    CtlError::Usage(format!(
                        "reviewed plan {path}: not a plan from `tmctl plan -o json` ({e})"
                    ))
                })?;
                if saved.reviewed_form() != plan.reviewed_form() {
                    if fmt == Format::Table {
                        write!(io.out, "{}", output::plan_text(&plan))?;
                    }
                    return Err(CtlError::Conflict(format!(
                        "the deployed routes or the file changed since {path} was reviewed (the fresh plan is above); nothing applied"
                    )));
                }
            }
            if fmt == Format::Table {
                write!(io.out, "{}", output::plan_text(&plan))?;
            }
            if !plan.has_changes() {
                if fmt == Format::Json {
                    emit_json(io.out, &json!({"plan": plan, "results": []}))?;
                }
                return Ok(code::OK);
            }
            let report = apply::apply(&api, &plan, io.err_is_tty).await;
            match fmt {
                Format::Json => {
                    emit_json(io.out, &json!({"plan": plan, "results": report.results}))?
                }
                Format::Table => write!(io.out, "\n{}", output::report_text(&report))?,
            }
            match report.error() {
                Some(e) => Err(e),
                None => Ok(code::OK),
            }
        }
        Command::Shift {
            route,
            to,
            step,
            every,
            abort,
        } => {
            let api = Api::new(client, tenant(&settings)?);
            let r = RouteRef::parse(&route, api.tenant())?;
            if abort {
                let rev = shift::abort(&api, &r, &settings.state_dir).await?;
                match fmt {
                    Format::Json => emit_line(
                        io.out,
                        &json!({"route": r, "restored": true, "revision": rev}),
                    )?,
                    Format::Table => {
                        writeln!(io.out, "{r}: recorded weights restored (revision {rev})")?
                    }
                }
                return Ok(code::OK);
            }
            let target = to.ok_or_else(|| CtlError::Usage("--to is required".into()))?;
            let out = &mut *io.out;
            let mut report = |s: &shift::Step| -> Result<()> {
                match fmt {
                    Format::Json => emit_line(out, s),
                    Format::Table => {
                        let w: Vec<String> = s
                            .weights
                            .iter()
                            .map(|(id, w)| format!("{id}:{w}"))
                            .collect();
                        let c: Vec<String> = s
                            .candidates
                            .iter()
                            .map(|(id, w)| format!("{id}:{w}"))
                            .collect();
                        writeln!(
                            out,
                            "step {}/{}  {target} {:>3} %  [{}]  revision {}  resolve: {} of [{}]",
                            s.step,
                            s.of,
                            s.percent,
                            w.join(" "),
                            s.revision,
                            s.resolved,
                            c.join(" ")
                        )?;
                        out.flush()?;
                        Ok(())
                    }
                }
            };
            let rev = shift::shift(
                &api,
                &r,
                &target,
                step,
                every,
                &settings.state_dir,
                &mut report,
            )
            .await?;
            if fmt == Format::Table {
                writeln!(
                    io.out,
                    "{r}: {target} takes all of its group's traffic (revision {rev}); `tmctl shift {r} --abort` restores the recorded weights"
                )?;
            }
            Ok(code::OK)
        }
        Command::Watch {
            since,
            every,
            count,
        } => {
            let api = Api::new(client, tenant(&settings)?);
            let since = match since {
                Some(s) => {
                    tm_core::domain::timefmt::Timestamp::parse(&s)
                        .map_err(|e| CtlError::Usage(format!("--since {s:?}: {e}")))?;
                    s
                }
                None => tm_core::domain::timefmt::Timestamp::now().to_string(),
            };
            let out = &mut *io.out;
            let mut emit = |e: &Value| -> Result<()> {
                match fmt {
                    Format::Json => emit_line(out, e),
                    Format::Table => {
                        writeln!(out, "{}", output::audit_line(e))?;
                        out.flush()?;
                        Ok(())
                    }
                }
            };
            watch::watch(&api, since, every, count, &mut emit).await?;
            Ok(code::OK)
        }
    }
}

/// Reads the file, the deployed routes, and plans.
async fn make_plan(
    client: ApiClient,
    settings: &mut Settings,
    file: &FileArgs,
) -> Result<(Api, plan::Plan)> {
    let text = std::fs::read_to_string(&file.file)
        .map_err(|e| CtlError::Usage(format!("{}: {e}", file.file)))?;
    let desired = spec::parse(&text, &file.file)?;
    if let Some(t) = &settings.tenant
        && t != &desired.tenant
    {
        // A tenant from the environment or config must not silently retarget a file.
        return Err(CtlError::Usage(format!(
            "{} is for tenant {}, but the tenant given is {t}",
            file.file, desired.tenant
        )));
    }
    settings.tenant = Some(desired.tenant.clone());
    let api = Api::new(client, desired.tenant.clone());
    let deployed = plan::deployed_from(&api.list_routes(None, None).await?)?;
    let p = plan::plan(&desired, &deployed, file.prune);
    Ok((api, p))
}

async fn routes(api: &Api, cmd: RoutesCmd, fmt: Format, io: &mut Io<'_>) -> Result<i32> {
    match cmd {
        RoutesCmd::Get { route } => {
            let r = RouteRef::parse(&route, api.tenant())?;
            let (doc, _) = api
                .get_route(&r)
                .await?
                .ok_or_else(|| CtlError::NotFound(r.to_string()))?;
            match fmt {
                Format::Json => emit_json(io.out, &doc)?,
                Format::Table => write!(io.out, "{}", output::route_detail(&doc))?,
            }
        }
        RoutesCmd::Put {
            route,
            file,
            if_match,
            create_only,
        } => {
            let r = RouteRef::parse(&route, api.tenant())?;
            let text = if file == "-" {
                let mut s = String::new();
                io.stdin.read_to_string(&mut s)?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| CtlError::Usage(format!("{file}: {e}")))?
            };
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| CtlError::Usage(format!("{file}: not valid JSON: {e}")))?;
            let pre = match (if_match, create_only) {
                (Some(rev), _) => Precondition::Revision(rev),
                (None, true) => Precondition::Absent,
                (None, false) => Precondition::None,
            };
            let doc = api.put_route(&r, &body, pre).await?;
            match fmt {
                Format::Json => emit_json(io.out, &doc)?,
                Format::Table => write!(io.out, "{}", output::route_detail(&doc))?,
            }
        }
        RoutesCmd::Delete { route, if_match } => {
            let r = RouteRef::parse(&route, api.tenant())?;
            let pre = if_match.map_or(Precondition::None, Precondition::Revision);
            api.delete_route(&r, pre).await?;
            match fmt {
                Format::Json => emit_json(io.out, &json!({"deleted": r}))?,
                Format::Table => writeln!(io.out, "{r}: deleted")?,
            }
        }
        RoutesCmd::List { service, env } => {
            let items = api.list_routes(service.as_deref(), env.as_deref()).await?;
            match fmt {
                Format::Json => emit_json(io.out, &items)?,
                Format::Table => write!(io.out, "{}", output::routes_table(&items))?,
            }
        }
        RoutesCmd::History { route, limit } => {
            let r = RouteRef::parse(&route, api.tenant())?;
            let items = api.history(&r, limit).await?;
            match fmt {
                Format::Json => emit_json(io.out, &items)?,
                Format::Table => write!(io.out, "{}", output::history_table(&items))?,
            }
        }
    }
    Ok(code::OK)
}
