//! Helpers for the integration and end-to-end suite: start `tm-local` as a user would
//! (the real binary, a random port, its own data dir), talk HTTP to it, mint tokens.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The HS256 secret every test server is started with.
pub const SECRET: &str = "test-secret-for-the-suite";

/// Where cargo put the `tm-local` binary (next to this test binary's `deps/` folder).
pub fn tm_local_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("tm-local");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tm-local` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Where cargo put the `tmctl` binary (built with the workspace's bins, as scripts/test.sh does).
pub fn tmctl_bin() -> PathBuf {
    let bin = tm_local_bin().with_file_name("tmctl");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tmctl` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A running `tm-local`; stopped (SIGTERM, then wait) on drop.
pub struct TmLocal {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    /// Everything it logged (JSON lines), collected in the background.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TmLocal {
    /// Starts a server on a fresh data dir.
    pub fn start(env: &[(&str, &str)]) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Self::start_in(dir.path(), env);
        (s, dir)
    }

    /// Starts a server on `data_dir` with extra environment.
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cmd = Command::new(tm_local_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("TM_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .env_remove("TM_TABLE_NAME")
            .env_remove("TM_REDIS_URL")
            .env_remove("TM_KAFKA_BROKERS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tm-local");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let base = loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("read tm-local stdout");
            if n == 0 {
                let status = child.wait().ok();
                let logs = logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                panic!("tm-local exited before listening ({status:?}):\n{logs}");
            }
            if let Some(addr) = line.trim().strip_prefix("tm-local listening on ") {
                break addr.to_owned();
            }
        };
        TmLocal {
            child: Some(child),
            base,
            data_dir: data_dir.to_owned(),
            env,
            logs,
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts again on the same data dir and environment.
    pub fn restart(&mut self) {
        self.stop();
        let env: Vec<(String, String)> = self.env.clone();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let logs = self.logs.clone();
        *self = Self::start_in(&self.data_dir.clone(), &pairs);
        let mut old = logs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut new = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        old.append(&mut new);
        *new = old;
    }

    /// The collected log lines.
    pub fn log_text(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }
}

impl Drop for TmLocal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Mints a token the suite's servers accept.
pub fn token(sub: &str, tenants: &str, scope: &str) -> String {
    token_with(sub, tenants, scope, 3600)
}

/// Mints a token that expires `ttl` seconds from now (negative: already expired).
pub fn token_with(sub: &str, tenants: &str, scope: &str, ttl: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(sub));
    claims.insert("tm_tenants".into(), json!(tenants));
    claims.insert("scope".into(), json!(scope));
    claims.insert("exp".into(), json!(now + ttl));
    tm_core::jwt::mint(SECRET.as_bytes(), &claims)
}

/// All three scopes on one tenant.
pub fn admin(tenant: &str) -> String {
    token("tester", tenant, "routes:read routes:write routes:resolve")
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON (`Null` when empty or not JSON).
    pub json: Value,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The error code of a contract error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

/// A small HTTP client for the suite.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    /// A client for `base`.
    pub fn new(base: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.to_owned(),
        }
    }

    /// Sends a request; `body` is sent as JSON when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), &[], None).await
    }

    /// PUT a JSON body with a token.
    pub async fn put(&self, path: &str, token: &str, body: &str) -> Reply {
        self.send(Method::PUT, path, Some(token), &[], Some(body))
            .await
    }

    /// POST without a body.
    pub async fn post(&self, path: &str, token: &str) -> Reply {
        self.send(Method::POST, path, Some(token), &[], None).await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(Method::DELETE, path, Some(token), &[], None)
            .await
    }
}

/// The management path of one route.
pub fn route_path(t: &str, s: &str, e: &str, v: &str) -> String {
    format!("/v1/tenants/{t}/services/{s}/envs/{e}/versions/{v}")
}

/// A body with the given `(id, weight)` endpoints at priority 0.
pub fn body(endpoints: &[(&str, u32)]) -> String {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(id, w)| json!({"id": id, "url": format!("https://{id}.example.internal"), "weight": w}))
        .collect();
    json!({"endpoints": eps}).to_string()
}

/// Polls `check` every 10 ms until it holds or `within` passes; returns the time it took.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
