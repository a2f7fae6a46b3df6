//! Outbound networking: the process-wide TLS provider (rustls + ring, never OpenSSL) and the
//! HTTP client every chain RPC call goes through.
//!
//! Must never: build a client without the TLS provider installed, or without a timeout.
use std::time::Duration;

/// Longest wait for a TCP/TLS connection to an RPC node (shorter when the request timeout is).
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs rustls' ring provider once per process (reqwest panics without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for a chain's RPC nodes: `timeout` per request, a connect timeout of at most
/// [`MAX_CONNECT_TIMEOUT`] (never longer than `timeout`), and the `epusdt/<version>` user-agent.
pub fn rpc_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout(timeout))
        .user_agent(user_agent())
        .build()
}

/// The user-agent of every outbound RPC request.
pub const fn user_agent() -> &'static str {
    concat!("epusdt/", env!("CARGO_PKG_VERSION"))
}

fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(MAX_CONNECT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_capped_and_never_above_the_request_timeout() {
        assert_eq!(
            connect_timeout(Duration::from_secs(30)),
            MAX_CONNECT_TIMEOUT
        );
        assert_eq!(
            connect_timeout(Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn user_agent_names_the_program_and_version() {
        assert_eq!(
            user_agent(),
            format!("epusdt/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[tokio::test]
    async fn builds_a_client() {
        assert!(rpc_client(Duration::from_secs(3)).is_ok());
    }
}
