//! The DynamoDB store: routes (with tombstones), history, the tenant audit log and the
//! outbox in one table, with the same semantics as the embedded store
//! ([`crate::adapters::embedded_store`]). docs/dynamodb.md has the whole design; in brief:
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | route (live or tombstone) | `TENANT#{t}` | `ROUTE#{s}#{e}#{v}` |
//! | route health state | `TENANT#{t}` | `HEALTH#{s}#{e}#{v}` |
//! | history entry | `HISTORY#{t}#{s}#{e}#{v}` | `REV#{revision:020}` |
//! | audit entry | `AUDIT#{t}` | `SEQ#{seq:020}` |
//! | audit counter | `AUDIT#{t}` | `COUNTER` |
//! | outbox entry | `OUTBOX#{shard:02}` (`OUTBOX` before sharding) | `{order_ms:015}#{t}#{seq:020}` |
//! | parked outbox entry | `OUTBOX#PARKED` | its outbox id (`{shard:02}@{sk}`) |
//!
//! No secondary index: every read is a `GetItem` or a `Query` on the base table, so every
//! read can be strongly consistent. A commit is one `TransactWriteItems` of five puts:
//! the route (conditional on the expected revision), its history, audit and outbox
//! entries, and the tenant's audit counter (conditional on the value just read), which
//! makes the audit sequence exact commit order per tenant.
//!
//! An outbox item that does not decode is reported by `pending_all` instead of failing
//! it, and the relay parks it: `park` copies the item, every attribute unchanged, into a
//! `parked` item (with the reason and the time) in `OUTBOX#PARKED`, then deletes the
//! original; `unpark` does the reverse. Both use only `Query` and `BatchWriteItem`, the
//! relay's two actions; a crash between the two writes leaves the entry in both places,
//! and the next drain parks it again (same key): it is never lost.
//!
//! SDK types stay in this module (bar the client handed to [`DynamoStore::new`]); errors
//! leave as `Error::Unavailable` (network, timeouts, throttling, 5xx) or
//! `Error::Internal` (everything else), and a lost race as `Error::Conflict`.

mod codec;
mod keys;

use self::codec::{Counter, Item};
use crate::domain::event::{HistoryEntry, RouteEvent};
use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, ServiceKey, TenantName, VersionName};
use crate::domain::route::Route;
use crate::domain::timefmt::Timestamp;
use crate::ports::{
    AuditPage, AuditQuery, Commit, Consistency, HealthStore, HistoryReader, ListQuery, Outbox,
    OutboxEntry, ParkedEntry, PendingEntries, Probe, RouteReader, RouteWriter, StoredRoute,
    UndecodableEntry,
};
use crate::{Error, Result};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, DeleteRequest, KeySchemaElement, KeyType, Put, PutRequest,
    ScalarAttributeType, TableStatus, TransactWriteItem, WriteRequest,
};
use std::sync::Arc;
use std::time::Duration;

/// The SDK crate, re-exported so that a caller of [`DynamoStore::new`] (tests, tools)
/// builds its client with exactly the version this adapter links.
pub use aws_sdk_dynamodb;

/// The DynamoDB actions the resolve function's code calls (`get`, `versions`, `ping`).
pub const IAM_ACTIONS_READ: &[&str] = &["dynamodb:GetItem", "dynamodb:Query"];

/// The DynamoDB actions the write function and the outbox relay call. A
/// `TransactWriteItems` is authorised per contained action (here only `Put`s), so it
/// needs `dynamodb:PutItem` and no action of its own; `mark_published` deletes through
/// `BatchWriteItem`.
pub const IAM_ACTIONS_WRITE: &[&str] = &[
    "dynamodb:BatchWriteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
];

/// The DynamoDB actions the prober calls: `checked_routes` scans, `health` gets, a
/// health change without a transition is one conditional `PutItem`, one with a
/// transition a `TransactWriteItems` of puts (after a `GetItem` of the audit counter).
pub const IAM_ACTIONS_PROBER: &[&str] = &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"];

/// The subset of [`IAM_ACTIONS_WRITE`] the outbox relay alone calls (`pending`,
/// `mark_published`, and `park`/`unpark`, which read with `Query` and move the item with
/// `BatchWriteItem`).
pub const IAM_ACTIONS_RELAY: &[&str] = &["dynamodb:BatchWriteItem", "dynamodb:Query"];

