//! Middleware wrapped around the whole router (as opposed to per-handler checks): today only
//! rate limiting ([`ratelimit`]). Middleware here translates between HTTP and a `security`
//! guard; it owns no policy of its own.
pub mod ratelimit;
