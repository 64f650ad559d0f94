//! Poison records to the dead-letter topic (`<topic>-dlq`, CONTRACT §7).
//!
//! Shape of a dead-letter record, so anyone can inspect or replay it:
//! - key: the original record's key bytes (absent when it had none), so the letter lands
//!   on a partition chosen the way the original's was;
//! - value: the original record's value bytes, unchanged (absent when it had none);
//! - headers (UTF-8 text):
//!   - `dlq_reason`: why the consumer rejected it;
//!   - `dlq_source_topic`, `dlq_source_partition`, `dlq_source_offset`: where it came from
//!     (decimal numbers);
//!   - `dlq_failed_at`: when it was rejected (RFC 3339, UTC, milliseconds);
//!   - `dlq_undecoded` (only when needed): `key`, `value` or `key,value` when that field
//!     was not valid base64 as delivered by the trigger, and so is stored as the text the
//!     trigger delivered rather than as the original bytes.
//!
//! The record is produced with the same idempotent, `acks=all` producer as events
//! (replaced after a failed delivery, as the publisher's is), and `send` returns only once
//! it is acknowledged: the consumer moves past a poison record only after its letter is
//! durable.
//!
//! With the `redis` feature, the shared cache's Redis also keeps the marks of the letters
//! sent ([`DeadLetterMarks`] for [`RedisCache`]), so that a batch Lambda delivers again,
//! to any instance, does not put its poison on this topic a second time: one key per
//! source record, `<prefix>dlq:<topic>/<partition>/<offset>`, holding the record's
//! fingerprint (so a mark never stands for another record at the same position), written
//! with `SET … EX` once the letter is acknowledged and kept [`LETTER_MARK_TTL`].

use super::KafkaCluster;
use super::publisher::{HealingProducer, Outgoing};
use crate::Result;
use crate::domain::timefmt::Timestamp;
use crate::ports::{DeadLetter, DeadLetters};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rdkafka::message::{Header, OwnedHeaders};
use std::time::Duration;

/// Header: why the record was rejected.
pub const REASON_HEADER: &str = "dlq_reason";
/// Header: the record's source topic.
pub const SOURCE_TOPIC_HEADER: &str = "dlq_source_topic";
/// Header: the record's source partition (decimal).
pub const SOURCE_PARTITION_HEADER: &str = "dlq_source_partition";
/// Header: the record's source offset (decimal).
pub const SOURCE_OFFSET_HEADER: &str = "dlq_source_offset";
/// Header: when the record was rejected (RFC 3339).
pub const FAILED_AT_HEADER: &str = "dlq_failed_at";
/// Header: which fields hold the delivered text instead of the original bytes.
pub const UNDECODED_HEADER: &str = "dlq_undecoded";

/// Produces dead letters to one topic.
pub struct KafkaDeadLetters {
    producer: HealingProducer,
    topic: String,
    timeout: Duration,
}

impl KafkaDeadLetters {
    /// Letters go to `dlq_topic` (normally `Config::dlq_topic()`) on `cluster`.
    pub fn new(cluster: &KafkaCluster, dlq_topic: impl Into<String>) -> Result<Self> {
        Ok(Self {
            producer: HealingProducer::new(cluster)?,
            topic: dlq_topic.into(),
            timeout: cluster.message_timeout,
        })
    }
}

/// Original bytes of a base64 field; the delivered text itself when it is not base64.
fn original(field: &Option<String>) -> (Option<Vec<u8>>, bool) {
    match field {
        None => (None, true),
        Some(text) => match B64.decode(text) {
            Ok(bytes) => (Some(bytes), true),
            Err(_) => (Some(text.clone().into_bytes()), false),
        },
    }
}

/// The record of the module docs for one letter, stamped `failed_at`.
fn record(letter: &DeadLetter, failed_at: &Timestamp) -> Outgoing {
    let (key, key_ok) = original(&letter.key);
    let (value, value_ok) = original(&letter.value);
    let partition = letter.partition.to_string();
    let offset = letter.offset.to_string();
    let at = failed_at.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(6);
    for (k, v) in [
        (REASON_HEADER, letter.reason.as_str()),
        (SOURCE_TOPIC_HEADER, letter.topic.as_str()),
        (SOURCE_PARTITION_HEADER, &partition),
        (SOURCE_OFFSET_HEADER, &offset),
        (FAILED_AT_HEADER, &at),
    ] {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    let undecoded = match (key_ok, value_ok) {
        (true, true) => None,
        (false, true) => Some("key"),
        (true, false) => Some("value"),
        (false, false) => Some("key,value"),
    };
    if let Some(which) = undecoded {
        headers = headers.insert(Header {
            key: UNDECODED_HEADER,
            value: Some(which),
        });
    }
    Outgoing {
        key,
        // A record without a value is stored with an empty value; the reason says so.
        value: value.unwrap_or_default(),
        headers,
    }
}

#[async_trait]
impl DeadLetters for KafkaDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<()> {
        let record = record(letter, &Timestamp::now());
        self.producer
            .deliver(&self.topic, vec![record], self.timeout)
            .await
    }
}