/// The actions of [`DynamoStore::create_table_if_missing`] (`tm-local init`, tests; no
/// function calls it).
pub const IAM_ACTIONS_INIT: &[&str] = &["dynamodb:CreateTable", "dynamodb:DescribeTable"];

/// Limit on opening a TCP (and TLS) connection. DynamoDB answers from inside the region
/// in milliseconds; a second means the network is broken, not slow.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Limit on one attempt (request sent to response read). Single-item calls and
/// transactions take milliseconds, a 1 MB query page tens of ms; the slack is for a
/// cold connection and for DynamoDB Local's cold JVM under `tm-local`.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on one call, the SDK's retries (standard mode, 3 attempts) included. Well under
/// the functions' Lambda timeouts (resolve 5 s, write 10 s, relay 50 s by default), so a
/// sick DynamoDB becomes a 503 (or a stale answer in resolve) rather than a Lambda
/// timeout. A write makes three calls in a row (route, counter, transaction).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// How far a later commit's timestamp may trail an earlier one's (two writers racing);
/// an audit scan with `since` stops this far past it. Same value as the embedded store.
const AUDIT_SKEW_MS: i64 = 60_000;
/// How often a commit re-reads the tenant's audit counter after another commit of the
/// same tenant took the next sequence number, before handing `Conflict` to the caller.
const COUNTER_ATTEMPTS: usize = 8;
/// Query page size while filtering on the client (audit filters, env-only list).
const FILTERED_PAGE: usize = 200;
/// Most keys in one `BatchWriteItem`.
const BATCH_WRITE_MAX: usize = 25;
/// How often unprocessed deletes of one batch are retried.
const BATCH_WRITE_ATTEMPTS: u32 = 6;
/// How long `create_table_if_missing` waits for a new table to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(60);

/// Error codes that mean "try again later": throttling, capacity, server-side trouble,
/// and transactions that collided with another in flight.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// Position of the conditional item (the route, or the health state) in a commit's
/// transaction; the items that follow it are [`DynamoStore::transact_with_audit`]'s
/// (cancellation reasons come in the same order).
const TX_ROUTE: usize = 0;

/// The condition arguments of "the item does not exist yet".
const ABSENT: &[(&str, &str)] = &[("#pk", keys::PK)];

/// Stripes of the per-tenant commit turn (see [`DynamoStore::commit`]).
const COMMIT_STRIPES: usize = 64;

/// The DynamoDB-backed store. Cheap to clone (the client and the commit turns are shared).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Commits of one tenant from this process take turns: they would otherwise race for
    /// the tenant's audit counter, and every lost race costs a transaction and a re-read.
    /// Striped by tenant; commits from other processes still race, and retry.
    turns: Arc<[tokio::sync::Mutex<()>]>,
}

/// Which commit turn a tenant takes.
fn stripe(tenant: &TenantName) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.as_str().hash(&mut h);
    (h.finish() % COMMIT_STRIPES as u64) as usize
}

/// Maps an SDK failure of operation `op` to the crate's error: transport trouble,
/// timeouts, throttling and 5xx are `Unavailable`; anything else is `Internal`.
fn sdk_error<E>(op: &str, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = format!("dynamodb {op}: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(detail)
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            if se.raw().status().is_server_error() || TRANSIENT_CODES.contains(&code) {
                Error::Unavailable(detail)
            } else {
                Error::Internal(detail)
            }
        }
        _ => Error::Internal(detail),
    }
}

fn build_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("dynamodb: building a request: {e}"))
}

/// Clamps a page size to what the SDK takes.
fn page_limit(n: usize) -> i32 {
    i32::try_from(n.max(1)).unwrap_or(i32::MAX)
}

/// What a failed commit transaction means.
enum TxFailure {
    /// Another commit of the same tenant took (or is taking) the counter, and nothing else
    /// failed: re-read the counter and try again, without bothering the caller.
    CounterMoved,
    /// Report this.
    Fail(Error),
}

