//! Durable background jobs: the queue itself is [`crate::queue`] (below the service layer, so
//! services can schedule jobs); this module maps each job to its service call ([`handler`]).
mod handler;

pub use handler::handler;
