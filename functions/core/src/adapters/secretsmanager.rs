//! The cursor key ring read at run time from AWS Secrets Manager (feature
//! `secretsmanager`): the secret named by `TM_CURSOR_SECRET_ID`, its `AWSCURRENT` version
//! sealing and opening cursors, its `AWSPREVIOUS` version (when there is one) only opening
//! them, so a rotation breaks no open pagination. The secret never passes through the
//! function's configuration: [`cursor_keys`] reads it at start-up and re-reads it every
//! [`REFRESH_EVERY`](crate::cursor::REFRESH_EVERY) in the background.
//!
//! A version's key is its `SecretString` as bytes (or its `SecretBinary`), exactly as
//! CloudFormation's dynamic reference used to hand it over, so the same secret keeps the
//! same key (and key id).

use crate::Error;
use crate::cursor::{CursorKey, CursorKeySource, CursorKeys, CursorRing, REFRESH_EVERY};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use std::sync::Arc;
use std::time::Duration;

/// The SDK crate, re-exported so that a caller of [`SecretsManagerKeys::new`] (tests,
/// tools) builds its client with exactly the version this adapter links.
pub use aws_sdk_secretsmanager;

/// The variable that names the secret (its name or ARN).
pub const SECRET_ID_VAR: &str = "TM_CURSOR_SECRET_ID";

/// The Secrets Manager actions this adapter calls, on the one secret.
pub const IAM_ACTIONS: &[&str] = &["secretsmanager:GetSecretValue"];

/// The staging label of the version that seals.
pub const CURRENT_STAGE: &str = "AWSCURRENT";
/// The staging label of the version before it, which still opens (absent for a secret
/// with a single version).
pub const PREVIOUS_STAGE: &str = "AWSPREVIOUS";

/// Limit on opening a TCP (and TLS) connection to Secrets Manager.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Limit on one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on one call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The key ring of one secret's `AWSCURRENT` and `AWSPREVIOUS` versions.
#[derive(Clone, Debug)]
pub struct SecretsManagerKeys {
    client: Client,
    secret_id: String,
}

impl SecretsManagerKeys {
    /// A source over `client` for the secret `secret_id` (name or ARN).
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    /// A source with the SDK's default configuration (region, credentials and
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER` from the environment) and this module's
    /// timeouts.
    pub async fn connect(secret_id: impl Into<String>) -> Result<Self, Error> {
        let secret_id = secret_id.into();
        if secret_id.trim().is_empty() {
            return Err(Error::Internal(format!("{SECRET_ID_VAR} is empty")));
        }
        let conf = crate::adapters::aws_sdk::config(
            "secretsmanager",
            crate::adapters::aws_sdk::Timeouts {
                connect: CONNECT_TIMEOUT,
                attempt: ATTEMPT_TIMEOUT,
                operation: OPERATION_TIMEOUT,
            },
        )
        .await?;
        Ok(Self::new(Client::new(&conf), secret_id))
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The key of the version at `stage`; `None` when no version has that label (or no
    /// such secret exists: Secrets Manager answers both alike).
    async fn stage(&self, stage: &str) -> Result<Option<CursorKey>, Error> {
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(sdk_error(stage, e)),
        };
        let secret: &[u8] = match (out.secret_string(), out.secret_binary()) {
            (Some(s), _) => s.as_bytes(),
            (None, Some(b)) => b.as_ref(),
            (None, None) => &[],
        };
        if secret.is_empty() {
            return Err(Error::Internal(format!(
                "secretsmanager: the {stage} version of {} has an empty value",
                self.secret_id
            )));
        }
        Ok(Some(CursorKey::new(secret)))
    }
}

fn is_not_found(e: &SdkError<GetSecretValueError>) -> bool {
    e.as_service_error()
        .is_some_and(GetSecretValueError::is_resource_not_found_exception)
}

/// Transport trouble, timeouts, throttling and 5xx are `Unavailable`; the rest (access
/// denied, a deleted secret, ...) is `Internal`.
fn sdk_error(stage: &str, err: SdkError<GetSecretValueError>) -> Error {
    let detail = format!(
        "secretsmanager GetSecretValue ({stage}): {}",
        DisplayErrorContext(&err)
    );
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(detail)
        }
        SdkError::ServiceError(se) if se.raw().status().is_server_error() => {
            Error::Unavailable(detail)
        }
        _ => Error::Internal(detail),
    }
}

#[async_trait]
impl CursorKeySource for SecretsManagerKeys {
    fn describe(&self) -> String {
        format!("{SECRET_ID_VAR} (secret {})", self.secret_id)
    }

    /// Both stages at once. A missing `AWSCURRENT` is an error; a missing `AWSPREVIOUS`
    /// is a secret's first version.
    async fn fetch(&self) -> Result<CursorRing, Error> {
        let (current, previous) =
            tokio::join!(self.stage(CURRENT_STAGE), self.stage(PREVIOUS_STAGE));
        let current = current?.ok_or_else(|| {
            Error::Internal(format!(
                "secretsmanager: no secret {} with an {CURRENT_STAGE} version (ResourceNotFoundException)",
                self.secret_id
            ))
        })?;
        let ring = CursorRing::new(current);
        Ok(match previous? {
            Some(previous) => ring.with_previous(previous),
            None => ring,
        })
    }
}

/// The write function's cursor keys: the secret named by `secret_id` (the value of
/// [`TM_CURSOR_SECRET_ID`](SECRET_ID_VAR)), read now and then every
/// [`REFRESH_EVERY`] in a background task. Errors name `TM_CURSOR_SECRET_ID`: when it is
/// unset, and when the secret cannot be read at start-up.
pub async fn cursor_keys(secret_id: Option<&str>) -> Result<Arc<CursorKeys>, String> {
    let secret_id = secret_id
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("{SECRET_ID_VAR} is required"))?;
    let source = SecretsManagerKeys::connect(secret_id)
        .await
        .map_err(|e| format!("{SECRET_ID_VAR}: {e}"))?;
    load_and_refresh(source, REFRESH_EVERY).await
}

/// [`cursor_keys`] over a source built by the caller (tests: a client on an emulator),
/// refreshed every `every`.
pub async fn load_and_refresh(
    source: SecretsManagerKeys,
    every: Duration,
) -> Result<Arc<CursorKeys>, String> {
    let keys = Arc::new(
        CursorKeys::load(Arc::new(source))
            .await
            .map_err(|e| e.to_string())?,
    );
    keys.spawn_refresh(every);
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unset_secret_id_is_an_error_naming_the_variable() {
        for id in [None, Some(""), Some("  ")] {
            let e = cursor_keys(id).await.unwrap_err();
            assert!(e.contains("TM_CURSOR_SECRET_ID"), "{e}");
        }
    }

    #[test]
    fn the_source_names_the_variable_and_the_secret() {
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .build();
        let s = SecretsManagerKeys::new(Client::from_conf(conf), "traffic-manager/dev/cursor");
        assert_eq!(
            s.describe(),
            "TM_CURSOR_SECRET_ID (secret traffic-manager/dev/cursor)"
        );
    }
}