/// `lead`: how many items precede the audit entry (then come the outbox entry and the
/// counter).
fn classify_commit_failure(err: SdkError<TransactWriteItemsError>, lead: usize) -> TxFailure {
    let (tx_audit, tx_outbox, tx_counter) = (lead, lead + 1, lead + 2);
    let Some(TransactWriteItemsError::TransactionCanceledException(tc)) = err.as_service_error()
    else {
        return TxFailure::Fail(sdk_error("TransactWriteItems", err));
    };
    let codes: Vec<&str> = tc
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("None"))
        .collect();
    let at = |i: usize| codes.get(i).copied().unwrap_or("None");
    let detail = || format!("dynamodb TransactWriteItems cancelled: {codes:?}");
    if at(TX_ROUTE) == "ConditionalCheckFailed" {
        // The expected revision no longer holds: the caller re-reads and decides again.
        return TxFailure::Fail(Error::Conflict);
    }
    if codes.iter().any(|c| {
        matches!(
            *c,
            "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded"
        )
    }) {
        return TxFailure::Fail(Error::Unavailable(detail()));
    }
    // A moved counter also explains a taken audit sequence number, and a taken outbox id
    // (same tenant, sequence and millisecond); the route and its history were fine.
    let lost_counter = matches!(
        at(tx_counter),
        "ConditionalCheckFailed" | "TransactionConflict"
    );
    let explained = |i: usize| {
        if i == tx_audit || i == tx_outbox {
            matches!(
                at(i),
                "None" | "ConditionalCheckFailed" | "TransactionConflict"
            )
        } else {
            i == tx_counter || at(i) == "None"
        }
    };
    if lost_counter && (0..codes.len()).all(explained) {
        return TxFailure::CounterMoved;
    }
    if codes.contains(&"TransactionConflict") {
        // Another transaction holds the route (or one of its entries): the caller re-reads
        // and decides again.
        return TxFailure::Fail(Error::Conflict);
    }
    // A history, audit or outbox item that already exists, a validation error (an item
    // over 400 KB), or reasons missing altogether: a bug or corruption, never a race.
    TxFailure::Fail(Error::Internal(detail()))
}

