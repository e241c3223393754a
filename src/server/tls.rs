//! TLS: server configuration from PEM files, and certificate generation with rcgen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or has no certificate.
    #[error("certificate {path}: {reason}")]
    Cert {
        /// File.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file is unreadable or has no private key.
    #[error("private key {path}: {reason}")]
    Key {
        /// File.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls refused the pair.
    #[error("certificate {cert} and key {key} cannot be used together: {reason}")]
    Pair {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing generated files failed.
    #[error("writing {path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The crypto provider: ring, whose default suites are all AEAD with forward secrecy.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A serving certificate chain and key ready for rustls, with the leaf certificate's expiry.
pub struct ServingPair {
    /// TLS 1.2/1.3 server config, ALPN h2 and http/1.1.
    pub config: ServerConfig,
    /// The leaf certificate's notAfter, in Unix seconds.
    pub not_after: i64,
}

/// Builds a TLS 1.2/1.3 server config (ALPN h2 and http/1.1) from PEM certificate and key files.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    load(cert, key).map(|pair| pair.config)
}

/// Reads the certificate's notAfter from the very bytes rustls is given, so the expiry reported
/// is the one of the certificate being served.
fn not_after(cert: &Path, leaf: &CertificateDer<'_>) -> Result<i64, TlsError> {
    x509_parser::parse_x509_certificate(leaf.as_ref())
        .map(|(_, parsed)| parsed.validity().not_after.timestamp())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: format!("the first certificate is not a valid X.509 certificate: {e}"),
        })
}

/// Loads a PEM certificate chain (leaf first) and key into a [`ServingPair`].
pub fn load(cert: &Path, key: &Path) -> Result<ServingPair, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            reason: "no PEM CERTIFICATE block found".into(),
        });
    };
    let not_after = not_after(cert, leaf)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| TlsError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServingPair { config, not_after })
}

/// Paths of a generated CA and serving certificate.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// CA certificate (what clients trust; the webhook's caBundle).
    pub ca: PathBuf,
    /// Serving certificate.
    pub cert: PathBuf,
    /// Serving key.
    pub key: PathBuf,
}

impl CertFiles {
    /// The conventional file names in `dir`: ca.crt, tls.crt, tls.key (as in a kubernetes.io/tls Secret).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    /// True when all three files exist.
    pub fn exist(&self) -> bool {
        self.ca.exists() && self.cert.exists() && self.key.exists()
    }
}

/// DNS names a Service `name` in `namespace` is reached by from the API server.
pub fn service_dns_names(name: &str, namespace: &str) -> Vec<String> {
    vec![
        name.to_owned(),
        format!("{name}.{namespace}"),
        format!("{name}.{namespace}.svc"),
        format!("{name}.{namespace}.svc.cluster.local"),
    ]
}

/// Generates a fresh CA and a serving certificate for `names` (DNS names or IP addresses) into `dir`.
/// The CA key is not kept: nothing else should ever be signed with it.
pub fn generate(dir: &Path, names: &[String], valid_days: i64) -> Result<CertFiles, TlsError> {
    let now = time_now();
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "velero-hook-injector CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - std::time::Duration::from_secs(300);
    ca_params.not_after = now + std::time::Duration::from_secs(valid_days.max(1) as u64 * 86_400);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "localhost".into()),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = now - std::time::Duration::from_secs(300);
    params.not_after = now + std::time::Duration::from_secs(valid_days.max(1) as u64 * 86_400);
    let cert = params.signed_by(&key, &issuer)?;

    let files = CertFiles::in_dir(dir);
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write(&files.ca, ca_cert.pem().as_bytes(), false)?;
    write(&files.cert, cert.pem().as_bytes(), false)?;
    write(&files.key, key.serialize_pem().as_bytes(), true)?;
    Ok(files)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn write(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    std::fs::write(path, data).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_mismatched_pair_is_refused() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let fa = generate(a.path(), &names, 30).expect("gen a");
        let fb = generate(b.path(), &names, 30).expect("gen b");
        let cfg = server_config(&fa.cert, &fa.key).expect("loads");
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let err = server_config(&fa.cert, &fb.key).expect_err("mismatch");
        assert!(err.to_string().contains("cannot be used together"), "{err}");
        let err = server_config(&fa.key, &fa.key).expect_err("key as cert");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[test]
    fn load_reports_the_leaf_certificates_expiry() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = generate(dir.path(), &["localhost".to_owned()], 3).expect("gen");
        let before = time_now().unix_timestamp();
        let pair = load(&files.cert, &files.key).expect("loads");
        // generate() makes it valid for 3 days from now (to the second, rcgen drops sub-seconds).
        let expected = before + 3 * 86_400;
        assert!(
            (pair.not_after - expected).abs() <= 2,
            "{} vs {expected}",
            pair.not_after
        );
    }

    #[test]
    fn service_names_cover_the_api_server_lookup() {
        let n = service_dns_names("vhi", "velero");
        assert!(n.contains(&"vhi.velero.svc".to_owned()));
    }
}
