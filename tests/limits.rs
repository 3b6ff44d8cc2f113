//! Limits: message size, recipients, command line length, bad commands, timeouts and
//! connection caps, each with small values so the tests are quick.

use std::time::{Duration, Instant};

use crate::harness::{Client, Gateway, Sink, message, wait_until};

/// Small limits for most tests here.
const LIMITS: &str = "max_message_size = 2048
max_recipients = 3
[limits]
max_bad_commands = 5
idle_timeout_secs = 1
max_connections_per_ip = 2
max_command_line = 1024
";

/// A well-formed message of exactly `total` bytes (CRLF line ends, no line starting with
/// a dot, so it is sent as is).
fn sized_message(id: &str, total: usize) -> String {
    let mut m = message("a@ext.test", "u@example.test", id, "");
    assert!(m.len() + 2 <= total, "{total} is too small for the headers");
    let mut r = total - m.len();
    while r > 160 {
        m.push_str(&"a".repeat(78));
        m.push_str("\r\n");
        r -= 80;
    }
    let parts = if r <= 80 {
        vec![r]
    } else {
        vec![r / 2, r - r / 2]
    };
    for p in parts {
        m.push_str(&"b".repeat(p - 2));
        m.push_str("\r\n");
    }
    assert_eq!(m.len(), total);
    m
}

async fn assert_nothing_stored(gw: &Gateway, sink: &Sink) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let q = gw.queue_json();
    assert!(q.is_empty(), "queue: {q:?}");
    assert_eq!(sink.count(), 0, "delivered: {:?}", sink.all());
    let spool: Vec<_> = std::fs::read_dir(gw.data_dir().join("spool"))
        .unwrap()
        .collect();
    assert!(spool.is_empty(), "spool has {spool:?}");
}

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_at_mail_from() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    let r = c.cmd("EHLO client.test", 250).await;
    assert!(r.text.contains("250-SIZE 2048\r\n"), "{}", r.text);
    let r = c.cmd("MAIL FROM:<a@ext.test> SIZE=999999", 552).await;
    assert!(r.text.contains("5.3.4"), "{}", r.text);
    c.cmd("RCPT TO:<u@example.test>", 503).await;
    let r = c.cmd("MAIL FROM:<a@ext.test> SIZE=2049", 552).await;
    assert!(r.text.contains("5.3.4"), "{}", r.text);
    // exactly the limit is fine
    c.cmd("MAIL FROM:<a@ext.test> SIZE=2048", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
}

#[tokio::test]
async fn message_of_exactly_the_size_limit_is_accepted() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::connect(gw.smtp).await;
    let msg = sized_message("exact@ext.test", 2048);
    let r = c
        .send_message("a@ext.test", &["u@example.test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert!(sink.all()[0].data.ends_with(&msg));
}

/// One byte over the limit, the body and the final dot in one write (as any client sends a
/// small message): still 552, and the session goes on.
#[tokio::test]
async fn message_one_byte_over_the_limit_is_refused_after_the_dot() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    let r = c.data(&sized_message("over1@ext.test", 2049)).await;
    assert_eq!(r.code, 552, "{}", r.text);
    assert!(r.text.contains("5.3.4"), "{}", r.text);
    c.cmd("NOOP", 250).await;
    assert_nothing_stored(&gw, &sink).await;
    // The refusal ended the transaction; a new one works.
    c.cmd("RCPT TO:<u@example.test>", 503).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
}

#[tokio::test]
async fn data_over_the_limit_is_refused_after_the_dot_and_the_session_goes_on() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    c.cmd("DATA", 354).await;
    // 256 KiB in small writes: the gateway reads it in many pieces.
    let big = sized_message("big@ext.test", 256 * 1024);
    for chunk in big.as_bytes().chunks(8 * 1024) {
        c.send_raw(chunk).await;
    }
    c.send_raw(b".\r\n").await;
    let r = c.expect(552).await;
    assert!(r.text.contains("5.3.4"), "{}", r.text);
    c.cmd("NOOP", 250).await;
    assert_nothing_stored(&gw, &sink).await;
    // A message within the limit on the same session goes through.
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    let r = c
        .data(&message(
            "a@ext.test",
            "u@example.test",
            "small@ext.test",
            "ok",
        ))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert_eq!(
        sink.all()[0].message_id().as_deref(),
        Some("small@ext.test")
    );
}