impl DynamoStore {
    /// A store over `table`, using `client` as configured by the caller.
    pub fn new(client: Client, table: String) -> Self {
        Self {
            client,
            table,
            turns: (0..COMMIT_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// A store over `table` with the SDK's default configuration chain (region,
    /// credentials, and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_DYNAMODB` for emulators),
    /// plus [`CONNECT_TIMEOUT`], [`ATTEMPT_TIMEOUT`] and [`OPERATION_TIMEOUT`]. Fails when
    /// the table name is not a valid DynamoDB table name or no region is configured, so
    /// a bad deployment fails at start-up rather than on the first request.
    pub async fn connect(table: impl Into<String>) -> Result<Self> {
        let table = table.into();
        let valid = (3..=255).contains(&table.len())
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(Error::Internal(format!(
                "TM_TABLE_NAME: {table:?} is not a DynamoDB table name (3-255 chars of A-Z a-z 0-9 _ - .)"
            )));
        }
        let conf = crate::adapters::aws_sdk::config(
            "dynamodb",
            crate::adapters::aws_sdk::Timeouts {
                connect: CONNECT_TIMEOUT,
                attempt: ATTEMPT_TIMEOUT,
                operation: OPERATION_TIMEOUT,
            },
        )
        .await?;
        Ok(Self::new(Client::new(&conf), table))
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand capacity, `pk`/`sk` strings, no secondary index)
    /// unless it exists, and waits until it is active. Returns whether it created it.
    /// An existing table is never changed; one with another key schema is an error.
    pub async fn create_table_if_missing(&self) -> Result<bool> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(out) => {
                let table = out.table();
                let key_ok = table.is_some_and(|t| {
                    let schema: Vec<(&str, &KeyType)> = t
                        .key_schema()
                        .iter()
                        .map(|k| (k.attribute_name(), k.key_type()))
                        .collect();
                    let string_attr = |name: &str| {
                        t.attribute_definitions().iter().any(|a| {
                            a.attribute_name() == name
                                && *a.attribute_type() == ScalarAttributeType::S
                        })
                    };
                    schema == [(keys::PK, &KeyType::Hash), (keys::SK, &KeyType::Range)]
                        && string_attr(keys::PK)
                        && string_attr(keys::SK)
                });
                if !key_ok {
                    return Err(Error::Internal(format!(
                        "dynamodb: table {} exists with another key schema (want pk HASH S, sk RANGE S)",
                        self.table
                    )));
                }
                if table.and_then(|t| t.table_status()) != Some(&TableStatus::Active) {
                    self.wait_active().await?;
                }
                Ok(false)
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DescribeTableError::ResourceNotFoundException(_))
                ) =>
            {
                let attr = |name: &str| {
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build_error)
                };
                let key = |name: &str, kind: KeyType| {
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(kind)
                        .build()
                        .map_err(build_error)
                };
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attr(keys::PK)?)
                    .attribute_definitions(attr(keys::SK)?)
                    .key_schema(key(keys::PK, KeyType::Hash)?)
                    .key_schema(key(keys::SK, KeyType::Range)?)
                    .send()
                    .await;
                let created = match created {
                    Ok(_) => true,
                    // Someone else created it between our two calls: that is fine too.
                    Err(e)
                        if e.as_service_error().and_then(|s| s.code())
                            == Some("ResourceInUseException") =>
                    {
                        false
                    }
                    Err(e) => return Err(sdk_error("CreateTable", e)),
                };
                self.wait_active().await?;
                Ok(created)
            }
            Err(e) => Err(sdk_error("DescribeTable", e)),
        }
    }

    async fn wait_active(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_WAIT;
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "dynamodb: table {} did not become active",
                    self.table
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// Runs `query` page after page, handing each item to `take`, until `take` says stop
    /// or the query is exhausted. `query` must already carry its page `Limit`.
    async fn query_pages(
        &self,
        op: &str,
        query: QueryFluentBuilder,
        mut take: impl FnMut(&Item) -> Result<bool>,
    ) -> Result<()> {
        let mut start: Option<Item> = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(op, e))?;
            for item in out.items() {
                if !take(item)? {
                    return Ok(());
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(()),
            }
        }
    }

    async fn read_counter(&self, tenant: &TenantName) -> Result<Option<Counter>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(codec::key(keys::audit_pk(tenant), keys::COUNTER_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item().map(codec::decode_counter).transpose()
    }

    fn put(
        &self,
        item: Item,
        condition: &str,
        names: &[(&str, &str)],
        values: Option<(&str, u64)>,
    ) -> Result<TransactWriteItem> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (k, v) in names {
            put = put.expression_attribute_names(*k, *v);
        }
        if let Some((k, v)) = values {
            put = put.expression_attribute_values(k, codec::n(v));
        }
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_error)?)
            .build())
    }

    /// Commits `lead` (its first item conditional: its failure is `Conflict`) with the
    /// event's audit entry, outbox entry and the tenant's audit counter in one
    /// `TransactWriteItems`, after one `GetItem` of the counter. When only the counter
    /// moved (another commit of the tenant got in between), it re-reads the counter and
    /// tries again. Returns the outbox id.
    async fn transact_with_audit(
        &self,
        e: &RouteEvent,
        lead: Vec<TransactWriteItem>,
    ) -> Result<String> {
        let audit_entry = e.audit_entry();
        let occurred_ms = u64::try_from(e.occurred_at.millis()).unwrap_or(0);
        let n_lead = lead.len();
        for attempt in 0..COUNTER_ATTEMPTS {
            if attempt > 0 {
                // Jitter, so writers that collided on the counter do not collide again.
                let ms = fastrand::u64(0..(4u64 << attempt.min(5)));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let counter = self.read_counter(&e.tenant).await?;
            let last = counter.unwrap_or_default();
            let next = Counter {
                seq: last.seq + 1,
                // Never behind the tenant's previous commit, so the outbox (ordered by this
                // time first) keeps each tenant's commit order even if clocks disagree.
                last_ms: occurred_ms.max(last.last_ms),
            };
            let outbox_sk = keys::outbox_sk(next.last_ms, &e.tenant, next.seq);
            let outbox_pk = keys::outbox_pk(keys::outbox_shard(&e.key().svc.event_key()));
            let outbox_id = keys::outbox_id(&outbox_pk, &outbox_sk)
                .ok_or_else(|| Error::Internal("outbox id".into()))?;
            let counter_put = match counter {
                None => self.put(
                    codec::counter_item(&e.tenant, next),
                    "attribute_not_exists(#pk)",
                    ABSENT,
                    None,
                )?,
                Some(_) => self.put(
                    codec::counter_item(&e.tenant, next),
                    "#seq = :seq",
                    &[("#seq", codec::SEQ)],
                    Some((":seq", last.seq)),
                )?,
            };
            let mut items = lead.clone();
            items.extend([
                self.put(
                    codec::audit_item(&e.tenant, next.seq, &audit_entry)?,
                    "attribute_not_exists(#pk)",
                    ABSENT,
                    None,
                )?,
                self.put(
                    codec::outbox_item(&outbox_pk, &outbox_sk, e)?,
                    "attribute_not_exists(#pk)",
                    ABSENT,
                    None,
                )?,
                counter_put,
            ]);
            // A fresh token per transaction: the SDK's own retries of this request reuse
            // it, so a retry after a lost response succeeds instead of conflicting with
            // its own first attempt.
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .client_request_token(uuid::Uuid::new_v4().to_string())
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(outbox_id),
                Err(err) => match classify_commit_failure(err, n_lead) {
                    TxFailure::CounterMoved => continue,
                    TxFailure::Fail(err) => return Err(err),
                },
            }
        }
        Err(Error::Conflict)
    }

    /// Deletes one batch of outbox keys, retrying what DynamoDB leaves unprocessed.
    async fn delete_batch(&self, keys: &[&(String, String)]) -> Result<()> {
        let requests = keys
            .iter()
            .map(|(pk, sk)| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(codec::key(pk, sk)))
                    .build()
                    .map_err(build_error)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_batch(requests).await
    }

    /// Puts one item with `BatchWriteItem` (the relay has no `PutItem`).
    async fn put_batch(&self, item: Item) -> Result<()> {
        let put = PutRequest::builder()
            .set_item(Some(item))
            .build()
            .map_err(build_error)?;
        self.write_batch(vec![WriteRequest::builder().put_request(put).build()])
            .await
    }

    /// One item by its key, with a strongly consistent `Query` (the relay has no
    /// `GetItem`).
    async fn query_one(&self, pk: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk = :sk")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", codec::s(pk))
            .expression_attribute_values(":sk", codec::s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok(out.items().first().cloned())
    }

    /// One `BatchWriteItem` of at most 25 requests, retrying what DynamoDB leaves
    /// unprocessed.
    async fn write_batch(&self, mut requests: Vec<WriteRequest>) -> Result<()> {
        for attempt in 0..BATCH_WRITE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            requests = out
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .cloned()
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
        }
        Err(Error::Unavailable(format!(
            "dynamodb BatchWriteItem: {} writes left unprocessed",
            requests.len()
        )))
    }
}

