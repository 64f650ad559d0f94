//! Opaque pagination cursors. A cursor carries a position and a MAC over the position and
//! the query it belongs to (tenant, operation, filters), so a forged, altered or other
//! tenant's cursor is rejected as 400.
//!
//! Cursors are signed with a **key ring** so that rotating the key breaks no open
//! pagination:
//! - [`CursorKey`]: one signing key and its short id ([`CursorKey::id`]).
//! - [`CursorRing`]: the current key, which seals, and the previous ones, which still open.
//!   A cursor is `{key id}.{base64url position}.{base64url tag}`; `open` picks the key by
//!   its id, so a cursor sealed with a key the ring no longer holds (or never held) is the
//!   same 400 as a forged one.
//! - [`CursorKeys`]: the ring a service holds, swapped at run time: [`CursorKeys::load`]
//!   reads it from a [`CursorKeySource`] and [`CursorKeys::spawn_refresh`] re-reads it in
//!   the background (a failed refresh keeps the last good ring). [`StaticKeys`] is the
//!   fixed source (`TM_CURSOR_SECRET`: tm-local, tests); the write Lambda's is AWS Secrets
//!   Manager (`crate::adapters::secretsmanager`, feature `secretsmanager`).

use crate::Error;
use crate::config::Secret;
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// The longest cursor `open` looks at; longer is refused as 400 without parsing.
pub const MAX_CURSOR_LEN: usize = 2048;

/// Length of a key id: 8 lowercase hex digits.
const KEY_ID_LEN: usize = 8;

/// Bytes of the HMAC tag a cursor carries (128 bits).
const TAG_LEN: usize = 16;

/// How often [`CursorKeys::spawn_refresh`] re-reads its source when nothing is wrong. A
/// rotation reaches every instance within this period.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// How soon a failed refresh is tried again (never later than the regular period).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// One secret that signs cursors, with its id. Never logged (its `Debug` shows the id).
///
/// The id is derived from the secret itself: the first 4 bytes, in hex, of
/// HMAC-SHA256(secret, `"tm cursor key id"`). So every instance, whatever source it read
/// the secret from (Secrets Manager, `TM_CURSOR_SECRET`), gives the same secret the same
/// id without sharing any other state, and the id reveals nothing a cursor's tag does not
/// already (both are HMACs under the same key).
#[derive(Clone)]
pub struct CursorKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CursorKey({})", self.id)
    }
}

impl CursorKey {
    /// A key from secret bytes.
    pub fn new(secret: &[u8]) -> Self {
        let mut m = hmac_with(secret);
        m.update(b"tm cursor key id");
        let digest = m.finalize().into_bytes();
        let id = digest[..KEY_ID_LEN / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            id,
            secret: secret.to_vec(),
        }
    }

    /// The key's id, as cursors carry it (8 lowercase hex digits; not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, scope: &str, position: &str) -> HmacSha256 {
        let mut m = hmac_with(&self.secret);
        m.update(scope.as_bytes());
        m.update(b"\n");
        m.update(position.as_bytes());
        m
    }

    /// Makes a cursor for `position` within `scope` (e.g. `list|acme|checkout|`), carrying
    /// this key's id.
    pub fn seal(&self, scope: &str, position: &str) -> String {
        let tag = self.mac(scope, position).finalize().into_bytes();
        format!(
            "{}.{}.{}",
            self.id,
            B64.encode(position),
            B64.encode(&tag[..TAG_LEN])
        )
    }

    /// Checks a cursor made by [`seal`](Self::seal) with this key for the same scope;
    /// returns the position. The same as a ring of this one key.
    pub fn open(&self, scope: &str, cursor: &str) -> Result<String, Error> {
        open_with(std::slice::from_ref(self), scope, cursor)
    }
}

fn hmac_with(secret: &[u8]) -> HmacSha256 {
    // Any key length is valid for HMAC; `new_from_slice` cannot fail here.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac())
}

fn unreachable_hmac() -> HmacSha256 {
    // HMAC accepts keys of any length, so this is never reached; kept total for clippy.
    HmacSha256::new_from_slice(b"k").expect("HMAC takes any key length")
}

fn bad_cursor() -> Error {
    Error::invalid(
        "cursor",
        "is not a cursor this server issued for this query",
    )
}

