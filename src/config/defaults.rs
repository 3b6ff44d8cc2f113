//! Every limit and timeout of the gateway, named, with its unit and the reason for its value.
//! `examples/portcullis.toml` documents the same table; keep them together.

/// Our name in the greeting, EHLO reply and `Received:` lines.
pub const HOSTNAME: &str = "portcullis.localdomain";
/// Where the queue database and the spool live (relative to the working directory).
pub const DATA_DIR: &str = "./portcullis-data";
/// Placeholder local domain of the embedded defaults; a real install names its own.
pub const LOCAL_DOMAIN: &str = "example.test";
/// The internal mail server of the embedded defaults (a sink on loopback).
pub const INBOUND_NEXT_HOP: &str = "127.0.0.1:10025";
/// The SMTP listener of the embedded defaults: loopback, unprivileged port.
pub const LISTEN: &str = "127.0.0.1:2525";
/// Prometheus `/metrics` on loopback only: counters are for operators.
pub const METRICS_BIND: &str = "127.0.0.1:9025";

/// 25 MiB: the size most providers accept; larger attachments belong in file transfer.
pub const MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
/// RFC 5321 §4.5.3.1.8 requires at least 100.
pub const MAX_RECIPIENTS: usize = 100;
/// Longest command line we read (RFC 5321 says 512; extensions make real lines longer).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Postfix's smtpd_hard_error_limit: after this many bad commands the client is dropped.
pub const MAX_BAD_COMMANDS: u32 = 20;
/// Concurrent SMTP sessions in all; beyond this new clients get 421.
pub const MAX_CONNECTIONS: usize = 1000;
/// Concurrent SMTP sessions from one IP address; stops one host from taking all slots.
pub const MAX_CONNECTIONS_PER_IP: usize = 50;
/// RFC 5321 §4.5.3.2.7: a server should wait 5 minutes for the next command.
pub const IDLE_TIMEOUT_SECS: u64 = 300;
/// A whole session may take at most 30 minutes, whatever the client does.
pub const SESSION_TIMEOUT_SECS: u64 = 1800;
/// A command line must arrive whole within this (RFC 5321's 5 minutes), however slowly
/// its bytes drip in: each byte resetting an idle timer would let one byte per minute hold
/// a connection for the whole session.
pub const COMMAND_TIMEOUT_SECS: u64 = 300;
/// Sessions open, as a share of `max_connections`, from which the gateway is under stress.
pub const STRESS_THRESHOLD_PERCENT: u8 = 80;
/// Under stress, the idle wait and a command line's time shrink to this (Postfix's stress
/// mode does the same): idle and slow clients give their slots to working ones.
pub const STRESS_TIMEOUT_SECS: u64 = 10;
/// On SIGTERM, sessions get this long to finish a message in transfer before the exit.
pub const SHUTDOWN_GRACE_SECS: u64 = 30;
/// Bodies up to 1 MiB stay in memory while they arrive; larger ones go to a file, so a
/// thousand slow senders of large messages cost a thousand MiB at most, not 25 GB.
pub const SPOOL_THRESHOLD_BYTES: usize = 1024 * 1024;
/// Large bodies in memory for the pipeline at once: 8 × 25 MiB (and its copies) at most.
pub const MAX_LARGE_MESSAGES_IN_MEMORY: usize = 8;
/// Providers give each IPv6 host a /64 (RFC 6177); counting whole addresses would give
/// one host 2^64 connection allowances.
pub const IPV6_PREFIX_LEN: u8 = 64;
/// MIME entities a message action (disclaimer, attachment signing) walks: real mail has a
/// few dozen; a message built to make every action walk a million parts is left alone.
pub const MAX_MIME_PARTS: usize = 500;
/// Multipart nesting a message action walks: clients nest three or four deep.
pub const MAX_MIME_DEPTH: usize = 20;

