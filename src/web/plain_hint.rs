//! Plain HTTP sent to the TLS port gets a one-line answer saying to use `https://`, instead of a
//! connection closed without a word (what a TLS server does with bytes that are not a
//! handshake). It runs before the TLS acceptor and only peeks: a TLS client is untouched.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HINT: &str = "This port speaks HTTPS: use https:// in the address.\n";

#[derive(Clone, Copy, Debug, Default)]
pub struct PlainHttpHint;

impl<S: Send + 'static> Accept<TcpStream, S> for PlainHttpHint {
    type Stream = TcpStream;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TcpStream, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        Box::pin(async move {
            let mut first = [0u8; 1];
            // A TLS ClientHello starts with 0x16; an HTTP request with its method's capital.
            let peeked =
                tokio::time::timeout(Duration::from_secs(10), stream.peek(&mut first)).await;
            if let Ok(Ok(1)) = peeked
                && first[0].is_ascii_uppercase()
            {
                let mut stream = stream;
                let answer = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{HINT}",
                    HINT.len()
                );
                stream.write_all(answer.as_bytes()).await?;
                let _ = stream.shutdown().await;
                return Err(io::Error::other("plain HTTP on the TLS port"));
            }
            Ok((stream, service))
        })
    }
}
