//! The bare baseline of the HTTP rows: a tokio + hyper HTTP/1 server that answers every
//! request with the same recorded bytes (status 200, the body and content type tm-local
//! answered), and nothing else: no routing, no token, no cache, no logging. What tm-local
//! adds on top of it is what its request path costs.

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

/// Serves `body` as `application/json` on `listen` until the process is killed.
pub async fn serve(listen: &str, body: Bytes) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let mut resp = Response::new(Full::new(body.clone()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
