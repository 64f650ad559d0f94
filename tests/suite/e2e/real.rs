//! Every scenario again, on tm-local over the real servers: DynamoDB Local, Redis and
//! nisshi (Kafka protocol). Each test gets its own table, key prefix, topics and consumer group.

use super::scenarios as s;
use std::process::Command;

/// The environment of one isolated real-backend tm-local, after `tm-local init` created
/// its table and topics.
pub(super) fn real_env() -> Vec<(String, String)> {
    let id = format!("{:016x}", fastrand_id());
    let env: Vec<(String, String)> = [
        ("TM_L1_TTL_MS", "200".to_owned()),
        ("TM_TABLE_NAME", format!("tm-e2e-{id}")),
        (
            "AWS_ENDPOINT_URL_DYNAMODB",
            "http://127.0.0.1:8000".to_owned(),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("TM_REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
        ("TM_REDIS_PREFIX", format!("tm-e2e-{id}:")),
        ("TM_KAFKA_BROKERS", "127.0.0.1:9092".to_owned()),
        ("TM_KAFKA_TOPIC", format!("tm-e2e-{id}")),
        ("TM_KAFKA_GROUP", format!("tm-e2e-{id}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let out = Command::new(tm_tests::tm_local_bin())
        .arg("init")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("run tm-local init");
    assert!(
        out.status.success(),
        "tm-local init failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("created"),
        "init created the table and topics: {said}"
    );
    env
}

fn fastrand_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 40)
}

macro_rules! on_real_backends {
    ($($name:ident => $scenario:path;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let env = real_env();
                let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                $scenario(&pairs).await;
            }
        )*
    };
}

on_real_backends! {
    on_real_backends_a_newcomer_creates_a_canary_and_resolves_it => s::canary_route_resolves;
    on_real_backends_a_client_polling_with_the_etag_gets_304_until_the_route_changes => s::conditional_resolve;
    on_real_backends_every_change_reaches_resolve_within_the_l1_ttl_plus_a_second => s::changes_propagate;
    on_real_backends_revisions_grow_by_one_across_delete_and_recreate => s::revisions_survive_delete_and_recreate;
    on_real_backends_preconditions_answer_412_and_404 => s::preconditions;
    on_real_backends_deactivating_hides_a_route_and_activating_brings_it_back => s::activate_and_deactivate;
    on_real_backends_listing_pages_with_cursors_that_cannot_be_forged => s::list_and_cursors;
    on_real_backends_history_and_audit_record_every_change_newest_first => s::history_and_audit;
    on_real_backends_status_reports_when_the_shared_cache_is_in_sync => s::status_in_sync;
    on_real_backends_a_restart_loses_nothing => s::restart_loses_nothing;
    on_real_backends_tenants_are_isolated_on_every_endpoint => s::tenant_isolation;
    on_real_backends_bad_tokens_are_401_and_come_after_404_and_405 => s::authentication;
    on_real_backends_every_bad_input_gets_the_contract_error_and_changes_nothing => s::bad_input;
    on_real_backends_resolve_selects_versions_and_endpoints_by_the_rules => s::resolve_rules;
    on_real_backends_health_endpoints_need_no_token => s::health;
    on_real_backends_concurrent_writers_each_get_their_own_revision => s::concurrent_writes;
    on_real_backends_isolation_every_endpoint_answers_every_caller_with_the_contracts_status => super::isolation::matrix;
    on_real_backends_isolation_another_tenant_sees_nothing_of_acme_in_its_own_lists => super::isolation::lists_are_per_tenant;
    on_real_backends_isolation_a_star_token_still_gets_400_for_a_name_that_breaks_the_rules => super::isolation::star_token_still_validates;
    on_real_backends_resolve_routes_around_dead_endpoints_and_back => super::health::routes_around_dead_endpoints;
}
