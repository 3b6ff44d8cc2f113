//! `portcullis certs`: the real binary on fixtures made by the openssl command line at test
//! time (a CA, user certificates, an expired one, one without emailProtection, PKCS#12 files
//! with legacy RC2-40 encryption as many real users' files are).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::binary;
use crate::harness::tls::require_tool;

/// A data directory and config for the CLI, and a scratch directory for fixtures.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        require_tool("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portcullis.toml");
        // No system roots: only what the test trusts decides the chain status.
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[certs]\nsystem_roots = false\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Setup { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }

    /// Run `portcullis certs ARGS --config ...`: (exit code, stdout, stderr).
    fn certs(&self, args: &[&str]) -> (i32, String, String) {
        self.certs_env(args, &[])
    }

    fn certs_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(binary())
            .envs(env.iter().copied())
            .arg("certs")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `certs ARGS` that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.certs(args);
        assert_eq!(code, 0, "certs {args:?} failed: {err}{out}");
        out
    }

    /// `certs ARGS` that must fail with exit code 2; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let (code, out, err) = self.certs(args);
        assert_eq!(code, 2, "certs {args:?} should fail: {out}{err}");
        err
    }

    fn list_json(&self) -> Value {
        serde_json::from_str(&self.ok(&["list", "--json"])).unwrap()
    }

    /// Run openssl in the scratch directory; panics with its stderr on failure.
    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A root CA: NAME.pem, NAME.key.
    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// A key and a certificate signing request: NAME.key, NAME.csr.
    fn request(&self, name: &str, subject: &str) {
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ]);
    }

    /// Sign request `csr` with CA `ca` into `out`.pem: `extensions` (openssl extension
    /// config lines), validity `days` (negative: already expired).
    fn sign(&self, csr: &str, out: &str, ca: &str, extensions: &str, days: i32, serial: u32) {
        let ext = self.path(&format!("{out}.ext"));
        std::fs::write(&ext, extensions).unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{csr}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            &days.to_string(),
            "-sha256",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &format!("{out}.pem"),
        ]);
    }

    /// A user certificate for `address` (key NAME.key, certificate NAME.pem).
    fn user(&self, name: &str, address: &str, ca: &str, eku: &str, days: i32) {
        self.request(name, &format!("/CN={name}/emailAddress={address}"));
        self.sign(
            name,
            name,
            ca,
            &format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage={eku}\nsubjectAltName=email:{address}\n"
            ),
            days,
            rand_serial(),
        );
    }

    /// PKCS#12 NAME.p12 of NAME.pem + NAME.key + CA `ca` with `password`, RC2-40 encrypted
    /// certificates (what `-legacy` writes, as older Windows and many users' files have).
    fn legacy_pkcs12(&self, name: &str, ca: &str, password: &str) {
        self.openssl(&[
            "pkcs12",
            "-export",
            "-legacy",
            "-in",
            &format!("{name}.pem"),
            "-inkey",
            &format!("{name}.key"),
            "-certfile",
            &format!("{ca}.pem"),
            "-out",
            &format!("{name}.p12"),
            "-passout",
            &format!("pass:{password}"),
        ]);
        let info = Command::new("openssl")
            .args(["pkcs12", "-info", "-noout", "-legacy", "-passin"])
            .arg(format!("pass:{password}"))
            .arg("-in")
            .arg(self.path(&format!("{name}.p12")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stderr).into_owned()
            + &String::from_utf8_lossy(&info.stdout);
        assert!(
            text.contains("40BitRC2"),
            "the fixture should be RC2-40 encrypted: {text}"
        );
    }

    fn fingerprint(&self, pem: &str) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(self.path(pem))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .split_once('=')
            .unwrap()
            .1
            .replace(':', "")
            .to_ascii_lowercase()
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.path(name), text).unwrap();
        self.path(name).to_str().unwrap().to_string()
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

fn rand_serial() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    n % 1_000_000_000 + 1
}

