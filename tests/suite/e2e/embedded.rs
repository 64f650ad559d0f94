//! Every scenario on tm-local's embedded, disk-backed defaults.

use super::scenarios as s;

const ENV: &[(&str, &str)] = &[("TM_L1_TTL_MS", "200")];

#[tokio::test]
async fn a_newcomer_creates_a_canary_and_resolves_it_with_and_without_a_key() {
    s::canary_route_resolves(ENV).await;
}

#[tokio::test]
async fn a_client_polling_with_the_etag_gets_304_until_the_route_changes() {
    s::conditional_resolve(ENV).await;
}

#[tokio::test]
async fn every_change_reaches_resolve_within_the_l1_ttl_plus_a_second() {
    s::changes_propagate(ENV).await;
}

#[tokio::test]
async fn revisions_grow_by_one_across_delete_and_recreate() {
    s::revisions_survive_delete_and_recreate(ENV).await;
}

#[tokio::test]
async fn preconditions_answer_412_and_404_as_the_contract_says() {
    s::preconditions(ENV).await;
}

#[tokio::test]
async fn deactivating_hides_a_route_and_activating_brings_it_back() {
    s::activate_and_deactivate(ENV).await;
}

#[tokio::test]
async fn listing_pages_with_cursors_that_cannot_be_forged() {
    s::list_and_cursors(ENV).await;
}

#[tokio::test]
async fn history_and_audit_record_every_change_newest_first() {
    s::history_and_audit(ENV).await;
}

#[tokio::test]
async fn status_reports_when_the_shared_cache_is_in_sync() {
    s::status_in_sync(ENV).await;
}

#[tokio::test]
async fn a_restart_loses_nothing() {
    s::restart_loses_nothing(ENV).await;
}

#[tokio::test]
async fn tenants_are_isolated_on_every_endpoint() {
    s::tenant_isolation(ENV).await;
}

#[tokio::test]
async fn bad_tokens_are_401_and_come_after_404_and_405() {
    s::authentication(ENV).await;
}

#[tokio::test]
async fn every_bad_input_gets_the_contract_error_and_changes_nothing() {
    s::bad_input(ENV).await;
}

#[tokio::test]
async fn resolve_selects_versions_and_endpoints_by_the_rules() {
    s::resolve_rules(ENV).await;
}

#[tokio::test]
async fn health_endpoints_need_no_token() {
    s::health(ENV).await;
}

#[tokio::test]
async fn concurrent_writers_each_get_their_own_revision() {
    s::concurrent_writes(ENV).await;
}
