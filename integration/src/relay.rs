//! A TCP relay in front of a real cluster that a test can cut, to simulate
//! the cluster being unreachable (network partition, node down) without
//! stopping the shared test node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running relay; stopped on drop.
#[derive(Debug)]
pub struct TcpRelay {
    /// `http://127.0.0.1:<port>` of the relay.
    pub url: String,
    down: Arc<AtomicBool>,
    swallow: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpRelay {
    /// Relays a local port to `target_url` (`http://host:port`).
    pub async fn start(target_url: &str) -> TcpRelay {
        let target = target_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("relay addr"));
        let down = Arc::new(AtomicBool::new(false));
        let swallow = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let down = down.clone();
            let swallow = swallow.clone();
            let hold = hold.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let mut cut_rx = cut.subscribe();
                    let swallow = swallow.load(Ordering::SeqCst);
                    let hold = hold.load(Ordering::SeqCst);
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(&target).await else {
                            return;
                        };
                        if hold {
                            // Requests reach the cluster; answers never
                            // come back and the connection stays open.
                            let (mut from_client, _to_client) = inbound.split();
                            let (_from_cluster, mut to_cluster) = outbound.split();
                            tokio::select! {
                                _ = tokio::io::copy(&mut from_client, &mut to_cluster) => {}
                                _ = cut_rx.changed() => {}
                            }
                            return;
                        }
                        if swallow {
                            // Requests reach the cluster; the connection is
                            // closed as soon as its answer starts.
                            let (mut from_client, _to_client) = inbound.split();
                            let (mut from_cluster, mut to_cluster) = outbound.split();
                            let mut first = [0u8; 1];
                            tokio::select! {
                                _ = tokio::io::copy(&mut from_client, &mut to_cluster) => {}
                                _ = from_cluster.read(&mut first) => {}
                                _ = cut_rx.changed() => {}
                            }
                            return;
                        }
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut_rx.changed() => {}
                        }
                    });
                }
            })
        };
        TcpRelay {
            url,
            down,
            swallow,
            hold,
            cut,
            task,
        }
    }

    /// From now on (open connections are cut), requests reach the cluster
    /// but every connection is closed when the answer starts: the sender
    /// cannot know whether its request was applied.
    pub fn swallow_answers(&self, on: bool) {
        self.swallow.store(on, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// From now on (open connections are cut), requests reach the cluster
    /// but no answer ever comes back: the sender waits, its request in
    /// flight.
    pub fn hold_answers(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Cuts every open connection and refuses new ones.
    pub fn set_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn set_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}