#[async_trait]
impl RouteReader for DynamoStore {
    /// Two `GetItem`s at once: the route item and its health item.
    async fn get(&self, key: &RouteKey, read: Consistency) -> Result<Option<StoredRoute>> {
        let route = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(codec::key(
                keys::tenant_pk(&key.svc.tenant),
                keys::route_sk(key),
            )))
            .consistent_read(read == Consistency::Strong)
            .send();
        let (route, health) = tokio::join!(route, self.read_health(key, read));
        let out = route.map_err(|e| sdk_error("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let (found, mut stored) = codec::decode_route(item)?;
        if &found != key {
            return Err(Error::Internal(format!(
                "dynamodb: GetItem for {key} returned {found}"
            )));
        }
        stored.health = health?;
        Ok(Some(stored))
    }

    /// Two `Query`s at once on the tenant partition: `begins_with(sk, "ROUTE#{s}#{e}#")`
    /// and `begins_with(sk, "HEALTH#{s}#{e}#")`.
    async fn versions(
        &self,
        svc: &ServiceKey,
        read: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        let (routes, health) = tokio::join!(
            self.route_versions(svc, read),
            self.health_versions(svc, read)
        );
        let (mut routes, mut health) = (routes?, health?);
        for (version, stored) in &mut routes {
            stored.health = health.remove(version.as_str());
        }
        Ok(routes)
    }
}

impl DynamoStore {
    /// One key's health item.
    async fn read_health(&self, key: &RouteKey, read: Consistency) -> Result<Option<RouteHealth>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(codec::key(
                keys::tenant_pk(&key.svc.tenant),
                keys::health_sk(key),
            )))
            .consistent_read(read == Consistency::Strong)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item().map(codec::decode_health).transpose()
    }

    /// The health items of one `(tenant, service, env)`, by version.
    async fn health_versions(
        &self,
        svc: &ServiceKey,
        read: Consistency,
    ) -> Result<std::collections::HashMap<String, RouteHealth>> {
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", codec::s(keys::tenant_pk(&svc.tenant)))
            .expression_attribute_values(":prefix", codec::s(keys::health_prefix(svc)))
            .consistent_read(read == Consistency::Strong);
        let mut out = std::collections::HashMap::new();
        self.query_pages("Query", query, |item| {
            let sk = item.get(keys::SK).and_then(|v| v.as_s().ok());
            let version = sk
                .and_then(|sk| keys::parse_health_version(sk))
                .ok_or_else(|| {
                    Error::Internal(format!("dynamodb: health item with a bad key: {sk:?}"))
                })?;
            out.insert(version.to_owned(), codec::decode_health(item)?);
            Ok(true)
        })
        .await?;
        Ok(out)
    }

    /// The route items of one `(tenant, service, env)`.
    async fn route_versions(
        &self,
        svc: &ServiceKey,
        read: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", codec::s(keys::tenant_pk(&svc.tenant)))
            .expression_attribute_values(":prefix", codec::s(keys::versions_prefix(svc)))
            .consistent_read(read == Consistency::Strong);
        let mut out = Vec::new();
        self.query_pages("Query", query, |item| {
            let (key, stored) = codec::decode_route(item)?;
            if &key.svc != svc {
                return Err(Error::Internal(format!(
                    "dynamodb: versions of {} returned {key}",
                    svc.event_key()
                )));
            }
            out.push((key.version, stored));
            Ok(true)
        })
        .await?;
        Ok(out)
    }
}

