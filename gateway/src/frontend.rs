//! Client-facing protocol servers. They see only [`crate::query::QueryHandler`]
//! and [`crate::auth::Authenticator`].

pub mod credentials;
pub mod flight;
pub mod pg;
pub mod rest;

/// Counts one open client connection in a gauge while it lives.
#[derive(Debug)]
pub struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    pub fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        OpenConnection(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