/// The recipient list file is checked for changes this often.
pub const RECIPIENT_LIST_RELOAD_SECS: u64 = 30;
/// Postfix's address_verify_positive_expire_time is 31 days; a day is enough for a
/// gateway and lets a removed mailbox be noticed sooner.
pub const CALLOUT_POSITIVE_TTL_SECS: u64 = 24 * 3600;
/// Postfix's address_verify_negative_expire_time is 3 days; an hour lets a new mailbox
/// receive mail soon after it is created.
pub const CALLOUT_NEGATIVE_TTL_SECS: u64 = 3600;
/// A callout to the internal server on the same network answers within seconds; the
/// client waits for it at RCPT TO.
pub const CALLOUT_TIMEOUT_SECS: u64 = 10;
/// Callout cache entries (an address and a time each: about 100 bytes).
pub const CALLOUT_CACHE_ENTRIES: usize = 100_000;
/// Callouts at once: each holds a connection to the internal server.
pub const MAX_CONCURRENT_CALLOUTS: usize = 20;

/// Parallel outgoing SMTP connections; each keeps its connection for the next message.
pub const DELIVERY_CONCURRENCY: usize = 16;
/// Bytes of message bodies kept in memory for delivery jobs (a message just stored is sent
/// without reading it back); beyond, delivery reads bodies from disk.
pub const DISPATCH_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// First retry after a temporary failure; doubles each attempt.
pub const RETRY_INITIAL_SECS: u64 = 60;
/// Longest wait between two attempts (Postfix: maximal_backoff_time 4000 s).
pub const RETRY_MAX_SECS: u64 = 3600;
/// Give up and bounce after 5 days (Postfix: maximal_queue_lifetime 5d).
pub const MAX_QUEUE_AGE_SECS: u64 = 5 * 24 * 3600;
/// How often the queue is searched for messages whose retry time has come.
pub const QUEUE_SCAN_SECS: u64 = 5;
/// Connecting to a next hop; RFC 5321 §4.5.3.2 suggests minutes for replies, not for TCP.
pub const CONNECT_TIMEOUT_SECS: u64 = 30;
/// Waiting for any reply of a next hop (RFC 5321 §4.5.3.2: 2–10 minutes per stage).
pub const SMTP_REPLY_TIMEOUT_SECS: u64 = 300;
/// Port of MX hosts; only tests change it.
pub const MX_PORT: u16 = 25;
/// How long an idle outgoing connection is kept for the next message.
pub const DELIVERY_IDLE_SECS: u64 = 10;
/// A bounce returns the header of the message, never the body; a header beyond 16 KiB is
/// cut (RFC 3462 allows returning only part of the message).
pub const DSN_MAX_RETURNED_BYTES: usize = 16 * 1024;

/// Held messages are kept a month: long enough for a user back from holidays to ask.
pub const QUARANTINE_RETENTION_DAYS: u64 = 30;
/// Held messages may take 2 GiB; beyond, the oldest expire first.
pub const QUARANTINE_MAX_TOTAL_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// Expiry runs every 5 minutes (it is a few indexed queries).
pub const QUARANTINE_EXPIRY_INTERVAL_SECS: u64 = 300;
/// A preview parses at most 2 MiB of a message (a page of text and the attachment list are
/// in the first MiB of nearly every message), whatever its size.
pub const QUARANTINE_PREVIEW_MAX_BYTES: u64 = 2 * 1024 * 1024;
/// Display fields longer than a console line say nothing more.
pub const QUARANTINE_FIELD_MAX_CHARS: usize = 200;
/// Entries per page of a listing at most.
pub const QUARANTINE_MAX_PAGE: u32 = 500;

/// Score thresholds of the verdict (ARCHITECTURE.md §2).
pub const TAG_SCORE: f64 = 5.0;
pub const QUARANTINE_SCORE: f64 = 8.0;
pub const REJECT_SCORE: f64 = 12.0;