#[async_trait]
impl HealthStore for DynamoStore {
    /// A `Scan` of the table for route items with the `hc` attribute (filtered on the
    /// server), page after page. Its cost grows with the table, not with the checked
    /// routes: the prober calls it once per refresh (docs/health.md), not per probe.
    async fn checked_routes(&self) -> Result<Vec<Route>> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("attribute_exists(#hc) AND attribute_exists(#doc)")
            .expression_attribute_names("#hc", codec::CHECKED)
            .expression_attribute_names("#doc", codec::DOC);
        let mut start: Option<Item> = None;
        let mut out = Vec::new();
        loop {
            let page = scan
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Scan", e))?;
            for item in page.items() {
                let (_, stored) = codec::decode_route(item)?;
                out.extend(stored.route.filter(|r| r.health_check.is_some()));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    async fn health(&self, key: &RouteKey) -> Result<Option<RouteHealth>> {
        self.read_health(key, Consistency::Strong).await
    }

    /// Without an event, one `PutItem` conditional on the stored `seq`; with one, the
    /// same put in a `TransactWriteItems` with the audit entry, the outbox entry and the
    /// tenant's audit counter (as a route commit).
    async fn save_health(
        &self,
        key: &RouteKey,
        expected: Option<u64>,
        health: &RouteHealth,
        event: Option<&RouteEvent>,
    ) -> Result<Option<String>> {
        let item = codec::health_item(key, health)?;
        let (cond, names, value): (&str, &[(&str, &str)], _) = match expected {
            None => ("attribute_not_exists(#pk)", ABSENT, None),
            Some(seq) => ("#seq = :seq", &[("#seq", codec::SEQ)], Some((":seq", seq))),
        };
        let Some(e) = event else {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(cond);
            for (k, v) in names {
                put = put.expression_attribute_names(*k, *v);
            }
            if let Some((k, v)) = value {
                put = put.expression_attribute_values(k, codec::n(v));
            }
            return match put.send().await {
                Ok(_) => Ok(None),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Err(Error::Conflict)
                }
                Err(err) => Err(sdk_error("PutItem", err)),
            };
        };
        let _turn = self.turns[stripe(&e.tenant)].lock().await;
        let lead = vec![self.put(item, cond, names, value)?];
        self.transact_with_audit(e, lead).await.map(Some)
    }
}

#[async_trait]
impl RouteWriter for DynamoStore {
    /// One `GetItem` (the tenant's audit counter, strongly consistent), then one
    /// `TransactWriteItems` of five puts. When only the counter moved (another commit of
    /// the tenant got in between), it re-reads the counter and tries again.
    async fn commit(&self, c: &Commit) -> Result<String> {
        let e = &c.event;
        let _turn = self.turns[stripe(&e.tenant)].lock().await;
        let key = e.key();
        let route = codec::route_item(&key, e.revision, e.route.as_ref())?;
        let history = codec::history_item(&key, &e.history_entry())?;
        let (route_cond, route_names, route_value): (&str, &[(&str, &str)], _) =
            match c.expected_revision {
                None => ("attribute_not_exists(#pk)", &[("#pk", keys::PK)], None),
                Some(r) => ("#rev = :rev", &[("#rev", codec::REV)], Some((":rev", r))),
            };
        let lead = vec![
            self.put(route, route_cond, route_names, route_value)?,
            self.put(history, "attribute_not_exists(#pk)", ABSENT, None)?,
        ];
        self.transact_with_audit(e, lead).await
    }