fn domain<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == name)
        .unwrap_or_else(|| panic!("no domain {name} in {list}"))
}

fn cert<'a>(list: &'a Value, fp: &str) -> &'a Value {
    list["domains"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["certs"].as_array().unwrap())
        .find(|c| c["fingerprint"] == fp)
        .unwrap_or_else(|| panic!("no certificate {fp} in {list}"))
}

fn contains_window(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn legacy_pkcs12_imports_with_its_password_and_the_key_stays_sealed() {
    let s = Setup::new();
    s.ca("Test Root CA");
    s.user(
        "alice",
        "alice@example.test",
        "Test Root CA",
        "emailProtection",
        365,
    );
    s.legacy_pkcs12("alice", "Test Root CA", "s3cret pass");
    let good = s.write("good.pw", "s3cret pass\n");
    let bad = s.write("bad.pw", "guess\n");
    let p12 = s.p("alice.p12");

    let err = s.fails(&["import", &p12, "--password-file", &bad]);
    assert!(err.contains("wrong password"), "{err}");
    let err = s.fails(&["import", &p12]);
    assert!(err.contains("--password-file"), "{err}");
    // without OpenSSL's legacy module the error says so (not "wrong password")
    let (code, _, err) = s.certs_env(
        &["import", &p12, "--password-file", &good],
        &[("OPENSSL_MODULES", "/nonexistent")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("legacy provider is unavailable"), "{err}");

    let out = s.ok(&["import", &p12, "--password-file", &good]);
    let fp = s.fingerprint("alice.pem");
    assert!(out.contains(&fp[..16]), "{out}");
    assert!(out.contains("private key stored (encrypted)"), "{out}");
    assert!(
        out.contains("CA certificate kept for building chains"),
        "{out}"
    );

    // the master key file: made on first use, owner-only
    let key_file = s.data("smime-master.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");

    // the private key's bytes are nowhere in the database files
    let key_der = Command::new("openssl")
        .args(["pkey", "-outform", "DER", "-in"])
        .arg(s.path("alice.key"))
        .output()
        .unwrap()
        .stdout;
    assert!(key_der.len() > 600, "RSA key DER");
    let mut db = std::fs::read(s.data("queue.db")).unwrap();
    db.extend(std::fs::read(s.data("queue.db-wal")).unwrap_or_default());
    assert!(
        contains_window(&db, &s.fingerprint("alice.pem").as_bytes()[..16]),
        "the fingerprint should be in the database (the check itself works)"
    );
    // Windows from the private parts: the first ~300 bytes hold the modulus, which is
    // public (it is in the certificate too).
    for start in [400, key_der.len() / 2, key_der.len() - 40] {
        assert!(
            !contains_window(&db, &key_der[start..start + 32]),
            "private key bytes (offset {start}) found in clear in the database"
        );
    }

    // chain not trusted until the CA is
    let list = s.list_json();
    let c = cert(&list, &fp);
    assert_eq!(c["has_private_key"], true);
    assert_eq!(c["usable_for_encryption"], false);
    assert!(
        c["encryption_problems"][0]
            .as_str()
            .unwrap()
            .starts_with("chain not trusted"),
        "{c}"
    );
    let out = s.ok(&["trust-ca", &s.p("Test Root CA.pem")]);
    assert!(out.contains("trusted as an anchor"), "{out}");
    let list = s.list_json();
    assert_eq!(cert(&list, &fp)["usable_for_encryption"], true, "{list}");

    // export: the certificate, never the key
    let exported = s.ok(&["export", &fp[..12]]);
    assert!(
        exported.starts_with("-----BEGIN CERTIFICATE-----"),
        "{exported}"
    );
    assert!(!exported.contains("PRIVATE KEY"));
    let original = std::fs::read_to_string(s.path("alice.pem")).unwrap();
    assert_eq!(exported.trim(), original.trim());

    // show: by prefix, with the chain
    let shown = s.ok(&["show", &fp[..10].to_ascii_uppercase()]);
    assert!(shown.contains(&format!("fingerprint:    {fp}")), "{shown}");
    assert!(shown.contains("1 CN=Test Root CA"), "{shown}");
    assert!(shown.contains("encryption now: usable"), "{shown}");
    assert!(
        shown.contains("stored (encrypted; never exported)"),
        "{shown}"
    );
}

#[test]
fn list_says_which_certificates_are_usable_for_encryption_now() {
    let s = Setup::new();
    s.ca("Root");
    s.user("good", "good@example.test", "Root", "emailProtection", 365);
    s.user("old", "old@example.test", "Root", "emailProtection", -1);
    s.user("tls", "tls@example.test", "Root", "serverAuth", 365);
    s.user(
        "other",
        "someone@other.test",
        "Root",
        "emailProtection",
        365,
    );
    s.ok(&["trust-ca", &s.p("Root.pem")]);
    // one bundle of three, then one by one (DER too)
    let mut bundle = String::new();
    for n in ["good", "old", "tls"] {
        bundle.push_str(&std::fs::read_to_string(s.path(&format!("{n}.pem"))).unwrap());
    }
    let out = s.ok(&["import", &s.write("bundle.pem", &bundle)]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("new")).count(),
        3,
        "{out}"
    );
    s.openssl(&[
        "x509",
        "-in",
        "other.pem",
        "-outform",
        "DER",
        "-out",
        "other.der",
    ]);
    s.ok(&["import", &s.p("other.der")]);
    // importing again changes nothing
    let again = s.ok(&["import", &s.p("other.der")]);
    assert!(again.starts_with("unchanged"), "{again}");

    let list = s.list_json();
    let ex = domain(&list, "example.test");
    assert_eq!(ex["certificates"], 3, "{ex}");
    assert_eq!(ex["usable_for_encryption"], 1, "{ex}");
    assert_eq!(
        cert(&list, &s.fingerprint("good.pem"))["usable_for_encryption"],
        true
    );
    let old = cert(&list, &s.fingerprint("old.pem"));
    assert_eq!(old["usable_for_encryption"], false);
    assert!(
        old["encryption_problems"][0]
            .as_str()
            .unwrap()
            .starts_with("expired"),
        "{old}"
    );
    let tls = cert(&list, &s.fingerprint("tls.pem"));
    assert_eq!(
        tls["encryption_problems"],
        serde_json::json!(["extended key usage lacks emailProtection"])
    );
    assert_eq!(domain(&list, "other.test")["certificates"], 1);
    assert_eq!(list["cas"].as_array().unwrap().len(), 1);

    // the text form per domain, and the domain filter
    let text = s.ok(&["list", "--domain", "Example.TEST"]);
    assert!(
        text.contains("example.test: 3 certificate(s), 1 usable for encryption now"),
        "{text}"
    );
    assert!(!text.contains("other.test"), "{text}");
    assert!(text.contains("encryption: no (expired"), "{text}");
}

#[test]
fn gateway_identity_import_and_delete() {
    let s = Setup::new();
    s.ca("Root");
    s.request("gw", "/CN=Example Gateway");
    s.sign(
        "gw",
        "gw",
        "Root",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\n",
        365,
        7,
    );
    s.legacy_pkcs12("gw", "Root", "pw");
    let pw = s.write("pw", "pw");
    let out = s.ok(&[
        "import",
        &s.p("gw.p12"),
        "--password-file",
        &pw,
        "--domain",
        "example.test",
    ]);
    assert!(out.contains("gateway identity of example.test"), "{out}");
    let fp = s.fingerprint("gw.pem");
    let list = s.list_json();
    let ex = domain(&list, "example.test");
    assert_eq!(ex["gateway"], serde_json::json!([fp]));
    let text = s.ok(&["list"]);
    assert!(text.contains("[gateway] CN=Example Gateway"), "{text}");
    let shown = s.ok(&["show", &fp]);
    assert!(
        shown.contains("domains:        example.test (gateway)"),
        "{shown}"
    );

    let err = s.fails(&["delete", &fp[..8]]);
    assert!(
        err.contains(&fp),
        "delete names the full fingerprint: {err}"
    );
    let out = s.ok(&["delete", &fp]);
    assert!(out.contains("and its private key"), "{out}");
    let err = s.fails(&["show", &fp]);
    assert!(err.contains("no certificate with fingerprint"), "{err}");
    assert!(s.list_json()["domains"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_and_ambiguous_prefixes_get_clear_errors() {
    let s = Setup::new();
    let err = s.fails(&["list"]);
    assert!(err.contains("no database"), "{err}");
    let err = s.fails(&["import", &s.write("junk.bin", "this is no certificate")]);
    assert!(err.contains("is not a certificate"), "{err}");
    let err = s.fails(&["import", &s.p("missing.pem")]);
    assert!(err.contains("cannot read"), "{err}");
    let err = s.fails(&[
        "trust-ca",
        &s.write(
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
    ]);
    assert!(err.contains("junk.pem"), "{err}");

    // 17 certificates (one key, 17 serials): two share a first hex digit
    s.ca("Root");
    s.request("many", "/CN=many/emailAddress=many@example.test");
    let mut bundle = String::new();
    for i in 0..17 {
        s.sign(
            "many",
            &format!("many{i}"),
            "Root",
            "extendedKeyUsage=emailProtection\n",
            30,
            1000 + i,
        );
        bundle.push_str(&std::fs::read_to_string(s.path(&format!("many{i}.pem"))).unwrap());
    }
    s.ok(&["import", &s.write("many.pem", &bundle)]);
    let fps: Vec<String> = (0..17)
        .map(|i| s.fingerprint(&format!("many{i}.pem")))
        .collect();
    let shared = fps
        .iter()
        .map(|f| &f[..1])
        .find(|d| fps.iter().filter(|f| f.starts_with(*d)).count() > 1)
        .unwrap();
    let err = s.fails(&["show", shared]);
    assert!(
        err.contains("ambiguous") && err.contains("give more digits"),
        "{err}"
    );
    let err = s.fails(&["show", "xyz"]);
    assert!(err.contains("is not a fingerprint"), "{err}");
    let err = s.fails(&["import", &s.p("many0.pem"), "--domain", "not a domain"]);
    assert!(err.contains("is not a domain name"), "{err}");
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let s = Setup::new();
    s.ca("Root");
    s.ok(&["trust-ca", &s.p("Root.pem")]);
    let key_file = s.data("smime-master.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.user("u", "u@example.test", "Root", "emailProtection", 30);
    let err = s.fails(&["import", &s.p("u.pem")]);
    assert!(
        err.contains(&format!("chmod 600 {}", key_file.display())),
        "{err}"
    );
    let err = s.fails(&["list"]);
    assert!(err.contains("chmod 600"), "{err}");
    let check = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.ok(&["import", &s.p("u.pem")]);
}

#[test]
fn a_configured_key_file_and_extra_ca_are_used() {
    let s = Setup::new();
    s.ca("Company CA");
    s.user(
        "emp",
        "emp@example.test",
        "Company CA",
        "emailProtection",
        30,
    );
    let key_file = s.path("secrets/master.key");
    std::fs::write(
        &s.config,
        format!(
            "data_dir = \"{}\"\n[certs]\nsystem_roots = false\nkey_file = \"{}\"\nextra_ca = [\"{}\"]\n",
            s.path("data").display(),
            key_file.display(),
            s.path("Company CA.pem").display()
        ),
    )
    .unwrap();
    let out = s.ok(&["import", &s.p("emp.pem")]);
    assert!(out.starts_with("new"), "{out}");
    std::fs::write(
        s.path("bad.toml"),
        format!(
            "data_dir = \"{}\"\n[certs]\nextra_ca = [\"{}\"]\n",
            s.path("data").display(),
            s.path("emp.key").display()
        ),
    )
    .unwrap();
    let check = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(s.path("bad.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{err}");
    assert!(
        err.contains("certs.extra_ca") && err.contains("private key"),
        "a key given as a CA is named: {err}"
    );
    assert!(key_file.exists() && !s.data("smime-master.key").exists());
    let list = s.list_json();
    assert_eq!(
        cert(&list, &s.fingerprint("emp.pem"))["usable_for_encryption"],
        true,
        "extra_ca makes the chain trusted: {list}"
    );
}

#[test]
fn modern_pkcs12_imports_without_the_legacy_provider() {
    let s = Setup::new();
    s.ca("Root");
    s.user("bob", "bob@example.test", "Root", "emailProtection", 30);
    s.openssl(&[
        "pkcs12", "-export", "-in", "bob.pem", "-inkey", "bob.key", "-out", "bob.p12", "-passout",
        "pass:pw",
    ]);
    let pw = s.write("pw", "pw\n");
    let (code, out, err) = s.certs_env(
        &["import", &s.p("bob.p12"), "--password-file", &pw],
        &[("OPENSSL_MODULES", "/nonexistent")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("private key stored (encrypted)"), "{out}");
}

#[test]
fn a_self_made_ca_certificate_with_its_own_key_imports_as_an_identity() {
    let s = Setup::new();
    // what `openssl req -x509` makes by default: basicConstraints CA:TRUE
    s.openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "carol.key",
        "-out",
        "carol.pem",
        "-subj",
        "/CN=Carol/emailAddress=carol@example.test",
        "-days",
        "365",
        "-addext",
        "subjectAltName=email:carol@example.test",
    ]);
    let cert = std::fs::read_to_string(s.path("carol.pem")).unwrap();
    let key = std::fs::read_to_string(s.path("carol.key")).unwrap();
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(s.path("carol.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "the fixture should be a CA certificate"
    );
    let both = s.write("carol-both.pem", &format!("{cert}{key}"));
    let (code, out, err) = s.certs(&["import", &both]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("belongs to none"), "{err}");
    assert!(
        err.contains("warning: CN=Carol") && err.contains("CA certificate"),
        "{err}"
    );
    assert!(out.contains("private key stored (encrypted)"), "{out}");
    let fp = s.fingerprint("carol.pem");
    let shown: Value = serde_json::from_str(&s.ok(&["show", &fp, "--json"])).unwrap();
    assert_eq!(shown["has_private_key"], true, "{shown}");
    assert_eq!(shown["is_ca"], true, "{shown}");
    assert_eq!(shown["signing_problems"], serde_json::json!([]), "{shown}");
    // a key that is not the certificate's is still refused with the true reason
    s.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "other.key",
    ]);
    let other = std::fs::read_to_string(s.path("other.key")).unwrap();
    let wrong = s.write("carol-wrong.pem", &format!("{cert}{other}"));
    let err = s.fails(&["import", &wrong]);
    assert!(err.contains("belongs to none"), "{err}");
}

// === through the running gateway: what harvesting keeps, and revocation ===

use crate::harness::smime::{TestPki, crlf, openssl};
use crate::harness::{Gateway, Sink, free_port};

/// `[certs]` for the gateway tests: only what a test trusts, changes seen within a second.
const GW_CERTS: &str = "[certs]\nsystem_roots = false\nreload_secs = 1\n";

/// `certs ARGS` on the gateway's config must succeed; its stdout.
fn gw_certs(gw: &Gateway, args: &[&str]) -> String {
    let mut all = vec!["certs"];
    all.extend_from_slice(args);
    let (code, out, err) = gw.cli(&all);
    assert_eq!(code, 0, "certs {args:?}: {err}{out}");
    out
}

/// Give the running gateway time to see what the CLI changed (reload_secs = 1).
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
}

/// A detached `openssl cms -sign` of a small text by `cert`/`key`, with `extra` options.
fn signed_by(dir: &std::path::Path, cert: &str, key: &str, extra: &[&str]) -> Vec<u8> {
    let input = dir.join("content.txt");
    std::fs::write(
        &input,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\nquarterly figures\r\n",
    )
    .unwrap();
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-in",
        input.to_str().unwrap(),
        "-signer",
        cert,
        "-inkey",
        key,
    ];
    args.extend_from_slice(extra);
    crlf(&openssl(&args, b""))
}

/// Send a signed message from `from` to bob@example.test; the X-Portcullis-SMIME field of
/// what reached the next hop.
async fn deliver_signed(gw: &Gateway, sink: &Sink, from: &str, id: &str, smime: &[u8]) -> String {
    let message = format!(
        "From: <{from}>\r\nTo: <bob@example.test>\r\nSubject: figures\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{}",
        String::from_utf8_lossy(smime)
    );
    let r = gw
        .client()
        .await
        .send_message(from, &["bob@example.test"], &message)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        crate::harness::wait_until(15, || sink
            .all()
            .iter()
            .any(|m| m.message_id().as_deref() == Some(id)))
        .await,
        "{id} not delivered; log:\n{}",
        gw.log()
    );
    let got = sink
        .all()
        .into_iter()
        .find(|m| m.message_id().as_deref() == Some(id))
        .unwrap()
        .data;
    got.lines()
        .find(|l| l.starts_with("X-Portcullis-SMIME:"))
        .unwrap_or_else(|| panic!("no result header in {got}"))
        .to_string()
}

/// Every subject the store lists (end-entity and CA certificates).
fn stored_subjects(gw: &Gateway) -> Vec<String> {
    let list: Value = serde_json::from_str(&gw_certs(gw, &["list", "--json"])).unwrap();
    let mut out: Vec<String> = list["cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap().to_string())
        .collect();
    for d in list["domains"].as_array().unwrap() {
        for c in d["certs"].as_array().unwrap() {
            out.push(format!(
                "{} {}",
                c["subject"].as_str().unwrap(),
                c["addresses"]
            ));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn harvest_keeps_the_verified_chain_not_the_ca_certificates_a_message_carries() {
    let pki = TestPki::new("Partner CA");
    let alice = pki.holder("alice@partner.test");
    // 50 self-made CA certificates to go with a valid signature
    let mut junk = String::new();
    for i in 0..50 {
        let (key, cert) = (
            pki.path(&format!("junk{i}.key")),
            pki.path(&format!("junk{i}.pem")),
        );
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-subj",
                &format!("/CN=Junk CA {i}"),
                "-days",
                "30",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
            b"",
        );
        junk.push_str(&std::fs::read_to_string(&cert).unwrap());
    }
    let junk_file = pki.path("junk.pem");
    std::fs::write(&junk_file, junk).unwrap();
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, GW_CERTS);
    gw_certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;

    let smime = signed_by(
        pki.dir.path(),
        alice.cert.to_str().unwrap(),
        alice.key.to_str().unwrap(),
        &["-certfile", junk_file.to_str().unwrap()],
    );
    let header = deliver_signed(
        &gw,
        &sink,
        "alice@partner.test",
        "junk@partner.test",
        &smime,
    )
    .await;
    assert!(
        header.contains("signed by <alice@partner.test>, chain trusted"),
        "{header}"
    );
    let subjects = stored_subjects(&gw);
    assert!(
        subjects.iter().any(|s| s.contains("alice@partner.test")),
        "the signer is harvested: {subjects:?}"
    );
    assert!(
        !subjects.iter().any(|s| s.contains("Junk CA")),
        "no junk CA harvested: {subjects:?}"
    );
    assert_eq!(
        subjects.len(),
        2,
        "the trusted CA and the signer, nothing else: {subjects:?}"
    );
}

/// A CA run with `openssl ca` (index, serial and CRL number files), as a small real CA
/// is: it issues S/MIME certificates (with a CRL distribution point when given), revokes
/// them and publishes CRLs.
struct OpensslCa {
    dir: tempfile::TempDir,
    cdp: Option<String>,
}

impl OpensslCa {
    fn new(name: &str, cdp: Option<String>) -> OpensslCa {
        require_tool("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("newcerts")).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "1000\n").unwrap();
        std::fs::write(d.join("crlnumber"), "1000\n").unwrap();
        std::fs::write(
            d.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = own\n[own]\ndir = {}\ndatabase = $dir/index.txt\n\
                 new_certs_dir = $dir/newcerts\ncertificate = $dir/ca.pem\n\
                 private_key = $dir/ca.key\nserial = $dir/serial\ncrlnumber = $dir/crlnumber\n\
                 default_md = sha256\ndefault_days = 30\ndefault_crl_days = 7\n\
                 policy = any\nunique_subject = no\nemail_in_dn = yes\n\
                 [any]\ncommonName = supplied\nemailAddress = optional\n",
                d.display()
            ),
        )
        .unwrap();
        let ca = OpensslCa { dir, cdp };
        ca.run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        ca
    }

    fn p(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_string()
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A user certificate for `address` issued with `openssl ca`: NAME.pem, NAME.key.
    fn issue(&self, name: &str, address: &str) {
        self.run(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}/emailAddress={address}"),
        ]);
        let mut ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=emailProtection\nsubjectAltName=email:{address}\n"
        );
        if let Some(url) = &self.cdp {
            ext.push_str(&format!("crlDistributionPoints=URI:{url}\n"));
        }
        std::fs::write(self.dir.path().join(format!("{name}.ext")), ext).unwrap();
        self.run(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    fn revoke(&self, name: &str) {
        self.run(&["ca", "-config", "ca.cnf", "-revoke", &format!("{name}.pem")]);
    }

    /// Publish a CRL: ca.crl (PEM) and ca.crl.der (as distribution points serve it).
    fn gencrl(&self) {
        self.run(&[
            "ca", "-batch", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl",
        ]);
        self.run(&[
            "crl",
            "-in",
            "ca.crl",
            "-outform",
            "DER",
            "-out",
            "ca.crl.der",
        ]);
    }

    /// A detached signature by NAME.
    fn sign(&self, name: &str) -> Vec<u8> {
        signed_by(
            self.dir.path(),
            &self.p(&format!("{name}.pem")),
            &self.p(&format!("{name}.key")),
            &[],
        )
    }
}

/// `python3 -m http.server` on 127.0.0.1 serving `dir`; stopped on drop.
struct HttpServer(std::process::Child);

impl HttpServer {
    fn start(dir: &std::path::Path, port: u16) -> HttpServer {
        require_tool("python3", "python3");
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "python3 -m http.server did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpServer(child)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_imported_crl_makes_a_revoked_signer_untrusted() {
    let ca = OpensslCa::new("Revoking CA", None);
    ca.issue("rita", "rita@partner.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, GW_CERTS);
    gw_certs(&gw, &["trust-ca", &ca.p("ca.pem")]);
    settle().await;

    // no CRL held and no distribution point: trusted, but not as if checked
    let header = deliver_signed(
        &gw,
        &sink,
        "rita@partner.test",
        "r1@partner.test",
        &ca.sign("rita"),
    )
    .await;
    assert!(
        header.ends_with("signed by <rita@partner.test>, chain trusted (revocation unknown)"),
        "{header}"
    );

    ca.revoke("rita");
    ca.gencrl();
    let out = gw_certs(&gw, &["import-crl", &ca.p("ca.crl")]);
    assert!(out.contains("new") && out.contains("1 revoked"), "{out}");
    // a CRL is not a certificate: `certs import` says where it goes
    let (code, _, err) = gw.cli(&["certs", "import", &ca.p("ca.crl")]);
    assert_eq!(code, 2);
    assert!(err.contains("import-crl"), "{err}");
    settle().await;

    // the same signer, judged a moment ago, is now refused trust
    let header = deliver_signed(
        &gw,
        &sink,
        "rita@partner.test",
        "r2@partner.test",
        &ca.sign("rita"),
    )
    .await;
    assert!(
        header.ends_with("signed by <rita@partner.test>, chain NOT trusted (certificate revoked)"),
        "{header}"
    );
    // `certs show` of the certificate harvested from the first message says so
    let fp = {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(ca.p("rita.pem"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split_once('=')
            .unwrap()
            .1
            .replace(':', "")
            .to_ascii_lowercase()
    };
    let shown = gw_certs(&gw, &["show", &fp]);
    assert!(
        shown.contains("revocation:     REVOKED (certificate revoked)"),
        "{shown}"
    );
    assert!(shown.contains("encryption now: not usable"), "{shown}");
    let json: Value = serde_json::from_str(&gw_certs(&gw, &["show", &fp, "--json"])).unwrap();
    assert_eq!(json["revocation"]["state"], "revoked", "{json}");
}

#[tokio::test]
async fn crls_are_fetched_from_the_distribution_point_and_an_unreachable_one_soft_fails() {
    let port = free_port();
    let ca = OpensslCa::new(
        "Publishing CA",
        Some(format!("http://127.0.0.1:{port}/ca.crl.der")),
    );
    ca.issue("gina", "gina@partner.test");
    ca.issue("rolf", "rolf@partner.test");
    ca.revoke("rolf");
    ca.gencrl();
    let _http = HttpServer::start(ca.dir.path(), port);
    // a second CA whose distribution point nobody serves
    let dead = OpensslCa::new(
        "Unreachable CA",
        Some(format!("http://127.0.0.1:{}/none.crl", free_port())),
    );
    dead.issue("uwe", "uwe@partner.test");

    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, GW_CERTS);
    gw_certs(&gw, &["trust-ca", &ca.p("ca.pem")]);
    gw_certs(&gw, &["trust-ca", &dead.p("ca.pem")]);
    settle().await;

    let header = deliver_signed(
        &gw,
        &sink,
        "gina@partner.test",
        "g1@partner.test",
        &ca.sign("gina"),
    )
    .await;
    assert!(
        header.ends_with("signed by <gina@partner.test>, chain trusted"),
        "checked against the fetched CRL: {header}"
    );
    let header = deliver_signed(
        &gw,
        &sink,
        "rolf@partner.test",
        "f1@partner.test",
        &ca.sign("rolf"),
    )
    .await;
    assert!(
        header.ends_with("signed by <rolf@partner.test>, chain NOT trusted (certificate revoked)"),
        "{header}"
    );
    let header = deliver_signed(
        &gw,
        &sink,
        "uwe@partner.test",
        "u1@partner.test",
        &dead.sign("uwe"),
    )
    .await;
    assert!(
        header.ends_with("signed by <uwe@partner.test>, chain trusted (revocation unknown)"),
        "{header}"
    );
    assert!(gw.log().contains("cannot fetch a CRL"), "{}", gw.log());

    // revocation = "hard": no CRL to be had is no trust
    let hard = Gateway::start(sink.addr, &format!("{GW_CERTS}revocation = \"hard\"\n"));
    gw_certs(&hard, &["trust-ca", &dead.p("ca.pem")]);
    settle().await;
    let header = deliver_signed(
        &hard,
        &sink,
        "uwe@partner.test",
        "u2@partner.test",
        &dead.sign("uwe"),
    )
    .await;
    assert!(
        header.contains("signed by <uwe@partner.test>, chain NOT trusted (revocation unknown:"),
        "{header}"
    );
}
