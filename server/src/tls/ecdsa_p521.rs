//! ECDSA P-521 for rustls and rcgen, on the `p521` crate: the key etcd's
//! `transport.SelfCert` makes for `--auto-tls`/`--peer-auto-tls`.
//!
//! ring, the rustls provider here, neither signs nor verifies P-521, and
//! rcgen on ring has no P-521 algorithm. So this module adds, over ring:
//!
//! - [`provider`]: ring's provider whose key loader also takes a P-521 key
//!   (SEC1 or PKCS#8) and signs handshakes with it (`ecdsa_secp521r1_sha512`),
//!   and whose verification algorithms also check P-521/SHA-512 signatures,
//!   in handshakes and certificate chains (so two members with etcd's
//!   self-signed certificates, or a member and a real etcd, talk).
//! - [`self_signed`]: a self-signed certificate laid out by rcgen and signed
//!   with a fresh P-521 key (see there for how).

use std::sync::{Arc, OnceLock};

use p521::ecdsa::signature::{Signer as _, Verifier as _};
use parking_lot::Mutex;
use rustls::crypto::{CryptoProvider, KeyProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm,
    SubjectPublicKeyInfoDer, alg_id,
};
use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};

/// ring's provider, `base`, able to sign with and verify P-521 keys too.
pub(super) fn provider(mut base: CryptoProvider) -> CryptoProvider {
    base.key_provider = &KEYS;
    base.signature_verification_algorithms = algorithms();
    base
}

/// Loads keys with ring, and the P-521 ones ring refuses with `p521`.
#[derive(Debug)]
struct Keys;

static KEYS: Keys = Keys;

impl KeyProvider for Keys {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        let ring = match rustls::crypto::ring::sign::any_supported_type(&key_der) {
            Ok(key) => return Ok(key),
            Err(e) => e,
        };
        let p521 = match &key_der {
            PrivateKeyDer::Sec1(der) => p521::SecretKey::from_sec1_der(der.secret_sec1_der()).ok(),
            PrivateKeyDer::Pkcs8(der) => {
                use p521::pkcs8::DecodePrivateKey as _;
                p521::SecretKey::from_pkcs8_der(der.secret_pkcs8_der()).ok()
            }
            _ => None,
        };
        match p521 {
            Some(secret) => Ok(Arc::new(P521Key::new(secret.into()))),
            None => Err(ring),
        }
    }
}

/// A P-521 private key, for rustls.
struct P521Key {
    key: Arc<p521::ecdsa::SigningKey>,
    /// The public key's SubjectPublicKeyInfo, which rustls compares with the
    /// certificate's.
    spki: SubjectPublicKeyInfoDer<'static>,
}

impl std::fmt::Debug for P521Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Key")
    }
}

impl P521Key {
    fn new(key: p521::ecdsa::SigningKey) -> P521Key {
        let point = key.verifying_key().to_sec1_point(false);
        let spki = rustls::sign::public_key_to_spki(&alg_id::ECDSA_P521, point.as_bytes());
        P521Key { key: Arc::new(key), spki }
    }
}

impl SigningKey for P521Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
            .then(|| Box::new(P521Signer(self.key.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(self.spki.clone())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

/// Signs one handshake: ECDSA over SHA-512 (RFC 6979 nonces), DER-encoded,
/// as TLS and X.509 carry it.
struct P521Signer(Arc<p521::ecdsa::SigningKey>);

impl std::fmt::Debug for P521Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P521Signer")
    }
}

impl Signer for P521Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(sign_der(&self.0, message))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP521_SHA512
    }
}

fn sign_der(key: &p521::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: p521::ecdsa::Signature = key.sign(message);
    sig.to_der().as_bytes().to_vec()
}

/// Verifies ECDSA P-521 signatures over SHA-512 (`ecdsa-with-SHA512` in
/// certificates, `ecdsa_secp521r1_sha512` in handshakes).
#[derive(Debug)]
struct P521Sha512;

static P521_SHA512: P521Sha512 = P521Sha512;
static P521_ONLY: [&dyn SignatureVerificationAlgorithm; 1] = [&P521_SHA512];

impl SignatureVerificationAlgorithm for P521Sha512 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key =
            p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let sig = p521::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &sig).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA512
    }
}

/// ring's verification algorithms and P-521/SHA-512, offered right after
/// ring's ECDSA schemes. Built once; the provider wants `'static` slices.
fn algorithms() -> WebPkiSupportedAlgorithms {
    static ALGS: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    *ALGS.get_or_init(|| {
        let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let p521: &'static dyn SignatureVerificationAlgorithm = &P521_SHA512;
        let mut all = ring.all.to_vec();
        all.push(p521);
        let mut mapping = ring.mapping.to_vec();
        let after_ecdsa = mapping
            .iter()
            .rposition(|(scheme, _)| format!("{scheme:?}").starts_with("ECDSA_"))
            .map_or(0, |i| i + 1);
        mapping.insert(after_ecdsa, (SignatureScheme::ECDSA_NISTP521_SHA512, &P521_ONLY[..]));
        WebPkiSupportedAlgorithms { all: Vec::leak(all), mapping: Vec::leak(mapping) }
    })
}

