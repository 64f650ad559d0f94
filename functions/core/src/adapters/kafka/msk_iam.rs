//! MSK IAM authentication (`TM_KAFKA_AUTH=msk-iam`): the SASL OAUTHBEARER token MSK
//! accepts is a SigV4-presigned `kafka-cluster:Connect` request, base64url-encoded, the
//! same token AWS's own signer libraries (Java, Python, Go, JS) produce:
//!
//! ```text
//! base64url_nopad("https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect
//!                  &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=...&X-Amz-Date=...
//!                  &X-Amz-Expires=900&X-Amz-SignedHeaders=host[&X-Amz-Security-Token=...]
//!                  &X-Amz-Signature=...&User-Agent=traffic-manager/<version>")
//! ```
//!
//! signed for service `kafka-cluster` in the function's region, valid 15 minutes.
//! librdkafka asks for a new token at 80 % of its lifetime through a synchronous callback,
//! so the credentials are fetched asynchronously ahead of time (at start-up, then by a
//! background task before they expire) and the callback only signs. Signing is done by
//! `aws-sigv4`, the SDK's own signer, rather than a third-party MSK signer crate (the one
//! on crates.io is a single-maintainer crate that pulls in an STS client and an async-only
//! API that does not fit librdkafka's synchronous callback).

use crate::{Error, Result};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The signing name of MSK's data plane.
const SIGNING_NAME: &str = "kafka-cluster";
/// How long a token is valid (what AWS's signers use).
const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// Credentials closer than this to their expiry are fetched again.
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);
/// How often credentials without an expiry are fetched again anyway (a rotated key).
const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);
/// Wait after a failed credentials fetch.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// A signed token and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Token {
    /// The OAUTHBEARER token value.
    pub(super) value: String,
    /// Milliseconds since the Unix epoch.
    pub(super) expires_at_ms: i64,
}

/// Signs MSK IAM tokens from credentials kept fresh in the background.
pub(super) struct MskIamTokens {
    region: String,
    // A std Mutex: held only to clone or replace the credentials, never across an await,
    // and read from librdkafka's own threads.
    credentials: Mutex<Credentials>,
    /// Tokens signed so far (logged; lets tests see librdkafka asking).
    issued: AtomicU64,
}

impl MskIamTokens {
    /// Uses the SDK's default credentials chain and region (in Lambda: the function's
    /// role and `AWS_REGION`). Fails when either is missing.
    pub(super) async fn from_environment() -> Result<Arc<Self>> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let region = config
            .region()
            .ok_or_else(|| {
                Error::Internal("TM_KAFKA_AUTH=msk-iam needs a region (AWS_REGION)".into())
            })?
            .to_string();
        let provider = config
            .credentials_provider()
            .ok_or_else(|| Error::Internal("TM_KAFKA_AUTH=msk-iam needs AWS credentials".into()))?;
        Self::start(region, provider).await
    }

    /// Fetches credentials from `provider` now (failing if there are none), and keeps
    /// them fresh in a background task that ends when the last client is dropped.
    pub(super) async fn start(
        region: String,
        provider: SharedCredentialsProvider,
    ) -> Result<Arc<Self>> {
        let credentials = fetch(&provider).await?;
        let tokens = Arc::new(Self {
            region,
            credentials: Mutex::new(credentials),
            issued: AtomicU64::new(0),
        });
        tokio::spawn(refresh(Arc::downgrade(&tokens), provider));
        Ok(tokens)
    }

    /// A token signed now with the current credentials.
    pub(super) fn token(&self) -> std::result::Result<Token, String> {
        let credentials = self.current();
        if credentials.expiry().is_some_and(|e| e <= SystemTime::now()) {
            return Err("the AWS credentials expired and could not be refreshed yet".into());
        }
        let token = presign(&self.region, &credentials, SystemTime::now())?;
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            tokens_issued = n,
            expires_at_ms = token.expires_at_ms,
            "msk-iam: signed a token"
        );
        Ok(token)
    }

    /// How many tokens were signed so far.
    #[cfg(test)]
    pub(super) fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    fn current(&self) -> Credentials {
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long until credentials should be fetched again.
fn refresh_in(credentials: &Credentials, now: SystemTime) -> Duration {
    match credentials.expiry() {
        None => REFRESH_EVERY,
        Some(expiry) => expiry
            .checked_sub(REFRESH_AHEAD)
            .and_then(|at| at.duration_since(now).ok())
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_secs(1), REFRESH_EVERY),
    }
}

/// Keeps `tokens`' credentials fresh until `tokens` is dropped.
async fn refresh(tokens: Weak<MskIamTokens>, provider: SharedCredentialsProvider) {
    let mut wait = match tokens.upgrade() {
        Some(t) => refresh_in(&t.current(), SystemTime::now()),
        None => return,
    };
    loop {
        tokio::time::sleep(wait).await;
        let Some(t) = tokens.upgrade() else { return };
        wait = match fetch(&provider).await {
            Ok(credentials) => {
                let next = refresh_in(&credentials, SystemTime::now());
                *t.credentials.lock().unwrap_or_else(|p| p.into_inner()) = credentials;
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = RETRY_AFTER.as_secs(), "msk-iam: could not refresh AWS credentials");
                RETRY_AFTER
            }
        };
    }
}

