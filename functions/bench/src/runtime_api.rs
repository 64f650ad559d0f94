//! A local Lambda Runtime API (the `2018-06-01` interface a custom runtime polls), enough
//! to time a cold start: it hands out one armed event on `GET .../invocation/next`, holds
//! every later `next` open (as Lambda does while no event is pending), and records the
//! function's `POST .../response` or `.../error`, and `.../init/error`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// What the function answered.
#[derive(Clone, Debug)]
pub struct Reply {
    /// When it arrived.
    pub at: Instant,
    /// `response`, `error` or `init/error`.
    pub kind: String,
    /// The body.
    pub body: String,
}

#[derive(Default)]
struct State {
    pending: Option<(String, String)>,
    reply: Option<Reply>,
}

/// The stub.
#[derive(Clone)]
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    armed: Arc<Notify>,
    replied: Arc<Notify>,
}

impl RuntimeApi {
    /// Starts serving on an ephemeral 127.0.0.1 port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = Self {
            addr: listener.local_addr()?,
            state: Arc::default(),
            armed: Arc::default(),
            replied: Arc::default(),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let api = server.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.serve(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(api)
    }

    /// `host:port`, for `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `event` the next invocation, with request id `id`, and forgets any reply.
    pub fn arm(&self, id: &str, event: String) {
        let mut s = self.state();
        s.pending = Some((id.to_owned(), event));
        s.reply = None;
        drop(s);
        self.armed.notify_waiters();
    }

    /// Waits for the function's reply.
    pub async fn reply(&self) -> Reply {
        loop {
            let notified = self.replied.notified();
            if let Some(r) = self.state().reply.clone() {
                return r;
            }
            notified.await;
        }
    }

    async fn serve(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
            return status(StatusCode::NOT_FOUND);
        };
        if method == Method::GET && rest == "invocation/next" {
            loop {
                let notified = self.armed.notified();
                if let Some((id, event)) = self.state().pending.take() {
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() + 30_000)
                        .unwrap_or(0);
                    return Response::builder()
                        .header("lambda-runtime-aws-request-id", id)
                        .header("lambda-runtime-deadline-ms", deadline.to_string())
                        .header(
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:tm-resolve",
                        )
                        .header(
                            "lambda-runtime-trace-id",
                            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
                        )
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(event)))
                        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR));
                }
                notified.await;
            }
        }
        if method == Method::POST {
            let kind = if rest == "init/error" {
                Some("init/error")
            } else if rest.ends_with("/response") {
                Some("response")
            } else if rest.ends_with("/error") {
                Some("error")
            } else {
                None
            };
            if let Some(kind) = kind {
                let body = match req.into_body().collect().await {
                    Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                    Err(_) => String::new(),
                };
                self.state().reply = Some(Reply {
                    at: Instant::now(),
                    kind: kind.to_owned(),
                    body,
                });
                self.replied.notify_waiters();
                return status(StatusCode::ACCEPTED);
            }
        }
        status(StatusCode::NOT_FOUND)
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Conn;

    #[tokio::test]
    async fn an_armed_event_goes_out_once_and_the_reply_is_kept() {
        let api = RuntimeApi::start().await.unwrap();
        api.arm("req-1", r#"{"hello":1}"#.into());
        let mut c = Conn::open(api.addr()).await.unwrap();
        let a = c
            .get("/2018-06-01/runtime/invocation/next", "x")
            .await
            .unwrap();
        assert_eq!(a.header("lambda-runtime-aws-request-id"), Some("req-1"));
        assert_eq!(&a.body[..], br#"{"hello":1}"#);
        let r = c
            .send(
                Method::POST,
                "/2018-06-01/runtime/invocation/req-1/response",
                "x",
                Some("{}"),
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let reply = api.reply().await;
        assert_eq!(
            (reply.kind.as_str(), reply.body.as_str()),
            ("response", "{}")
        );
        // The next poll waits: nothing is armed.
        let next = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            c.get("/2018-06-01/runtime/invocation/next", "x"),
        )
        .await;
        assert!(next.is_err());
    }
}
