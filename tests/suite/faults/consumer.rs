//! The event consumer's faults: killed between applying a batch and committing it,
//! records it can never apply, and a batch with one of them delivered again.

use super::servers::Server;
use super::{
    SHARED_DYNAMODB, Stack, TENANT, applied, body_n, change_of, converge, logged, path_of,
    read_all, unique, until_in_sync,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::StatusCode;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::adapters::kafka::dead_letters::{REASON_HEADER, SOURCE_OFFSET_HEADER};
use tm_core::adapters::kafka::{ConsumedRecord, GroupConsumer, KafkaDeadLetters, ensure_topics};
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::adapters::redis_cache::RedisCache;
use tm_core::domain::names::ServiceKey;
use tm_core::ports::{DeadLetter, DeadLetters};
use tm_core::services::consume::Consumer;
use tm_event_consumer::ConsumerHandler;
use tm_tests::admin;

const SERVICES: [&str; 6] = ["checkout", "search", "billing", "cart", "login", "profile"];

/// Every field of every hash under `prefix` on the Redis at `port`: the cache, byte for
/// byte.
fn redis_dump(port: u16, prefix: &str) -> BTreeMap<String, String> {
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut out = BTreeMap::new();
    for key in cli(&["--scan", "--pattern", &format!("{prefix}*")]).lines() {
        let fields: Vec<String> = cli(&["HGETALL", key]).lines().map(str::to_owned).collect();
        for pair in fields.chunks(2) {
            out.insert(
                format!("{key} {}", pair[0]),
                pair.get(1).cloned().unwrap_or_default(),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_between_applying_a_batch_and_committing_it_changes_nothing_when_the_batch_comes_again()
 {
    // GIVEN routes changed through tm-local (the writer), their events on a private nisshi broker
    let kafka = Server::kafka();
    let redis = Server::redis();
    let writer = Stack::new(SHARED_DYNAMODB, &redis.url(), &kafka.url());
    writer.init();
    let app = writer.start();
    let (http, tok) = (&app.http, admin(TENANT));
    for n in 1..=3 {
        for s in SERVICES {
            let r = http.put(&path_of(s), &tok, &body_n(n)).await;
            assert!(r.status.is_success(), "{}", r.text);
        }
    }
    let r = http.delete(&path_of("cart"), &tok).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let changes = SERVICES.len() * 3 + 1;
    for s in SERVICES.iter().filter(|s| **s != "cart") {
        until_in_sync(http, &tok, s, 30).await;
    }
    // ... and a second consumer group with its own cache (another key prefix): the
    // consumer under test
    let consumer_stack = Stack {
        prefix: format!("{}:", unique("consumer")),
        group: unique("consumer"),
        ..writer.clone()
    };
    let cache = Arc::new(consumer_stack.cache().await);
    let handler = ConsumerHandler::new(
        Consumer::new(cache.clone()),
        Arc::new(
            KafkaDeadLetters::new(&writer.cluster(), format!("{}-dlq", writer.topic)).unwrap(),
        ),
    );

    // WHEN it receives every record, applies them as one batch, and dies before it
    // commits (it leaves the group without committing)
    let member = GroupConsumer::subscribe(&writer.cluster(), &consumer_stack.group, &writer.topic)
        .expect("join the group");
    let records = read_all(&member, |rs| {
        rs.iter().map(change_of).collect::<BTreeSet<_>>().len() >= changes
    })
    .await;
    let batch = tm_local::kafka_trigger::msk_event(&records, &kafka.url()).unwrap();
    let (response, stats) = handler.handle(batch).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (stats.applied, stats.skipped + stats.applied),
        (changes, records.len()),
        "{stats:?}"
    );
    member.close().await;
    let svcs: Vec<ServiceKey> = SERVICES
        .iter()
        .map(|s| ServiceKey::parse(TENANT, s, "prod").unwrap())
        .collect();
    let store = writer.store();
    let before = converge::compare(&store, cache.as_ref(), TENANT, &svcs).await;
    assert!(before.exact(), "the batch was applied: {before}");
    let dump_before = redis_dump(redis.port, &consumer_stack.prefix);

    // ... and a new member of its group (tm-local with that group and cache) starts
    let restarted = consumer_stack.start();
    // THEN the whole batch comes again, and every record of it is skipped
    let started = Instant::now();
    let skipped = |text: &str| -> (u64, u64) {
        logged(text, "batch handled")
            .iter()
            .fold((0, 0), |(a, s), f| {
                (
                    a + f["applied"].as_u64().unwrap_or(0),
                    s + f["skipped"].as_u64().unwrap_or(0),
                )
            })
    };
    while skipped(&restarted.server.log_text()).1 < records.len() as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the uncommitted batch was not redelivered: {:?}",
            skipped(&restarted.server.log_text())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let redelivery = started.elapsed();
    let text = restarted.server.log_text();
    assert_eq!(skipped(&text), (0, records.len() as u64));
    assert!(
        applied(&text).is_empty(),
        "a redelivered record was applied again"
    );
    // AND the cache is byte for byte what it was
    assert_eq!(redis_dump(redis.port, &consumer_stack.prefix), dump_before);
    // AND the new member goes on with the next change
    let r = http.put(&path_of("checkout"), &tok, &body_n(7)).await;
    assert_eq!(r.json["revision"], 4, "{}", r.text);
    let route = format!("{TENANT}/checkout/prod/1.0.0");
    while !applied(&restarted.server.log_text()).contains(&(route.clone(), 4)) {
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "the next change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // AND the convergence checker finds cache == store for every route
    let after = converge::compare(&store, cache.as_ref(), TENANT, &svcs).await;
    eprintln!(
        "consumer crash: {changes} changes in {} records applied, then redelivered {redelivery:?} after the restart: {:?} (applied, skipped); convergence {after}",
        records.len(),
        skipped(&text)
    );
    assert!(after.exact(), "{after}");
}

/// An event's JSON, as the writer would publish it.
fn event_json(service: &str, revision: u64, schema: u64) -> String {
    let at = "2026-11-28T12:00:00.000Z";
    serde_json::json!({
        "schema": schema, "event_id": format!("00000000-0000-4000-8000-{revision:012}"),
        "type": "route.updated", "tenant": TENANT, "service": service, "env": "prod",
        "version": "1.0.0", "revision": revision, "occurred_at": at, "actor": "mallory",
        "correlation_id": "req-poison",
        "route": {
            "tenant": TENANT, "service": service, "env": "prod", "version": "1.0.0",
            "endpoints": [{"id": "evil", "url": "https://evil.example", "weight": 1, "priority": 0, "status": "active"}],
            "ttl_seconds": 30, "labels": {}, "active": true, "revision": revision,
            "updated_at": at, "updated_by": "mallory"
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_land_in_the_dlq_with_their_reason_and_the_partition_keeps_flowing() {
    // GIVEN tm-local on a one-partition topic, with a route whose first event applied
    let kafka = Server::kafka();
    let redis = Server::redis();
    let stack = Stack::new(SHARED_DYNAMODB, &redis.url(), &kafka.url());
    let dlq = format!("{}-dlq", stack.topic);
    ensure_topics(&stack.cluster(), &stack.topic, &dlq, 1)
        .await
        .expect("create the topics");
    assert!(stack.init().contains("already exists"));
    let app = stack.start();
    let (http, tok) = (&app.http, admin(TENANT));
    let r = http.put(&path_of("checkout"), &tok, &body_n(1)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    until_in_sync(http, &tok, "checkout", 30).await;

    // WHEN three records no consumer can apply follow it on the same partition: bad JSON,
    // an unknown schema, and a key that is not the event's
    let raw = KafkaDeadLetters::new(&stack.cluster(), &stack.topic).unwrap();
    let poison = [
        (
            "acme/checkout/prod",
            r#"{"schema":1,"type":"route.upd"#.to_owned(),
        ),
        ("acme/checkout/prod", event_json("checkout", 50, 2)),
        ("acme/search/prod", event_json("checkout", 60, 1)),
    ];
    for (key, value) in &poison {
        raw.send(&DeadLetter {
            topic: String::new(),
            partition: 0,
            offset: 0,
            key: Some(B64.encode(key)),
            value: Some(B64.encode(value)),
            reason: "test: a record written straight to the event topic".into(),
        })
        .await
        .expect("produce a poison record");
    }
    // ... and then a real change
    let r = http.put(&path_of("checkout"), &tok, &body_n(2)).await;
    assert_eq!(r.json["revision"], 2, "{}", r.text);

    // THEN the change after them is applied: the partition kept flowing
    let took = until_in_sync(http, &tok, "checkout", 30).await;
    // AND each poison record is in the DLQ, in order, with its original bytes and reason
    let reader = GroupConsumer::subscribe(&stack.cluster(), &unique("dlq-reader"), &dlq).unwrap();
    let letters = read_all(&reader, |rs| rs.len() >= 3).await;
    reader.close().await;
    assert_eq!(letters.len(), 3, "exactly the three poison records");
    let header = |r: &ConsumedRecord, name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let reasons: Vec<String> = letters.iter().map(|l| header(l, REASON_HEADER)).collect();
    eprintln!("poison: DLQ reasons {reasons:?}; the next change applied {took:?} after its write");
    assert!(
        reasons[0].starts_with("value is not a route event:"),
        "{}",
        reasons[0]
    );
    assert_eq!(reasons[1], "unknown schema 2");
    assert_eq!(
        reasons[2],
        "record key does not match the event (expected acme/checkout/prod)"
    );
    for (letter, (key, value)) in letters.iter().zip(&poison) {
        assert_eq!(letter.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(letter.value.as_deref(), Some(value.as_bytes()));
    }
    // (they sat at offsets 1, 2 and 3, after the first event)
    let offsets: Vec<String> = letters
        .iter()
        .map(|l| header(l, SOURCE_OFFSET_HEADER))
        .collect();
    assert_eq!(offsets, ["1", "2", "3"]);
    let text = app.server.log_text();
    assert_eq!(
        logged(&text, "poison record sent to the dead-letter topic").len(),
        3
    );
    // AND none of them touched the cache: cache == store
    assert_eq!(
        applied(&text),
        [
            (format!("{TENANT}/checkout/prod/1.0.0"), 1),
            (format!("{TENANT}/checkout/prod/1.0.0"), 2)
        ]
    );
    let svcs = [ServiceKey::parse(TENANT, "checkout", "prod").unwrap()];
    let report = converge::compare(&stack.store(), &stack.cache().await, TENANT, &svcs).await;
    assert!(report.exact(), "{report}");
}

/// Keeps every letter it is sent.
#[derive(Default)]
struct Letters(std::sync::Mutex<Vec<DeadLetter>>);

#[async_trait::async_trait]
impl DeadLetters for Letters {
    async fn send(&self, letter: &DeadLetter) -> tm_core::Result<()> {
        self.0.lock().unwrap().push(letter.clone());
        Ok(())
    }
}

/// One partition of `topic` as the MSK trigger delivers it (the JSON of an MSK event):
/// checkout's revision 1 at offset 0, `poison` at offset 1, revision 2 at offset 2.
fn batch_with_poison(topic: &str, poison: &str) -> serde_json::Value {
    let record = |offset: i64, value: &str| {
        serde_json::json!({
            "topic": topic, "partition": 0, "offset": offset,
            "timestamp": 1795867200000_i64, "timestampType": "CREATE_TIME",
            "key": B64.encode(format!("{TENANT}/checkout/prod")), "value": B64.encode(value),
            "headers": []
        })
    };
    serde_json::json!({
        "eventSource": "aws:kafka",
        "records": {format!("{topic}-0"): [
            record(0, &event_json("checkout", 1, 1)),
            record(1, poison),
            record(2, &event_json("checkout", 2, 1)),
        ]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_once_however_often_and_wherever_its_batch_comes_again() {
    // GIVEN Redis, and consumer instances that each start afresh (nothing in process), all
    // keeping their marks of the letters sent in that Redis, as the Lambda's do
    let redis = Server::redis();
    let prefix = format!("{}:", unique("marks"));
    let topic = unique("events");
    let letters = Arc::new(Letters::default());
    let instance = || async {
        let marks = RedisCache::connect(&redis.url(), &prefix)
            .await
            .expect("connect to Redis");
        ConsumerHandler::new(Consumer::new(Arc::new(MemoryCache::new())), letters.clone())
            .with_marks(Arc::new(marks))
    };
    let poison = r#"{"schema":1,"type":"route.upd"#;

    // WHEN one batch with a poison record is handled, then comes again three times (twice
    // to other instances, once to the same)
    let first = instance().await;
    let (_, stats) = first
        .handle(serde_json::from_value(batch_with_poison(&topic, poison)).unwrap())
        .await;
    assert_eq!((stats.applied, stats.dead_lettered), (2, 1), "{stats:?}");
    let mut again = Vec::new();
    for h in [&instance().await, &instance().await, &first] {
        let (response, stats) = h
            .handle(serde_json::from_value(batch_with_poison(&topic, poison)).unwrap())
            .await;
        assert!(response.batch_item_failures.is_empty());
        again.push((stats.dead_lettered, stats.already_dead_lettered));
    }

    // THEN exactly one letter was sent, for the poison record's position
    assert_eq!(again, [(0, 1); 3]);
    let sent = letters.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].topic.as_str(), sent[0].offset),
        (topic.as_str(), 1)
    );
    // AND its mark is one Redis key that expires after a week
    let mark = tm_core::adapters::kafka::dead_letters::letter_mark_key(&prefix, &sent[0]);
    let ttl = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "TTL", &mark])
        .output()
        .expect("redis-cli");
    let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
    assert!(
        (7 * 24 * 3600 - 60..=7 * 24 * 3600).contains(&ttl),
        "{mark}: TTL {ttl}"
    );

    // AND another record at the same position (the topic made again) is a letter of its own
    let (_, stats) = instance()
        .await
        .handle(serde_json::from_value(batch_with_poison(&topic, "not json at all")).unwrap())
        .await;
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(letters.0.lock().unwrap().len(), 2);
}
