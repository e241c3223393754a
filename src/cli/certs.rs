//! `certs`: a CA and a serving certificate for the webhook's Service (installs without
//! cert-manager).

use std::path::Path;

use velero_hook_injector::server::tls;

/// Writes ca.crt, tls.crt and tls.key to `out` and says how to get the caBundle.
pub(crate) fn certs_command(
    service: &str,
    namespace: &str,
    out: &Path,
    days: i64,
) -> anyhow::Result<()> {
    let files = tls::generate(out, &tls::service_dns_names(service, namespace), days)?;
    println!(
        "wrote {}, {}, {} for {service}.{namespace}.svc (valid {days} days)",
        files.ca.display(),
        files.cert.display(),
        files.key.display()
    );
    println!("caBundle: base64 -w0 {}", files.ca.display());
    Ok(())
}
