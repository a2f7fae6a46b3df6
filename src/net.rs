//! Outbound networking: the process-wide TLS provider (rustls + ring, never OpenSSL).

/// Installs rustls' ring provider once per process (reqwest panics without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