/// clamd's usual TCP port (clamd.conf TCPSocket).
pub const CLAMD_ADDRESS: &str = "127.0.0.1:3310";
/// A local clamd answers a connect at once; waiting longer only delays the 451.
pub const CLAMD_CONNECT_TIMEOUT_MS: u64 = 2000;
/// A 25 MB message with archives takes seconds; a minute means clamd is stuck.
pub const CLAMD_SCAN_TIMEOUT_SECS: u64 = 60;
/// Scans in flight = pooled IDSESSION connections. clamd's default MaxThreads is 10; stay
/// below it so probes and other clients still get through. More does not scan faster:
/// on the 2-core bench machine clamd is saturated from 4 concurrent scans on (bench/clamav.py
/// with 4, 8 and 16 gave the same rate within noise).
pub const CLAMD_MAX_CONNECTIONS: usize = 8;
/// clamd's default StreamMaxLength (25 MB).
pub const CLAMD_MAX_STREAM_SIZE: usize = 25 * 1024 * 1024;
/// Health probe (VERSION) interval for the metrics.
pub const CLAMD_HEALTH_SECS: u64 = 30;

/// DNS health probe interval: often enough that a dashboard shows an outage within a
/// minute, rare enough to be noise for the resolver.
pub const DNS_HEALTH_SECS: u64 = 30;

/// One DNS query attempt (two attempts per server): a resolver that has not answered in
/// 3 s is having trouble; the message is tempfailed rather than waited on.
pub const AUTH_DNS_TIMEOUT_MS: u64 = 3000;
/// All authentication lookups of one message (SPF may need ten lookups in a row).
pub const AUTH_TIMEOUT_SECS: u64 = 20;
/// Entries per record cache (TXT, MX, A, AAAA, PTR): a few MB at most.
pub const AUTH_DNS_CACHE_ENTRIES: usize = 10_000;

/// How often a running gateway checks whether the Bayes model changed (CLI learning,
/// another gateway): a reload reads the whole token table, so not every message.
pub const BAYES_RELOAD_SECS: u64 = 10;
/// Operators' trust pins are re-read this often by a running gateway.
pub const TRUST_PIN_RELOAD_SECS: u64 = 30;

/// S/MIME master key file, inside data_dir.
pub const CERTS_KEY_FILE: &str = "smime-master.key";
/// Seconds between checks for certificate store changes made elsewhere.
pub const CERTS_RELOAD_SECS: u64 = 2;
/// The signer, two intermediates and one more certificate of the signer's.
pub const CERTS_MAX_HARVEST_PER_MESSAGE: usize = 4;
pub const CERTS_MAX_HARVESTED_INTERMEDIATES: usize = 1000;
pub const CERTS_CRL_CONNECT_TIMEOUT_SECS: u64 = 5;
pub const CERTS_CRL_READ_TIMEOUT_SECS: u64 = 15;
/// Large public CAs publish CRLs of several MB.
pub const CERTS_CRL_MAX_BYTES: usize = 20 * 1024 * 1024;
pub const CERTS_CRL_RETRY_SECS: u64 = 300;

/// The admin API's socket, inside data_dir.
pub const ADMIN_SOCKET: &str = "admin.sock";
/// A PKCS#12 file or a large public CA's CRL (`certs.crl_max_bytes`), base64 in JSON.
pub const ADMIN_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// Operators and a console or two; a script looping on the socket waits its turn.
pub const ADMIN_MAX_CONCURRENT_REQUESTS: usize = 16;
/// Admin socket connections open at once; more are closed at once (the console and the CLI
/// use one each).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Seconds a connection to the admin socket may take to send a request's header, and may
/// stay idle between requests.
pub const ADMIN_HEADER_TIMEOUT_SECS: u64 = 10;

/// The user a root-started gateway runs as (the Debian package creates it).
pub const SERVICE_USER: &str = "portcullis";
