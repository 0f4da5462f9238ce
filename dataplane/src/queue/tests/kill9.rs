//! `kill -9` of a process in the middle of appending: every append it saw
//! acknowledged must be readable afterwards.
//!
//! The test re-executes its own test binary, running only the ignored
//! helper test `kill9_child_appender` with `TANDEM_QUEUE_KILL9_DIR` set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::*;

const DIR_VAR: &str = "TANDEM_QUEUE_KILL9_DIR";
const ACKS_BEFORE_KILL: usize = 400;

fn kill9_payload(task: u64, seq: u64) -> Bytes {
    let filler = "k".repeat(((task * 31 + seq * 17) % 300) as usize);
    Bytes::from(format!("task={task} seq={seq} {filler}"))
}

/// Helper process: appends from 4 tasks forever, printing `ACK <offset>
/// <task> <seq>` after each acknowledged append. Only runs when spawned by
/// `acked_append_survives_kill_9`.
#[test]
#[ignore = "helper process for acked_append_survives_kill_9"]
fn kill9_child_appender() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let queue = Queue::open(&dir, config(8 * 1024)).unwrap();
        let tasks: Vec<_> = (0..4u64)
            .map(|task| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for seq in 0.. {
                        let range = queue.append(vec![kill9_payload(task, seq)]).await.unwrap();
                        println!("ACK {} {task} {seq}", range.start);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test]
async fn acked_append_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let test_name = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest)
        .to_owned()
        + "::kill9_child_appender";
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &test_name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut fields = line.split(' ');
            if fields.next() != Some("ACK") {
                continue;
            }
            let nums: Vec<u64> = fields.map(|f| f.parse().unwrap()).collect();
            if tx.send((nums[0], nums[1], nums[2])).is_err() {
                break;
            }
        }
    });

    let mut acked = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < ACKS_BEFORE_KILL && Instant::now() < deadline {
        if let Ok((offset, task, seq)) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.insert(offset, (task, seq));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lines.join().unwrap();
    // Lines printed before the kill, still in the pipe.
    acked.extend(
        rx.try_iter()
            .map(|(offset, task, seq)| (offset, (task, seq))),
    );
    assert!(
        acked.len() >= ACKS_BEFORE_KILL,
        "child acknowledged only {} appends",
        acked.len()
    );

    let queue = Queue::open(dir.path(), config(8 * 1024)).unwrap();
    let next = queue.stats().next_offset;
    let max_acked = *acked.keys().last().unwrap();
    assert!(
        next > max_acked,
        "next offset {next} after acknowledged offset {max_acked}"
    );
    let mut reader = queue.reader("check").unwrap();
    let records = read_n(&mut reader, next as usize).await;
    for (offset, (task, seq)) in &acked {
        let record = &records[*offset as usize];
        assert_eq!(record.offset, *offset);
        assert_eq!(
            record.payload,
            kill9_payload(*task, *seq),
            "offset {offset}"
        );
    }
    // And the queue keeps going after the crash.
    assert_eq!(
        queue.append(vec![payload(0)]).await.unwrap(),
        next..next + 1
    );
}
