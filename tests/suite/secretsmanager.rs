//! The cursor key ring on Secrets Manager (`tm_core::adapters::secretsmanager`) against
//! moto's Secrets Manager emulator, which each test starts itself on a free loopback port
//! (`moto_server`, from `pip install 'moto[server]'`). Without it the tests fail, saying
//! so: nothing here is skipped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tm_core::Error;
use tm_core::adapters::secretsmanager::aws_sdk_secretsmanager::{
    self, Client,
    config::{BehaviorVersion, Credentials, Region, retry::RetryConfig},
};
use tm_core::adapters::secretsmanager::{SecretsManagerKeys, load_and_refresh};
use tm_core::cursor::{CursorKey, CursorKeys};

/// A `moto_server` child on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): these tests need moto's Secrets Manager \
                     emulator on PATH; install it with `pip install 'moto[server]'`"
                )
            });
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited before listening on {addr}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn client(&self) -> Client {
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tm-tests"))
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .build();
        Client::from_conf(conf)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SECRET: &str = "traffic-manager/test/cursor-secret";
const SCOPE: &str = "list|acme||";

async fn put(client: &Client, value: &str) {
    client
        .put_secret_value()
        .secret_id(SECRET)
        .secret_string(value)
        .send()
        .await
        .expect("put a new secret version");
}

/// Waits until the ring's current key is `key` (the background refresh picked it up).
async fn until_current(keys: &CursorKeys, key: &CursorKey) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys.ring().current().id() != key.id() {
        assert!(
            Instant::now() < deadline,
            "the ring {:?} never took {} as its current key",
            keys.ring().ids(),
            key.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_bad_cursor(r: Result<String, Error>) -> bool {
    matches!(r, Err(Error::InvalidRequest(m)) if m.contains("cursor"))
}

#[tokio::test]
async fn a_rotation_reaches_the_ring_and_cursors_of_the_previous_version_keep_opening() {
    let moto = Moto::start();
    let client = moto.client();
    let (a, b, c) = ("secret A", "secret B", "secret C");
    let (key_a, key_b, key_c) = (
        CursorKey::new(a.as_bytes()),
        CursorKey::new(b.as_bytes()),
        CursorKey::new(c.as_bytes()),
    );
    client
        .create_secret()
        .name(SECRET)
        .secret_string(a)
        .send()
        .await
        .expect("create the secret");

    // The first version has no AWSPREVIOUS: a ring of one key.
    let keys = load_and_refresh(
        SecretsManagerKeys::new(client.clone(), SECRET),
        Duration::from_millis(100),
    )
    .await
    .expect("load the ring");
    assert_eq!(keys.ring().ids(), vec![key_a.id()]);
    let sealed_a = keys.seal(SCOPE, "checkout|prod|1.0.0");
    assert!(sealed_a.starts_with(key_a.id()));

    // Rotate to B: B seals, A (now AWSPREVIOUS) still opens.
    put(&client, b).await;
    until_current(&keys, &key_b).await;
    assert_eq!(keys.ring().ids(), vec![key_b.id(), key_a.id()]);
    assert_eq!(keys.open(SCOPE, &sealed_a).unwrap(), "checkout|prod|1.0.0");
    let sealed_b = keys.seal(SCOPE, "checkout|prod|2.0.0");
    assert!(sealed_b.starts_with(key_b.id()));

    // Rotate to C: A has left the ring, so its cursors are 400; B's still open.
    put(&client, c).await;
    until_current(&keys, &key_c).await;
    assert_eq!(keys.ring().ids(), vec![key_c.id(), key_b.id()]);
    assert!(is_bad_cursor(keys.open(SCOPE, &sealed_a)));
    assert_eq!(keys.open(SCOPE, &sealed_b).unwrap(), "checkout|prod|2.0.0");
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_at_start_up_is_an_error_naming_tm_cursor_secret_id() {
    let moto = Moto::start();
    let e = load_and_refresh(
        SecretsManagerKeys::new(moto.client(), "traffic-manager/test/no-such-secret"),
        Duration::from_secs(60),
    )
    .await
    .unwrap_err();
    assert!(e.contains("TM_CURSOR_SECRET_ID"), "{e}");
    assert!(e.contains("traffic-manager/test/no-such-secret"), "{e}");
}

#[tokio::test]
async fn a_refresh_that_fails_keeps_the_last_good_ring() {
    let moto = Moto::start();
    let client = moto.client();
    client
        .create_secret()
        .name(SECRET)
        .secret_string("secret A")
        .send()
        .await
        .expect("create the secret");
    let keys = Arc::new(
        CursorKeys::load(Arc::new(SecretsManagerKeys::new(client.clone(), SECRET)))
            .await
            .expect("load the ring"),
    );
    let sealed = keys.seal(SCOPE, "42");
    client
        .delete_secret()
        .secret_id(SECRET)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete the secret");
    let e = keys.refresh().await.unwrap_err().to_string();
    assert!(e.contains(SECRET), "{e}");
    assert_eq!(
        keys.ring().ids(),
        vec![CursorKey::new(b"secret A").id()],
        "the last good ring"
    );
    assert_eq!(keys.open(SCOPE, &sealed).unwrap(), "42");
}