    /// One `Query` on the tenant partition, `sk BETWEEN` the position after `after` and
    /// the end of the service (and env) prefix, filtering out tombstones (and, for an env
    /// without a service, other envs) on the server; pages until `limit` routes.
    async fn list(&self, q: &ListQuery) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        if q.limit == 0 {
            return Ok(out);
        }
        let prefix = keys::route_prefix(q.service.as_ref(), q.env.as_ref());
        let end = keys::prefix_end(&prefix);
        let start = match &q.after {
            Some(k) if k.svc.tenant != q.tenant => {
                return Err(Error::Internal(format!(
                    "dynamodb: list of {} after {k}",
                    q.tenant
                )));
            }
            Some(k) => keys::after_route_sk(k).max(prefix),
            None => prefix,
        };
        if start >= end {
            return Ok(out);
        }
        let env_filter = q.env.as_ref().filter(|_| q.service.is_none());
        let mut query = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :start AND :end")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_names("#doc", codec::DOC)
            .expression_attribute_values(":pk", codec::s(keys::tenant_pk(&q.tenant)))
            .expression_attribute_values(":start", codec::s(start))
            .expression_attribute_values(":end", codec::s(end))
            .consistent_read(true);
        query = match env_filter {
            None => query
                .filter_expression("attribute_exists(#doc)")
                .limit(page_limit(q.limit)),
            Some(env) => query
                .filter_expression("attribute_exists(#doc) AND #env = :env")
                .expression_attribute_names("#env", codec::ENV)
                .expression_attribute_values(":env", codec::s(env.as_str()))
                .limit(page_limit(q.limit.max(FILTERED_PAGE))),
        };
        self.query_pages("Query", query, |item| {
            let (_, stored) = codec::decode_route(item)?;
            let route = stored
                .route
                .ok_or_else(|| Error::Internal("dynamodb: list returned a tombstone".into()))?;
            out.push(route);
            Ok(out.len() < q.limit)
        })
        .await?;
        Ok(out)
    }
}

#[async_trait]
impl HistoryReader for DynamoStore {
    /// One `Query` on the key's history partition, newest first, `sk BETWEEN REV# AND
    /// REV#{before - 1}`, strongly consistent; pages until `limit` entries.
    async fn history(
        &self,
        key: &RouteKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let mut out = Vec::new();
        let upper = before.unwrap_or(u64::MAX);
        if limit == 0 || upper == 0 {
            return Ok(out);
        }
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", codec::s(keys::history_pk(key)))
            .expression_attribute_values(":lo", codec::s(keys::rev_floor()))
            .expression_attribute_values(":hi", codec::s(keys::rev_sk(upper - 1)))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(page_limit(limit));
        self.query_pages("Query", query, |item| {
            out.push(codec::decode_history(item)?);
            Ok(out.len() < limit)
        })
        .await?;
        Ok(out)
    }

    /// One `Query` on the tenant's audit partition, newest first, `sk BETWEEN SEQ# AND
    /// SEQ#{before_seq - 1}`, strongly consistent. Filters apply on the client, and a
    /// `since` ends the scan once entries are older than it by more than the clock skew
    /// allowed between writers (as in the embedded store).
    async fn audit(&self, q: &AuditQuery) -> Result<AuditPage> {
        let mut out = AuditPage::default();
        let upper = q.before_seq.unwrap_or(u64::MAX);
        if q.limit == 0 || upper == 0 {
            return Ok(out);
        }
        let filtered = q.kind.is_some() || q.since.is_some() || q.until.is_some();
        let page = if filtered {
            q.limit.max(FILTERED_PAGE)
        } else {
            q.limit
        }
        .min(q.max_scan.max(1));
        let mut examined = 0;
        let query = self
            .query()
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", codec::s(keys::audit_pk(&q.tenant)))
            .expression_attribute_values(":lo", codec::s(keys::seq_floor()))
            .expression_attribute_values(":hi", codec::s(keys::seq_sk(upper - 1)))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(page_limit(page));
        self.query_pages("Query", query, |item| {
            let (seq, entry) = codec::decode_audit(item)?;
            if q.since
                .is_some_and(|s| entry.at.millis() < s.millis() - AUDIT_SKEW_MS)
            {
                return Ok(false);
            }
            examined += 1;
            let outside =
                q.since.is_some_and(|s| entry.at < s) || q.until.is_some_and(|u| entry.at >= u);
            if !outside && q.kind.is_none_or(|t| entry.kind == t) {
                out.items.push((seq, entry));
                if out.items.len() >= q.limit {
                    return Ok(false);
                }
            }
            if examined >= q.max_scan {
                out.stopped_at = Some(seq);
                return Ok(false);
            }
            Ok(true)
        })
        .await?;
        Ok(out)
    }
}

