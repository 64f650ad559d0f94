//! Kafka adapter (rdkafka with its bundled librdkafka): MSK in AWS, any Kafka-protocol
//! broker locally (nisshi, Tansu's successor, in the tests).
//! - [`KafkaCluster`]: where the brokers are and how to authenticate (plaintext, or SASL
//!   OAUTHBEARER with an MSK IAM token); every client below is built from it.
//! - [`KafkaPublisher`] ([`publisher`]): the [`EventPublisher`](crate::ports::EventPublisher)
//!   of CONTRACT §7: idempotent, `acks=all`, keyed `{tenant}/{service}/{env}`.
//! - [`KafkaDeadLetters`] ([`dead_letters`]): poison records to `<topic>-dlq`, with the
//!   reason and the source position in headers.
//! - [`GroupConsumer`] ([`consumer`]): a consumer-group member with manual commits, seek
//!   and pause, for tm-local's stand-in for the MSK trigger.
//! - [`ensure_topics`]: creates the event topic and its DLQ (brokers such as nisshi do not
//!   auto-create topics, and MSK should not).
//! - [`msk_iam`]: the SigV4-presigned `kafka-cluster:Connect` token.
//!
//! rdkafka types never leave this module: callers see [`ConsumedRecord`] and the crate's
//! [`Error`].

pub mod bootstrap;
pub mod consumer;
pub mod dead_letters;
pub mod msk_iam;
pub mod publisher;

pub use consumer::{ConsumedRecord, GroupConsumer};
pub use dead_letters::KafkaDeadLetters;
pub use publisher::KafkaPublisher;

use crate::config::{Config, KafkaAuth};
use crate::{Error, Result};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::OAuthToken;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;

/// MSK IAM actions of the producers ([`KafkaPublisher`], [`KafkaDeadLetters`]): AWS's
/// "produce data idempotently" set.
pub const PRODUCER_IAM_ACTIONS: &[&str] = &[
    "kafka-cluster:Connect",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:WriteData",
    "kafka-cluster:WriteDataIdempotently",
];

/// MSK IAM actions of [`ensure_topics`] (`tm-local init`): AWS's "create a topic" set.
pub const ADMIN_IAM_ACTIONS: &[&str] = &["kafka-cluster:Connect", "kafka-cluster:CreateTopic"];

/// MSK IAM actions of [`GroupConsumer`] (tm-local's trigger): AWS's "consume data" set.
pub const CONSUMER_IAM_ACTIONS: &[&str] = &[
    "kafka-cluster:Connect",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:DescribeGroup",
    "kafka-cluster:AlterGroup",
    "kafka-cluster:ReadData",
];

/// Every MSK IAM action this module's clients use (the union of the three sets above).
/// Grant each function only the set of the clients it builds: the write function the
/// producer set, the event consumer the producer set for its dead letters (its MSK event
/// source mapping needs the consumer set, granted to the mapping's role by the template).
pub const IAM_ACTIONS: &[&str] = &[
    "kafka-cluster:Connect",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:WriteData",
    "kafka-cluster:WriteDataIdempotently",
    "kafka-cluster:CreateTopic",
    "kafka-cluster:DescribeGroup",
    "kafka-cluster:AlterGroup",
    "kafka-cluster:ReadData",
];

/// How long a produced record may wait for the brokers' acknowledgement before the publish
/// fails. Short on purpose: the write path never waits long, the relay retries.
pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where librdkafka looks for the CA certificates that verify MSK's brokers.
pub const TLS_CA_LOCATION: &str = "probe";

/// How long an admin request (topic creation) may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the brokers are and how to reach them. Cheap to clone; every producer, consumer
/// and admin client of this module is built from one.
#[derive(Clone)]
pub struct KafkaCluster {
    brokers: String,
    iam: Option<Arc<msk_iam::MskIamTokens>>,
    message_timeout: Duration,
}

impl std::fmt::Debug for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster")
            .field("brokers", &self.brokers)
            .field(
                "auth",
                &if self.iam.is_some() {
                    "msk-iam"
                } else {
                    "none"
                },
            )
            .field("message_timeout", &self.message_timeout)
            .finish()
    }
}