/// Opens `cursor` with whichever of `keys` has its id; every refusal is the same 400.
fn open_with(keys: &[CursorKey], scope: &str, cursor: &str) -> Result<String, Error> {
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(bad_cursor());
    }
    let mut parts = cursor.splitn(3, '.');
    let (Some(id), Some(pos), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_cursor());
    };
    if id.len() != KEY_ID_LEN {
        return Err(bad_cursor());
    }
    let pos =
        String::from_utf8(B64.decode(pos).map_err(|_| bad_cursor())?).map_err(|_| bad_cursor())?;
    let tag = B64.decode(tag).map_err(|_| bad_cursor())?;
    if tag.len() != TAG_LEN {
        return Err(bad_cursor());
    }
    // Two keys of one ring sharing an id (a 1 in 2^32 chance) are both tried.
    let opened = keys
        .iter()
        .filter(|k| k.id == id)
        .any(|k| k.mac(scope, &pos).verify_truncated_left(&tag).is_ok());
    if opened { Ok(pos) } else { Err(bad_cursor()) }
}

/// The keys cursors are checked with: the current one, which also seals, then the
/// previous ones (during a rotation), which only open.
#[derive(Clone, Debug)]
pub struct CursorRing {
    /// `keys[0]` is the current key; never empty.
    keys: Vec<CursorKey>,
}

impl CursorRing {
    /// A ring of one key.
    pub fn new(current: CursorKey) -> Self {
        Self {
            keys: vec![current],
        }
    }

    /// The same ring that also opens cursors sealed with `previous` (a key with an id the
    /// ring already holds is not added again).
    pub fn with_previous(mut self, previous: CursorKey) -> Self {
        if !self.keys.iter().any(|k| k.id == previous.id) {
            self.keys.push(previous);
        }
        self
    }

    /// The key that seals.
    pub fn current(&self) -> &CursorKey {
        &self.keys[0]
    }

    /// The ids of the keys, current first (for logs).
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Seals with the current key (see [`CursorKey::seal`]).
    pub fn seal(&self, scope: &str, position: &str) -> String {
        self.current().seal(scope, position)
    }

    /// Opens a cursor sealed with any key of the ring for the same scope; a cursor of
    /// another key, forged or altered is 400.
    pub fn open(&self, scope: &str, cursor: &str) -> Result<String, Error> {
        open_with(&self.keys, scope, cursor)
    }
}

impl From<CursorKey> for CursorRing {
    fn from(key: CursorKey) -> Self {
        Self::new(key)
    }
}

/// Where [`CursorKeys`] reads the ring from.
#[async_trait]
pub trait CursorKeySource: Send + Sync {
    /// What the source is, for errors and logs: names the variable that configures it
    /// and never the secret (e.g. `TM_CURSOR_SECRET_ID (secret traffic-manager/dev/...)`).
    fn describe(&self) -> String;

    /// The ring as the source holds it now.
    async fn fetch(&self) -> Result<CursorRing, Error>;
}

/// A fixed ring: `TM_CURSOR_SECRET` (tm-local, tests).
#[derive(Clone, Debug)]
pub struct StaticKeys(CursorRing);

impl StaticKeys {
    /// A source that always answers `ring`.
    pub fn new(ring: impl Into<CursorRing>) -> Self {
        Self(ring.into())
    }

    /// The one-key ring of a `TM_CURSOR_SECRET` value.
    pub fn from_secret(secret: &Secret) -> Self {
        Self::new(CursorKey::new(secret.expose().as_bytes()))
    }
}

#[async_trait]
impl CursorKeySource for StaticKeys {
    fn describe(&self) -> String {
        "TM_CURSOR_SECRET".into()
    }

    async fn fetch(&self) -> Result<CursorRing, Error> {
        Ok(self.0.clone())
    }
}

/// The ring a service seals and opens cursors with, replaced at run time when its source
/// changes. [`ring`](Self::ring) is a read lock and an `Arc` clone, cheap on every request.
pub struct CursorKeys {
    ring: RwLock<Arc<CursorRing>>,
    source: Option<Arc<dyn CursorKeySource>>,
}

