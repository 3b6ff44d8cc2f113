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