impl KafkaCluster {
    /// Brokers reached in plaintext without authentication (local brokers, tests).
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            iam: None,
            message_timeout: DEFAULT_MESSAGE_TIMEOUT,
        }
    }

    /// Brokers reached as `auth` says. For [`KafkaAuth::MskIam`] this loads the AWS
    /// credentials and region once (the default provider chain) and fails when there are
    /// none, so a misconfigured function fails at start-up, not on its first event.
    /// `brokers` may also be an MSK cluster ARN: the brokers are then looked up once with
    /// `GetBootstrapBrokers` ([`bootstrap`]).
    pub async fn connect(brokers: impl Into<String>, auth: KafkaAuth) -> Result<Self> {
        let mut brokers = brokers.into();
        if bootstrap::is_cluster_arn(&brokers) {
            brokers = bootstrap::lookup(&brokers, auth).await?;
        }
        let mut cluster = Self::plaintext(brokers);
        if auth == KafkaAuth::MskIam {
            cluster.iam = Some(msk_iam::MskIamTokens::from_environment().await?);
        }
        Ok(cluster)
    }

    /// From `TM_KAFKA_BROKERS` and `TM_KAFKA_AUTH`; `None` when Kafka is not configured.
    pub async fn from_config(config: &Config) -> Option<Result<Self>> {
        let brokers = config.kafka_brokers.as_ref()?;
        Some(Self::connect(brokers.clone(), config.kafka_auth).await)
    }

    /// Sets how long a produced record may wait for its acknowledgement.
    pub fn with_message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// How long a produced record may wait for its acknowledgement.
    pub fn message_timeout(&self) -> Duration {
        self.message_timeout
    }

    /// Settings shared by every client: bootstrap servers, security, logging.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "traffic-manager")
            // Topics are made on purpose (`tm-local init`, the KafkaTopics custom resource),
            // never by a metadata request: a missing topic is a misconfiguration to report,
            // not one to paper over with a one-partition default (brokers that honour the
            // request, nisshi among them, would otherwise create it).
            .set("allow.auto.create.topics", "false")
            // Warnings and errors only; librdkafka's debug output is for debugging sessions.
            .set_log_level(RDKafkaLogLevel::Warning);
        if self.iam.is_some() {
            // MSK's IAM listener (port 9098) is TLS with SASL OAUTHBEARER; the token comes
            // from `ClientCtx::generate_oauth_token`.
            // `ssl.ca.location=probe`: librdkafka's own OpenSSL has no CA bundle path
            // compiled in that matches Amazon Linux 2023 (provided.al2023), so without it
            // every broker certificate fails verification; `probe` searches the usual
            // system locations (/etc/pki/tls/certs/ca-bundle.crt there).
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER")
                .set("ssl.ca.location", TLS_CA_LOCATION);
        }
        c
    }

    fn context(&self) -> ClientCtx {
        ClientCtx {
            iam: self.iam.clone(),
        }
    }
}

/// What [`ensure_topics`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnsuredTopics {
    /// Topics created now.
    pub created: Vec<String>,
    /// Topics that already existed (left unchanged).
    pub existing: Vec<String>,
}