#[tokio::test]
async fn bdat_chunk_over_the_limit_is_refused() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    let chunk = "x".repeat(3000);
    c.send_raw(format!("BDAT {} LAST\r\n{chunk}", chunk.len()).as_bytes())
        .await;
    let r = c.expect(552).await;
    assert!(r.text.contains("5.3.4"), "{}", r.text);
    // the chunk's bytes were read, not taken as commands
    c.cmd("NOOP", 250).await;
    assert_nothing_stored(&gw, &sink).await;
}

#[tokio::test]
async fn ten_megabyte_data_line_is_refused_and_the_gateway_stays_responsive() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    c.cmd("DATA", 354).await;
    let before = gw.proc_status_kib("VmHWM");
    let started = Instant::now();
    c.send_raw(b"Subject: one long line\r\n\r\n").await;
    let line = vec![b'x'; 10 * 1024 * 1024];
    for chunk in line.chunks(1024 * 1024) {
        c.send_raw(chunk).await;
    }
    c.send_raw(b"\r\n.\r\n").await;
    let r = c.expect(552).await;
    assert!(r.text.contains("5.3.4"), "{}", r.text);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The body was discarded as it came, not buffered.
    let grown = gw.proc_status_kib("VmHWM").saturating_sub(before);
    assert!(
        grown < 8 * 1024,
        "peak memory grew by {grown} KiB for a refused 10 MB line"
    );
    c.cmd("NOOP", 250).await;
    // Another client is served at once.
    let mut other = Client::greeted(gw.smtp).await;
    other.cmd("EHLO other.test", 250).await;
    other.cmd("QUIT", 221).await;
    assert_nothing_stored(&gw, &sink).await;
}

#[tokio::test]
async fn recipients_beyond_the_limit_get_452() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope(
        "a@ext.test",
        &["r1@example.test", "r2@example.test", "r3@example.test"],
    )
    .await;
    for n in 4..=6 {
        let r = c.cmd(&format!("RCPT TO:<r{n}@example.test>"), 452).await;
        assert!(r.text.contains("4.5.3"), "{}", r.text);
    }
    // 452 is not a "bad command": more than max_bad_commands of them do not close us.
    c.cmd("NOOP", 250).await;
    let r = c
        .data(&message(
            "a@ext.test",
            "r1@example.test",
            "many@ext.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert_eq!(
        sink.all()[0].rcpts,
        vec!["r1@example.test", "r2@example.test", "r3@example.test"]
    );
}

#[tokio::test]
async fn overlong_command_line_gets_one_500_and_the_session_goes_on() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;

    // 100 KB with no newline, in pieces; then the newline and a normal command.
    let long = "A".repeat(100 * 1024);
    for chunk in long.as_bytes().chunks(10 * 1024) {
        c.send_raw(chunk).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = c.expect(500).await;
    assert!(r.text.contains("5.5.2"), "{}", r.text);
    c.send_raw(b"\r\nNOOP\r\n").await;
    c.expect(250).await;

    // The same at once, and a long line that starts like a command.
    c.send_raw(format!("MAIL FROM:<a@ext.test> {long}\r\nNOOP\r\n").as_bytes())
        .await;
    let r = c.expect(500).await;
    assert!(r.text.contains("5.5.2"), "{}", r.text);
    c.expect(250).await;

    // Nothing of the long lines was taken as a command: the session is in its old state.
    c.cmd("RCPT TO:<u@example.test>", 503).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    // A line of exactly the limit is a command.
    let pad = 1024 - "NOOP \r\n".len();
    c.cmd(&format!("NOOP {}", "p".repeat(pad)), 250).await;
}