#[async_trait]
impl Outbox for DynamoStore {
    /// One `Query` per outbox shard (and the legacy partition), oldest first, strongly
    /// consistent, merged by id order (commit time, tenant, sequence): each key's events
    /// stay in commit order whatever shard they are in. An item that does not decode is
    /// reported apart, under the id its key gives it.
    async fn pending_all(&self, limit: usize) -> Result<PendingEntries> {
        let mut merged: Vec<(String, OutboxEntry)> = Vec::new();
        let mut undecodable = Vec::new();
        if limit == 0 {
            return Ok(PendingEntries::default());
        }
        for pk in keys::outbox_pks() {
            let query = self
                .query()
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_values(":pk", codec::s(&pk))
                .scan_index_forward(true)
                .consistent_read(true)
                .limit(page_limit(limit));
            let mut taken = 0;
            self.query_pages("Query", query, |item| {
                taken += 1;
                let sk = item
                    .get(keys::SK)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                match codec::decode_outbox(item) {
                    Ok(entry) => merged.push((sk, entry)),
                    Err(e) => {
                        let id = keys::outbox_id(&pk, &sk).ok_or_else(|| {
                            Error::Internal(format!("dynamodb: outbox item {pk} / {sk}"))
                        })?;
                        undecodable.push(UndecodableEntry {
                            id,
                            reason: codec::why(e),
                        });
                    }
                }
                Ok(taken < limit)
            })
            .await?;
        }
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        merged.truncate(limit);
        Ok(PendingEntries {
            entries: merged.into_iter().map(|(_, e)| e).collect(),
            undecodable,
        })
    }

    /// `BatchWriteItem` deletes, 25 keys per call. Deleting an absent item succeeds, so
    /// marking twice is harmless.
    async fn mark_published(&self, ids: &[String]) -> Result<()> {
        let mut unique = Vec::with_capacity(ids.len());
        for id in ids {
            let key = keys::parse_outbox_id(id)
                .ok_or_else(|| Error::Internal(format!("bad outbox id {id}")))?;
            unique.push(key);
        }
        // One batch may not name a key twice.
        unique.sort();
        unique.dedup();
        let unique: Vec<&(String, String)> = unique.iter().collect();
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            self.delete_batch(chunk).await?;
        }
        Ok(())
    }

    /// A `Query` for the item, a `BatchWriteItem` putting its parked copy, then one
    /// deleting it. Put first: a failure in between leaves it in both places, never in
    /// neither.
    async fn park(&self, id: &str, reason: &str) -> Result<()> {
        let (pk, sk) = keys::parse_outbox_key(id)
            .ok_or_else(|| Error::Internal(format!("bad outbox id {id}")))?;
        let Some(original) = self.query_one(&pk, &sk).await? else {
            return Ok(());
        };
        let parked = codec::parked_item(id, &original, reason, &Timestamp::now());
        self.put_batch(parked).await?;
        self.delete_batch(&[&(pk, sk)]).await
    }

    /// One `Query` on the parked partition, by id.
    async fn parked(&self, limit: usize) -> Result<Vec<ParkedEntry>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let query = self
            .query()
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_values(":pk", codec::s(keys::PARKED_OUTBOX_PK))
            .consistent_read(true)
            .limit(page_limit(limit));
        self.query_pages("Query", query, |item| {
            out.push(codec::decode_parked(item)?.0);
            Ok(out.len() < limit)
        })
        .await?;
        Ok(out)
    }

    /// The reverse of `park`: the original item is put back as it was, then the parked
    /// copy is deleted.
    async fn unpark(&self, id: &str) -> Result<bool> {
        let Some(item) = self.query_one(keys::PARKED_OUTBOX_PK, id).await? else {
            return Ok(false);
        };
        let (_, original) = codec::decode_parked(&item)?;
        self.put_batch(original).await?;
        let parked = (keys::PARKED_OUTBOX_PK.to_owned(), id.to_owned());
        self.delete_batch(&[&parked]).await?;
        Ok(true)
    }
}

#[async_trait]
impl Probe for DynamoStore {
    fn name(&self) -> &'static str {
        "store"
    }

    /// An eventually consistent `GetItem` of a key that never holds an item: proves the
    /// table answers with the same permission resolve already has.
    async fn ping(&self) -> Result<()> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(codec::key(keys::PING, keys::PING)))
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(())
    }
}