/// Creates the event topic and its dead-letter topic with `partitions` partitions each,
/// leaving any that already exists unchanged (so running it twice is safe). The
/// replication factor is the cluster's default (`-1`, KIP-464), so MSK's three brokers
/// get three replicas and a single local broker gets one.
pub async fn ensure_topics(
    cluster: &KafkaCluster,
    topic: &str,
    dlq_topic: &str,
    partitions: i32,
) -> Result<EnsuredTopics> {
    let admin: AdminClient<ClientCtx> = cluster
        .client_config()
        .create_with_context(cluster.context())
        .map_err(|e| unavailable("create the admin client", e))?;
    let new: Vec<NewTopic<'_>> = [topic, dlq_topic]
        .into_iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let results = tokio::time::timeout(
        ADMIN_TIMEOUT + Duration::from_secs(2),
        admin.create_topics(&new, &opts),
    )
    .await
    .map_err(|_| {
        Error::Unavailable(format!(
            "kafka: creating topics timed out after {ADMIN_TIMEOUT:?}"
        ))
    })?
    .map_err(|e| unavailable("create topics", e))?;
    let mut done = EnsuredTopics::default();
    for result in results {
        match result {
            Ok(name) => done.created.push(name),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => done.existing.push(name),
            Err((name, code)) => {
                return Err(Error::Unavailable(format!(
                    "kafka: create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(done)
}

/// Maps a client error to the crate's retryable fault, keeping the detail for the log.
fn unavailable(what: &str, e: KafkaError) -> Error {
    Error::Unavailable(format!("kafka: {what}: {e}"))
}

/// The rdkafka client context of every client here: routes librdkafka's log lines to
/// `tracing` (the functions log JSON through it, not through the `log` crate), and
/// answers OAUTHBEARER token refreshes when MSK IAM is configured.
#[derive(Clone)]
struct ClientCtx {
    iam: Option<Arc<msk_iam::MskIamTokens>>,
}

impl ClientContext for ClientCtx {
    // Only asked for when `sasl.mechanism=OAUTHBEARER`, which only MSK IAM sets.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors (a broker restarting, a refused connection) are retried by
        // librdkafka itself, and a publish that cannot complete fails on its own timeout:
        // a warning, not an error. A failed connection is already in librdkafka's log.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        }
    }

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> std::result::Result<OAuthToken, Box<dyn std::error::Error>> {
        let iam = self
            .iam
            .as_ref()
            .ok_or("OAUTHBEARER requested but TM_KAFKA_AUTH is not msk-iam")?;
        let token = iam.token()?;
        Ok(OAuthToken {
            token: token.value,
            principal_name: "msk-iam".into(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

impl ConsumerContext for ClientCtx {}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;

    #[tokio::test]
    async fn an_msk_iam_client_speaks_tls_and_asks_for_a_signed_token_before_connecting() {
        let creds = Credentials::new("AKIAIOSFODNN7EXAMPLE", "secret", None, None, "test");
        let tokens =
            msk_iam::MskIamTokens::start("eu-west-1".into(), SharedCredentialsProvider::new(creds))
                .await
                .unwrap();
        let cluster = KafkaCluster {
            brokers: "127.0.0.1:1".into(),
            iam: Some(tokens.clone()),
            message_timeout: Duration::from_secs(1),
        };
        // Creating the clients fails if librdkafka was built without TLS or OAUTHBEARER.
        let _publisher = KafkaPublisher::new(&cluster, "route-events").unwrap();
        let _consumer = GroupConsumer::subscribe(&cluster, "g", "route-events").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tokens.issued() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "librdkafka never asked for a token"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(format!("{cluster:?}").contains("msk-iam"));
    }

    #[tokio::test]
    async fn an_msk_iam_client_verifies_brokers_against_the_system_ca_bundle() {
        let creds = Credentials::new("AKIAIOSFODNN7EXAMPLE", "secret", None, None, "test");
        let tokens =
            msk_iam::MskIamTokens::start("eu-west-1".into(), SharedCredentialsProvider::new(creds))
                .await
                .unwrap();
        let tls = KafkaCluster {
            brokers: "127.0.0.1:1".into(),
            iam: Some(tokens),
            message_timeout: Duration::from_secs(1),
        };
        let config = tls.client_config();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("ssl.ca.location"), Some("probe"));
        let plain = KafkaCluster::plaintext("127.0.0.1:1").client_config();
        assert_eq!(plain.get("ssl.ca.location"), None, "no TLS, no CA");
    }

    #[test]
    fn iam_actions_is_exactly_the_union_of_the_per_client_sets() {
        let mut union: Vec<&str> = [
            PRODUCER_IAM_ACTIONS,
            ADMIN_IAM_ACTIONS,
            CONSUMER_IAM_ACTIONS,
        ]
        .concat();
        union.sort();
        union.dedup();
        let mut all = IAM_ACTIONS.to_vec();
        all.sort();
        assert_eq!(all, union);
        for set in [
            PRODUCER_IAM_ACTIONS,
            ADMIN_IAM_ACTIONS,
            CONSUMER_IAM_ACTIONS,
        ] {
            assert!(
                set.contains(&"kafka-cluster:Connect"),
                "every client connects"
            );
        }
    }
}