#[tokio::test]
async fn too_many_bad_commands_close_the_session() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    for _ in 0..4 {
        c.cmd("XYZZY", 500).await;
    }
    c.cmd("NOOP", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 503).await; // the fifth
    let r = c.expect(421).await;
    assert!(r.text.contains("4.7.0"), "{}", r.text);
    assert!(c.closed().await, "not closed after 421");

    // Pipelined: the session stops at the limit and answers nothing after it.
    let mut c = Client::greeted(gw.smtp).await;
    c.send_raw("XYZZY\r\n".repeat(8).as_bytes()).await;
    c.send_raw(b"NOOP\r\n").await;
    for _ in 0..5 {
        c.expect(500).await;
    }
    c.expect(421).await;
    assert!(c.closed().await, "not closed after 421");
}

#[tokio::test]
async fn idle_client_is_disconnected() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, LIMITS);
    let mut c = Client::greeted(gw.smtp).await;
    let started = Instant::now();
    let r = c.read_reply().await.expect("a 421 before the close");
    let waited = started.elapsed();
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert!(
        waited >= Duration::from_millis(800) && waited <= Duration::from_millis(2500),
        "idle_timeout_secs = 1, closed after {waited:?}"
    );
    assert!(c.closed().await);

    // Idle in the middle of DATA: closed, and the half message is not stored.
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    c.cmd("DATA", 354).await;
    c.send_raw(b"Subject: half\r\n\r\nand then nothing").await;
    let r = c.read_reply().await.expect("a 421 before the close");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.4.2"), "{}", r.text);
    assert!(c.closed().await);
    assert_nothing_stored(&gw, &sink).await;
}

