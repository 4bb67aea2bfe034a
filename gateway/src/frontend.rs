//! Client-facing protocol servers. They see only [`crate::query::QueryHandler`]
//! and [`crate::auth::Authenticator`].

pub mod credentials;
pub mod flight;
pub mod pg;