/// How long a mark of a sent letter lives: a record can only come again while its batch
/// is retried, which is bounded by the topic's retention (7 days on MSK by default).
pub const LETTER_MARK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The Redis key of the mark of `letter`'s record, under the cache's `prefix`. No `{}`:
/// a key of its own, in whichever cluster slot it hashes to.
pub fn letter_mark_key(prefix: &str, letter: &DeadLetter) -> String {
    let position = letter.position().replace(['{', '}'], "_");
    format!("{prefix}dlq:{position}")
}

#[cfg(feature = "redis")]
mod marks {
    use super::{LETTER_MARK_TTL, letter_mark_key};
    use crate::Result;
    use crate::adapters::redis_cache::RedisCache;
    use crate::ports::{DeadLetter, DeadLetterMarks};
    use async_trait::async_trait;
    use redis::Script;
    use std::sync::OnceLock;

    /// KEYS[1] the mark: its value (the fingerprint), or false.
    const LUA_GET: &str = "return redis.call('GET', KEYS[1])";
    /// KEYS[1] the mark, ARGV[1] the fingerprint, ARGV[2] its time to live (s). Not `NX`:
    /// a mark left by another record at the same position (a topic made again) gives way
    /// to the record just sent.
    const LUA_MARK: &str = "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1";

    fn script(lua: &'static str, cell: &'static OnceLock<Script>) -> &'static Script {
        cell.get_or_init(|| Script::new(lua))
    }

    #[async_trait]
    impl DeadLetterMarks for RedisCache {
        async fn was_sent(&self, letter: &DeadLetter) -> Result<bool> {
            static GET: OnceLock<Script> = OnceLock::new();
            let key = letter_mark_key(self.prefix(), letter);
            let found: Option<String> = self.invoke(script(LUA_GET, &GET), &[&key], &[]).await?;
            Ok(found.as_deref() == Some(letter.fingerprint().as_str()))
        }

        async fn mark_sent(&self, letter: &DeadLetter) -> Result<()> {
            static MARK: OnceLock<Script> = OnceLock::new();
            let key = letter_mark_key(self.prefix(), letter);
            let args = [letter.fingerprint(), LETTER_MARK_TTL.as_secs().to_string()];
            let _: i64 = self.invoke(script(LUA_MARK, &MARK), &[&key], &args).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    fn headers(r: &Outgoing) -> Vec<(String, String)> {
        r.headers
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn letter(key: Option<&str>, value: Option<&str>) -> DeadLetter {
        DeadLetter {
            topic: "route-events".into(),
            partition: 3,
            offset: 42,
            key: key.map(Into::into),
            value: value.map(Into::into),
            reason: "value is not a route event".into(),
        }
    }

    #[test]
    fn a_letter_carries_the_original_bytes_and_its_reason_and_source_in_headers() {
        let l = letter(
            Some(&B64.encode("acme/checkout/prod")),
            Some(&B64.encode(b"{oops")),
        );
        let at = Timestamp::parse("2026-11-28T12:00:00.000Z").unwrap();
        let r = record(&l, &at);
        assert_eq!(r.key.as_deref(), Some(&b"acme/checkout/prod"[..]));
        assert_eq!(r.value, b"{oops");
        let h = headers(&r);
        let want = [
            (REASON_HEADER, "value is not a route event"),
            (SOURCE_TOPIC_HEADER, "route-events"),
            (SOURCE_PARTITION_HEADER, "3"),
            (SOURCE_OFFSET_HEADER, "42"),
            (FAILED_AT_HEADER, "2026-11-28T12:00:00.000Z"),
        ];
        assert_eq!(h, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }

    #[test]
    fn a_field_that_was_not_base64_is_kept_as_delivered_and_flagged() {
        let l = letter(None, Some("not base64!"));
        let r = record(&l, &Timestamp::now());
        assert_eq!(r.key, None);
        assert_eq!(r.value, b"not base64!");
        assert!(headers(&r).contains(&(UNDECODED_HEADER.to_string(), "value".to_string())));
    }
}