/// A fresh P-521 key from the thread's CSPRNG (the `p521` crate's own
/// generator wants a newer `rand_core` than the workspace's `rand`): 66
/// random bytes with the top 7 bits cleared, redrawn in the negligible case
/// that they are zero or not below the group order.
fn generate() -> p521::ecdsa::SigningKey {
    for _ in 0..64 {
        let mut bytes = [0u8; 66];
        rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
        bytes[0] &= 0x01;
        if let Ok(key) = p521::ecdsa::SigningKey::from_slice(&bytes) {
            return key;
        }
    }
    panic!("64 draws of a P-521 scalar were all out of range: the random source is broken");
}

/// `params`' certificate, self-signed with a fresh P-521 key: the
/// certificate's DER and the key as SEC1 DER (`EC PRIVATE KEY`, what Go's
/// `x509.MarshalECPrivateKey` writes).
///
/// rcgen lays the certificate out (names, validity, extensions) and asks an
/// external key to sign it, but on ring it has no P-521 algorithm to name
/// (`PKCS_ECDSA_P521_SHA512` exists only with its aws-lc-rs backend, a cmake
/// build this workspace avoids). So the key tells rcgen it is P-384 with
/// SHA-384, whose two identifiers encode to the same lengths as P-521's and
/// SHA-512's (`1.3.132.0.34` against `.35`, `1.2.840.10045.4.3.3` against
/// `.4`): the to-be-signed bytes rcgen hands over are relabelled (each
/// identifier must occur exactly once), signed with P-521 over SHA-512, and
/// the certificate is assembled from them. No length changes, so the DER
/// stays valid; the result is checked by parsing it back.
pub(super) fn self_signed(params: &rcgen::CertificateParams) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut last = String::new();
    // The identifiers are looked for as whole DER elements; one could also
    // turn up inside the random serial or public key (odds near 2^-50): then
    // draw again.
    for _ in 0..4 {
        let key = Relabelling::new(generate());
        match params.self_signed(&key) {
            Ok(_) => {}
            Err(e) => {
                last = e.to_string();
                continue;
            }
        }
        let Some((tbs, sig)) = key.signed.lock().take() else {
            last = "rcgen did not sign".into();
            continue;
        };
        let cert = der_sequence(&[&tbs, &ECDSA_SHA512_ALG_ID, &der_bit_string(&sig)]);
        check(&cert, &key.public)?;
        let sec1 = p521::SecretKey::from(key.key)
            .to_sec1_der()
            .map_err(|e| format!("encoding the P-521 key: {e}"))?;
        return Ok((cert, sec1.to_vec()));
    }
    Err(last)
}

/// `ecdsa-with-SHA384` and `secp384r1` as DER elements (tag, length, value),
/// what rcgen writes for [`rcgen::PKCS_ECDSA_P384_SHA384`], and their P-521
/// twins.
const OID_ECDSA_SHA384: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_SHA512: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_SECP384R1: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_SECP521R1: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// `AlgorithmIdentifier { ecdsa-with-SHA512 }` (no parameters, RFC 5758).
const ECDSA_SHA512_ALG_ID: [u8; 12] =
    [0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];

/// Replaces the one occurrence of `from` in `bytes` by `to` (same length).
fn replace_once(bytes: &mut [u8], from: &[u8], to: &[u8]) -> Result<(), rcgen::Error> {
    let at: Vec<usize> =
        bytes.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    match at[..] {
        [i] => {
            bytes[i..i + to.len()].copy_from_slice(to);
            Ok(())
        }
        _ => Err(rcgen::Error::RemoteKeyError),
    }
}

/// rcgen's external key: a P-521 key that presents itself as P-384 and
/// relabels what it signs (see [`self_signed`]).
struct Relabelling {
    key: p521::ecdsa::SigningKey,
    /// The uncompressed public point (the SPKI's BIT STRING).
    public: Vec<u8>,
    /// The relabelled to-be-signed bytes and their signature.
    signed: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl Relabelling {
    fn new(key: p521::ecdsa::SigningKey) -> Relabelling {
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        Relabelling { key, public, signed: Mutex::new(None) }
    }
}

impl rcgen::PublicKeyData for Relabelling {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl rcgen::SigningKey for Relabelling {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut tbs = msg.to_vec();
        replace_once(&mut tbs, &OID_ECDSA_SHA384, &OID_ECDSA_SHA512)?;
        replace_once(&mut tbs, &OID_SECP384R1, &OID_SECP521R1)?;
        let sig = sign_der(&self.key, &tbs);
        *self.signed.lock() = Some((tbs, sig.clone()));
        Ok(sig)
    }
}

/// A DER length: short form below 128, else long form.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der_sequence(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![0x30];
    der_len(len, &mut out);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn der_bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x03];
    der_len(bytes.len() + 1, &mut out);
    out.push(0); // no unused bits
    out.extend_from_slice(bytes);
    out
}

