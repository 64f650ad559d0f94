//! The AWS SDK configuration every SDK-based adapter starts from: the SDK's default chain
//! (region, credentials, `AWS_ENDPOINT_URL_*` overrides) with the adapter's own timeouts,
//! and a clear error when no region is configured (the SDK would only fail at the first
//! request).

use crate::Error;
use std::time::Duration;

/// An adapter's SDK timeouts.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// One attempt of an operation.
    pub attempt: Duration,
    /// A whole operation, retries included.
    pub operation: Duration,
}

/// The default SDK configuration with `timeouts`; `service` names the adapter in errors.
pub async fn config(service: &str, timeouts: Timeouts) -> Result<aws_config::SdkConfig, Error> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.attempt)
        .operation_timeout(timeouts.operation)
        .build();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    if conf.region().is_none() {
        return Err(Error::Internal(format!(
            "{service}: no AWS region configured (set AWS_REGION)"
        )));
    }
    Ok(conf)
}