impl std::fmt::Debug for CursorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorKeys")
            .field("ids", &self.ring().ids())
            .field("source", &self.source.as_ref().map(|s| s.describe()))
            .finish()
    }
}

impl CursorKeys {
    /// A ring that never changes (no source, nothing to refresh).
    pub fn fixed(ring: impl Into<CursorRing>) -> Self {
        Self {
            ring: RwLock::new(Arc::new(ring.into())),
            source: None,
        }
    }

    /// Reads the ring from `source` once, at start-up. The error names the source (and so
    /// the variable that configures it): without keys the service cannot page.
    pub async fn load(source: Arc<dyn CursorKeySource>) -> Result<Self, Error> {
        let ring = source.fetch().await.map_err(|e| {
            Error::Internal(format!(
                "reading the cursor keys from {}: {e}",
                source.describe()
            ))
        })?;
        tracing::info!(keys = ?ring.ids(), source = %source.describe(), "cursor keys loaded");
        Ok(Self {
            ring: RwLock::new(Arc::new(ring)),
            source: Some(source),
        })
    }

    /// The ring now.
    pub fn ring(&self) -> Arc<CursorRing> {
        // A poisoned lock still holds a whole `Arc` (writers only swap it).
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Seals with the current ring's current key.
    pub fn seal(&self, scope: &str, position: &str) -> String {
        self.ring().seal(scope, position)
    }

    /// Opens with the current ring.
    pub fn open(&self, scope: &str, cursor: &str) -> Result<String, Error> {
        self.ring().open(scope, cursor)
    }

    /// Re-reads the source once. On failure the ring stays as it was and the error is
    /// returned (the caller logs it); a fixed ring has nothing to re-read.
    pub async fn refresh(&self) -> Result<(), Error> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let ring = source.fetch().await?;
        let before = self.ring();
        if before.ids() != ring.ids() {
            tracing::info!(
                keys = ?ring.ids(),
                were = ?before.ids(),
                source = %source.describe(),
                "cursor keys rotated"
            );
        }
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
        Ok(())
    }

    /// Refreshes in a background task every `every` ([`REFRESH_EVERY`] in production);
    /// after a failure (logged as a warning, the last good ring kept) it tries again after
    /// [`RETRY_AFTER_FAILURE`] if that is sooner. The task holds only a weak reference and
    /// ends when the keys are dropped. `None` for a fixed ring. Call inside a Tokio
    /// runtime. On Lambda the task runs only while the environment is thawed, so a
    /// rotation reaches an instance at its first invocation after the period.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.source.as_ref()?;
        let weak: Weak<Self> = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                let Some(keys) = weak.upgrade() else {
                    return;
                };
                wait = match keys.refresh().await {
                    Ok(()) => every,
                    Err(e) => {
                        let source = keys.source.as_ref().map(|s| s.describe());
                        tracing::warn!(
                            error = %e,
                            source = source.as_deref().unwrap_or(""),
                            keys = ?keys.ring().ids(),
                            "refreshing the cursor keys failed; keeping the last good ones"
                        );
                        every.min(RETRY_AFTER_FAILURE)
                    }
                };
            }
        }))
    }
}

impl From<CursorKey> for Arc<CursorKeys> {
    fn from(key: CursorKey) -> Self {
        Arc::new(CursorKeys::fixed(key))
    }
}

