//! tm-local's connection handling: accepts TCP connections and serves each with hyper's
//! HTTP/1, within limits that keep slow or idle clients from holding the server:
//!
//! - **Header read timeout** ([`Limits::header_read_timeout`]): a request head (request
//!   line and headers) must arrive within it, or the connection is closed. hyper starts
//!   this timer whenever it waits for a request head, so it is also the **idle timeout**
//!   of a keep-alive connection between requests.
//! - **Body read timeout** ([`BODY_READ_TIMEOUT`]): the gateway reads a body within it, or
//!   answers 400 (a trickled body cannot hold a handler).
//! - **Connection cap** ([`Limits::max_connections`]): past it no connection is accepted
//!   until one closes (new ones wait in the listen backlog). With the timeouts above, a
//!   client that opens connections and sends nothing holds a slot for at most one header
//!   timeout, so it delays others by that much at worst and cannot lock them out.
//! - **The contract's error body on hyper's own answers**: a request hyper cannot parse is
//!   answered by hyper itself (400 malformed, 414 request line too long, 431 headers too
//!   large) with an empty body. [`ContractErrors`] rewrites exactly those answers into
//!   CONTRACT §6's `{"error": {"code", "message", "request_id"}}` with a correlation id.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long the gateway waits for a request's whole body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive within this; also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s for a request head (and between requests), 512 connections (below the usual
    /// 1024 open files of a shell, with room for the backends' sockets and files).
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` completes, serving each with a
/// service from `make_service`, watched by `graceful` (so the caller can wait for
/// in-flight requests). Returns when `shutdown` completes; open connections are left to
/// `graceful`.
pub async fn accept_until<F, S, Fut>(
    listener: &TcpListener,
    limits: Limits,
    graceful: &GracefulShutdown,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn() -> S,
    S: Fn(Request<Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return,
            },
            _ = &mut shutdown => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if slots.available_permits() == 0 {
            tracing::debug!(
                max_connections = limits.max_connections,
                "connection cap reached; new connections wait"
            );
        }
        let _ = stream.set_nodelay(true);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(
                TokioIo::new(ContractErrors::new(stream)),
                hyper::service::service_fn(make_service()),
            );
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// An I/O stream whose writes pass through unchanged, except hyper's own answers to
/// requests it could not parse, which get the contract's error body (see the module
/// docs). Recognised by their exact shape: a whole response head with status 400, 414 or
/// 431, `content-length: 0`, and nothing after it, at the end of a write. It may follow
/// other answers in the same write (a client that pipelines a good request and a bad
/// one gets both answers in one buffer); what comes before it passes unchanged. Every
/// answer of the handlers carries a body, and a JSON body never holds a raw blank line,
/// so none of them is ever touched.
pub struct ContractErrors<T> {
    inner: T,
    /// The rewritten answer still to be written, and how much of it is.
    pending: Vec<u8>,
    written: usize,
}

impl<T> ContractErrors<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> ContractErrors<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// `buf` with a bare parse-error answer at its end replaced by the contract's, or `None`
/// when it does not end with one.
pub fn rewrite_tail(buf: &[u8]) -> Option<Vec<u8>> {
    // A bare head ends the buffer with its blank line; an answer with a body (every
    // handler's) does not, and costs this check alone.
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    // The last response head in the buffer starts right after the previous blank line
    // or body; only a bare head that ends the buffer is a candidate.
    let start = [b"HTTP/1.1 400 ", b"HTTP/1.1 414 ", b"HTTP/1.1 431 "]
        .iter()
        .filter_map(|status| buf.windows(status.len()).rposition(|w| w == *status))
        .max()?;
    let answer = rewrite_parse_error(&buf[start..])?;
    let mut out = buf[..start].to_vec();
    out.extend_from_slice(&answer);
    Some(out)
}

/// The contract's answer in place of hyper's bare one, or `None` when `head` is not one.
pub fn rewrite_parse_error(head: &[u8]) -> Option<Vec<u8>> {
    let (status, reason, message) = if head.starts_with(b"HTTP/1.1 400 ") {
        (400, "Bad Request", "request: not a valid HTTP/1.1 request")
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (414, "URI Too Long", "path: the request line is too long")
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            431,
            "Request Header Fields Too Large",
            "headers: too many or too large",
        )
    } else {
        return None;
    };
    let text = std::str::from_utf8(head).ok()?;
    let end = text.find("\r\n\r\n")?;
    let bare = end + 4 == text.len()
        && text[..end]
            .split("\r\n")
            .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    if !bare {
        return None;
    }
    let cid = tm_http::api::correlation_id(None);
    let body = serde_json::json!({
        "error": {"code": "invalid_request", "message": message, "request_id": cid}
    })
    .to_string();
    tracing::debug!(status, correlation_id = %cid, "unparsable request answered");
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{}: {cid}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            tm_http::api::CORRELATION_HEADER,
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for ContractErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ContractErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = rewrite_tail(buf) {
            this.pending = answer;
            // Whatever is not written now goes out on the flush hyper sends next.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands each response over as one flat buffer, so a whole
    // head arrives in one write and can be recognised.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_parse_error_answers_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sat, 05 Dec 2026 08:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_parse_error(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "));
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(
            v["error"]["request_id"]
                .as_str()
                .unwrap()
                .starts_with("req-")
        );
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));

        // A handler's 400 has a body; a 200 is never touched; nor is a partial head.
        let handler = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert!(rewrite_parse_error(handler).is_none());
        assert!(rewrite_parse_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            rewrite_parse_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none()
        );
    }

    #[test]
    fn a_bare_error_written_after_another_answer_is_rewritten_and_the_first_kept() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        let mut both = ok.clone();
        both.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        let out = rewrite_tail(&both).expect("the trailing bare 400 is rewritten");
        assert!(out.starts_with(&ok), "the first answer passes unchanged");
        let rest = String::from_utf8(out[ok.len()..].to_vec()).unwrap();
        assert!(rest.starts_with("HTTP/1.1 400 "), "{rest}");
        assert!(rest.contains("\"invalid_request\""), "{rest}");
        // An answer whose body merely ends the buffer is left alone
        assert!(rewrite_tail(&ok).is_none());
    }
}
