//! The CA pin kubeadm's discovery uses: the SHA-256 of the CA certificate's
//! SubjectPublicKeyInfo (`openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`).
//! A small DER walk: no X.509 library is needed for one field.

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("not a PEM/DER X.509 certificate: {0}")]
pub struct PkiError(&'static str);

/// One DER element: (tag, header length, content length).
fn tlv(data: &[u8]) -> Result<(u8, usize, usize), PkiError> {
    let tag = *data.first().ok_or(PkiError("truncated"))?;
    let first = *data.get(1).ok_or(PkiError("truncated"))?;
    let (hdr, len) = if first < 0x80 {
        (2, first as usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || data.len() < 2 + n {
            return Err(PkiError("bad length"));
        }
        let len = data[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (2 + n, len)
    };
    if data.len() < hdr + len {
        return Err(PkiError("truncated"));
    }
    Ok((tag, hdr, len))
}

/// The DER of the SubjectPublicKeyInfo of a certificate.
pub fn spki(der: &[u8]) -> Result<&[u8], PkiError> {
    let (tag, hdr, len) = tlv(der)?;
    if tag != 0x30 {
        return Err(PkiError("certificate is not a SEQUENCE"));
    }
    let cert = &der[hdr..hdr + len];
    let (tag, hdr, len) = tlv(cert)?;
    if tag != 0x30 {
        return Err(PkiError("tbsCertificate is not a SEQUENCE"));
    }
    let mut tbs = &cert[hdr..hdr + len];
    // [0] version (optional), serialNumber, signature, issuer, validity, subject, spki
    let (tag, _, _) = tlv(tbs)?;
    let skip = if tag == 0xa0 { 6 } else { 5 };
    for _ in 0..skip {
        let (_, h, l) = tlv(tbs)?;
        tbs = &tbs[h + l..];
    }
    let (tag, h, l) = tlv(tbs)?;
    if tag != 0x30 {
        return Err(PkiError("subjectPublicKeyInfo is not a SEQUENCE"));
    }
    Ok(&tbs[..h + l])
}

/// PEM `CERTIFICATE` to DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use base64::Engine as _;
    let begin = pem
        .find("-----BEGIN CERTIFICATE-----")
        .ok_or(PkiError("no BEGIN CERTIFICATE"))?;
    let rest = &pem[begin + "-----BEGIN CERTIFICATE-----".len()..];
    let end = rest
        .find("-----END CERTIFICATE-----")
        .ok_or(PkiError("no END CERTIFICATE"))?;
    let b64: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| PkiError("bad base64"))
}

/// The hex SHA-256 of the CA's public key, as `--discovery-token-ca-cert-hash sha256:<this>`.
pub fn ca_cert_hash(pem: &str) -> Result<String, PkiError> {
    let der = pem_to_der(pem)?;
    Ok(hex::encode(Sha256::digest(spki(&der)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against openssl on a fresh CA, as kubeadm's docs compute the hash.
    #[test]
    fn matches_the_openssl_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        for (kind, opts) in [
            ("rsa:2048", ""),
            ("ec", "-pkeyopt ec_paramgen_curve:prime256v1"),
        ] {
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "openssl req -x509 -newkey {kind} {opts} -nodes -keyout {} -out {} -days 1 -subj /CN=kubernetes 2>/dev/null",
                    key.display(),
                    crt.display()
                ))
                .status()
                .unwrap();
            assert!(st.success());
            let expected = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1",
                    crt.display()
                ))
                .output()
                .unwrap();
            let expected = String::from_utf8(expected.stdout).unwrap();
            let pem = std::fs::read_to_string(&crt).unwrap();
            assert_eq!(ca_cert_hash(&pem).unwrap(), expected.trim(), "{kind}");
        }
        assert!(ca_cert_hash("garbage").is_err());
        assert!(
            ca_cert_hash("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").is_err()
        );
    }
}
