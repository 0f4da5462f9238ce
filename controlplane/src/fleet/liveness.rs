//! The heartbeat-timeout sweep: marks DISCONNECTED every gateway nobody
//! heard from for three heartbeat intervals.
//!
//! A stream on this process closes itself after that silence (see
//! `fleet::session`); the sweep covers gateways held by a replica that died
//! or lost its database connection before it could mark them. Every replica
//! runs it; the update is idempotent.

use std::time::Duration;

use sqlx::PgPool;

use super::Fleet;
use crate::store::gateways as store;

/// Shortest and longest pause between two sweeps.
const SWEEP_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Runs the sweep until the fleet shuts down.
pub fn spawn(pool: PgPool, fleet: Fleet) -> tokio::task::JoinHandle<()> {
    let every = fleet
        .settings()
        .heartbeat_interval
        .clamp(SWEEP_BOUNDS.0, SWEEP_BOUNDS.1);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = fleet.shutting_down() => return,
            }
            match store::mark_silent_disconnected(&pool).await {
                Ok(silent) => {
                    for (gateway_id, held_by) in silent {
                        let here = held_by.as_deref() == Some(fleet.instance_id());
                        tracing::info!(
                            gateway_id = %gateway_id,
                            held_by = held_by.as_deref().unwrap_or("-"),
                            held_here = here,
                            "gateway marked disconnected: no message for three heartbeat intervals"
                        );
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, "heartbeat-timeout sweep failed; retrying");
                }
            }
        }
    })
}
