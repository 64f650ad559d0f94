//! `tm-local`: the same handlers as the Lambda functions, in one process on one port.
//! - [`cli`]: the command line (CONTRACT §8).
//! - [`app`]: builds the backends, services and handlers from configuration.
//! - [`gateway`]: plays API Gateway: admits each request through the steps every
//!   transport shares (route table, JWT authorizer, body limit), then the functions' own
//!   request path (throttle, handler).
//! - [`trigger`]: plays the MSK trigger for the embedded mode: hands committed events to
//!   the event-consumer handler in MSK-shaped batches.
//! - [`kafka_trigger`]: plays the MSK trigger against a real broker when
//!   `TM_KAFKA_BROKERS` is set: a consumer group feeding the same handler.
//! - [`metrics`]: `GET /metrics`, the figures in Prometheus text format.
//! - [`server`]: connection handling: header, body and idle timeouts, a connection cap,
//!   and the contract's error body on hyper's own 400/414/431.
//! - [`secret`]: the HS256 secret (environment, or generated once into the data dir).

pub mod app;
pub mod cli;
pub mod gateway;
pub mod kafka_trigger;
pub mod metrics;
pub mod secret;
pub mod server;
pub mod trigger;

use anyhow::Context;
use cli::Command;

/// Runs one command.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(())
        }
        Command::Token {
            data_dir,
            sub,
            tenants,
            scope,
            ttl_secs,
        } => {
            let secret = secret::load_or_create(&data_dir).context("loading the JWT secret")?;
            println!(
                "{}",
                secret::mint_token(&secret, &sub, &tenants, &scope, ttl_secs)
            );
            Ok(())
        }
        Command::Init { data_dir } => app::init(&data_dir).await,
        Command::Serve { listen, data_dir } => {
            tm_core::logging::init();
            // Before anything records: figures registered earlier would stay no-ops.
            metrics::install().context("installing the metrics recorder")?;
            let app = app::App::build(&data_dir).await?;
            gateway::serve(app, &listen).await
        }
    }
}