#[tokio::test]
async fn busy_session_ends_at_the_session_timeout() {
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        "[limits]\nidle_timeout_secs = 1\nsession_timeout_secs = 2\n",
    );
    let mut c = Client::greeted(gw.smtp).await;
    let started = Instant::now();
    let closing = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.send_raw(b"NOOP\r\n").await;
        let r = c.read_reply().await.expect("a reply");
        if r.code != 250 {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a session that never idles was not ended by session_timeout_secs = 2"
        );
    };
    assert_eq!(closing.code, 421, "{}", closing.text);
    assert!(closing.text.contains("4.4.2"), "{}", closing.text);
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(c.closed().await);
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "[limits]\nmax_connections_per_ip = 2\n");
    gw.wait_no_sessions().await; // the start-up probe connection may still count
    let mut a = Client::greeted(gw.smtp).await;
    let _b = Client::greeted(gw.smtp).await;
    let mut third = Client::connect(gw.smtp).await;
    let r = third.read_reply().await.expect("a 421, got EOF");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.7.0"), "{}", r.text);
    assert!(third.closed().await);

    // Another address is not affected.
    let mut internal = gw.internal_client().await;
    internal.expect(220).await;
    internal.cmd("QUIT", 221).await;

    // When one session ends, a new one is served.
    a.cmd("QUIT", 221).await;
    assert!(a.closed().await);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = Client::connect(gw.smtp).await;
        let r = c.read_reply().await.expect("a reply, got EOF");
        if r.code == 220 {
            c.cmd("EHLO client.test", 250).await;
            break;
        }
        assert_eq!(r.code, 421, "{}", r.text);
        assert!(
            Instant::now() < deadline,
            "still refused 3 s after a session ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn total_connections_are_capped() {
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        "[limits]\nmax_connections = 2\nmax_connections_per_ip = 10\n",
    );
    gw.wait_no_sessions().await; // the start-up probe connection may still count
    let _a = Client::greeted(gw.smtp).await;
    let mut b = gw.internal_client().await;
    b.expect(220).await;
    for mut c in [Client::connect(gw.smtp).await, gw.internal_client().await] {
        let r = c.read_reply().await.expect("a 421, got EOF");
        assert_eq!(r.code, 421, "{}", r.text);
        assert!(r.text.contains("4.7.0"), "{}", r.text);
        assert!(c.closed().await);
    }
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = Client::connect(gw.smtp).await;
        if c.read_reply().await.expect("a reply").code == 220 {
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed 3 s after a close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On a dual-stack listener IPv4 clients arrive as IPv4-mapped IPv6 addresses, all inside
/// one /64: each must still count as its own IPv4 address, while IPv6 clients count per
/// `ipv6_prefix_len` network.
#[tokio::test]
async fn per_ip_limit_on_a_dual_stack_listener_counts_ipv4_clients_apart() {
    let sink = Sink::start().await;
    let v6_port = crate::harness::free_port();
    let _gw = Gateway::start(
        sink.addr,
        &format!(
            "[limits]\nmax_connections_per_ip = 2\nipv6_prefix_len = 64\n[[listeners]]\nbind = \"[::]:{v6_port}\"\ntls = \"none\"\n"
        ),
    );
    let dual: std::net::SocketAddr = format!("127.0.0.1:{v6_port}").parse().unwrap();
    let v6: std::net::SocketAddr = format!("[::1]:{v6_port}").parse().unwrap();
    let _a1 = Client::greeted(dual).await;
    let _a2 = Client::greeted(dual).await;
    let mut a3 = Client::connect(dual).await;
    let r = a3.read_reply().await.expect("a 421, got EOF");
    assert_eq!(r.code, 421, "{}", r.text);
    // another IPv4 address in the same mapped /64 has its own allowance
    let mut b = Client::connect_from(dual, "127.0.0.2".parse().unwrap()).await;
    b.expect(220).await;
    b.cmd("QUIT", 221).await;
    // IPv6 clients are limited too
    let _c1 = Client::greeted(v6).await;
    let _c2 = Client::greeted(v6).await;
    let mut c3 = Client::connect(v6).await;
    let r = c3.read_reply().await.expect("a 421, got EOF");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.7.0"), "{}", r.text);
}

/// A body above `spool_threshold_bytes` is in a file under `data_dir/incoming` while it
/// arrives, is delivered byte for byte, and the file is gone afterwards.
#[tokio::test]
async fn large_body_is_spooled_while_it_arrives_and_delivered_exactly() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "[limits]\nspool_threshold_bytes = 65536\n");
    let incoming = gw.data_dir().join("incoming");
    let files = || std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0);
    let body: String = (0..6000)
        .map(|i| {
            format!(
                "{}line {i:05} {}\r\n",
                if i % 7 == 0 { "." } else { "" },
                "z".repeat(50)
            )
        })
        .collect();
    let msg = message("a@ext.test", "u@example.test", "spool@ext.test", &body);
    let mut stuffed = String::new();
    for line in msg.split_inclusive("\r\n") {
        if line.starts_with('.') {
            stuffed.push('.');
        }
        stuffed.push_str(line);
    }
    let (first, rest) = stuffed.split_at(200_000);
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    c.cmd("DATA", 354).await;
    c.send_raw(first.as_bytes()).await;
    assert!(
        wait_until(5, || files() == 1).await,
        "no spool file while the body arrives"
    );
    c.send_raw(rest.as_bytes()).await;
    c.send_raw(b".\r\n").await;
    let r = c.expect(250).await;
    assert!(r.text.contains("queued as"), "{}", r.text);
    assert_eq!(files(), 0, "spool file left after the end of DATA");
    assert!(
        wait_until(15, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    assert!(
        sink.all()[0].raw.ends_with(msg.as_bytes()),
        "large body altered"
    );
    // a client that goes away mid-body leaves no file either
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    c.cmd("DATA", 354).await;
    c.send_raw(first.as_bytes()).await;
    assert!(wait_until(5, || files() == 1).await);
    drop(c);
    assert!(
        wait_until(5, || files() == 0).await,
        "spool file left by a vanished client"
    );
}
