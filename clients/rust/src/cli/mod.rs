//! Subcommands of `tandemctl`, one module per service, and their output.

pub mod cluster;
pub mod compare;
pub mod gateway;
pub mod migration;
pub mod output;
pub mod queue;
pub mod task;
