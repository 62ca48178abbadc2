//! TLS settings beyond the cert/key/CA files: `--cipher-suites` (Go's suite
//! names, as etcd's `tlsutil.GetCipherSuites` takes them),
//! `--tls-min-version`/`--tls-max-version`, and each side's CRL file, allowed
//! CNs and hostnames, auto-TLS and explicit client certificate.

use std::path::PathBuf;

use crate::tls::{TlsFiles, TlsPolicy};

/// A TLS protocol version as etcd names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

/// etcd's `tlsutil.GetTLSVersion`: "" is `None` (the highest available).
pub fn parse_version(text: &str) -> Result<Option<TlsVersion>, String> {
    match text {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
        other => Err(format!("unexpected TLS version {other:?} (must be one of: TLS1.2, TLS1.3)")),
    }
}

/// Every cipher suite name etcd accepts (Go's `tls.CipherSuites()` and
/// `tls.InsecureCipherSuites()`, and etcd's two CHACHA20 aliases), and
/// whether Logbook's TLS (rustls) can offer it.
pub const CIPHER_SUITES: &[(&str, bool)] = &[
    // TLS 1.3 (Go does not let them be configured; accepted by name).
    ("TLS_AES_128_GCM_SHA256", true),
    ("TLS_AES_256_GCM_SHA384", true),
    ("TLS_CHACHA20_POLY1305_SHA256", true),
    // TLS 1.2 with forward secrecy and AEAD.
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", true),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", true),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", true),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", true),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", true),
    // CBC, RC4, 3DES and static-RSA suites: Go has them, rustls does not.
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", false),
    ("TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", false),
    ("TLS_ECDHE_RSA_WITH_RC4_128_SHA", false),
    ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", false),
    ("TLS_RSA_WITH_RC4_128_SHA", false),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", false),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", false),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", false),
];

/// Checks `--cipher-suites`: every name must be one etcd knows (etcd's error
/// otherwise). Names rustls cannot offer are dropped with a warning; if none
/// is left, the list is refused.
pub fn parse_cipher_suites(names: &[String]) -> Result<(Vec<String>, Vec<String>), String> {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for name in names {
        match CIPHER_SUITES.iter().find(|(n, _)| n == name) {
            None => return Err(format!("unexpected TLS cipher suite {name:?}")),
            Some((_, true)) => kept.push(name.clone()),
            Some((_, false)) => dropped.push(name.clone()),
        }
    }
    let mut warnings = Vec::new();
    if !dropped.is_empty() {
        if kept.is_empty() {
            return Err(format!(
                "--cipher-suites: none of {} is offered by Logbook's TLS (rustls supports only the ECDHE AEAD suites, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
                dropped.join(", ")
            ));
        }
        warnings.push(format!(
            "--cipher-suites: {} not offered by Logbook's TLS (rustls); serving {}",
            dropped.join(", "),
            kept.join(", ")
        ));
    }
    Ok((kept, warnings))
}

/// One side's (client or peer) TLS settings beyond cert, key and CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsExtra {
    /// `--[peer-]client-cert-file`/`--[peer-]client-key-file`: the
    /// certificate presented when this member dials as a client (etcd uses
    /// the server certificate when they are not given).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// `--client-crl-file`/`--peer-crl-file`: revoked client certificates.
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn`: a client certificate's CN must be one of these.
    pub allowed_cns: Vec<String>,
    /// `--client-cert-allowed-hostname`/`--peer-cert-allowed-hostname`: a
    /// client certificate must be valid for one of these names.
    pub allowed_hostnames: Vec<String>,
    /// `--auto-tls`/`--peer-auto-tls`: serve a self-signed certificate when
    /// no cert and key files are given.
    pub auto_tls: bool,
    /// `--peer-skip-client-san-verification`.
    pub skip_client_san_verification: bool,
}

/// One side's [`TlsPolicy`] from its flags and the shared version and
/// suite settings, refusing what etcd's `TLSInfo` refuses.
///
/// `has_files`: the side has cert/key files, so etcd builds its `TLSInfo`
/// and checks the dialing pair; without them a half-given pair is unused.
pub fn policy(
    extra: &TlsExtra,
    peer: bool,
    has_files: bool,
    min_version: TlsVersion,
    max_version: Option<TlsVersion>,
    cipher_suites: &[String],
) -> crate::error::Result<TlsPolicy> {
    let bad = crate::error::Error::Config;
    let prefix = if peer { "peer-" } else { "" };
    let client_cert = match (&extra.client_cert_file, &extra.client_key_file) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ if !has_files => None,
        (c, k) => {
            let show = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            return Err(bad(format!(
                "ClientKeyFile and ClientCertFile must both be present or both absent: key: {}, cert: {}] (--{prefix}client-key-file, --{prefix}client-cert-file)",
                show(k).unwrap_or_default(),
                show(c).unwrap_or_default()
            )));
        }
    };
    if !extra.allowed_cns.is_empty() && !extra.allowed_hostnames.is_empty() {
        // Go's %q of a []string: ["a" "b"].
        let q = |v: &[String]| {
            format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
        };
        return Err(bad(format!(
            "AllowedCNs and AllowedHostnames are mutually exclusive (cns={}, hostnames={}) (--peer-cert-allowed-cn, --peer-cert-allowed-hostname)",
            q(&extra.allowed_cns),
            q(&extra.allowed_hostnames)
        )));
    }
    Ok(TlsPolicy {
        crl_file: extra.crl_file.clone(),
        allowed_cns: extra.allowed_cns.clone(),
        allowed_hostnames: extra.allowed_hostnames.clone(),
        client_cert,
        self_signed: false,
        min_version,
        max_version,
        cipher_suites: cipher_suites.to_vec(),
        check_client_san: peer && !extra.skip_client_san_verification,
    })
}

/// The files of an auto-TLS side, as etcd's `SelfCert` returns its
/// `TLSInfo`: the generated pair (also presented when dialing), no CA, no
/// client certificates asked for, no CRL or allowed names; dialers do not
/// verify the server (`InsecureSkipVerify`). Versions and suites still apply.
pub fn self_signed_files(
    cert: PathBuf,
    key: PathBuf,
    peer: bool,
    min_version: TlsVersion,
    max_version: Option<TlsVersion>,
    cipher_suites: &[String],
) -> TlsFiles {
    TlsFiles {
        cert_file: cert,
        key_file: key,
        trusted_ca_file: None,
        client_cert_auth: false,
        policy: TlsPolicy {
            self_signed: true,
            min_version,
            max_version,
            cipher_suites: cipher_suites.to_vec(),
            check_client_san: peer,
            ..TlsPolicy::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("").unwrap(), None);
        assert_eq!(parse_version("TLS1.3").unwrap(), Some(TlsVersion::Tls13));
        assert_eq!(
            parse_version("TLS1.1").unwrap_err(),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
        );
    }

    #[test]
    fn cipher_suites() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (kept, warnings) = parse_cipher_suites(&names(&[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
        ]))
        .unwrap();
        assert_eq!(kept, names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]));
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            parse_cipher_suites(&names(&["TLS_NOPE"])).unwrap_err(),
            "unexpected TLS cipher suite \"TLS_NOPE\""
        );
        assert!(parse_cipher_suites(&names(&["TLS_RSA_WITH_AES_128_CBC_SHA"])).is_err());
    }
}