/// The assembled certificate parses, names P-521 and SHA-512, carries
/// `public`, and its signature verifies.
fn check(cert: &[u8], public: &[u8]) -> Result<(), String> {
    let bad = |what: &str| Err(format!("the P-521 certificate made is wrong: {what}"));
    let Ok((rest, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return bad("it does not parse");
    };
    if !rest.is_empty() {
        return bad("trailing bytes");
    }
    if parsed.signature_algorithm.algorithm.to_id_string() != "1.2.840.10045.4.3.4" {
        return bad("not ecdsa-with-SHA512");
    }
    let spki = parsed.public_key();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
    if curve.map(|c| c.to_id_string()).as_deref() != Some("1.3.132.0.35") {
        return bad("not on secp521r1");
    }
    if spki.subject_public_key.data.as_ref() != public {
        return bad("another public key");
    }
    if P521_SHA512
        .verify_signature(
            public,
            parsed.tbs_certificate.as_ref(),
            parsed.signature_value.data.as_ref(),
        )
        .is_err()
    {
        return bad("its signature does not verify");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_take_the_short_and_long_forms() {
        let mut v = Vec::new();
        der_len(5, &mut v);
        der_len(0x80, &mut v);
        der_len(0x1234, &mut v);
        assert_eq!(v, [5, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }

    #[test]
    fn a_p521_key_loads_from_sec1_and_pkcs8_and_signs_what_p521_verifies() {
        use p521::pkcs8::EncodePrivateKey as _;
        let key = generate();
        let secret = p521::SecretKey::from(key.clone());
        let sec1 = secret.to_sec1_der().unwrap().to_vec();
        let pkcs8 = secret.to_pkcs8_der().unwrap().as_bytes().to_vec();
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        for der in [PrivateKeyDer::Sec1(sec1.into()), PrivateKeyDer::Pkcs8(pkcs8.into())] {
            let loaded = KEYS.load_private_key(der).unwrap();
            assert_eq!(loaded.algorithm(), SignatureAlgorithm::ECDSA);
            assert!(loaded.choose_scheme(&[SignatureScheme::ECDSA_NISTP384_SHA384]).is_none());
            let signer = loaded
                .choose_scheme(&[
                    SignatureScheme::ECDSA_NISTP384_SHA384,
                    SignatureScheme::ECDSA_NISTP521_SHA512,
                ])
                .unwrap();
            assert_eq!(signer.scheme(), SignatureScheme::ECDSA_NISTP521_SHA512);
            let sig = signer.sign(b"handshake").unwrap();
            P521_SHA512.verify_signature(&public, b"handshake", &sig).unwrap();
            assert!(P521_SHA512.verify_signature(&public, b"handshakE", &sig).is_err());
        }
        // ring's keys still load through ring.
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let der = PrivateKeyDer::Pkcs8(p384.serialize_der().into());
        assert!(KEYS.load_private_key(der).is_ok());
        assert!(KEYS.load_private_key(PrivateKeyDer::Sec1(vec![1, 2, 3].into())).is_err());
    }

    #[test]
    fn the_extended_algorithms_offer_p521_after_ring_ecdsa() {
        let algs = algorithms();
        let schemes = algs.supported_schemes();
        let at = |s| schemes.iter().position(|x| *x == s).unwrap();
        assert!(
            at(SignatureScheme::ECDSA_NISTP521_SHA512) > at(SignatureScheme::ECDSA_NISTP256_SHA256)
        );
        assert!(at(SignatureScheme::ECDSA_NISTP521_SHA512) < at(SignatureScheme::ED25519));
        assert_eq!(
            algs.all.len(),
            rustls::crypto::ring::default_provider().signature_verification_algorithms.all.len()
                + 1
        );
    }

    #[test]
    fn a_self_signed_certificate_is_p521_and_serves_with_its_key() {
        use rustls::client::danger::ServerCertVerifier as _;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let (ca, _) = self_signed(&params).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&ca).unwrap();
        assert_eq!(parsed.signature_algorithm.algorithm.to_id_string(), "1.2.840.10045.4.3.4");
        assert!(parsed.is_ca());
        // A leaf (webpki takes no CA as an end entity), trusted as itself:
        // the chain check verifies its P-521 signature.
        params.is_ca = rcgen::IsCa::NoCa;
        let (cert, key) = self_signed(&params).unwrap();
        // rustls takes the pair (its keys match), and webpki verifies the
        // self-signed chain with the extended algorithms.
        let provider = Arc::new(provider(rustls::crypto::ring::default_provider()));
        let cert = rustls::pki_types::CertificateDer::from(cert);
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], PrivateKeyDer::Sec1(key.into()))
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        verifier
            .verify_server_cert(
                &cert,
                &[],
                &rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }
}
