//! Bootstrap brokers from an MSK cluster ARN: when `TM_KAFKA_BROKERS` holds
//! `arn:aws:kafka:<region>:<account>:cluster/<name>/<id>` instead of a broker list, the
//! brokers are looked up once per cold start with `GetBootstrapBrokers` (IAM action
//! `kafka:GetBootstrapBrokers`), taking the list that matches `TM_KAFKA_AUTH`.

use crate::config::KafkaAuth;
use crate::{Error, Result};

/// Whether `s` names an MSK cluster rather than listing brokers.
pub fn is_cluster_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "kafka"
        && !parts[3].is_empty()
        && parts[5].starts_with("cluster/")
}

/// The broker lists `GetBootstrapBrokers` answered with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerLists {
    /// `BootstrapBrokerStringSaslIam`.
    pub sasl_iam: Option<String>,
    /// `BootstrapBrokerString` (plaintext).
    pub plaintext: Option<String>,
}

/// The list this process can use with `auth`; an error names what is missing.
pub fn choose(lists: &BrokerLists, auth: KafkaAuth) -> Result<String> {
    let (list, what) = match auth {
        KafkaAuth::MskIam => (
            &lists.sasl_iam,
            "an IAM (SASL) broker list; is IAM auth on for the cluster?",
        ),
        KafkaAuth::None => (
            &lists.plaintext,
            "a plaintext broker list; use TM_KAFKA_AUTH=msk-iam",
        ),
    };
    list.clone()
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| Error::Unavailable(format!("kafka: the cluster has no {what}")))
}

/// Looks the brokers up with the default AWS credentials and region.
pub async fn lookup(arn: &str, auth: KafkaAuth) -> Result<String> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let client = aws_sdk_kafka::Client::new(&conf);
    let out = client
        .get_bootstrap_brokers()
        .cluster_arn(arn)
        .send()
        .await
        .map_err(|e| {
            Error::Unavailable(format!(
                "kafka: GetBootstrapBrokers for {arn}: {}",
                aws_sdk_kafka::error::DisplayErrorContext(&e)
            ))
        })?;
    let lists = BrokerLists {
        sasl_iam: out.bootstrap_broker_string_sasl_iam().map(str::to_owned),
        plaintext: out.bootstrap_broker_string().map(str::to_owned),
    };
    choose(&lists, auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_arns_are_told_apart_from_broker_lists() {
        assert!(is_cluster_arn(
            "arn:aws:kafka:eu-west-1:123456789012:cluster/tm-prod-events/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-s2"
        ));
        assert!(is_cluster_arn(
            "arn:aws-cn:kafka:cn-north-1:123456789012:cluster/x/y"
        ));
        assert!(!is_cluster_arn(
            "b-1.tm.abc.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.tm.abc.c2.kafka.eu-west-1.amazonaws.com:9098"
        ));
        assert!(!is_cluster_arn("127.0.0.1:9092"));
        assert!(!is_cluster_arn(
            "arn:aws:kafka:eu-west-1:123456789012:topic/x/y/z"
        ));
        assert!(!is_cluster_arn("arn:aws:s3:::bucket"));
    }

    #[test]
    fn the_list_matching_the_auth_mode_is_taken() {
        let lists = BrokerLists {
            sasl_iam: Some("b-1:9098".into()),
            plaintext: Some("b-1:9092".into()),
        };
        assert_eq!(choose(&lists, KafkaAuth::MskIam).unwrap(), "b-1:9098");
        assert_eq!(choose(&lists, KafkaAuth::None).unwrap(), "b-1:9092");
        let serverless = BrokerLists {
            sasl_iam: Some("boot-x.c2.kafka-serverless.eu-west-1.amazonaws.com:9098".into()),
            plaintext: None,
        };
        assert!(
            matches!(choose(&serverless, KafkaAuth::None), Err(Error::Unavailable(m)) if m.contains("msk-iam"))
        );
    }
}