impl From<CursorRing> for Arc<CursorKeys> {
    fn from(ring: CursorRing) -> Self {
        Arc::new(CursorKeys::fixed(ring))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Mutex;

    fn is_bad_cursor(r: Result<String, Error>) -> bool {
        match r {
            Err(e @ Error::InvalidRequest(_)) => {
                e.to_string().contains("cursor") && e.to_string().contains("not a cursor")
            }
            _ => false,
        }
    }

    #[test]
    fn a_cursor_opens_only_in_its_own_scope() {
        let k = CursorKey::new(b"secret");
        let c = k.seal("list|acme||", "checkout\0prod\0v1");
        assert_eq!(k.open("list|acme||", &c).unwrap(), "checkout\0prod\0v1");
        assert!(
            k.open("list|other||", &c).is_err(),
            "another tenant's cursor"
        );
        assert!(
            k.open("list|acme|checkout|", &c).is_err(),
            "another filter's cursor"
        );
        assert!(
            CursorKey::new(b"other").open("list|acme||", &c).is_err(),
            "another key"
        );
    }

    #[test]
    fn a_cursor_carries_the_id_of_its_key() {
        let a = CursorKey::new(b"key A");
        let b = CursorKey::new(b"key B");
        assert_eq!(a.id().len(), 8);
        assert!(
            a.id()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a.id(), b.id());
        assert_eq!(
            a.id(),
            CursorKey::new(b"key A").id(),
            "derived from the secret"
        );
        let c = a.seal("s", "42");
        assert!(c.starts_with(&format!("{}.", a.id())), "{c}");
        assert!(
            !format!("{a:?}").contains("key A"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn altered_or_forged_cursors_are_rejected() {
        let k = CursorKey::new(b"secret");
        let c = k.seal("s", "42");
        let (id, rest) = c.split_once('.').unwrap();
        let tag = rest.split_once('.').unwrap().1;
        let forged = format!("{id}.{}.{tag}", B64.encode("43"));
        assert!(is_bad_cursor(k.open("s", &forged)));
        assert!(is_bad_cursor(k.open("s", "")));
        assert!(is_bad_cursor(k.open("s", "abc")));
        assert!(
            is_bad_cursor(k.open("s", &format!("{id}.{}.", B64.encode("42")))),
            "empty tag"
        );
        assert!(
            is_bad_cursor(k.open("s", rest)),
            "a cursor without its key id"
        );
        let other_id = if id == "00000000" {
            "11111111"
        } else {
            "00000000"
        };
        assert!(
            is_bad_cursor(k.open("s", &format!("{other_id}.{rest}"))),
            "another key id"
        );
        assert!(
            is_bad_cursor(k.open("s", &format!("{c}.x"))),
            "trailing part"
        );
        let long = k.seal("s", &"x".repeat(MAX_CURSOR_LEN));
        assert!(is_bad_cursor(k.open("s", &long)), "over the length limit");
    }

    #[test]
    fn a_cursor_sealed_before_a_rotation_opens_with_the_ring_that_keeps_the_previous_key() {
        let a = CursorKey::new(b"key A");
        let b = CursorKey::new(b"key B");
        let before = CursorRing::new(a.clone());
        let cursor = before.seal("list|acme||", "checkout\0prod\0v1");

        // Rotated: B seals, A still opens.
        let rotated = CursorRing::new(b.clone()).with_previous(a.clone());
        assert_eq!(rotated.ids(), vec![b.id(), a.id()]);
        assert_eq!(
            rotated.open("list|acme||", &cursor).unwrap(),
            "checkout\0prod\0v1"
        );
        let new = rotated.seal("list|acme||", "checkout\0prod\0v2");
        assert!(new.starts_with(b.id()), "the current key seals");
        assert_eq!(
            rotated.open("list|acme||", &new).unwrap(),
            "checkout\0prod\0v2"
        );
        assert!(is_bad_cursor(rotated.open("list|other||", &cursor)));

        // A rotated out (or a cursor of a key never held): 400.
        let without_a = CursorRing::new(b.clone());
        assert!(is_bad_cursor(without_a.open("list|acme||", &cursor)));
        let unknown = CursorKey::new(b"key C").seal("list|acme||", "checkout\0prod\0v1");
        assert!(is_bad_cursor(rotated.open("list|acme||", &unknown)));
    }

    #[test]
    fn a_ring_holds_each_key_once() {
        let a = CursorKey::new(b"key A");
        let ring = CursorRing::new(a.clone()).with_previous(CursorKey::new(b"key A"));
        assert_eq!(ring.ids(), vec![a.id()]);
    }

    /// A source whose answer the test changes.
    struct Switch(Mutex<Result<CursorRing, String>>);

    impl Switch {
        fn set(&self, r: Result<CursorRing, &str>) {
            *self.0.lock().unwrap() = r.map_err(str::to_owned);
        }
    }

    #[async_trait]
    impl CursorKeySource for Switch {
        fn describe(&self) -> String {
            "TM_CURSOR_SECRET_ID (secret test)".into()
        }
        async fn fetch(&self) -> Result<CursorRing, Error> {
            self.0.lock().unwrap().clone().map_err(Error::Unavailable)
        }
    }

    #[tokio::test]
    async fn a_refresh_picks_up_a_rotation_and_a_failed_one_keeps_the_last_good_ring() {
        let a = CursorKey::new(b"key A");
        let b = CursorKey::new(b"key B");
        let source = Arc::new(Switch(Mutex::new(Ok(CursorRing::new(a.clone())))));
        let keys = CursorKeys::load(source.clone()).await.unwrap();
        let cursor = keys.seal("s", "42");

        source.set(Ok(CursorRing::new(b.clone()).with_previous(a.clone())));
        keys.refresh().await.unwrap();
        assert_eq!(keys.ring().ids(), vec![b.id(), a.id()]);
        assert_eq!(keys.open("s", &cursor).unwrap(), "42");
        assert!(keys.seal("s", "42").starts_with(b.id()));

        source.set(Err("Secrets Manager is down"));
        assert!(keys.refresh().await.is_err());
        assert_eq!(
            keys.ring().ids(),
            vec![b.id(), a.id()],
            "the last good ring"
        );
        assert_eq!(keys.open("s", &cursor).unwrap(), "42");

        // A left AWSPREVIOUS: its cursors are 400 from now on.
        source.set(Ok(CursorRing::new(b.clone())));
        keys.refresh().await.unwrap();
        assert!(is_bad_cursor(keys.open("s", &cursor)));
    }

    #[tokio::test]
    async fn a_source_that_fails_at_start_up_is_an_error_naming_it() {
        let source = Arc::new(Switch(Mutex::new(Err("AccessDenied".into()))));
        let e = CursorKeys::load(source).await.unwrap_err().to_string();
        assert!(e.contains("TM_CURSOR_SECRET_ID"), "{e}");
        assert!(e.contains("AccessDenied"), "{e}");
    }

    #[tokio::test]
    async fn the_background_refresh_follows_the_source_and_stops_with_the_keys() {
        let a = CursorKey::new(b"key A");
        let b = CursorKey::new(b"key B");
        let source = Arc::new(Switch(Mutex::new(Ok(CursorRing::new(a.clone())))));
        let keys = Arc::new(CursorKeys::load(source.clone()).await.unwrap());
        let task = keys
            .spawn_refresh(Duration::from_millis(10))
            .expect("a source to refresh from");
        source.set(Ok(CursorRing::new(b.clone()).with_previous(a.clone())));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while keys.ring().current().id() != b.id() {
            assert!(tokio::time::Instant::now() < deadline, "never refreshed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(keys);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends once the keys are dropped")
            .unwrap();
    }

    #[tokio::test]
    async fn static_keys_are_a_fixed_ring() {
        let secret = Secret::new("s3cret");
        let keys = CursorKeys::load(Arc::new(StaticKeys::from_secret(&secret)))
            .await
            .unwrap();
        let c = CursorKey::new(b"s3cret").seal("s", "1");
        assert_eq!(keys.open("s", &c).unwrap(), "1");
        assert!(
            Arc::new(CursorKeys::fixed(CursorKey::new(b"k")))
                .spawn_refresh(Duration::from_millis(1))
                .is_none()
        );
        let keys: Arc<CursorKeys> = CursorKey::new(b"k").into();
        assert_eq!(keys.ring().ids(), vec![CursorKey::new(b"k").id()]);
    }

    proptest! {
        #[test]
        fn random_cursors_never_open(s in "\\PC{0,100}") {
            prop_assert!(CursorKey::new(b"k").open("s", &s).is_err());
        }

        #[test]
        fn a_sealed_position_opens_to_itself(
            scope in "\\PC{0,40}",
            position in "\\PC{0,300}",
            rotated in any::<bool>(),
        ) {
            let a = CursorKey::new(b"key A");
            let sealed = a.seal(&scope, &position);
            prop_assert!(sealed.len() <= MAX_CURSOR_LEN);
            prop_assert!(sealed.is_ascii() && !sealed.contains(['&', '=', '+', '/', ' ']));
            let ring = if rotated {
                CursorRing::new(CursorKey::new(b"key B")).with_previous(a.clone())
            } else {
                CursorRing::new(a.clone())
            };
            prop_assert_eq!(ring.open(&scope, &sealed).ok(), Some(position));
        }
    }
}
