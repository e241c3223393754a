//! The TLS surface, checked from outside with OpenSSL's and curl's own clients: only TLS 1.2 and
//! 1.3; in TLS 1.2 only ECDHE with AEAD suites (every one of the ~90 TLS 1.2 suites this
//! OpenSSL can offer is tried alone); ALPN h2 and http/1.1, and both protocols really served.
//!
//! Needs `openssl` and `curl` (Debian: openssl, curl). Without them the test says so and
//! passes, unless CI is set.

#[path = "common/server.rs"]
mod server;

use std::process::{Command, Output, Stdio};

use server::TestServer;

fn have(tool: &str) -> bool {
    let present = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !present && tool == "openssl" {
        // `openssl version` is the spelling that exists everywhere.
        return Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
    }
    present
}

fn require(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is required in CI (apt-get install {tool})"
    );
    eprintln!("NOTICE: {tool} not installed; TLS surface check skipped");
    false
}

struct Probe {
    port: u16,
    ca: std::path::PathBuf,
}

impl Probe {
    /// `openssl s_client` with `args`; stdin closed so it returns right after the handshake.
    fn s_client(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["20", "openssl", "s_client"])
            .args(["-connect", &format!("127.0.0.1:{}", self.port)])
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&self.ca)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl s_client")
    }

    fn handshake_ok(&self, args: &[&str]) -> (bool, String) {
        let out = self.s_client(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let ok = out.status.success() && text.contains("Verify return code: 0 (ok)");
        (ok, text)
    }
}

fn line_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls12_and_tls13_with_aead_suites_and_alpn_h2_http11() {
    if !require("openssl") {
        return;
    }
    let srv = TestServer::start().await;
    let probe = Probe {
        port: srv.running.addr.port(),
        ca: srv.files.ca.clone(),
    };
    let report = tokio::task::spawn_blocking(move || {
        let mut report = Vec::new();
        // Old protocol versions, with the client's own security level lowered so that it
        // really offers them: the server must refuse.
        for v in ["-tls1", "-tls1_1"] {
            let (ok, text) = probe.handshake_ok(&[v, "-cipher", "DEFAULT:@SECLEVEL=0"]);
            assert!(!ok, "{v} accepted:\n{text}");
            report.push(format!("{v}: refused"));
        }
        // TLS 1.3 and 1.2 work.
        for (v, want) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
            let (ok, text) = probe.handshake_ok(&[v]);
            assert!(ok, "{v} refused:\n{text}");
            assert!(text.contains(&format!("Protocol  : {want}")) || text.contains(want));
            let cipher = text
                .lines()
                .find_map(|l| l.split_once("Cipher is ").map(|(_, c)| c.trim()))
                .unwrap_or("?")
                .to_owned();
            report.push(format!("{v}: accepted ({cipher})"));
        }
        // Every TLS 1.2 suite this OpenSSL knows, one at a time.
        let list = Command::new("openssl")
            .args(["ciphers", "-s", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
            .output()
            .expect("openssl ciphers");
        let list = String::from_utf8_lossy(&list.stdout).trim().to_owned();
        let mut accepted = Vec::new();
        let mut refused = 0;
        for suite in list.split(':').filter(|s| !s.is_empty()) {
            let cipher = format!("{suite}:@SECLEVEL=0");
            let (ok, _) = probe.handshake_ok(&["-tls1_2", "-cipher", &cipher]);
            if ok {
                accepted.push(suite.to_owned());
            } else {
                refused += 1;
            }
        }
        for suite in &accepted {
            let strong = suite.starts_with("ECDHE-")
                && (suite.contains("-GCM-") || suite.contains("CHACHA20-POLY1305"));
            assert!(
                strong,
                "weak TLS 1.2 suite accepted: {suite} (all: {accepted:?})"
            );
        }
        assert!(!accepted.is_empty(), "no TLS 1.2 suite accepted at all");
        for weak in ["RC4", "DES-CBC3", "-SHA:", "NULL", "EXPORT", "ADH", "AECDH", "PSK"] {
            let joined = accepted.join(":") + ":";
            assert!(!joined.contains(weak), "{weak} accepted: {accepted:?}");
        }
        report.push(format!(
            "TLS 1.2 suites: {} offered one by one, {refused} refused, accepted only {}",
            refused + accepted.len(),
            accepted.join(", ")
        ));
        // Suites OpenSSL 3 no longer builds (RC4, 3DES) cannot be offered; say so.
        for suite in ["RC4-SHA", "DES-CBC3-SHA"] {
            let out = probe.s_client(&["-tls1_2", "-cipher", &format!("{suite}:@SECLEVEL=0")]);
            let text = String::from_utf8_lossy(&out.stderr);
            if text.contains("no cipher match") {
                report.push(format!(
                    "{suite}: not offerable by this OpenSSL build (and absent from the server's suites)"
                ));
            } else {
                assert!(!out.status.success(), "{suite} accepted");
                report.push(format!("{suite}: refused"));
            }
        }
        // ALPN.
        for proto in ["h2", "http/1.1"] {
            let (ok, text) = probe.handshake_ok(&["-alpn", proto]);
            assert!(ok, "ALPN {proto}: handshake failed:\n{text}");
            let got = line_after(&text, "ALPN protocol:").unwrap_or("none");
            assert_eq!(got, proto, "ALPN {proto} not selected:\n{text}");
            report.push(format!("ALPN {proto}: selected"));
        }
        report
    })
    .await
    .expect("probe");
    for line in &report {
        println!("{line}");
    }

    if !require("curl") {
        return;
    }
    let url = srv.url("/healthz");
    let ca = srv.files.ca.clone();
    let versions = tokio::task::spawn_blocking(move || {
        ["--http2", "--http1.1"].map(|flag| {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "10", flag, "--cacert"])
                .arg(&ca)
                .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
                .arg(&url)
                .output()
                .expect("curl");
            (flag, String::from_utf8_lossy(&out.stdout).to_string())
        })
    })
    .await
    .expect("curl");
    for (flag, got) in versions {
        println!("curl {flag}: {got}");
        let want = if flag == "--http2" {
            "200 2"
        } else {
            "200 1.1"
        };
        assert_eq!(got, want, "curl {flag}");
    }
}
