//! CA certificates named by the config (`http.ca_file` of a job type,
//! `ca_file` of an alert webhook), read and checked when it is loaded.

use std::path::Path;

/// The CA certificates in PEM file `file`, each one a TLS client can trust.
///
/// # Errors
/// Why not: unreadable, no certificate in it, or one that is not a CA
/// certificate rustls can use.
pub(super) fn ca_roots(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(file).map_err(|e| format!("cannot read it: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string());
    }
    let mut store = rustls::RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        store
            .add(cert.clone())
            .map_err(|e| format!("certificate {} of {}: {e}", n + 1, certs.len()))?;
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}
