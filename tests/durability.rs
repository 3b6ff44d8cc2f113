//! kill -9 during a load: every message that got 250 is delivered after a restart.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Client, Gateway, Sink, message, wait_until};

const MESSAGES: usize = 1000;
const SENDERS: usize = 10;

/// Send `ids` one by one, reconnecting on any failure, until each got a 250.
async fn sender(addr: SocketAddr, ids: Vec<String>, acked: Arc<Mutex<Vec<String>>>) {
    let mut next = 0;
    while next < ids.len() {
        let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        drop(s);
        let mut c = Client::connect(addr).await;
        let ok = async {
            c.read_reply().await.filter(|r| r.code == 220)?;
            c.send_raw(b"EHLO load.test\r\n").await;
            c.read_reply().await.filter(|r| r.code == 250)?;
            while next < ids.len() {
                let id = &ids[next];
                let msg = message(
                    "a@ext.test",
                    "u@example.test",
                    id,
                    &"0123456789abcdef\r\n".repeat(40),
                );
                let mut stuffed =
                    "MAIL FROM:<a@ext.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n".to_string();
                c.send_raw(stuffed.as_bytes()).await;
                c.read_reply().await.filter(|r| r.code == 250)?;
                c.read_reply().await.filter(|r| r.code == 250)?;
                c.read_reply().await.filter(|r| r.code == 354)?;
                stuffed.clear();
                stuffed.push_str(&msg);
                stuffed.push_str(".\r\n");
                c.send_raw(stuffed.as_bytes()).await;
                c.read_reply().await.filter(|r| r.code == 250)?;
                acked.lock().unwrap().push(id.clone());
                next += 1;
            }
            Some(())
        };
        // A reset connection surfaces as EOF (None) or a write panic-free error.
        if ok.await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_loses_no_acknowledged_message() {
    let sink = Sink::start().await;
    let mut gw = Gateway::start(sink.addr, "[limits]\nmax_connections_per_ip = 100\n");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let ids: Vec<String> = (0..MESSAGES / SENDERS)
            .map(|i| format!("crash-{s}-{i}@load.test"))
            .collect();
        tasks.push(tokio::spawn(sender(gw.smtp, ids, acked.clone())));
    }
    assert!(
        wait_until(60, || acked.lock().unwrap().len() >= MESSAGES / 3).await,
        "load did not start"
    );
    gw.kill9();
    let at_kill = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.spawn();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("senders finish")
            .unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(acked.len(), MESSAGES);
    let delivered =
        || -> HashSet<String> { sink.all().iter().filter_map(|m| m.message_id()).collect() };
    assert!(
        wait_until(60, || acked.is_subset(&delivered())).await,
        "{} acknowledged messages never arrived (killed after {at_kill} acks); log:\n{}",
        acked.difference(&delivered()).count(),
        gw.log()
    );
    let duplicates = sink.count() - delivered().len();
    eprintln!(
        "kill -9 after {at_kill} acks: {} delivered, {duplicates} duplicates (at-least-once)",
        delivered().len()
    );
    assert!(wait_until(10, || gw.queue_json().is_empty()).await);
}
