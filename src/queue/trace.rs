//! The header fields we put above a stored message: our `Received:` line (RFC 5321 §4.4)
//! and, on inbound mail, the verdict fields.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::clock::rfc5322_date;

use filters::TlsFacts;

/// `Received:` line for a message we accepted, folded, ending in CRLF.
pub fn received_header(
    helo: &str,
    client_ip: IpAddr,
    hostname: &str,
    protocol: &str,
    tls: Option<&TlsFacts>,
    id: &str,
    single_rcpt: Option<&str>,
) -> String {
    let mut h = format!(
        "Received: from {} ([{}])\r\n\tby {} (Portcullis) with {}",
        printable(helo),
        client_ip,
        hostname,
        protocol
    );
    if let Some(t) = tls {
        h.push_str(&format!(
            "\r\n\t(version={} cipher={}{})",
            t.version,
            t.cipher,
            if t.peer_cert_sha256.is_some() {
                " client-cert=presented"
            } else {
                ""
            }
        ));
    }
    h.push_str(&format!("\r\n\tid {id}"));
    if let Some(r) = single_rcpt {
        h.push_str(&format!("\r\n\tfor <{}>", printable(r)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(SystemTime::now())));
    h
}

/// Client-supplied text made safe for a header: printable ASCII only, at most 255 bytes.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_header_is_folded_and_sanitized() {
        let h = received_header(
            "evil\r\nX-Injected: 1",
            "192.0.2.1".parse().unwrap(),
            "gw.test",
            "ESMTP",
            None,
            "ABC",
            Some("u@example.test"),
        );
        assert!(h.starts_with("Received: from evilX-Injected:1 ([192.0.2.1])\r\n\tby gw.test"));
        assert!(!h.contains("\r\nX-Injected"));
        assert!(h.contains("for <u@example.test>;"));
        assert!(h.ends_with("+0000\r\n"));
    }
}
