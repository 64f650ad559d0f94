//! What an invocation asks for: the scheduled drain (any EventBridge event), or creating
//! the event topics, which the stack's `KafkaTopics` custom resource asks for during a
//! deployment with `{"ensure_topics": {"partitions": N}}` (MSK Serverless has no topic
//! API, and this function is the Kafka client inside the VPC allowed to create them).

use serde_json::Value;

/// Most partitions a deployment may ask for.
pub const MAX_TOPIC_PARTITIONS: i32 = 1000;

/// One invocation's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Publish what the outbox holds (the schedule's event; its content is not used).
    Drain,
    /// Create the event topic and its DLQ with this many partitions when missing.
    EnsureTopics {
        /// Partitions of each topic created now (existing topics are left unchanged).
        partitions: i32,
    },
}

/// Why an `ensure_topics` request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ensure_topics: {0}")]
pub struct BadRequest(String);

impl Invocation {
    /// Reads an invocation's payload. Only an object with an `ensure_topics` member is a
    /// topic request; it must then be well formed, so a broken deployment fails loudly
    /// instead of draining the outbox and reporting success.
    pub fn from_event(event: &Value) -> Result<Self, BadRequest> {
        let Some(request) = event.get("ensure_topics") else {
            return Ok(Self::Drain);
        };
        let partitions = request
            .get("partitions")
            .and_then(Value::as_i64)
            .ok_or_else(|| BadRequest("`partitions` must be an integer".into()))?;
        match i32::try_from(partitions) {
            Ok(p) if (1..=MAX_TOPIC_PARTITIONS).contains(&p) => {
                Ok(Self::EnsureTopics { partitions: p })
            }
            _ => Err(BadRequest(format!(
                "`partitions` must be 1..={MAX_TOPIC_PARTITIONS}, not {partitions}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_scheduled_event_is_a_drain() {
        let scheduled =
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(Invocation::from_event(&scheduled), Ok(Invocation::Drain));
        assert_eq!(Invocation::from_event(&json!(null)), Ok(Invocation::Drain));
    }

    #[test]
    fn the_custom_resource_request_creates_topics_with_its_partition_count() {
        let e = json!({"ensure_topics": {"partitions": 6}});
        assert_eq!(
            Invocation::from_event(&e),
            Ok(Invocation::EnsureTopics { partitions: 6 })
        );
    }

    #[test]
    fn a_malformed_topic_request_is_refused_rather_than_treated_as_a_drain() {
        for bad in [
            json!({"ensure_topics": {}}),
            json!({"ensure_topics": {"partitions": "6"}}),
            json!({"ensure_topics": {"partitions": 0}}),
            json!({"ensure_topics": {"partitions": 1_000_000}}),
        ] {
            assert!(Invocation::from_event(&bad).is_err(), "{bad}");
        }
    }
}