async fn fetch(provider: &SharedCredentialsProvider) -> Result<Credentials> {
    provider
        .provide_credentials()
        .await
        .map_err(|e| Error::Unavailable(format!("msk-iam: load AWS credentials: {e}")))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token for `credentials` in `region`, signed at `now`.
fn presign(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> std::result::Result<Token, String> {
    let mut url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?;
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("signable request: {e}"))?;
    let (instructions, _signature) = sign(request, &params.into())
        .map_err(|e| format!("sign: {e}"))?
        .into_parts();
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode(value));
    }
    // Not signed, as in AWS's signers: identifies the client in MSK's logs.
    url.push_str(&format!(
        "&User-Agent=traffic-manager%2F{}",
        env!("CARGO_PKG_VERSION")
    ));
    let signed_at = now.duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    // SigV4 dates have whole seconds; the token expires relative to that.
    let expires_at_ms = ((signed_at.as_secs() + TOKEN_LIFETIME.as_secs()) * 1000) as i64;
    Ok(Token {
        value: URL_SAFE_NO_PAD.encode(url),
        expires_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2026-11-28T12:00:00Z.
    const SIGNED_AT: u64 = 1_795_867_200;

    fn credentials(session_token: Option<&str>, expiry: Option<SystemTime>) -> Credentials {
        Credentials::new(
            ACCESS_KEY,
            SECRET_KEY,
            session_token.map(Into::into),
            expiry,
            "test",
        )
    }

    /// The signed URL inside a token, and its query parameters in order.
    fn decode(token: &Token) -> (String, Vec<(String, String)>) {
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(&token.value).unwrap()).unwrap();
        let query = url.split_once('?').unwrap().1;
        let params = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        (url, params)
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    // Reference values: AWS's own signer (aws-msk-iam-sasl-signer-python 1.0.2, botocore's
    // SigV4QueryAuth) with the same credentials, region and clock.
    const REFERENCE_SIGNATURE: &str =
        "85ce01914faa522ee6dcefe09cd57641a60c871a5a3f908fd6fb0afa0330b74a";
    const REFERENCE_SIGNATURE_WITH_SESSION: &str =
        "3339295d4d61ed071a784a68f0f233e0574864783cb26b651698c3486e175c87";

    #[test]
    fn a_token_is_the_presigned_connect_url_aws_signers_produce() {
        let at = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
        let token = presign("eu-west-1", &credentials(None, None), at).unwrap();
        let (url, params) = decode(&token);
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            ),
            "{url}"
        );
        assert_eq!(param(&params, "X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            param(&params, "X-Amz-Credential"),
            Some("AKIAIOSFODNN7EXAMPLE%2F20261128%2Feu-west-1%2Fkafka-cluster%2Faws4_request")
        );
        assert_eq!(param(&params, "X-Amz-Date"), Some("20261128T120000Z"));
        assert_eq!(param(&params, "X-Amz-Expires"), Some("900"));
        assert_eq!(param(&params, "X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(param(&params, "X-Amz-Security-Token"), None);
        assert_eq!(param(&params, "X-Amz-Signature"), Some(REFERENCE_SIGNATURE));
        assert_eq!(
            param(&params, "User-Agent").map(|ua| ua.starts_with("traffic-manager%2F")),
            Some(true)
        );
        assert_eq!(token.expires_at_ms, (SIGNED_AT as i64 + 900) * 1000);
        assert!(
            !token.value.contains(['+', '/', '=']),
            "base64url without padding"
        );
    }

    #[test]
    fn a_session_token_is_signed_into_the_url_and_percent_encoded() {
        let at = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
        let token = presign(
            "eu-west-1",
            &credentials(Some("FwoGZXIvYXdzEXAMPLE+/token="), None),
            at,
        )
        .unwrap();
        let (_, params) = decode(&token);
        assert_eq!(
            param(&params, "X-Amz-Security-Token"),
            Some("FwoGZXIvYXdzEXAMPLE%2B%2Ftoken%3D")
        );
        assert_eq!(
            param(&params, "X-Amz-Signature"),
            Some(REFERENCE_SIGNATURE_WITH_SESSION)
        );
    }

    #[tokio::test]
    async fn expired_credentials_yield_no_token_so_librdkafka_retries_instead_of_failing_auth() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let provider = SharedCredentialsProvider::new(credentials(Some("t"), Some(past)));
        let tokens = MskIamTokens::start("us-east-1".into(), provider)
            .await
            .unwrap();
        assert!(tokens.token().unwrap_err().contains("expired"));
        let fresh = SharedCredentialsProvider::new(credentials(None, None));
        let tokens = MskIamTokens::start("us-east-1".into(), fresh)
            .await
            .unwrap();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let lifetime = tokens.token().unwrap().expires_at_ms - now_ms;
        assert!((898_000..=900_000).contains(&lifetime), "{lifetime}");
    }

    #[test]
    fn credentials_are_fetched_again_ahead_of_their_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
        let in_an_hour = credentials(None, Some(now + Duration::from_secs(3600)));
        assert_eq!(refresh_in(&in_an_hour, now), REFRESH_EVERY);
        let in_ten_minutes = credentials(None, Some(now + Duration::from_secs(600)));
        assert_eq!(refresh_in(&in_ten_minutes, now), Duration::from_secs(300));
        let nearly_expired = credentials(None, Some(now + Duration::from_secs(60)));
        assert_eq!(refresh_in(&nearly_expired, now), Duration::from_secs(1));
        assert_eq!(refresh_in(&credentials(None, None), now), REFRESH_EVERY);
    }

    #[test]
    fn query_values_are_percent_encoded_except_unreserved_characters() {
        assert_eq!(encode("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(encode("a/b+c=d e:"), "a%2Fb%2Bc%3Dd%20e%3A");
    }
}
