//! The HTTP client of status callbacks. Where only public addresses may be reached, it
//! resolves every name itself, refuses the name if any address it resolves to is not public
//! ([`crate::domain::address`]), and connects only to the addresses it checked: the check and
//! the connection use one lookup, so a name that answers differently a second time (DNS
//! rebinding) cannot slip between them. Redirects are never followed, so a public endpoint
//! cannot send the request on to a private one.
//!
//! A URL whose host is a literal address is not looked up at all (by this client or any),
//! so the caller judges it with [`address::public_target`] before sending.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::address::{self, TargetError};
use crate::ports::Resolver;

/// reqwest's lookup hook: the resolver's answer, with `public_only` only if every address
/// in it is public.
struct Lookup {
    resolver: Arc<dyn Resolver>,
    public_only: bool,
}

impl Resolve for Lookup {
    fn resolve(&self, name: Name) -> Resolving {
        let (resolver, public_only) = (self.resolver.clone(), self.public_only);
        Box::pin(async move {
            let ips = resolver.resolve(name.as_str()).await?;
            if ips.is_empty() {
                // Nothing to judge; like a failed lookup, it may pass.
                return Err(std::io::Error::other("the name resolves to no address").into());
            }
            if public_only {
                address::check_resolved(&ips)?;
            }
            // The port is the URL's; reqwest puts it in.
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// A client that follows no redirect and, with `public_only`, connects only to public
/// addresses that `resolver` gave. (Building fails only when the TLS backend cannot start.)
pub fn client(
    timeout: Duration,
    public_only: bool,
    resolver: Arc<dyn Resolver>,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(Lookup {
            resolver,
            public_only,
        }))
        .build()
}

/// The address refusal behind a failed request, if that is why it failed.
pub fn refusal(error: &reqwest::Error) -> Option<TargetError> {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<TargetError>() {
            return Some(*refused);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::address::Refusal;

    /// Every name resolves to the one address the test chose.
    struct Answers(IpAddr);

    #[async_trait]
    impl Resolver for Answers {
        async fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
            Ok(vec![self.0])
        }
    }

    /// A loopback listener that counts the connections it accepts and answers 204.
    async fn listener() -> (u16, Arc<AtomicUsize>) {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        (port, seen)
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_never_connected_to() {
        let (port, seen) = listener().await;
        let loopback = Arc::new(Answers(IpAddr::from([127, 0, 0, 1])));
        let url = format!("http://hooks.example.com:{port}/status?to=x");

        let guarded = client(Duration::from_secs(5), true, loopback.clone()).unwrap();
        let error = guarded.post(&url).send().await.unwrap_err();
        assert_eq!(
            refusal(&error),
            Some(TargetError::Resolves(Refusal::Loopback))
        );
        assert_eq!(seen.load(Ordering::SeqCst), 0);

        // The same answer, where private addresses are allowed, is connected to: the
        // refusal above was the check's, not the listener's.
        let open = client(Duration::from_secs(5), false, loopback).unwrap();
        let answer = open.post(&url).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 204);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn other_failures_are_not_refusals() {
        let guarded = client(
            Duration::from_secs(5),
            true,
            Arc::new(Answers(IpAddr::from([127, 0, 0, 1]))),
        )
        .unwrap();
        // A literal address is not looked up: the caller judges it (and a closed port is a
        // plain connection failure).
        let error = guarded
            .post("http://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal(&error), None);
    }
}
